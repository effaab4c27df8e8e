// `backprop bench dense --versus onednn`: our fused dense kernels against oneDNN's f32 inner-product
// primitives (OneDnnDense: forward with bias and a ReLU post-op; backward data then the ReLU mask;
// backward weights with diff_bias), measured in the same process at 1 and 2 threads.
// For each thread count t: omp_set_num_threads(t) for oneDNN's OpenMP runtime (libgomp) and
// CpuContext(t) for ours; the primitives of each shape are created after that (oneDNN fixes its work
// split at creation), W is reordered into the layout they chose once, and the oracle (DenseOracle)
// must pass before anything is timed. Measure.Compare then times ours and oneDNN in alternating slices
// of each round (a pause before each slice so that the other side's threads, libgomp's spinning ones
// included, are idle) and yields ratio = oneDNN time / our time.
// GFLOP/s count 2·batch·in·out per kernel (the GEMM; the bias, ReLU, mask and db passes are not
// counted) and are given as a percent of the FMA peak measured in this process (FmaPeak), before and
// after the measurements, the higher kept.
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Backprop.Kernels.Blas;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Threading;

namespace Backprop.Cli.Bench;

internal sealed record DenseShape(string Name, int Batch, int In, int Out)
{
    public static DenseShape Of(int batch, int inFeatures, int outFeatures) =>
        new(string.Create(CultureInfo.InvariantCulture, $"b{batch}-{inFeatures}x{outFeatures}"), batch, inFeatures, outFeatures);
}

internal sealed record OneDnnDenseRow(
    [property: JsonPropertyName("kernel")] string Kernel,
    [property: JsonPropertyName("shape")] string Shape,
    [property: JsonPropertyName("batch")] int Batch,
    [property: JsonPropertyName("in")] int In,
    [property: JsonPropertyName("out")] int Out,
    [property: JsonPropertyName("threads")] int Threads,
    [property: JsonPropertyName("ours_ms")] double OursMs,
    [property: JsonPropertyName("onednn_ms")] double OneDnnMs,
    [property: JsonPropertyName("ratio")] double Ratio,
    [property: JsonPropertyName("ratio_min")] double RatioMin,
    [property: JsonPropertyName("ratio_max")] double RatioMax,
    [property: JsonPropertyName("ours_gflops")] double OursGflops,
    [property: JsonPropertyName("onednn_gflops")] double OneDnnGflops,
    [property: JsonPropertyName("ours_pct_peak")] double OursPctPeak,
    [property: JsonPropertyName("onednn_pct_peak")] double OneDnnPctPeak,
    [property: JsonPropertyName("onednn_impl")] string OneDnnImpl,
    [property: JsonPropertyName("onednn_weights_format")] string OneDnnWeightsFormat,
    [property: JsonPropertyName("oracle_worst_over_tolerance")] double OracleWorst,
    [property: JsonPropertyName("rounds")] int Rounds);

internal sealed record OneDnnDenseReport(
    [property: JsonPropertyName("isa")] string Isa,
    [property: JsonPropertyName("openblas_core")] string OpenBlasCore,
    [property: JsonPropertyName("onednn_version")] string OneDnnVersion,
    [property: JsonPropertyName("onednn_isa")] string OneDnnIsa,
    [property: JsonPropertyName("onednn_runtime")] string OneDnnRuntime,
    [property: JsonPropertyName("forward_prop_kind")] string ForwardPropKind,
    [property: JsonPropertyName("omp_wait_policy")] string OmpWaitPolicy,
    [property: JsonPropertyName("gomp_spincount")] string GompSpinCount,
    [property: JsonPropertyName("settle_ms")] int SettleMs,
    [property: JsonPropertyName("peak_gflops")] Dictionary<string, double> PeakGflops,
    [property: JsonPropertyName("rows")] List<OneDnnDenseRow> Rows);

