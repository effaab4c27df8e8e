// The Cuda backend against the CPU backend. Every test runs on two devices:
//   "emulated": EmulatedGpu — the real .cu kernels under the host emulation of the CUDA execution model
//               and the cuBLAS/cuBLASLt definitions in double precision; runs everywhere.
//   "device":   CudaGpu on a real GPU; skipped with "no CUDA device: …" where there is none.
// What is compared: loss at every step and the weights after 20 steps for every activation, loss,
// optimizer and regularizer; Predict/Evaluate; the graph-replayed step against the eagerly launched one
// bit for bit; the host ↔ device parameter hand-over (SetParameters, checkpoints); divergence; and that a
// step allocates nothing on the host.
using Backprop.Engine;
using Backprop.Engine.Checkpoints;
using Backprop.Engine.Training;
using Backprop.Kernels;
using Backprop.Kernels.Cpu.Ops;
using Backprop.Kernels.Cpu.Optim;
using Backprop.Kernels.Cuda;
using NUnit.Framework;

namespace Backprop.Tests.Cuda;

[TestFixture]
[NonParallelizable]
public class CudaBackendTests
{
    public static readonly string[] Devices = ["emulated", "device"];

    internal static IGpuDevice Open(string device)
    {
        if (device == "emulated") return new EmulatedGpu();
        var info = CudaDriver.Probe();
        if (!info.Available) Assert.Ignore($"no CUDA device: {info.Reason}");
        return CudaGpu.Open();
    }

    private static (float[] X, int[] Y) Batch(int n, int width, int classes, int seed)
    {
        var x = TestData.Floats(n * width, seed);
        var y = new int[n];
        for (int i = 0; i < n; i++) y[i] = (int)Math.Abs(x[i * width] * 7) % classes;
        return (x, y);
    }

    private static TrainingOptions Options(Backend backend, OptimizerSettings? opt = null, bool graph = true, int maxBatch = 24) => new()
    {
        MaxBatch = maxBatch,
        Threads = 1,
        Backend = backend,
        Seed = 11,
        CudaGraph = graph,
        Optimizer = opt ?? new Adam() { LearningRate = 5e-3 },
        Schedule = new LrSchedule { Kind = ScheduleKind.Cosine, TMax = 30, WarmupSteps = 3 },
    };

    private static void AssertClose(Model cpu, Model gpu, double tol, string what)
    {
        for (int l = 0; l < cpu.Spec.Layers.Count; l++)
        {
            var (wa, wb) = (cpu.GetWeights(l), gpu.GetWeights(l));
            var (ba, bb) = (cpu.GetBias(l), gpu.GetBias(l));
            for (int i = 0; i < wa.Length; i++) Assert.That(wb[i], Is.EqualTo(wa[i]).Within(tol * (1 + Math.Abs(wa[i]))), $"{what}: layer {l} weight {i}");
            for (int i = 0; i < ba.Length; i++) Assert.That(bb[i], Is.EqualTo(ba[i]).Within(tol * (1 + Math.Abs(ba[i]))), $"{what}: layer {l} bias {i}");
        }
    }

    // Every activation (ReLU and GELU-tanh through the cuBLASLt epilogues, the rest through our kernel),
    // with dropout between layers, 20 steps of Adam with warm-up + cosine; batches of 24 and 13.
    [Test]
    public void ClassifierTraining_MatchesTheCpuBackend_ForEveryActivation(
        [ValueSource(nameof(Devices))] string device,
        [Values("relu", "gelu_tanh", "gelu", "silu", "tanh", "sigmoid", "elu:0.7", "leaky_relu:0.05")] string activation)
    {
        using var gpu = Open(device);
        var net = new Sequential(12).Dense(16, activation).Dropout(0.25).Dense(10, activation).Dropout(0.1).Dense(4);
        var spec = net.ToSpec(LossKind.CrossEntropy, labelSmoothing: 0.1);
        using var cpu = new Model(spec, Options(Backend.Cpu));
        using var cuda = new Model(spec, Options(Backend.Cuda), gpu);
        for (int t = 0; t < 20; t++)
        {
            var (x, y) = Batch(t % 4 == 3 ? 13 : 24, 12, 4, 100 + t);
            double a = cpu.Step(x, y), b = cuda.Step(x, y);
            Assert.That(b, Is.EqualTo(a).Within(2e-5 * (1 + Math.Abs(a))), $"loss at step {t + 1}");
        }
        AssertClose(cpu, cuda, 1e-4, activation);
    }

