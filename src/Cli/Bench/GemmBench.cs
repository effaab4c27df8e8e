// `backprop bench gemm`: our SGEMM against OpenBLAS's cblas_sgemm, measured in the same process.
// Each (shape, threads) pair is measured over several rounds; a round times ours and OpenBLAS
// back to back (alternating which goes first) and yields one ratio. The report gives the median
// GFLOP/s of each, the median ratio with its min..max spread, and ours as a percent of the FMA
// peak measured in this process. Two-thread numbers on a shared 2-core machine swing between
// processes, which is why only ratios taken in one round are compared.
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Backprop.Kernels.Blas;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Threading;

namespace Backprop.Cli.Bench;

internal sealed record GemmShape(string Name, int M, int N, int K, Transpose TransA, Transpose TransB)
{
    /// <summary>Leading dimension of the stored A (M x K, or K x M when transposed), packed tight.</summary>
    public int Lda => TransA == Transpose.N ? K : M;
    /// <summary>Leading dimension of the stored B (K x N, or N x K when transposed), packed tight.</summary>
    public int Ldb => TransB == Transpose.N ? N : K;
    /// <summary>2·M·N·K.</summary>
    public double Flops => 2.0 * M * N * K;

    /// <summary>Random A and B (seeds 1 and 2, as every GEMM report uses) and a zero C.</summary>
    public (float[] A, float[] B, float[] C) Operands() => (Measure.Random(M * K, 1), Measure.Random(K * N, 2), new float[M * N]);
}

internal sealed record GemmBenchRow(
    [property: JsonPropertyName("shape")] string Shape,
    [property: JsonPropertyName("m")] int M,
    [property: JsonPropertyName("n")] int N,
    [property: JsonPropertyName("k")] int K,
    [property: JsonPropertyName("transposes")] string Transposes,
    [property: JsonPropertyName("threads")] int Threads,
    [property: JsonPropertyName("ours_gflops")] double OursGflops,
    [property: JsonPropertyName("openblas_gflops")] double OpenBlasGflops,
    [property: JsonPropertyName("ratio")] double Ratio,
    [property: JsonPropertyName("ratio_min")] double RatioMin,
    [property: JsonPropertyName("ratio_max")] double RatioMax,
    [property: JsonPropertyName("pct_peak")] double PctPeak,
    [property: JsonPropertyName("rounds")] int Rounds);

internal sealed record GemmBenchReport(
    [property: JsonPropertyName("isa")] string Isa,
    [property: JsonPropertyName("openblas_core")] string OpenBlasCore,
    [property: JsonPropertyName("peak_gflops")] Dictionary<string, double> PeakGflops,
    [property: JsonPropertyName("rows")] List<GemmBenchRow> Rows,
    [property: JsonPropertyName("openblas_spin_ms")] int OpenBlasSpinMs,
    [property: JsonPropertyName("openblas_settle_ms")] int OpenBlasSettleMs,
    [property: JsonPropertyName("openblas_note")] string? OpenBlasNote = null);

internal static class GemmBench
{
    public static readonly GemmShape[] DefaultShapes =
    [
        new("128^3", 128, 128, 128, Transpose.N, Transpose.N),
        new("256^3", 256, 256, 256, Transpose.N, Transpose.N),
        new("512^3", 512, 512, 512, Transpose.N, Transpose.N),
        new("1024^3", 1024, 1024, 1024, Transpose.N, Transpose.N),
        new("2048^3", 2048, 2048, 2048, Transpose.N, Transpose.N),
        new("mlp 128x784x256", 128, 256, 784, Transpose.N, Transpose.N),
        new("mlp 128x784x256", 128, 256, 784, Transpose.N, Transpose.T),
        new("mlp 256x1024x1024", 256, 1024, 1024, Transpose.N, Transpose.N),
        new("mlp 256x1024x1024", 256, 1024, 1024, Transpose.N, Transpose.T),
        new("mlp 256x1024x1024", 256, 1024, 1024, Transpose.T, Transpose.N),
        new("mlp 256x784x128", 256, 128, 784, Transpose.T, Transpose.N),
    ];

    /// <summary>Parses MxKxN:OP (OP = NN, NT, TN or TT; default NN).</summary>
    public static GemmShape ParseSize(string text)
    {
        var parts = text.Split(':');
        var dims = parts[0].Split('x', 'X');
        string op = parts.Length > 1 ? parts[1].ToUpperInvariant() : "NN";
        if (parts.Length > 2 || dims.Length != 3 || op.Length != 2 || op.Any(ch => ch != 'N' && ch != 'T')
            || !dims.All(d => int.TryParse(d, NumberStyles.None, CultureInfo.InvariantCulture, out int v) && v > 0 && v <= 65536))
            throw new UsageException($"--size must look like MxKxN or MxKxN:OP with sizes in [1, 65536] and OP in NN, NT, TN, TT; got '{text}'.");
        int m = int.Parse(dims[0], CultureInfo.InvariantCulture), k = int.Parse(dims[1], CultureInfo.InvariantCulture), n = int.Parse(dims[2], CultureInfo.InvariantCulture);
        return new GemmShape($"{m}x{k}x{n}", m, n, k, op[0] == 'T' ? Transpose.T : Transpose.N, op[1] == 'T' ? Transpose.T : Transpose.N);
    }