internal static unsafe class OneDnnDenseBench
{
    public const string FwdKernel = "Fwd bias+ReLU", BwdDataKernel = "BwdData ReLU mask", BwdWeightsKernel = "BwdWeights dW+db";
    // Our forward reading W from panels packed beforehand, as the Cpu step runs it (its optimizer pass writes them), against the
    // same oneDNN forward, whose W is in its own layout, reordered once: neither side rearranges W in the timed call.
    public const string FwdPanelsKernel = "Fwd, W in panels";

    public static readonly DenseShape[] Shapes =
    [
        DenseShape.Of(64, 784, 256), DenseShape.Of(64, 256, 10),
        DenseShape.Of(128, 784, 256), DenseShape.Of(128, 256, 10),
        DenseShape.Of(256, 784, 256), DenseShape.Of(256, 256, 10),
        DenseShape.Of(256, 1024, 1024),
        DenseShape.Of(512, 4096, 4096),
    ];

    public static OneDnnDenseReport Run(IReadOnlyList<DenseShape> shapes, IReadOnlyList<int> threadCounts, int rounds, double minSeconds, TextWriter log)
    {
        OneDnn.EnsureAvailable();
        int maxThreads = threadCounts.Max();
        using var pool = new WorkerPool(maxThreads);
        var peaks = new PeakTable(pool, threadCounts);
        var rows = new List<OneDnnDenseRow>();
        int ompBefore = OneDnn.MaxThreads;
        nint engine = OneDnn.EngineCreate();
        nint stream = 0;
        try
        {
            stream = OneDnn.StreamCreate(engine);
            log.WriteLine($"oneDNN {OneDnn.Version} ({OneDnn.EffectiveIsa}), OpenMP; ours {CpuIsa.Supported}");
            foreach (int threads in threadCounts)
            {
                OneDnn.SetThreads(threads);
                using var ctx = new CpuContext(threads, null, pool);
                foreach (var s in shapes)
                {
                    RunShape(ctx, engine, stream, s, threads, rounds, minSeconds, rows, log);
                    peaks.Remeasure(); // a peak taken in a slow minute only would rate a fast one above 100 %
                }
            }
        }
        finally
        {
            if (stream != 0) OneDnn.StreamDestroy(stream);
            OneDnn.EngineDestroy(engine);
            OneDnn.SetThreads(ompBefore);
            peaks.Remeasure();
        }
        for (int i = 0; i < rows.Count; i++)
            rows[i] = rows[i] with { OursPctPeak = peaks.Percent(rows[i].OursGflops, rows[i].Threads), OneDnnPctPeak = peaks.Percent(rows[i].OneDnnGflops, rows[i].Threads) };
        return new OneDnnDenseReport(CpuIsa.Supported.ToString(), OpenBlas.IsAvailable ? OpenBlas.CoreName : "not loaded",
            OneDnn.Version, OneDnn.EffectiveIsa, "OpenMP (libgomp)", "forward_training",
            Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") ?? "unset",
            Environment.GetEnvironmentVariable("GOMP_SPINCOUNT") ?? "unset", Measure.SettleMs, peaks.ByThreads, rows);
    }

