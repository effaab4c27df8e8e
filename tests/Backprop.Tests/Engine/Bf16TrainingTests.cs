// Mixed-precision training (TrainingOptions.Precision = Bf16) through the engine: it is really bf16 (the weights leave the
// float32 run's after a step) yet close to it; it is bit-identical on 1 and 2 threads; checkpoints record it and a resume is
// bit-exact; a step allocates nothing; where it cannot run the model refuses (naming why) unless asked to fall back; double
// models ignore it; and the Blas backend refuses it.
using Backprop.Engine;
using Backprop.Engine.Checkpoints;
using Backprop.Kernels;
using Backprop.Kernels.Cpu;
using NUnit.Framework;

namespace Backprop.Tests.Engine;

[TestFixture]
[NonParallelizable]
public class Bf16TrainingTests
{
    private const int In = 40, Batch = 32;

    private static void RequireBf16()
    {
        if (!Bf16Gemm.IsAvailable) Assert.Ignore($"bf16 not available here: {Bf16Gemm.Unavailable}");
    }

    private static TrainingOptions Options(GemmPrecision precision, int threads = 2) => new()
    {
        MaxBatch = Batch, Threads = threads, Seed = 9, Precision = precision, Optimizer = new Adam { LearningRate = 3e-3 },
    };

    // Widths past the dot-product path's limits (more than 4 rows, more than 16 columns), so every GEMM but the
    // output layer's forward (5 columns against the transposed weights) takes the bf16 kernels.
    private static Sequential Net() => new Sequential(In).Dense(64, "relu").Dropout(0.1).Dense(48, "gelu").Dense(5);

    private static (float[] X, int[] Y) Data(int step)
    {
        var x = TestData.Floats(Batch * In, 1000 + step);
        var y = new int[Batch];
        for (int i = 0; i < Batch; i++) y[i] = (int)(Math.Abs(x[i * In] * 7) + Math.Abs(x[i * In + 1] * 3)) % 5;
        return (x, y);
    }

    private static double[] Train(Model m, int steps, int offset = 0)
    {
        var losses = new double[steps];
        for (int t = 0; t < steps; t++)
        {
            var (x, y) = Data((offset + t) % 4); // four batches, seen again and again: learnable in a few dozen steps
            losses[t] = m.Step(x, y);
        }
        return losses;
    }

    private static int[] Bits(Model m, int layer) => m.GetWeights(layer).Select(BitConverter.SingleToInt32Bits).ToArray();

    [Test]
    public void Bf16_DiffersFromFloat32_ButStaysClose_Over100Steps()
    {
        RequireBf16();
        using var bf = Net().Compile(Options(GemmPrecision.Bf16));
        using var fp = Net().Compile(Options(GemmPrecision.Fp32));
        Assert.That(bf.Options.Precision, Is.EqualTo(GemmPrecision.Bf16));
        var lb = Train(bf, 100);
        var lf = Train(fp, 100);
        Assert.That(Bits(bf, 0), Is.Not.EqualTo(Bits(fp, 0)), "the bf16 run's first-layer weights equal the float32 run's: the bf16 kernels did not run");
        Assert.That(lb[0], Is.EqualTo(lf[0]).Within(2e-2 * lf[0]), "first loss: bf16 rounding of the operands moves it by about 2^-8 relative");
        Assert.That(lb[^1], Is.LessThan(lb[0] * 0.7), "bf16 training lowers the loss");
        for (int t = 0; t < 100; t++)
            Assert.That(lb[t], Is.EqualTo(lf[t]).Within(0.1 * lf[t] + 0.02), $"step {t}: bf16 loss {lb[t]}, float32 {lf[t]}");
    }

    [Test]
    public void Bf16_IsBitIdentical_OnOneAndTwoThreads()
    {
        RequireBf16();
        using var one = Net().Compile(Options(GemmPrecision.Bf16, threads: 1));
        using var two = Net().Compile(Options(GemmPrecision.Bf16, threads: 2));
        var l1 = Train(one, 20);
        var l2 = Train(two, 20);
        Assert.That(l2, Is.EqualTo(l1), "losses");
        for (int l = 0; l < 3; l++)
        {
            Assert.That(Bits(two, l), Is.EqualTo(Bits(one, l)), $"layer {l} weights");
            Assert.That(two.GetBias(l).Select(BitConverter.SingleToInt32Bits), Is.EqualTo(one.GetBias(l).Select(BitConverter.SingleToInt32Bits)), $"layer {l} bias");
        }
    }