    // Gradient accumulation on the device: micro-batches at row offsets (dropout masks of the whole batch), the loss gradient as
    // a share of the whole batch, the later micro-batches' gradients added on the device; against the CPU backend accumulating
    // the same micro-batches, for a classifier with dropout and a regression loss, batches of 24 and 13 (uneven micro-batches).
    [Test]
    public void GradientAccumulation_MatchesTheCpuBackend([ValueSource(nameof(Devices))] string device, [Values(LossKind.CrossEntropy, LossKind.Huber)] LossKind loss)
    {
        using var gpu = Open(device);
        var spec = new Sequential(12).Dense(16, "relu").Dropout(0.3).Dense(10, "tanh").Dropout(0.2).Dense(4)
            .ToSpec(loss, huberDelta: 0.5);
        using var cpu = new Model(spec, Options(Backend.Cpu) with { Accumulate = 3, Loss = loss });
        using var cuda = new Model(spec, Options(Backend.Cuda) with { Accumulate = 3, Loss = loss }, gpu);
        for (int t = 0; t < 12; t++)
        {
            var (x, y) = Batch(t % 4 == 3 ? 13 : 24, 12, 4, 300 + t);
            double a, b;
            if (loss == LossKind.CrossEntropy) (a, b) = (cpu.Step(x, y), cuda.Step(x, y));
            else
            {
                var targets = TestData.Floats(y.Length * 4, 400 + t);
                (a, b) = (cpu.Step(x, targets), cuda.Step(x, targets));
            }
            Assert.That(b, Is.EqualTo(a).Within(2e-5 * (1 + Math.Abs(a))), $"loss at step {t + 1}");
        }
        AssertClose(cpu, cuda, 1e-4, $"accumulate 3, {loss}");
        Assert.That(cuda.StepCount, Is.EqualTo(12));
    }

    // 37 classes: every lane of the row's warp loops, and the shuffle trees span all 32 lanes.
    [Test]
    public void SoftmaxCrossEntropy_OverMoreClassesThanAWarpHasLanes_MatchesTheCpuBackend([ValueSource(nameof(Devices))] string device, [Values(17, 37)] int classes)
    {
        using var gpu = Open(device);
        var spec = new Sequential(12).Dense(24, "relu").Dense(classes).ToSpec(LossKind.CrossEntropy, labelSmoothing: 0.05);
        using var cpu = new Model(spec, Options(Backend.Cpu));
        using var cuda = new Model(spec, Options(Backend.Cuda), gpu);
        for (int t = 0; t < 10; t++)
        {
            var (x, y) = Batch(24, 12, classes, 150 + t);
            double a = cpu.Step(x, y), b = cuda.Step(x, y);
            Assert.That(b, Is.EqualTo(a).Within(2e-5 * (1 + Math.Abs(a))), $"loss at step {t + 1}");
        }
        AssertClose(cpu, cuda, 1e-4, $"{classes} classes");
    }