    private static void RunShape(CpuContext ctx, nint engine, nint stream, DenseShape s, int threads, int rounds, double minSeconds,
        List<OneDnnDenseRow> rows, TextWriter log)
    {
        using var d = DenseLayerBuffers.Random(s.Batch, s.In, s.Out, seed: 17);
        using var dnnl = new OneDnnDense(engine, stream, s.Batch, s.In, s.Out, d.X, d.W, d.B, d.YOneDnn, d.Dy, d.Saved, d.DxOneDnn, d.DwOneDnn, d.DbOneDnn);
        var oracle = DenseOracle.Check(ctx, d, dnnl, $"{s.Name} t={threads}");
        log.WriteLine(FormattableString.Invariant(
            $"  {s.Name} t={threads}: oracle ok (worst |ours - oneDNN| / tolerance {oracle.Worst:F4}); oneDNN {dnnl.ForwardImpl} / {dnnl.BackwardDataImpl} + {dnnl.ReluBackwardImpl} / {dnnl.BackwardWeightsImpl}, W {dnnl.WeightsFormat}"));
        double flops = 2.0 * s.Batch * s.In * s.Out;
        var relu = default(Kernels.Cpu.Ops.ReLU<float>);
        float* x = d.X, w = d.W, b = d.B, dy = d.Dy, saved = d.Saved, y = d.YOurs, dx = d.DxOurs, dw = d.DwOurs, db = d.DbOurs;
        int batch = s.Batch, inF = s.In, outF = s.Out;

        var fwd = Measure.Compare(() => Kernels.Cpu.Ops.Dense.Fwd(ctx, relu, batch, inF, outF, x, w, b, y, null), dnnl.Forward, rounds, minSeconds);
        Add(FwdKernel, fwd, $"{dnnl.ForwardImpl}", dnnl.WeightsFormat, oracle.Fwd);
        long panelsLength = Kernels.Cpu.Gemm.PanelsLength<float>(ctx, outF, inF);
        if (panelsLength > 0)
        {
            var panels = (float*)NativeMemory.AlignedAlloc((nuint)(panelsLength * sizeof(float)), 64);
            try
            {
                Kernels.Cpu.Gemm.PackPanels(ctx, outF, inF, w, inF, panels, 0, outF);
                long n = (long)batch * outF;
                var plain = new ReadOnlySpan<float>(y, checked((int)n)).ToArray();
                Kernels.Cpu.Ops.Dense.Fwd(ctx, relu, batch, inF, outF, x, w, b, y, null, panels);
                if (!plain.AsSpan().SequenceEqual(new ReadOnlySpan<float>(y, checked((int)n))))
                    throw new InvalidOperationException($"{s.Name} t={threads}: the forward from W's panels differs from the forward that packs W (expected the same bits).");
                var fwdPanels = Measure.Compare(() => Kernels.Cpu.Ops.Dense.Fwd(ctx, relu, batch, inF, outF, x, w, b, y, null, panels), dnnl.Forward, rounds, minSeconds);
                Add(FwdPanelsKernel, fwdPanels, $"{dnnl.ForwardImpl}", dnnl.WeightsFormat, oracle.Fwd);
            }
            finally { NativeMemory.AlignedFree(panels); }
        }
        var bwd = Measure.Compare(() => Kernels.Cpu.Ops.Dense.BwdData(ctx, relu, batch, inF, outF, dy, w, saved, dx), dnnl.BackwardData, rounds, minSeconds);
        Add(BwdDataKernel, bwd, $"{dnnl.BackwardDataImpl} + eltwise {dnnl.ReluBackwardImpl}", dnnl.BackwardDataWeightsFormat, oracle.BwdData);
        var bww = Measure.Compare(() => Kernels.Cpu.Ops.Dense.BwdWeights(ctx, Kernels.Cpu.Ops.GradientMode.Overwrite, batch, inF, outF, dy, x, dw, db),
            dnnl.BackwardWeights, rounds, minSeconds);
        Add(BwdWeightsKernel, bww, dnnl.BackwardWeightsImpl, dnnl.DiffWeightsFormat, Math.Max(oracle.DiffWeights, oracle.DiffBias));

        void Add(string kernel, PairResult r, string impl, string format, double worst)
        {
            var row = new OneDnnDenseRow(kernel, s.Name, batch, inF, outF, threads, Math.Round(r.MedianA * 1e3, 4), Math.Round(r.MedianB * 1e3, 4),
                Math.Round(r.Ratio, 3), Math.Round(r.RatioMin, 3), Math.Round(r.RatioMax, 3),
                Math.Round(flops / r.MedianA / 1e9, 1), Math.Round(flops / r.MedianB / 1e9, 1), 0, 0, impl, format, Math.Round(worst, 4), rounds);
            rows.Add(row);
            log.WriteLine(FormattableString.Invariant(
                $"  {kernel,-18} {s.Name} t={threads}: ours {row.OursMs:F3} ms, oneDNN {row.OneDnnMs:F3} ms, ratio {row.Ratio:F3} [{row.RatioMin:F3}..{row.RatioMax:F3}]"));
        }
    }

