// `backprop bench step`: ms per training step, samples/s and achieved GFLOP/s for named model
// shapes on both backends in the same run (interleaved rounds, median and spread), plus the ratio
// Cpu/Blas throughput. FLOPs per step count the three GEMMs of each layer (forward, dW, dX; the
// first layer has no dX): 2·batch·in·out each. In a second comparison of the same rounds, the step's
// GEMMs alone (our Gemm.Sgemm on the same shapes, back to back, no bias, activation, loss, dropout or
// optimizer) against the Cpu step: gemm_fraction = GEMM-only time / step time; in a third, the
// optimizer's fused Adam pass alone over as many parameters (Optimizer.Update, the step's own kernel):
// update_fraction; the rest of the step is its other passes (loss, bias, activations, copies);
// pct_peak = the Cpu step's GFLOP/s over the FMA peak measured in the same process. The same GEMMs
// through OpenBLAS against the Blas step give blas_gemm_fraction, so the share of time outside GEMMs
// (1 − fraction: loss, bias, activations, LayerNorm, residual adds, optimizer) is there for both paths.
// Besides the plain MLPs, a residual-normalized network: 784 → Dense 512 → 4 × [x + Dense 512(x),
// LayerNorm] → 10 (train --arch resmlp:width=512,blocks=4,norm=layer without dropout) at batch 256.
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Backprop.Engine;
using Backprop.Kernels;
using Backprop.Kernels.Blas;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cpu.Optim;
using Backprop.Kernels.Threading;

namespace Backprop.Cli.Bench;

internal sealed record StepBenchRow(
    [property: JsonPropertyName("model")] string ModelName,
    [property: JsonPropertyName("batch")] int Batch,
    [property: JsonPropertyName("threads")] int Threads,
    [property: JsonPropertyName("cpu_ms_per_step")] double CpuMs,
    [property: JsonPropertyName("blas_ms_per_step")] double BlasMs,
    [property: JsonPropertyName("cpu_samples_per_second")] double CpuSamples,
    [property: JsonPropertyName("blas_samples_per_second")] double BlasSamples,
    [property: JsonPropertyName("cpu_gflops")] double CpuGflops,
    [property: JsonPropertyName("blas_gflops")] double BlasGflops,
    [property: JsonPropertyName("cpu_over_blas")] double Ratio,
    [property: JsonPropertyName("ratio_min")] double RatioMin,
    [property: JsonPropertyName("ratio_max")] double RatioMax,
    [property: JsonPropertyName("gemm_ms")] double GemmMs,
    [property: JsonPropertyName("gemm_fraction")] double GemmFraction,
    [property: JsonPropertyName("gemm_fraction_min")] double GemmFractionMin,
    [property: JsonPropertyName("gemm_fraction_max")] double GemmFractionMax,
    [property: JsonPropertyName("pct_peak")] double PctPeak,
    [property: JsonPropertyName("update_ms")] double UpdateMs,
    [property: JsonPropertyName("update_fraction")] double UpdateFraction,
    [property: JsonPropertyName("blas_gemm_ms")] double BlasGemmMs,
    [property: JsonPropertyName("blas_gemm_fraction")] double BlasGemmFraction);

internal static class StepBench
{
    public static readonly (string Name, int[] Widths, int Batch)[] Shapes =
    [
        ("784-256-10", [784, 256, 10], 64),
        ("784-256-10", [784, 256, 10], 128),
        ("784-256-10", [784, 256, 10], 256),
        ("784-1024-1024-10", [784, 1024, 1024, 10], 256),
        ("4096-4096-4096", [4096, 4096, 4096], 512),
    ];

    /// <summary>The residual-normalized shapes: name, network, batch.</summary>
    public static readonly (string Name, Func<ModelSpec> Spec, int Batch)[] TreeShapes =
    [
        ("784-512-4x[512 res, LN]-10", () => new Architecture(true, 512, 4, BlockNorm.Layer).Build(784, 10, [], new Activation(ActivationKind.ReLU), 0).ToSpec(LossKind.CrossEntropy), 256),
    ];

    /// <summary>A step's dense layers: input and output widths, and whether its data gradient is skipped (the layer reads the network input), as the plan lowers it.</summary>
    public static (int In, int Out, bool First)[] DenseLayers(ModelSpec spec)
    {
        var plan = new Engine.Planning.Plan(spec, new TrainingOptions { MaxBatch = 1 });
        var withDx = plan.TrainingOps.OfType<Engine.Planning.DenseBwdDataOp>().Select(d => d.Layer).ToHashSet();
        return spec.DenseSites.Select(d => (d.InputWidth, d.Layer.Units, !withDx.Contains(d.Index))).ToArray();
    }