    [Test]
    public void EveryOptimizerAndRegularizer_MatchesTheCpuBackend(
        [ValueSource(nameof(Devices))] string device,
        [Values("sgd", "sgd-nesterov", "adam-amsgrad-clipnorm", "adamw-l1", "rmsprop-centered-momentum", "rmsprop", "adagrad-clipvalue")] string name)
    {
        OptimizerSettings opt = name switch
        {
            "sgd" => new Sgd() { LearningRate = 0.05 },
            "sgd-nesterov" => new Sgd() { LearningRate = 0.05, Momentum = 0.9, Nesterov = true, WeightDecay = 1e-3 },
            "adam-amsgrad-clipnorm" => new Adam() { LearningRate = 1e-2, Amsgrad = true, ClipNorm = 0.5 },
            "adamw-l1" => new AdamW() { LearningRate = 1e-2, WeightDecay = 0.05, L1 = 1e-4 },
            "rmsprop-centered-momentum" => new RmsProp() { LearningRate = 1e-3, Centered = true, Momentum = 0.5 },
            "rmsprop" => new RmsProp() { LearningRate = 1e-3, WeightDecay = 1e-3 },
            "adagrad-clipvalue" => new Adagrad() { LearningRate = 0.05, LrDecay = 0.01, ClipValue = 0.05, InitialAccumulatorValue = 0.1, Eps = 1e-8 },
            _ => throw new ArgumentException(name),
        };
        using var gpu = Open(device);
        // ~5,900 parameters: more than the emulated device's 16 blocks x 256 threads, so the update kernels' grid-stride loops go round.
        var spec = new Sequential(12).Dense(128, "relu").Dense(32, "tanh").Dense(4).ToSpec(LossKind.CrossEntropy);
        using var cpu = new Model(spec, Options(Backend.Cpu, opt));
        using var cuda = new Model(spec, Options(Backend.Cuda, opt), gpu);
        for (int t = 0; t < 20; t++)
        {
            var (x, y) = Batch(24, 12, 4, 200 + t);
            double a = cpu.Step(x, y), b = cuda.Step(x, y);
            Assert.That(b, Is.EqualTo(a).Within(2e-5 * (1 + Math.Abs(a))), $"{name}: loss at step {t + 1}");
        }
        AssertClose(cpu, cuda, 2e-4, name);
    }

    [Test]
    public void RegressionLosses_MatchTheCpuBackend([ValueSource(nameof(Devices))] string device,
        [Values(LossKind.Mse, LossKind.L1, LossKind.Huber, LossKind.BceWithLogits)] LossKind loss)
    {
        using var gpu = Open(device);
        var spec = new Sequential(6).Dense(12, "silu").Dense(3).ToSpec(loss, huberDelta: 0.3);
        using var cpu = new Model(spec, Options(Backend.Cpu));
        using var cuda = new Model(spec, Options(Backend.Cuda), gpu);
        for (int t = 0; t < 20; t++)
        {
            int n = t % 5 == 4 ? 7 : 24;
            var x = TestData.Floats(n * 6, 300 + t);
            var target = TestData.Floats(n * 3, 400 + t).Select(v => loss == LossKind.BceWithLogits ? (v > 0 ? 1f : 0f) : 2 * v).ToArray();
            double a = cpu.Step(x, target), b = cuda.Step(x, target);
            Assert.That(b, Is.EqualTo(a).Within(2e-5 * (1 + Math.Abs(a))), $"{loss}: loss at step {t + 1}");
        }
        AssertClose(cpu, cuda, 1e-4, loss.ToString());
        var probe = TestData.Floats(9 * 6, 500);
        Assert.That(cuda.EvaluateLoss(probe, new float[9 * 3]), Is.EqualTo(cpu.EvaluateLoss(probe, new float[9 * 3])).Within(1e-4));
    }

    [Test]
    public void PredictAndEvaluate_MatchTheCpuBackend([ValueSource(nameof(Devices))] string device)
    {
        using var gpu = Open(device);
        var spec = new Sequential(12).Dense(16, "gelu_tanh").Dropout(0.5).Dense(4).ToSpec(LossKind.CrossEntropy);
        using var cpu = new Model(spec, Options(Backend.Cpu));
        using var cuda = new Model(spec, Options(Backend.Cuda), gpu);
        for (int t = 0; t < 5; t++)
        {
            var (x, y) = Batch(24, 12, 4, 600 + t);
            cpu.Step(x, y);
            cuda.Step(x, y);
        }
        var (px, py) = Batch(61, 12, 4, 700); // three chunks of the compiled batch, the last partial
        var (oa, ob) = (new float[61 * 4], new float[61 * 4]);
        cpu.Predict(px, oa);
        cuda.Predict(px, ob);
        for (int i = 0; i < oa.Length; i++) Assert.That(ob[i], Is.EqualTo(oa[i]).Within(1e-4 * (1 + Math.Abs(oa[i]))), $"output {i}");
        var (ea, eb) = (cpu.Evaluate(px, py), cuda.Evaluate(px, py));
        Assert.That(eb.Loss, Is.EqualTo(ea.Loss).Within(1e-5));
        Assert.That(eb.Confusion, Is.EqualTo(ea.Confusion));
    }