    [Test]
    public void Bf16Checkpoint_RecordsThePrecision_AndResumesBitForBit()
    {
        RequireBf16();
        string dir = Path.Combine(Path.GetTempPath(), "backprop-bf16-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            using var full = Net().Compile(Options(GemmPrecision.Bf16));
            Train(full, 12);
            using var first = Net().Compile(Options(GemmPrecision.Bf16));
            Train(first, 5);
            string path = Path.Combine(dir, "c.safetensors");
            Checkpoint.SaveTraining(first, path, new TrainingPosition(1, 5));
            var info = Checkpoint.ReadInfo(path);
            Assert.That(info.Options.Precision, Is.EqualTo(GemmPrecision.Bf16), "the checkpoint's options");
            using var resumed = new Model(info.Spec, info.Options);
            Checkpoint.LoadTraining(resumed, path);
            Train(resumed, 7, offset: 5);
            for (int l = 0; l < 3; l++) Assert.That(Bits(resumed, l), Is.EqualTo(Bits(full, l)), $"layer {l}");
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Test]
    public void Bf16Step_AllocatesNothing_OnTheCallingThread()
    {
        RequireBf16();
        using var m = Net().Compile(Options(GemmPrecision.Bf16));
        var (x, y) = Data(0);
        for (int i = 0; i < 20; i++) m.Step(x, y);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++) m.Step(x, y);
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero, "bytes allocated by 1000 bf16 steps");
    }

    [Test]
    public void Bf16_WhereItCannotRun_IsRefusedNamingWhy_OrFallsBackWhenAsked()
    {
        // A forced rung below Avx512 cannot run VDPBF16PS on any machine; on a machine without bf16 every model is in this case.
        var forced = Options(GemmPrecision.Bf16) with { Isa = CpuIsa.Supported >= Isa.Avx2 ? Isa.Avx2 : Isa.Scalar };
        var e = Assert.Throws<PlatformNotSupportedException>(() => Net().Compile(forced).Dispose());
        Assert.That(e!.Message, Does.Contain("bf16 precision cannot run here").And.Contain("PrecisionFallback"));
        if (Bf16Gemm.Unavailable is { } why) Assert.That(e.Message, Does.Contain(why));
        else Assert.That(e.Message, Does.Contain(forced.Isa.ToString()));

        using var fellBack = Net().Compile(forced with { PrecisionFallback = true });
        using var fp = Net().Compile(forced with { Precision = GemmPrecision.Fp32 });
        Assert.That(fellBack.Options.Precision, Is.EqualTo(GemmPrecision.Fp32), "the model's options say what runs");
        Train(fellBack, 3);
        Train(fp, 3);
        Assert.That(Bits(fellBack, 0), Is.EqualTo(Bits(fp, 0)), "the fallback is the float32 model");
    }

    [Test]
    public void Bf16_OnTheBlasBackend_OrUnknown_IsRefused()
    {
        var blas = Assert.Throws<ArgumentException>(() => Net().Compile(Options(GemmPrecision.Bf16) with { Backend = Backend.Blas }).Dispose());
        Assert.That(blas!.Message, Does.Contain("bf16 precision runs on the Cpu and Cuda backends").And.Contain("Blas"));
        Assert.DoesNotThrow(() => (Options(GemmPrecision.Bf16) with { Backend = Backend.Cuda }).Validate(), "the Cuda backend takes bf16 (cuBLASLt)");
        var bad = Assert.Throws<ArgumentOutOfRangeException>(() => Net().Compile(Options((GemmPrecision)5)).Dispose());
        Assert.That(bad!.Message, Does.Contain("unknown precision 5; expected Fp32 or Bf16"));
    }

    [Test]
    public void DoubleModels_IgnoreThePrecision()
    {
        using var bf = Net().Compile<double>(Options(GemmPrecision.Bf16));
        using var fp = Net().Compile<double>(Options(GemmPrecision.Fp32));
        for (int t = 0; t < 3; t++)
        {
            var (x, y) = Data(t);
            var xd = x.Select(v => (double)v).ToArray();
            Assert.That(bf.Step(xd, y), Is.EqualTo(fp.Step(xd, y)), $"step {t}");
        }
        Assert.That(bf.GetWeights(0), Is.EqualTo(fp.GetWeights(0)));
    }
}
