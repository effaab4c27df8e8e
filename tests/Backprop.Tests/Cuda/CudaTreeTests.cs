// Residual blocks, LayerNorm and BatchNorm on the Cuda backend (native/cuda/norms.cu), on the host
// emulation of the device (the real .cu sources) and on a real device when there is one: training
// against the Cpu backend step by step (dropout masks, running statistics, accumulation), gradients,
// inference with the running statistics, the graph replay against eager launches, no host allocation.
using Backprop.Engine;
using Backprop.Kernels;
using NUnit.Framework;

namespace Backprop.Tests.Cuda;

[TestFixture]
[NonParallelizable]
public class CudaTreeTests
{
    public static readonly string[] Devices = CudaBackendTests.Devices;

    private static Sequential Tree() => new Sequential(12).Dense(40, "relu").Dropout(0.2)
        .Residual(b => b.Dense(40, "gelu").LayerNorm().Residual(c => c.Dense(40, "tanh").Dropout(0.1)))
        .BatchNorm(momentum: 0.2)
        .Residual(b => b.Dense(24, "silu").BatchNorm())
        .LayerNorm().Dense(4);

    private static TrainingOptions Options(Backend backend, bool graph = true, int accumulate = 1) => new()
    {
        MaxBatch = 24, Threads = 1, Backend = backend, Seed = 5, CudaGraph = graph, Accumulate = accumulate,
        Optimizer = new Adam { LearningRate = 3e-3 },
    };

    private static (float[] X, int[] Y) Batch(int n, int seed)
    {
        var x = TestData.Floats(n * 12, seed, -2, 2);
        var y = new int[n];
        for (int i = 0; i < n; i++) y[i] = (int)Math.Abs(x[i * 12] * 7) % 4;
        return (x, y);
    }

    private static float[] State(Model m) => m.Parameters.SelectMany(p => m.Parameter(p.Name).ToArray())
        .Concat(m.Buffers.SelectMany(b => m.Buffer(b.Name).ToArray())).ToArray();

    private static void AssertClose(float[] a, float[] b, double tol, string what)
    {
        Assert.That(b, Has.Length.EqualTo(a.Length), what);
        for (int i = 0; i < a.Length; i++) Assert.That(b[i], Is.EqualTo(a[i]).Within(tol * (1 + Math.Abs(a[i]))), $"{what}: value {i}");
    }

    [Test]
    public void Training_MatchesTheCpuBackend_StepByStep([ValueSource(nameof(Devices))] string device, [Values(1, 3)] int accumulate)
    {
        using var gpu = CudaBackendTests.Open(device);
        var spec = Tree().ToSpec(LossKind.CrossEntropy);
        using var cpu = new Model(spec, Options(Backend.Cpu, accumulate: accumulate));
        using var cuda = new Model(spec, Options(Backend.Cuda, accumulate: accumulate), gpu);
        for (int t = 0; t < 12; t++)
        {
            var (x, y) = Batch(t % 4 == 3 ? 13 : 24, 200 + t);
            double a = cpu.Step(x, y), b = cuda.Step(x, y);
            Assert.That(b, Is.EqualTo(a).Within(5e-5 * (1 + Math.Abs(a))), $"loss at step {t + 1}");
        }
        AssertClose(State(cpu), State(cuda), 2e-4, "parameters and running statistics after 12 steps");
        Assert.That(cuda.Buffer("4.num_batches_tracked").ToArray(), Is.EqualTo(new[] { 12f * accumulate }), "one count per (micro-)batch");

        var (xt, _) = Batch(19, 999);
        var pa = new float[19 * 4];
        var pb = new float[19 * 4];
        cpu.Predict(xt, pa);
        cuda.Predict(xt, pb);
        AssertClose(pa, pb, 1e-4, "Predict (running statistics)");
    }

    [Test]
    public void Gradients_MatchTheCpuBackend([ValueSource(nameof(Devices))] string device)
    {
        using var gpu = CudaBackendTests.Open(device);
        var spec = Tree().ToSpec(LossKind.CrossEntropy);
        using var cpu = new Model(spec, Options(Backend.Cpu));
        using var cuda = new Model(spec, Options(Backend.Cuda), gpu);
        var (x, y) = Batch(17, 7);
        double a = cpu.Gradients(x, y), b = cuda.Gradients(x, y);
        Assert.That(b, Is.EqualTo(a).Within(1e-5 * (1 + Math.Abs(a))));
        foreach (var p in cpu.Parameters) AssertClose(cpu.Gradient(p.Name).ToArray(), cuda.Gradient(p.Name).ToArray(), 1e-4, $"gradient of {p.Name}");
        AssertClose(cpu.InputGradient.ToArray(), cuda.InputGradient.ToArray(), 1e-4, "input gradient");
        AssertClose(State(cpu), State(cuda), 0, "Gradients moves no running statistic");
    }

    [Test]
    public void GraphReplay_IsBitIdenticalToEagerLaunches_AndAllocatesNothing([ValueSource(nameof(Devices))] string device)
    {
        using var gpu = CudaBackendTests.Open(device);
        var spec = Tree().ToSpec(LossKind.CrossEntropy);
        float[] Run(bool graph)
        {
            using var m = new Model(spec, Options(Backend.Cuda, graph), gpu);
            for (int t = 0; t < 6; t++)
            {
                var (x, y) = Batch(24, 300 + t);
                m.Step(x, y);
            }
            return State(m);
        }
        Assert.That(Run(true), Is.EqualTo(Run(false)));

        using var m = new Model(spec, Options(Backend.Cuda), gpu);
        var (xb, yb) = Batch(24, 1);
        for (int i = 0; i < 5; i++) m.Step(xb, yb);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 50; i++) m.Step(xb, yb);
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.EqualTo(0), "bytes allocated by the calling thread");
    }

    [Test]
    public void Bf16Gemms_StayCloseToFloat32([ValueSource(nameof(Devices))] string device)
    {
        // The bf16 mirrors across the tree's ops: the residual add folded into a GEMM store, the join folded into a BwdData
        // adding to the skip gradient, the norms between GEMMs (a norm's output is converted before the next layer reads it).
        using var gpu = CudaBackendTests.Open(device);
        var spec = Tree().ToSpec(LossKind.CrossEntropy);
        using var bf = new Model(spec, Options(Backend.Cuda) with { Precision = Backprop.Kernels.Cpu.GemmPrecision.Bf16 }, gpu);
        using var fp = new Model(spec, Options(Backend.Cuda), gpu);
        for (int t = 0; t < 12; t++)
        {
            var (x, y) = Batch(24, 400 + t);
            double a = bf.Step(x, y), b = fp.Step(x, y);
            Assert.That(a, Is.EqualTo(b).Within(0.05 * b), $"loss at step {t + 1}: bf16 {a}, float32 {b}");
        }
        Assert.That(State(bf), Is.Not.EqualTo(State(fp)), "the bf16 run's GEMMs were bf16");
        AssertClose(State(fp), State(bf), 0.05, "parameters and statistics after 12 steps");
    }
}