    // The captured graph replays the same work as launching each command: same bits after 20 steps.
    [Test]
    public void GraphReplay_IsBitIdenticalToEagerLaunches([ValueSource(nameof(Devices))] string device)
    {
        float[] Train(bool graph)
        {
            using var gpu = Open(device);
            var spec = new Sequential(12).Dense(16, "relu").Dropout(0.3).Dense(8, "gelu").Dense(4).ToSpec(LossKind.CrossEntropy);
            using var m = new Model(spec, Options(Backend.Cuda, graph: graph), gpu);
            for (int t = 0; t < 20; t++)
            {
                var (x, y) = Batch(t % 3 == 2 ? 9 : 24, 12, 4, 800 + t);
                m.Step(x, y);
            }
            var all = new float[m.ParameterSectionLength];
            m.CopyParametersTo(all);
            if (gpu is EmulatedGpu e)
            {
                Assert.That(e.GraphLaunches, Is.EqualTo(graph ? 20 : 0), "one graph launch per step");
                Assert.That(e.GemmsByEpilogue.GetValueOrDefault(LtEpilogue.ReluBias), Is.EqualTo(20), "ReLU forward through the cuBLASLt epilogue");
            }
            return all;
        }
        Assert.That(Train(graph: true), Is.EqualTo(Train(graph: false)));
    }

    [Test]
    public void TheLoweredStep_UsesEpiloguesAndOneCommandListPerBatchSize([ValueSource(nameof(Devices))] string device)
    {
        using var gpu = Open(device);
        var spec = new Sequential(12).Dense(16, "relu").Dense(8, "gelu_tanh").Dense(6, "gelu_tanh").Dense(4).ToSpec(LossKind.CrossEntropy);
        using var m = new Model(spec, Options(Backend.Cuda, new Adam() { ClipNorm = 1 }), gpu);
        var listing = m.StepListing(24);
        string text = string.Join("\n", listing);
        Assert.That(text, Does.Contain("dense0 fwd cublasLtMatmul ReluBias 16x24x12"), text);
        Assert.That(text, Does.Contain("dense1 fwd cublasLtMatmul GeluAuxBias 8x24x16"), text);
        Assert.That(text, Does.Contain("dense2 fwd cublasLtMatmul Bias 6x24x8"), "6 units: the GELU aux ld is not a multiple of 8, so our kernel applies GELU");
        Assert.That(text, Does.Contain("dense3 fwd cublasLtMatmul Bias 4x24x6"));
        Assert.That(listing[0], Is.EqualTo("copy input"));
        Assert.That(listing[^1], Is.EqualTo("copy status"));
        Assert.That(listing.Count(l => l.StartsWith("sumsq_", StringComparison.Ordinal)), Is.EqualTo(2));
        Assert.That(listing.Count(l => l.StartsWith("adam_update", StringComparison.Ordinal)), Is.EqualTo(1), "one fused pass over the parameter block");
        using var onCpu = new Sequential(3).Dense(2).Compile(new TrainingOptions { Backend = Backend.Cpu });
        Assert.That(onCpu.StepListing(1), Has.Some.StartsWith("DenseFwd(0) FusedDense<Single>"), "the CPU lists its kernel calls, one per plan op");
    }

