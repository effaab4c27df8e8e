// `backprop bench dense`: the fused dense kernels against the unfused sequence a BLAS user writes,
// measured in the same run, 1 and 2 threads:
//   Fwd:        ours  Dense.Fwd (GEMM with bias + ReLU in its store)
//               vs    OpenBLAS sgemm (N, T), then a bias + ReLU pass over the output
//   BwdData:    ours  Dense.BwdData (GEMM with the ReLU mask in its store)
//               vs    OpenBLAS sgemm (N, N), then a mask pass
//   BwdWeights: ours  Dense.BwdWeights (GEMM whose packing also sums db)
//               vs    OpenBLAS sgemm (T, N), then a column-sum pass for db
// speed-up = unfused time / fused time (median over rounds, with its spread). `--versus onednn` measures
// the same kernels against oneDNN's primitives instead (OneDnnDenseBench).
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Backprop.Kernels.Blas;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cpu.Ops;

namespace Backprop.Cli.Bench;

internal sealed record DenseBenchRow(
    [property: JsonPropertyName("kernel")] string Kernel,
    [property: JsonPropertyName("batch")] int Batch,
    [property: JsonPropertyName("in")] int In,
    [property: JsonPropertyName("out")] int Out,
    [property: JsonPropertyName("threads")] int Threads,
    [property: JsonPropertyName("fused_ms")] double FusedMs,
    [property: JsonPropertyName("unfused_ms")] double UnfusedMs,
    [property: JsonPropertyName("speedup")] double Speedup,
    [property: JsonPropertyName("speedup_min")] double SpeedupMin,
    [property: JsonPropertyName("speedup_max")] double SpeedupMax,
    [property: JsonPropertyName("fused_gflops")] double FusedGflops);

internal static unsafe class DenseBench
{
    public static readonly DenseShape[] Shapes = [DenseShape.Of(128, 784, 256), DenseShape.Of(256, 784, 256), DenseShape.Of(256, 1024, 1024)];

    public static List<DenseBenchRow> Run(IReadOnlyList<DenseShape> shapes, IReadOnlyList<int> threadCounts, int rounds, double minSeconds, TextWriter log)
    {
        OpenBlas.EnsureAvailable();
        var rows = new List<DenseBenchRow>();
        var relu = default(ReLU<float>);
        foreach (int threads in threadCounts)
        {
            using var ctx = new CpuContext(threads);
            OpenBlas.Threads = threads;
            foreach (var (_, batch, inF, outF) in shapes)
            {
                var x = Measure.Random(batch * inF, 1);
                var w = Measure.Random(outF * inF, 2);
                var b = Measure.Random(outF, 3);
                var y = new float[batch * outF];
                var dy = Measure.Random(batch * outF, 4);
                var saved = Measure.Random(batch * inF, 5); // a ReLU output would be >= 0; the mask only looks at the sign
                var dx = new float[batch * inF];
                var dw = new float[outF * inF];
                var db = new float[outF];
                double flops = 2.0 * batch * inF * outF;
                fixed (float* px = x) fixed (float* pw = w) fixed (float* pb = b) fixed (float* py = y) fixed (float* pdy = dy)
                fixed (float* ps = saved) fixed (float* pdx = dx) fixed (float* pdw = dw) fixed (float* pdb = db)
                {
                    float* X = px, W = pw, B = pb, Y = py, DY = pdy, S = ps, DX = pdx, DW = pdw, DB = pdb;
                    var fwd = Measure.Compare(
                        () => Dense.Fwd(ctx, relu, batch, inF, outF, X, W, B, Y, null),
                        () =>
                        {
                            OpenBlas.Sgemm(Transpose.N, Transpose.T, batch, outF, inF, 1f, X, inF, W, inF, 0f, Y, outF);
                            Elementwise.BiasForward(ctx.Isa, relu, Y, B, batch, outF, null);
                        }, rounds, minSeconds, OpenBlasSpin.SettleFor(threads));
                    Add("Fwd bias+ReLU", fwd);
                    var bwd = Measure.Compare(
                        () => Dense.BwdData(ctx, relu, batch, inF, outF, DY, W, S, DX),
                        () =>
                        {
                            OpenBlas.Sgemm(Transpose.N, Transpose.N, batch, inF, outF, 1f, DY, outF, W, inF, 0f, DX, inF);
                            Elementwise.Backward(ctx.Isa, relu, S, DX, DX, batch * inF);
                        }, rounds, minSeconds, OpenBlasSpin.SettleFor(threads));
                    Add("BwdData ReLU mask", bwd);
                    var bww = Measure.Compare(
                        () => Dense.BwdWeights(ctx, GradientMode.Overwrite, batch, inF, outF, DY, X, DW, DB),
                        () =>
                        {
                            OpenBlas.Sgemm(Transpose.T, Transpose.N, outF, inF, batch, 1f, DY, outF, X, inF, 0f, DW, inF);
                            Elementwise.ColumnSums(ctx.Isa, DY, batch, outF, DB, accumulate: false);
                        }, rounds, minSeconds, OpenBlasSpin.SettleFor(threads));
                    Add("BwdWeights dW+db", bww);
                }

                void Add(string kernel, PairResult r)
                {
                    var row = new DenseBenchRow(kernel, batch, inF, outF, threads, Math.Round(r.MedianA * 1e3, 4), Math.Round(r.MedianB * 1e3, 4),
                        Math.Round(r.Ratio, 3), Math.Round(r.RatioMin, 3), Math.Round(r.RatioMax, 3), Math.Round(flops / r.MedianA / 1e9, 1));
                    rows.Add(row);
                    log.WriteLine(FormattableString.Invariant($"  {kernel,-18} {batch}x{inF}x{outF} t={threads}: fused {row.FusedMs:F3} ms, unfused {row.UnfusedMs:F3} ms, speed-up {row.Speedup:F3} [{row.SpeedupMin:F3}..{row.SpeedupMax:F3}]"));
                }
            }
        }
        return rows;
    }

    public static string ToMarkdown(List<DenseBenchRow> rows)
    {
        var sb = new StringBuilder();
        sb.AppendLine("# Dense kernels: fused vs OpenBLAS + separate pass");
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"ISA path: {CpuIsa.Supported}. OpenBLAS core: {OpenBlas.CoreName}. Speed-up = unfused time / fused time, median over rounds [min..max].");
        if (OpenBlasCore.Current is { } note) sb.AppendLine(note);
        sb.AppendLine(CultureInfo.InvariantCulture, $"{Measure.Slices} slices per side and round, alternating; a {Measure.SettleMs} ms pause before each, {OpenBlasSpin.SettleMs} ms after OpenBLAS's (its threads spun {OpenBlasSpin.SpinMs} ms after a call here).");
        sb.AppendLine();
        sb.AppendLine("| kernel | batch | in | out | threads | fused ms | unfused ms | speed-up | spread | fused GFLOP/s |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|");
        foreach (var r in rows)
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"| {r.Kernel} | {r.Batch} | {r.In} | {r.Out} | {r.Threads} | {r.FusedMs:F3} | {r.UnfusedMs:F3} | {r.Speedup:F3} | {r.SpeedupMin:F3}..{r.SpeedupMax:F3} | {r.FusedGflops:F1} |");
        return sb.ToString();
    }

    public static string ToJson(List<DenseBenchRow> rows) => JsonSerializer.Serialize(rows, JsonOutput.Indented);
}