    /// <summary>The benchmarked MLP: ReLU hidden layers, identity output, softmax cross-entropy.</summary>
    public static ModelSpec Spec(int[] widths)
    {
        var net = new Sequential(widths[0]);
        for (int i = 1; i < widths.Length; i++) net.Dense(widths[i], i < widths.Length - 1 ? "relu" : "identity");
        return net.ToSpec(LossKind.CrossEntropy);
    }

    /// <summary>The timed batch: random inputs (seed 1) and labels cycling through the classes.</summary>
    public static (float[] X, int[] Labels) Batch(int[] widths, int batch)
    {
        var labels = new int[batch];
        for (int i = 0; i < batch; i++) labels[i] = i % widths[^1];
        return (Measure.Random(batch * widths[0], 1), labels);
    }

    /// <summary>FLOPs of a training step: forward, dW and dX GEMMs of every layer (the first has no dX), 2·batch·in·out each.</summary>
    public static double FlopsPerStep(int[] widths, int batch) => FlopsPerStep(Chain(widths), batch);

    /// <summary>FLOPs of a training step of <paramref name="layers"/>: forward, dW and (past the input) dX GEMMs, 2·batch·in·out each.</summary>
    public static double FlopsPerStep((int In, int Out, bool First)[] layers, int batch) =>
        layers.Sum(l => 2.0 * batch * l.In * l.Out * (l.First ? 2 : 3));

    /// <summary>The dense layers of a plain MLP of <paramref name="widths"/>.</summary>
    public static (int In, int Out, bool First)[] Chain(int[] widths) =>
        Enumerable.Range(1, widths.Length - 1).Select(l => (widths[l - 1], widths[l], l == 1)).ToArray();

    public static List<StepBenchRow> Run(IReadOnlyList<int> threadCounts, int rounds, double minSeconds, string? filter, TextWriter log)
    {
        OpenBlas.EnsureAvailable();
        var rows = new List<StepBenchRow>();
        var gflops = new List<double>();
        using var pool = new WorkerPool(threadCounts.Max());
        var peaks = new PeakTable(pool, threadCounts);
        foreach (int threads in threadCounts)
        {
            OpenBlas.Threads = threads;
            using var ctx = new CpuContext(threads);
            var all = Shapes.Select(sh => (sh.Name, Spec: Spec(sh.Widths), sh.Batch))
                .Concat(TreeShapes.Select(sh => (sh.Name, Spec: sh.Spec(), sh.Batch)));
            foreach (var (name, spec, batch) in all)
            {
                if (filter is not null && !name.Contains(filter, StringComparison.OrdinalIgnoreCase)) continue;
                Model Build(Backend be) =>
                    new Model(spec, new TrainingOptions
                    {
                        MaxBatch = batch, Threads = threads, Backend = be, Seed = 3,
                        Optimizer = new Adam(lr: 1e-4),
                    });
                using var cpu = Build(Backend.Cpu);
                using var blas = Build(Backend.Blas);
                var layers = DenseLayers(spec);
                var labels = new int[batch];
                for (int i = 0; i < batch; i++) labels[i] = i % spec.OutputWidth;
                var x = Measure.Random(batch * spec.InputWidth, 1);
                var pr = Measure.Compare(() => cpu.Step(x, labels), () => blas.Step(x, labels), rounds, minSeconds, OpenBlasSpin.SettleFor(threads));
                var gemms = new StepGemms(layers, batch, ctx, blas: false);
                var pg = Measure.Compare(gemms.Run, () => cpu.Step(x, labels), rounds, minSeconds); // Ratio = step / GEMMs
                var blasGemms = new StepGemms(layers, batch, ctx, blas: true);
                var pb = Measure.Compare(blasGemms.Run, () => blas.Step(x, labels), rounds, minSeconds);
                using var update = new StepUpdate(cpu.Options.Optimizer, cpu.Plan.ParameterCount, ctx);
                var pu = Measure.Compare(update.Run, () => cpu.Step(x, labels), rounds, minSeconds); // Ratio = step / update
                double flops = FlopsPerStep(layers, batch);
                double cpuGflops = flops / pr.MedianA / 1e9;
                var row = new StepBenchRow(name, batch, threads, Math.Round(pr.MedianA * 1e3, 3), Math.Round(pr.MedianB * 1e3, 3),
                    Math.Round(batch / pr.MedianA), Math.Round(batch / pr.MedianB), Math.Round(cpuGflops, 1), Math.Round(flops / pr.MedianB / 1e9, 1),
                    Math.Round(pr.Ratio, 3), Math.Round(pr.RatioMin, 3), Math.Round(pr.RatioMax, 3),
                    Math.Round(pg.MedianA * 1e3, 3), Math.Round(1 / pg.Ratio, 3), Math.Round(1 / pg.RatioMax, 3), Math.Round(1 / pg.RatioMin, 3),
                    peaks.Percent(cpuGflops, threads), Math.Round(pu.MedianA * 1e3, 3), Math.Round(1 / pu.Ratio, 3),
                    Math.Round(pb.MedianA * 1e3, 3), Math.Round(1 / pb.Ratio, 3));
                rows.Add(row);
                gflops.Add(cpuGflops);
                log.WriteLine(FormattableString.Invariant($"  {name} batch {batch} t={threads}: cpu {row.CpuMs:F3} ms ({row.CpuGflops:F1} GFLOP/s, {row.PctPeak:F1} % of {peaks[threads]:F0}), blas {row.BlasMs:F3} ms, cpu/blas {row.Ratio:F3} [{row.RatioMin:F3}..{row.RatioMax:F3}]; GEMMs alone {row.GemmMs:F3} ms, fraction {row.GemmFraction:F3} (Blas: {row.BlasGemmMs:F3} ms, {row.BlasGemmFraction:F3}); update alone {row.UpdateMs:F3} ms, fraction {row.UpdateFraction:F3}"));
                peaks.Remeasure(); // a peak taken in a slow minute only would rate a fast one above 100 %
            }
        }
        // Against the highest reading of the run: the peak as first read can be a slow minute's.
        for (int i = 0; i < rows.Count; i++) rows[i] = rows[i] with { PctPeak = peaks.Percent(gflops[i], rows[i].Threads) };
        return rows;
    }

