// The Cpu executor keeps each dense layer's forward panels of Wᵀ (bf16 pairs with bf16 GEMMs), written by the optimizer
// pass and repacked after any other write of the parameters. Whatever wrote W last, a forward must read W's current values: the model's
// outputs equal the kernels run on the weights read back from the model, bit for bit.
using Backprop.Engine;
using Backprop.Kernels;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cpu.Ops;
using NUnit.Framework;

namespace Backprop.Tests.Engine;

[TestFixture]
public unsafe class WeightPanelsTests
{
    private const int In = 40, Hidden = 37, Out = 21, Batch = 24;

    private static Model Mlp(int threads, GemmPrecision precision) =>
        new Sequential(In).Dense(Hidden, "relu").Dense(Out)
            .Compile(new TrainingOptions { MaxBatch = Batch, Threads = threads, Seed = 11, Optimizer = new Adam { LearningRate = 0.05 }, Precision = precision });

    // The two layers run by the kernels on the model's current weights, without panels (bf16: packed from W in each call).
    private static float[] Forward(Model m, float[] x, int threads, GemmPrecision precision)
    {
        using var ctx = new CpuContext(threads, null, null, precision);
        var (w0, b0, w1, b1) = (m.GetWeights(0), m.GetBias(0), m.GetWeights(1), m.GetBias(1));
        var h = new float[Batch * Hidden];
        var y = new float[Batch * Out];
        fixed (float* px = x, pw0 = w0, pb0 = b0, pw1 = w1, pb1 = b1, ph = h, py = y)
        {
            Dense.Fwd(ctx, default(ReLU<float>), Batch, In, Hidden, px, pw0, pb0, ph, null);
            Dense.Fwd(ctx, default(Identity<float>), Batch, Hidden, Out, ph, pw1, pb1, py, null);
        }
        return y;
    }

    private static float[] Predict(Model m, float[] x)
    {
        var y = new float[Batch * Out];
        m.Predict(x, y);
        return y;
    }

    private static int[] Bits(float[] x) => x.Select(BitConverter.SingleToInt32Bits).ToArray();

    [Test]
    public void ForwardReadsTheCurrentWeights_AfterSteps_SetParameters_AndCopyParametersFrom([Values(1, 2)] int threads,
        [Values(GemmPrecision.Fp32, GemmPrecision.Bf16)] GemmPrecision precision)
    {
        if (precision == GemmPrecision.Bf16 && !Bf16Gemm.IsAvailable) Assert.Ignore($"bf16 not available here: {Bf16Gemm.Unavailable}");
        using var m = Mlp(threads, precision);
        var x = TestData.Floats(Batch * In, 1);
        var labels = Enumerable.Range(0, Batch).Select(i => i % Out).ToArray();
        Assert.That(Bits(Predict(m, x)), Is.EqualTo(Bits(Forward(m, x, threads, precision))), "after initialization");
        for (int s = 0; s < 3; s++) m.Step(x, labels);
        Assert.That(Bits(Predict(m, x)), Is.EqualTo(Bits(Forward(m, x, threads, precision))), "after three optimizer steps");
        var saved = new float[m.ParameterSectionLength];
        m.CopyParametersTo(saved);
        m.SetParameters(0, TestData.Floats(Hidden * In, 2), TestData.Floats(Hidden, 3));
        var afterSet = Predict(m, x);
        Assert.That(Bits(afterSet), Is.EqualTo(Bits(Forward(m, x, threads, precision))), "after SetParameters");
        m.CopyParametersFrom(saved);
        Assert.That(Bits(Predict(m, x)), Is.Not.EqualTo(Bits(afterSet)));
        Assert.That(Bits(Predict(m, x)), Is.EqualTo(Bits(Forward(m, x, threads, precision))), "after CopyParametersFrom");
        m.Step(x, labels);
        Assert.That(Bits(Predict(m, x)), Is.EqualTo(Bits(Forward(m, x, threads, precision))), "a step after a write");
    }
}