    [Test]
    public void HostWrites_ReachTheDevice_AndCheckpointsResumeBitForBit([ValueSource(nameof(Devices))] string device)
    {
        using var gpu = Open(device);
        var spec = new Sequential(12).Dense(16, "relu").Dropout(0.2).Dense(4).ToSpec(LossKind.CrossEntropy);
        var opts = Options(Backend.Cuda, new Adam() { LearningRate = 1e-2 });
        string dir = Path.Combine(Path.GetTempPath(), "backprop-cuda-ckpt-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            using var a = new Model(spec, opts, gpu);
            for (int t = 0; t < 8; t++) { var (x, y) = Batch(24, 12, 4, 900 + t); a.Step(x, y); }
            string file = Path.Combine(dir, "a.safetensors");
            Checkpoint.SaveTraining(a, file, new TrainingPosition(1, 8));
            for (int t = 8; t < 16; t++) { var (x, y) = Batch(24, 12, 4, 900 + t); a.Step(x, y); }

            using var b = new Model(spec, opts, gpu);
            Checkpoint.LoadTraining(b, file);
            for (int t = 8; t < 16; t++) { var (x, y) = Batch(24, 12, 4, 900 + t); b.Step(x, y); }
            var (pa, pb) = (new float[a.ParameterSectionLength], new float[b.ParameterSectionLength]);
            a.CopyParametersTo(pa);
            b.CopyParametersTo(pb);
            Assert.That(pb, Is.EqualTo(pa), "resumed on the device from a checkpoint, bit for bit");

            // SetParameters lands on the device before the next forward pass.
            b.SetParameters(1, new float[4 * 16], new float[] { 0, 0, 5, 0 });
            var output = new float[3 * 4];
            b.Predict(Batch(3, 12, 4, 1).X, output);
            Assert.That(output, Is.EqualTo(new float[] { 0, 0, 5, 0, 0, 0, 5, 0, 0, 0, 5, 0 }));
        }
        finally { Directory.Delete(dir, true); }
    }

    // Counts the copies of whole parameter blocks between host and device (the mirror's traffic).
    private sealed class CountingGpu(IGpuDevice inner, long blockBytes) : DelegatingGpu(inner)
    {
        public int Uploads, Downloads;
        public override void CopyToDevice(ulong destination, nint source, long bytes)
        {
            if (bytes == blockBytes) Uploads++;
            base.CopyToDevice(destination, source, bytes);
        }
        public override void CopyToHost(nint destination, ulong source, long bytes)
        {
            if (bytes == blockBytes) Downloads++;
            base.CopyToHost(destination, source, bytes);
        }
    }

    [Test]
    public void TheHostMirror_ReadsDownloadOnce_AndOnlyWritesUpload([ValueSource(nameof(Devices))] string device)
    {
        var spec = new Sequential(12).Dense(16, "relu").Dense(4).ToSpec(LossKind.CrossEntropy);
        var opts = Options(Backend.Cuda);
        long block = new Backprop.Engine.Planning.Plan(spec, opts).ParameterBlock * 4;
        using var gpu = new CountingGpu(Open(device), block);
        using var m = new Model(spec, opts, gpu);
        var (x, y) = Batch(24, 12, 4, 5);
        m.Step(x, y);
        Assert.That((gpu.Uploads, gpu.Downloads), Is.EqualTo((1, 0)), "the initial parameters go up once, before the first step");
        m.Step(x, y);
        string file = Path.Combine(Path.GetTempPath(), "backprop-mirror-" + Guid.NewGuid().ToString("N") + ".safetensors");
        try
        {
            Checkpoint.SaveTraining(m, file, new TrainingPosition(1, 2));
            _ = m.GetWeights(0);
            _ = m.Gradient("0.weight");
            Assert.That((gpu.Uploads, gpu.Downloads), Is.EqualTo((1, 1)), "a save and other reads download the block once, and upload nothing");
            m.Step(x, y);
            Assert.That(gpu.Uploads, Is.EqualTo(1), "reading does not make the next step upload");
            m.SetParameters(1, new float[4 * 16], new float[4]);
            m.Step(x, y);
            Assert.That((gpu.Uploads, gpu.Downloads), Is.EqualTo((2, 2)), "a write downloads what the device changed, then uploads once before the next run");
        }
        finally { File.Delete(file); }
    }