    public static string ToMarkdown(List<StepBenchRow> rows)
    {
        var sb = new StringBuilder();
        sb.AppendLine("# Training step: Cpu (fused) vs Blas (OpenBLAS + passes) backends");
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"OpenBLAS core: {OpenBlas.CoreName}. Adam, ReLU hidden layers, softmax cross-entropy. cpu/blas = Blas time / Cpu time, median over rounds [min..max].");
        if (OpenBlasCore.Current is { } note) sb.AppendLine(note);
        sb.AppendLine();
        sb.AppendLine("GEMMs alone: the step's products through Gemm.Sgemm back to back; fraction = their time / the Cpu step's time (median [min..max]). % peak: Cpu GFLOP/s over the FMA peak of this process.");
        sb.AppendLine();
        sb.AppendLine("Update alone: the optimizer's fused pass over the model's parameters (Optimizer.Update); fraction = its time / the Cpu step's.");
        sb.AppendLine();
        sb.AppendLine("Blas GEMMs: the same products through OpenBLAS; fraction = their time / the Blas step's. 1 − fraction is the share outside GEMMs.");
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"{Measure.Slices} slices per side and round, alternating; a {Measure.SettleMs} ms pause before each, {OpenBlasSpin.SettleMs} ms after OpenBLAS's (its threads spun {OpenBlasSpin.SpinMs} ms after a call here).");
        sb.AppendLine();
        sb.AppendLine("| model | batch | threads | Cpu ms/step | Blas ms/step | Cpu samples/s | Blas samples/s | Cpu GFLOP/s | Blas GFLOP/s | cpu/blas | spread | Cpu % peak | GEMMs alone ms | GEMM fraction | spread | update alone ms | update fraction | Blas GEMMs ms | Blas GEMM fraction |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---:|---:|---:|---:|");
        foreach (var r in rows)
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"| {r.ModelName} | {r.Batch} | {r.Threads} | {r.CpuMs:F3} | {r.BlasMs:F3} | {r.CpuSamples:N0} | {r.BlasSamples:N0} | {r.CpuGflops:F1} | {r.BlasGflops:F1} | {r.Ratio:F3} | {r.RatioMin:F3}..{r.RatioMax:F3} | {r.PctPeak:F1} | {r.GemmMs:F3} | {r.GemmFraction:F3} | {r.GemmFractionMin:F3}..{r.GemmFractionMax:F3} | {r.UpdateMs:F3} | {r.UpdateFraction:F3} | {r.BlasGemmMs:F3} | {r.BlasGemmFraction:F3} |");
        return sb.ToString();
    }

    public static string ToJson(List<StepBenchRow> rows) => JsonSerializer.Serialize(rows, JsonOutput.Indented);
}

