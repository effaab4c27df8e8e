// `backprop bench gemm --precision bf16`: our bf16 GEMM (bf16 operands, float32 accumulation: GemmPrecision.Bf16)
// against our float32 GEMM and against oneDNN's bf16 matmul (libdnnl.so.2, brgemm AVX512_BF16 kernels), each pair
// timed back to back in the same rounds of this process. GFLOP/s count 2·M·N·K whatever the precision; the bf16
// peak is the VDPBF16PS register loop (native/cpu/bf16_gemm.c) measured here like the FMA peak, so "% bf16 peak"
// and "% fp32 peak" say how close each path gets to what its instruction can do on this CPU now.
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Threading;

namespace Backprop.Cli.Bench;

internal sealed record Bf16GemmRow(
    [property: JsonPropertyName("shape")] string Shape,
    [property: JsonPropertyName("m")] int M,
    [property: JsonPropertyName("n")] int N,
    [property: JsonPropertyName("k")] int K,
    [property: JsonPropertyName("transposes")] string Transposes,
    [property: JsonPropertyName("threads")] int Threads,
    [property: JsonPropertyName("bf16_gflops")] double Bf16Gflops,
    [property: JsonPropertyName("fp32_gflops")] double Fp32Gflops,
    [property: JsonPropertyName("ratio_fp32")] double RatioFp32,
    [property: JsonPropertyName("ratio_fp32_min")] double RatioFp32Min,
    [property: JsonPropertyName("ratio_fp32_max")] double RatioFp32Max,
    [property: JsonPropertyName("onednn_gflops")] double? OneDnnGflops,
    [property: JsonPropertyName("ratio_onednn")] double? RatioOneDnn,
    [property: JsonPropertyName("ratio_onednn_min")] double? RatioOneDnnMin,
    [property: JsonPropertyName("ratio_onednn_max")] double? RatioOneDnnMax,
    [property: JsonPropertyName("onednn_from_fp32_gflops")] double? OneDnnFromFp32Gflops,
    [property: JsonPropertyName("ratio_onednn_from_fp32")] double? RatioOneDnnFromFp32,
    [property: JsonPropertyName("pct_bf16_peak")] double PctBf16Peak,
    [property: JsonPropertyName("fp32_pct_fp32_peak")] double Fp32PctPeak,
    [property: JsonPropertyName("rounds")] int Rounds);

internal sealed record Bf16GemmReport(
    [property: JsonPropertyName("precision")] string Precision,
    [property: JsonPropertyName("kernel")] string Kernel,
    [property: JsonPropertyName("onednn")] string OneDnn,
    [property: JsonPropertyName("bf16_peak_gflops")] Dictionary<string, double> Bf16Peak,
    [property: JsonPropertyName("fp32_peak_gflops")] Dictionary<string, double> Fp32Peak,
    [property: JsonPropertyName("rows")] List<Bf16GemmRow> Rows);