    [Test]
    public void Gradients_OnTheDevice_MatchTheCpuBackend([ValueSource(nameof(Devices))] string device)
    {
        using var gpu = Open(device);
        var spec = new Sequential(12).Dense(16, "tanh").Dropout(0.25).Dense(8, "gelu").Dense(4).ToSpec(LossKind.CrossEntropy);
        using var cpu = new Model(spec, Options(Backend.Cpu));
        using var cuda = new Model(spec, Options(Backend.Cuda), gpu);
        var (x, y) = Batch(19, 12, 4, 77);
        double a = cpu.Gradients(x, y), b = cuda.Gradients(x, y);
        Assert.That(b, Is.EqualTo(a).Within(1e-5 * (1 + Math.Abs(a))));
        Assert.That(cuda.StepCount, Is.Zero);
        foreach (var p in cpu.Parameters)
        {
            var (ga, gb) = (cpu.Gradient(p.Name).ToArray(), cuda.Gradient(p.Name).ToArray());
            for (int i = 0; i < ga.Length; i++) Assert.That(gb[i], Is.EqualTo(ga[i]).Within(1e-5 + 1e-4 * Math.Abs(ga[i])), $"{p.Name}[{i}]");
        }
        var (xa, xb) = (cpu.InputGradient.ToArray(), cuda.InputGradient.ToArray());
        for (int i = 0; i < xa.Length; i++) Assert.That(xb[i], Is.EqualTo(xa[i]).Within(1e-5 + 1e-4 * Math.Abs(xa[i])), $"x[{i}]");
        Assert.That(cuda.Loss(x, y), Is.EqualTo(b), "Loss is the same forward on the device");
    }

    [Test]
    public void ANonFiniteLoss_SkipsTheUpdateOnTheDevice_AndKeepsTheParameters([ValueSource(nameof(Devices))] string device)
    {
        using var gpu = Open(device);
        var spec = new Sequential(4).Dense(3).ToSpec(LossKind.Mse);
        using var m = new Model(spec, Options(Backend.Cuda, new Sgd() { LearningRate = 0.1 }), gpu);
        var x = TestData.Floats(8, 1);
        m.Step(x, new float[6]);
        var before = new float[m.ParameterSectionLength];
        m.CopyParametersTo(before);
        var bad = new float[6];
        bad[4] = float.PositiveInfinity;
        var e = Assert.Throws<TrainingDivergedException>(() => m.Step(x, bad))!;
        Assert.That(e.Step, Is.EqualTo(2));
        Assert.That(m.StepCount, Is.EqualTo(1));
        var after = new float[m.ParameterSectionLength];
        m.CopyParametersTo(after);
        Assert.That(after, Is.EqualTo(before));
        Assert.DoesNotThrow(() => m.Step(x, new float[6]), "training goes on after the skipped step");
    }

    [Test]
    public void ANonFiniteGradient_WithAFiniteLoss_SkipsTheUpdateOnTheDevice([ValueSource(nameof(Devices))] string device, [Values(false, true)] bool clipNorm)
    {
        // A NaN input under ReLU: cuBLASLt's ReLU epilogue and fmaxf swallow it (the loss stays finite); the first layer's
        // weight gradient does not. Checked by grad_check, or with clipping by norm by the norm itself.
        using var gpu = Open(device);
        var spec = new Sequential(12).Dense(16, "relu").Dense(4).ToSpec(LossKind.CrossEntropy);
        using var m = new Model(spec, Options(Backend.Cuda, new Adam(lr: 5e-3) { ClipNorm = clipNorm ? 1.0 : 0 }), gpu);
        var (x, y) = Batch(24, 12, 4, 3);
        m.Step(x, y);
        var before = new float[m.ParameterSectionLength];
        m.CopyParametersTo(before);
        var bad = (float[])x.Clone();
        bad[5 * 12 + 7] = float.NaN;
        var e = Assert.Throws<TrainingDivergedException>(() => m.Step(bad, y))!;
        Assert.That(e.Tensor, Is.EqualTo("0.weight"));
        Assert.That(double.IsFinite(e.Loss), Is.True, "the loss was finite");
        Assert.That(m.StepCount, Is.EqualTo(1));
        var after = new float[m.ParameterSectionLength];
        m.CopyParametersTo(after);
        Assert.That(after, Is.EqualTo(before), "parameters and state as before the step");
        Assert.DoesNotThrow(() => m.Step(x, y), "training goes on after the skipped step");
    }

