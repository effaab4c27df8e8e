// Checks a device's Cuda backend against the CPU backend: the same seeded models trained side by side on
// the same batches, for every activation (through the cuBLASLt epilogues and through our kernel), every
// loss and every optimizer with the regularizers, gradient accumulation, plus the graph-replayed step against eager launches
// bit for bit. What `backprop check cuda` runs on a GPU machine; the tests run it on the emulated device.
using Backprop.Engine;
using Backprop.Engine.Training;
using Backprop.Kernels;
using Backprop.Kernels.Cuda;

namespace Backprop.Cli.Diagnostics;

/// <summary>One comparison: what ran, the largest loss and parameter differences (relative), and whether they are within tolerance.</summary>
public sealed record CudaCheckResult(string Case, int Steps, double MaxLossDifference, double MaxParameterDifference, double Tolerance, bool Passed, string? Error = null);

/// <summary>The Cuda backend against the CPU backend on a device.</summary>
public static class CudaCheck
{
    private const int Steps = 20, Batch = 24, SmallBatch = 13;

    /// <summary>The cases run: name and how to build the model's spec and optimizer.</summary>
    public static IReadOnlyList<(string Name, Func<ModelSpec> Spec, OptimizerSettings Optimizer, int Accumulate)> Cases { get; } = BuildCases();

    private static List<(string, Func<ModelSpec>, OptimizerSettings, int)> BuildCases()
    {
        var adam = new Adam(lr: 5e-3);
        var list = new List<(string, Func<ModelSpec>, OptimizerSettings, int)>();
        foreach (var a in new[] { "relu", "gelu_tanh", "gelu", "silu", "tanh", "sigmoid", "elu:0.7", "leaky_relu:0.05" })
            list.Add(($"activation {a}, dropout 0.25 and 0.1, cross-entropy (smoothing 0.1)",
                () => new Sequential(12).Dense(16, a).Dropout(0.25).Dense(10, a).Dropout(0.1).Dense(4).ToSpec(LossKind.CrossEntropy, labelSmoothing: 0.1), adam, 1));
        list.Add(("37 classes (more than a warp's lanes)", () => new Sequential(12).Dense(24, "relu").Dense(37).ToSpec(LossKind.CrossEntropy), adam, 1));
        foreach (var loss in new[] { LossKind.Mse, LossKind.L1, LossKind.Huber, LossKind.BceWithLogits })
            list.Add(($"loss {loss}", () => new Sequential(12).Dense(12, "silu").Dense(3).ToSpec(loss, huberDelta: 0.3), adam, 1));
        list.Add(("accumulate 3 micro-batches, dropout 0.3, cross-entropy", () => new Sequential(12).Dense(16, "relu").Dropout(0.3).Dense(4).ToSpec(LossKind.CrossEntropy), adam, 3));
        list.Add(("accumulate 3 micro-batches, loss Mse", () => new Sequential(12).Dense(12, "silu").Dense(3).ToSpec(LossKind.Mse), adam, 3));
        var opts = new (string, OptimizerSettings)[]
        {
            ("sgd", new Sgd(lr: 0.05)),
            ("sgd nesterov + weight decay", new Sgd(lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 1e-3)),
            ("adam amsgrad + clip-norm", new Adam(lr: 1e-2, amsgrad: true) { ClipNorm = 0.5 }),
            ("adamw + L1", new AdamW(lr: 1e-2, weightDecay: 0.05) { L1 = 1e-4 }),
            ("rmsprop centered + momentum", new RmsProp(lr: 1e-3, centered: true, momentum: 0.5)),
            ("adagrad + clip-value", new Adagrad(lr: 0.05, lrDecay: 0.01, initialAccumulatorValue: 0.1) { ClipValue = 0.05 }),
        };
        foreach (var (name, o) in opts)
            list.Add(($"optimizer {name}", () => new Sequential(12).Dense(128, "relu").Dense(32, "tanh").Dense(4).ToSpec(LossKind.CrossEntropy), o, 1));
        return list;
    }

    /// <summary>
    /// Runs every case (or those whose name contains <paramref name="filter"/>) on a fresh device from <paramref name="open"/>,
    /// plus the graph-vs-eager comparison, writing one line per case to <paramref name="log"/>.
    /// </summary>
    public static List<CudaCheckResult> Run(Func<IGpuDevice> open, TextWriter log, string? filter = null, double tolerance = 2e-4)
    {
        var results = new List<CudaCheckResult>();
        void Report(CudaCheckResult r)
        {
            results.Add(r);
            log.WriteLine(FormattableString.Invariant(
                $"{(r.Passed ? "ok  " : "FAIL")} {r.Case}: {r.Steps} steps, max loss difference {r.MaxLossDifference:E2}, max parameter difference {r.MaxParameterDifference:E2} (tolerance {r.Tolerance:E0}){(r.Error is null ? "" : ": " + r.Error)}"));
        }
        foreach (var (name, spec, opt, accumulate) in Cases)
        {
            if (filter is not null && !name.Contains(filter, StringComparison.OrdinalIgnoreCase)) continue;
            Report(Compare(name, spec(), opt, accumulate, open, tolerance));
        }
        if (filter is null || "graph".Contains(filter, StringComparison.OrdinalIgnoreCase))
            Report(GraphVsEager(open));
        return results;
    }