internal static class Bf16GemmBench
{
    public static unsafe Bf16GemmReport Run(IReadOnlyList<GemmShape> shapes, IReadOnlyList<int> threadCounts, int rounds, double minSeconds, TextWriter log)
    {
        if (Bf16Gemm.Unavailable is { } why) throw new UsageException($"--precision bf16 cannot run here: {why}");
        var kernel = Bf16Gemm.Blocks;
        string oneDnn = OneDnn.IsAvailable ? $"oneDNN {OneDnn.Version}" : $"not measured: {OneDnn.UnavailableReason}";
        log.WriteLine($"bf16 kernel {kernel.MR}x{kernel.NR} (MC {kernel.MC}, KC {kernel.KC}, NC {kernel.NC}); {oneDnn}");
        using var pool = new WorkerPool(threadCounts.Max());
        var fp32Peak = new PeakTable(pool, threadCounts);
        var bf16Peak = new PeakTable(pool, threadCounts, Bf16Peak);
        var rows = new List<Bf16GemmRow>();
        foreach (int threads in threadCounts)
        {
            using var bf = new CpuContext(threads, null, pool, GemmPrecision.Bf16);
            using var fp = new CpuContext(threads, null, pool, GemmPrecision.Fp32);
            foreach (var s in shapes)
            {
                var (a, b, c) = s.Operands();
                int lda = s.Lda, ldb = s.Ldb;
                double flops = s.Flops;
                fixed (float* pa = a) fixed (float* pb = b) fixed (float* pc = c)
                {
                    float* A = pa, B = pb, C = pc;
                    var epi = default(IdentityEpilogue<float>);
                    void Bf16() => Gemm.Compute(bf, s.TransA, s.TransB, s.M, s.N, s.K, 1f, A, lda, B, ldb, 0f, C, s.N, ref epi);
                    void Fp32() => Gemm.Compute(fp, s.TransA, s.TransB, s.M, s.N, s.K, 1f, A, lda, B, ldb, 0f, C, s.N, ref epi);
                    var vsFp32 = Measure.Compare(Bf16, Fp32, rounds, minSeconds);
                    PairResult? vsDnn = null, vsDnnFp32 = null;
                    if (OneDnn.IsAvailable)
                    {
                        // oneDNN alone: its operands already bf16 and the weights in its layout (converted outside the timing). From
                        // fp32: the conversions of both operands (oneDNN reorders) timed too, as ours packs from float32 on every call.
                        using var mm = OneDnnMatmul.Create(s.M, s.N, s.K, s.TransA, s.TransB, threads);
                        mm.SetInputs(A, B);
                        vsDnn = Measure.Compare(Bf16, mm.Execute, rounds, minSeconds);
                        vsDnnFp32 = Measure.Compare(Bf16, () => { mm.SetInputs(A, B); mm.Execute(); }, rounds, minSeconds);
                    }
                    double bg = flops / vsFp32.MedianA / 1e9, fg = flops / vsFp32.MedianB / 1e9;
                    double? dg = vsDnn is { } d ? Math.Round(flops / d.MedianB / 1e9, 2) : null;
                    var row = new Bf16GemmRow(s.Name, s.M, s.N, s.K, $"{s.TransA}{s.TransB}", threads, Math.Round(bg, 2), Math.Round(fg, 2),
                        Math.Round(vsFp32.Ratio, 3), Math.Round(vsFp32.RatioMin, 3), Math.Round(vsFp32.RatioMax, 3),
                        dg, R3(vsDnn?.Ratio), R3(vsDnn?.RatioMin), R3(vsDnn?.RatioMax),
                        vsDnnFp32 is { } f ? Math.Round(flops / f.MedianB / 1e9, 2) : null, R3(vsDnnFp32?.Ratio),
                        bf16Peak.Percent(bg, threads), fp32Peak.Percent(fg, threads), rounds);
                    rows.Add(row);
                    string dnn = vsDnn is null ? "" : $"  onednn {row.OneDnnGflops,7:F1}  x{row.RatioOneDnn:F3} [{row.RatioOneDnnMin:F3}..{row.RatioOneDnnMax:F3}]  from fp32 {row.OneDnnFromFp32Gflops,7:F1}  x{row.RatioOneDnnFromFp32:F3}";
                    log.WriteLine($"  {row.Shape,-20} {row.Transposes} t={threads}: bf16 {row.Bf16Gflops,7:F1}  fp32 {row.Fp32Gflops,7:F1}  x{row.RatioFp32:F3} [{row.RatioFp32Min:F3}..{row.RatioFp32Max:F3}]{dnn}");
                }
            }
        }
        fp32Peak.Remeasure();
        bf16Peak.Remeasure();
        for (int i = 0; i < rows.Count; i++)
            rows[i] = rows[i] with
            {
                PctBf16Peak = bf16Peak.Percent(rows[i].Bf16Gflops, rows[i].Threads),
                Fp32PctPeak = fp32Peak.Percent(rows[i].Fp32Gflops, rows[i].Threads),
            };
        return new Bf16GemmReport("bf16", $"{kernel.Name} {kernel.MR}x{kernel.NR} (MC {kernel.MC}, KC {kernel.KC}, NC {kernel.NC})", oneDnn, bf16Peak.ByThreads, fp32Peak.ByThreads, rows);
    }

    private static double? R3(double? x) => x is { } v ? Math.Round(v, 3) : null;