    [Test]
    public void AStep_AllocatesNothingOnTheHost([ValueSource(nameof(Devices))] string device)
    {
        using var gpu = Open(device);
        var spec = new Sequential(12).Dense(16, "gelu_tanh").Dropout(0.2).Dense(4).ToSpec(LossKind.CrossEntropy);
        using var m = new Model(spec, Options(Backend.Cuda), gpu);
        var (x, y) = Batch(24, 12, 4, 1);
        var (x2, y2) = Batch(5, 12, 4, 2);
        var output = new float[5 * 4];
        for (int i = 0; i < 5; i++) { m.Step(x, y); m.Step(x2, y2); m.Predict(x2, output); }
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 50; i++) { m.Step(x, y); m.Step(x2, y2); m.Predict(x2, output); }
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.EqualTo(0));
    }

    // The Trainer on the device: shuffling, validation, early stopping that restores the best epoch's
    // parameters into the device, the same epochs and metrics as on the CPU.
    [Test]
    public void TheTrainer_EarlyStopsAndRestores_AsOnTheCpu([ValueSource(nameof(Devices))] string device)
    {
        using var gpu = Open(device);
        var x = TestData.Floats(300 * 8, 1);
        var y = Enumerable.Range(0, 300).Select(i => (i * 7 + 1) % 3).ToArray(); // noise: validation loss rises
        var data = new Backprop.Engine.Data.Dataset(x, y, null, 8, 3);
        var spec = new Sequential(8).Dense(64, "relu").Dense(3).ToSpec(LossKind.CrossEntropy);
        var opt = new Adam() { LearningRate = 1e-2 };
        var fitOptions = new Backprop.Engine.Training.FitOptions { Epochs = 40, ValidationFraction = 0.25, Patience = 3 };
        using var cpu = new Model(spec, Options(Backend.Cpu, opt, maxBatch: 16));
        using var cuda = new Model(spec, Options(Backend.Cuda, opt, maxBatch: 16), gpu);
        var a = new Backprop.Engine.Training.Trainer(cpu).Fit(data, null, fitOptions);
        var b = new Backprop.Engine.Training.Trainer(cuda).Fit(data, null, fitOptions);
        Assert.That(b.StoppedEarly, Is.True);
        Assert.That((b.BestEpoch, b.Epochs.Count), Is.EqualTo((a.BestEpoch, a.Epochs.Count)));
        for (int e = 0; e < a.Epochs.Count; e++)
            Assert.That(b.Epochs[e].ValidationLoss!.Value, Is.EqualTo(a.Epochs[e].ValidationLoss!.Value).Within(1e-4), $"epoch {e + 1}");
        AssertClose(cpu, cuda, 1e-3, "restored best epoch");
    }

    [Test]
    public void WithoutADevice_TheBackendSaysWhy_AndBadCombinationsAreRejected()
    {
        var spec = new Sequential(4).Dense(3).ToSpec(LossKind.Mse);
        var info = CudaDriver.Probe();
        if (!info.Available)
        {
            var e = Assert.Throws<InvalidOperationException>(() => new Model(spec, new TrainingOptions { Backend = Backend.Cuda }))!;
            Assert.That(e.Message, Does.StartWith("CUDA is not available: ").And.Contain(info.Reason!));
        }
        using var gpu = new EmulatedGpu();
        Assert.That(Assert.Throws<ArgumentException>(() => new Model(spec, new TrainingOptions { Backend = Backend.Cpu }, gpu))!.Message,
            Does.Contain("a device was given but the backend is Cpu; set Backend = Cuda"));
        using (new Model(spec, new TrainingOptions { Backend = Backend.Cuda, MaxBatch = 4 }, gpu)) { }
        Assert.That(gpu.LiveAllocations, Is.EqualTo(0), "disposing the model frees its arena and staging buffers");
    }
}