/// <summary>The GEMMs of one training step, alone: per dense layer the forward (N, T), dW (T, N) and, past the input, dX (N, N); ours or OpenBLAS's.</summary>
internal sealed class StepGemms
{
    private readonly List<Action> _calls = [];

    /// <summary>FLOPs of the calls, 2·m·n·k each (what <see cref="StepBench.FlopsPerStep"/> counts for the step).</summary>
    public double Flops { get; private set; }

    /// <summary>GEMM calls per run.</summary>
    public int Calls => _calls.Count;

    public StepGemms(int[] widths, int batch, CpuContext ctx) : this(StepBench.Chain(widths), batch, ctx, blas: false) { }

    public StepGemms((int In, int Out, bool First)[] layers, int batch, CpuContext ctx, bool blas)
    {
        for (int l = 1; l <= layers.Length; l++)
        {
            int inF = layers[l - 1].In, outF = layers[l - 1].Out;
            var x = Measure.Random(batch * inF, 10 + l);
            var w = Measure.Random(outF * inF, 20 + l);
            var y = new float[batch * outF];
            var dy = Measure.Random(batch * outF, 30 + l);
            var dw = new float[outF * inF];
            var dx = new float[batch * inF];
            bool first = layers[l - 1].First;
            if (blas)
            {
                _calls.Add(() => OpenBlas.Sgemm(Transpose.N, Transpose.T, batch, outF, inF, 1f, x, inF, w, inF, 0f, y, outF));
                _calls.Add(() => OpenBlas.Sgemm(Transpose.T, Transpose.N, outF, inF, batch, 1f, dy, outF, x, inF, 0f, dw, inF));
                if (!first) _calls.Add(() => OpenBlas.Sgemm(Transpose.N, Transpose.N, batch, inF, outF, 1f, dy, outF, w, inF, 0f, dx, inF));
            }
            else
            {
                _calls.Add(() => Gemm.Sgemm(Transpose.N, Transpose.T, batch, outF, inF, 1f, x, inF, w, inF, 0f, y, outF, ctx));
                _calls.Add(() => Gemm.Sgemm(Transpose.T, Transpose.N, outF, inF, batch, 1f, dy, outF, x, inF, 0f, dw, inF, ctx));
                if (!first) _calls.Add(() => Gemm.Sgemm(Transpose.N, Transpose.N, batch, inF, outF, 1f, dy, outF, w, inF, 0f, dx, inF, ctx));
            }
            Flops += 2.0 * batch * inF * outF * (first ? 2 : 3);
        }
    }

    public void Run()
    {
        foreach (var call in _calls) call();
    }
}

/// <summary>The optimizer's fused pass alone over as many parameters as the model has (weights and biases), on native arrays.</summary>
internal sealed unsafe class StepUpdate : IDisposable
{
    private readonly OptimizerSettings _settings;
    private readonly CpuContext _ctx;
    private readonly float* _p, _g, _s0, _s1, _s2;
    private long _step;

    /// <summary>Parameters updated per run.</summary>
    public long Count { get; }

    public StepUpdate(OptimizerSettings settings, long count, CpuContext ctx)
    {
        _settings = settings;
        _ctx = ctx;
        Count = count;
        float* Alloc(int seed)
        {
            var a = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(Count * sizeof(float)), 64);
            var r = new Random(seed);
            for (long i = 0; i < Count; i++) a[i] = seed == 3 ? 0.25f : (float)(r.NextDouble() * 2 - 1) * 1e-2f; // exp_avg_sq-like slots positive
            return a;
        }
        _p = Alloc(1);
        _g = Alloc(2);
        _s0 = Alloc(4);
        _s1 = Alloc(3);
        _s2 = Alloc(3);
    }

    public void Run() => Optimizer.Update(_ctx, _settings, new OptimizerStep(1e-4, ++_step), _p, _g, _s0, _s1, _s2, Count);

    public void Dispose()
    {
        foreach (var a in new[] { (nint)_p, (nint)_g, (nint)_s0, (nint)_s1, (nint)_s2 }) System.Runtime.InteropServices.NativeMemory.AlignedFree((void*)a);
    }
}