    private static string Opt(double? x, string format) => x is { } v ? v.ToString(format, CultureInfo.InvariantCulture) : "-";

    /// <summary>VDPBF16PS GFLOP/s of <paramref name="threads"/> threads running the native peak loop at once, best of 5 (each thread times itself).</summary>
    public static unsafe double Bf16Peak(WorkerPool pool, int threads)
    {
        double best = 0;
        double* seconds = stackalloc double[threads];
        double* flops = stackalloc double[threads];
        for (int t = 0; t <= 5; t++) // trial 0 warms the workers up
        {
            var job = new PeakJob { Iterations = 1_000_000, Seconds = seconds, Flops = flops };
            pool.Run(ref job, threads);
            if (t == 0) continue;
            double rate = 0;
            for (int i = 0; i < threads; i++) rate += flops[i] / seconds[i] / 1e9;
            best = Math.Max(best, rate);
        }
        return best;
    }

    private unsafe struct PeakJob : IParallelJob
    {
        public long Iterations;
        public double* Seconds, Flops;

        public void Execute(int part, int parts)
        {
            long t0 = Stopwatch.GetTimestamp();
            Flops[part] = Bf16Gemm.PeakLoop(Iterations);
            Seconds[part] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        }
    }

    public static string ToMarkdown(Bf16GemmReport report)
    {
        var sb = new StringBuilder();
        sb.AppendLine("# bf16 GEMM: Backprop bf16 vs Backprop float32 vs oneDNN bf16 matmul");
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Kernel: {report.Kernel}. oneDNN: {report.OneDnn}.");
        sb.AppendLine(CultureInfo.InvariantCulture, $"Measured VDPBF16PS peak: {string.Join(", ", report.Bf16Peak.Select(p => $"{p.Value:F1} GFLOP/s on {p.Key} thread(s)"))}; " +
            $"float32 FMA peak: {string.Join(", ", report.Fp32Peak.Select(p => $"{p.Value:F1} GFLOP/s on {p.Key} thread(s)"))}.");
        sb.AppendLine("GFLOP/s count 2·M·N·K. x fp32 = our float32 GEMM's time / our bf16 GEMM's time; x oneDNN = oneDNN's bf16 matmul time / ours, its operands already bf16 " +
            "and its weights in its own layout (ours converts and packs both float32 operands in every call); x oneDNN from fp32 = the same with oneDNN's float32 -> bf16 reorders of both operands timed too. " +
            "Medians over rounds that time both back to back, [min..max] across rounds.");
        sb.AppendLine();
        sb.AppendLine("| shape | M | N | K | op | threads | bf16 GFLOP/s | fp32 GFLOP/s | x fp32 | spread | oneDNN bf16 GFLOP/s | x oneDNN | spread | oneDNN from fp32 GFLOP/s | x oneDNN from fp32 | % bf16 peak | fp32 % fp32 peak |");
        sb.AppendLine("|---|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---|---:|---:|---:|---:|");
        foreach (var r in report.Rows)
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"| {r.Shape} | {r.M} | {r.N} | {r.K} | {r.Transposes} | {r.Threads} | {r.Bf16Gflops:F1} | {r.Fp32Gflops:F1} | {r.RatioFp32:F3} | {r.RatioFp32Min:F3}..{r.RatioFp32Max:F3} | " +
                $"{Opt(r.OneDnnGflops, "F1")} | {Opt(r.RatioOneDnn, "F3")} | " +
                $"{(r.RatioOneDnnMin is { } lo ? $"{lo.ToString("F3", CultureInfo.InvariantCulture)}..{r.RatioOneDnnMax!.Value.ToString("F3", CultureInfo.InvariantCulture)}" : "-")} | " +
                $"{Opt(r.OneDnnFromFp32Gflops, "F1")} | {Opt(r.RatioOneDnnFromFp32, "F3")} | {r.PctBf16Peak:F1} | {r.Fp32PctPeak:F1} |");
        return sb.ToString();
    }

    public static string ToJson(Bf16GemmReport report) => JsonSerializer.Serialize(report, JsonOutput.Indented);
}