    private static TrainingOptions Options(Backend backend, OptimizerSettings opt, bool graph = true) => new()
    {
        MaxBatch = Batch, Threads = 1, Backend = backend, Seed = 11, CudaGraph = graph, Optimizer = opt,
        Schedule = new LrSchedule { Kind = ScheduleKind.Cosine, TMax = 30, WarmupSteps = 3 },
    };

    // Deterministic batches: features in [-1, 1), labels or targets from the features.
    private static (float[] X, int[] Labels, float[] Targets) MakeBatch(ModelSpec spec, int n, int seed)
    {
        var rng = new Random(seed);
        var x = new float[n * spec.InputWidth];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        int outW = spec.OutputWidth;
        var labels = new int[n];
        var targets = new float[n * outW];
        for (int i = 0; i < n; i++) labels[i] = (int)(Math.Abs(x[i * spec.InputWidth]) * 1000) % outW;
        for (int i = 0; i < targets.Length; i++)
        {
            double v = rng.NextDouble() * 2 - 1;
            targets[i] = spec.Loss == LossKind.BceWithLogits ? (v > 0 ? 1f : 0f) : (float)(2 * v);
        }
        return (x, labels, targets);
    }

    private static double Rel(double a, double b) => Math.Abs(a - b) / (1 + Math.Abs(a));

    private static CudaCheckResult Compare(string name, ModelSpec spec, OptimizerSettings opt, int accumulate, Func<IGpuDevice> open, double tolerance)
    {
        double maxLoss = 0, maxParam = 0;
        try
        {
            using var gpu = open();
            using var cpu = new Model(spec, Options(Backend.Cpu, opt) with { Loss = spec.Loss, Accumulate = accumulate });
            using var cuda = new Model(spec, Options(Backend.Cuda, opt) with { Loss = spec.Loss, Accumulate = accumulate }, gpu);
            for (int t = 0; t < Steps; t++)
            {
                var (x, labels, targets) = MakeBatch(spec, t % 4 == 3 ? SmallBatch : Batch, 1000 + t);
                double a, b;
                if (spec.Loss == LossKind.CrossEntropy) { a = cpu.Step(x, labels); b = cuda.Step(x, labels); }
                else { a = cpu.Step(x, targets); b = cuda.Step(x, targets); }
                maxLoss = Math.Max(maxLoss, Rel(a, b));
            }
            var (pa, pb) = (new float[cpu.ParameterSectionLength], new float[cuda.ParameterSectionLength]);
            cpu.CopyParametersTo(pa);
            cuda.CopyParametersTo(pb);
            for (int i = 0; i < pa.Length; i++) maxParam = Math.Max(maxParam, Rel(pa[i], pb[i]));
            bool ok = maxLoss <= tolerance / 10 && maxParam <= tolerance && double.IsFinite(maxLoss) && double.IsFinite(maxParam);
            return new CudaCheckResult(name, Steps, maxLoss, maxParam, tolerance, ok);
        }
        catch (Exception e) when (e is InvalidOperationException or CudaException or CuBlasException or NvrtcException or ArgumentException or TrainingDivergedException)
        {
            return new CudaCheckResult(name, Steps, maxLoss, maxParam, tolerance, false, e.Message);
        }
    }

    private static CudaCheckResult GraphVsEager(Func<IGpuDevice> open)
    {
        const string name = "graph replay vs eager launches, bit for bit";
        try
        {
            float[] Train(bool graph)
            {
                using var gpu = open();
                var spec = new Sequential(12).Dense(16, "relu").Dropout(0.3).Dense(8, "gelu").Dense(4).ToSpec(LossKind.CrossEntropy);
                using var m = new Model(spec, Options(Backend.Cuda, new Adam(lr: 5e-3), graph), gpu);
                for (int t = 0; t < Steps; t++)
                {
                    var (x, labels, _) = MakeBatch(spec, t % 3 == 2 ? 9 : Batch, 2000 + t);
                    m.Step(x, labels);
                }
                var p = new float[m.ParameterSectionLength];
                m.CopyParametersTo(p);
                return p;
            }
            var (a, b) = (Train(true), Train(false));
            int differing = 0;
            double max = 0;
            for (int i = 0; i < a.Length; i++)
                if (BitConverter.SingleToInt32Bits(a[i]) != BitConverter.SingleToInt32Bits(b[i])) { differing++; max = Math.Max(max, Rel(a[i], b[i])); }
            return new CudaCheckResult(name, Steps, 0, max, 0, differing == 0, differing == 0 ? null : $"{differing} parameters differ");
        }
        catch (Exception e) when (e is InvalidOperationException or CudaException or CuBlasException or NvrtcException or ArgumentException)
        {
            return new CudaCheckResult(name, Steps, 0, 0, 0, false, e.Message);
        }
    }
}