    public static unsafe GemmBenchReport Run(IReadOnlyList<GemmShape> shapes, IReadOnlyList<int> threadCounts, int rounds, double minSeconds, TextWriter log)
    {
        OpenBlas.EnsureAvailable();
        string? note = OpenBlasCore.Current;
        if (note != null) log.WriteLine(note);
        int maxThreads = threadCounts.Max();
        using var pool = new WorkerPool(maxThreads);
        var peaks = new PeakTable(pool, threadCounts);
        var rows = new List<GemmBenchRow>();
        try
        {
            RunShapes(shapes, threadCounts, rounds, minSeconds, log, pool, peaks, rows);
        }
        finally
        {
            peaks.Remeasure();
        }
        for (int i = 0; i < rows.Count; i++)
            rows[i] = rows[i] with { PctPeak = peaks.Percent(rows[i].OursGflops, rows[i].Threads) };
        return new GemmBenchReport(CpuIsa.Supported.ToString(), OpenBlas.CoreName, peaks.ByThreads, rows, OpenBlasSpin.SpinMs, OpenBlasSpin.SettleMs, note);
    }

    private static unsafe void RunShapes(IReadOnlyList<GemmShape> shapes, IReadOnlyList<int> threadCounts, int rounds, double minSeconds,
        TextWriter log, WorkerPool pool, PeakTable peaks, List<GemmBenchRow> rows)
    {
        foreach (int threads in threadCounts)
        {
            using var ctx = new CpuContext(threads, null, pool);
            OpenBlas.Threads = threads;
            foreach (var s in shapes)
            {
                var (a, b, c) = s.Operands();
                int lda = s.Lda, ldb = s.Ldb;
                double flops = s.Flops;
                fixed (float* pa = a) fixed (float* pb = b) fixed (float* pc = c)
                {
                    float* A = pa, B = pb, C = pc;
                    var epi = default(IdentityEpilogue<float>);
                    void Ours() => Gemm.Compute(ctx, s.TransA, s.TransB, s.M, s.N, s.K, 1f, A, lda, B, ldb, 0f, C, s.N, ref epi);
                    void Blas() => OpenBlas.Sgemm(s.TransA, s.TransB, s.M, s.N, s.K, 1f, A, lda, B, ldb, 0f, C, s.N);
                    var pr = Measure.Compare(Ours, Blas, rounds, minSeconds, OpenBlasSpin.SettleFor(threads));
                    double og = flops / pr.MedianA / 1e9, bg = flops / pr.MedianB / 1e9;
                    var row = new GemmBenchRow(s.Name, s.M, s.N, s.K, $"{s.TransA}{s.TransB}", threads, Math.Round(og, 2), Math.Round(bg, 2),
                        Math.Round(pr.Ratio, 3), Math.Round(pr.RatioMin, 3), Math.Round(pr.RatioMax, 3),
                        peaks.Percent(og, threads), rounds);
                    rows.Add(row);
                    log.WriteLine($"  {row.Shape,-20} {row.Transposes} t={threads}: ours {row.OursGflops,7:F1}  openblas {row.OpenBlasGflops,7:F1}  ratio {row.Ratio:F3} [{row.RatioMin:F3}..{row.RatioMax:F3}]");
                }
                peaks.Remeasure(); // a peak taken in a slow minute only would rate a fast one above 100 %
            }
        }
    }

    public static string ToMarkdown(GemmBenchReport report)
    {
        var sb = new StringBuilder();
        sb.AppendLine("# SGEMM: Backprop vs OpenBLAS");
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Our ISA path: {report.Isa}. OpenBLAS core: {report.OpenBlasCore}. " +
            $"Measured FMA peak: {string.Join(", ", report.PeakGflops.Select(p => $"{p.Value:F1} GFLOP/s on {p.Key} thread(s)"))}.");
        if (report.OpenBlasNote != null) sb.AppendLine(report.OpenBlasNote);
        sb.AppendLine("Ratio = ours / OpenBLAS throughput, median over rounds that time both back to back, [min..max] across rounds.");
        sb.AppendLine(CultureInfo.InvariantCulture, $"{Measure.Slices} slices per side and round, alternating; a {Measure.SettleMs} ms pause before each, {OpenBlasSpin.SettleMs} ms after OpenBLAS's (its threads spun {OpenBlasSpin.SpinMs} ms after a call here).");
        sb.AppendLine();
        sb.AppendLine("| shape | M | N | K | op | threads | ours GFLOP/s | OpenBLAS GFLOP/s | ratio | spread | % peak |");
        sb.AppendLine("|---|---:|---:|---:|---|---:|---:|---:|---:|---|---:|");
        foreach (var r in report.Rows)
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"| {r.Shape} | {r.M} | {r.N} | {r.K} | {r.Transposes} | {r.Threads} | {r.OursGflops:F1} | {r.OpenBlasGflops:F1} | {r.Ratio:F3} | {r.RatioMin:F3}..{r.RatioMax:F3} | {r.PctPeak:F1} |");
        return sb.ToString();
    }

    public static string ToJson(GemmBenchReport report) =>
        JsonSerializer.Serialize(report, JsonOutput.Indented);
}