    public static string ToMarkdown(OneDnnDenseReport report)
    {
        var sb = new StringBuilder();
        sb.AppendLine("# Dense kernels: Backprop vs oneDNN");
        sb.AppendLine();
        sb.Append(CultureInfo.InvariantCulture, $"oneDNN {report.OneDnnVersion} ({OneDnn.LibraryName}, {report.OneDnnRuntime}), dispatching to {report.OneDnnIsa}. ");
        sb.Append(CultureInfo.InvariantCulture, $"Our ISA path: {report.Isa}. OpenBLAS core: {report.OpenBlasCore} (not used here). ");
        sb.AppendLine(CultureInfo.InvariantCulture, $"Measured FMA peak: {string.Join(", ", report.PeakGflops.Select(p => $"{p.Value:F1} GFLOP/s on {p.Key} thread(s)"))}.");
        sb.AppendLine();
        sb.Append(CultureInfo.InvariantCulture, $"oneDNN: f32 inner-product primitives created once per shape and thread count: {report.ForwardPropKind} with bias and a ReLU eltwise post-op; ");
        sb.Append("backward_data followed by eltwise backward ReLU (relu_use_dst_for_bwd, mask from the saved output, in place); backward_weights with diff_bias. ");
        sb.Append("X, Y, dY, dX in plain nc; W and dW in the layout the primitive chose for format_tag any (reordered once, outside the timing). ");
        sb.Append($"Ours: \"{FwdKernel}\" transposes W into panels in the call; \"{FwdPanelsKernel}\" reads panels packed once, outside the timing, as the Cpu training step does (its optimizer pass writes them; same bits). ");
        sb.AppendLine(CultureInfo.InvariantCulture, $"Threads: omp_set_num_threads(t) and CpuContext(t); OMP_WAIT_POLICY {report.OmpWaitPolicy}, GOMP_SPINCOUNT {report.GompSpinCount}; {Measure.Slices} slices per side and round, alternating, a {report.SettleMs} ms pause before each.");
        sb.AppendLine();
        double worst = report.Rows.Count == 0 ? 0 : report.Rows.Max(r => r.OracleWorst);
        sb.Append(CultureInfo.InvariantCulture, $"Oracle before timing: every result equal to ours within 1e-6 + 4e-7·(k+2)·Σ|a||b|; worst |ours − oneDNN| / tolerance {worst:F4}. ");
        sb.AppendLine("Ratio = oneDNN time / our time (≥ 1: ours at least as fast), median over rounds (each: median call time of oneDNN's slices / of ours), [min..max] across rounds. GFLOP/s count 2·batch·in·out.");
        sb.AppendLine();
        sb.AppendLine("| kernel | batch | in | out | threads | ours ms | oneDNN ms | ratio | spread | ours GFLOP/s | oneDNN GFLOP/s | ours % peak | oneDNN % peak | oneDNN impl | oneDNN W layout |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---|");
        foreach (var r in report.Rows)
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"| {r.Kernel} | {r.Batch} | {r.In} | {r.Out} | {r.Threads} | {r.OursMs:F3} | {r.OneDnnMs:F3} | {r.Ratio:F3} | {r.RatioMin:F3}..{r.RatioMax:F3} | {r.OursGflops:F1} | {r.OneDnnGflops:F1} | {r.OursPctPeak:F1} | {r.OneDnnPctPeak:F1} | {r.OneDnnImpl} | {r.OneDnnWeightsFormat} |");
        return sb.ToString();
    }

    public static string ToJson(OneDnnDenseReport report) => JsonSerializer.Serialize(report, JsonOutput.Indented);
}
