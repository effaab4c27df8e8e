// `backprop bench step --precision bf16`: the Cpu backend's training step with bf16 GEMMs (TrainingOptions.Precision = Bf16)
// against the same model in float32, both timed in the same rounds of this process (interleaved, median and spread).
// speedup = float32 time / bf16 time. GFLOP/s count the step's three GEMMs per layer, 2·batch·in·out each, whatever the
// precision; % bf16 peak is over the VDPBF16PS loop measured here, % fp32 peak over the FMA loop. A third comparison in the
// same rounds times the step's GEMMs alone through a bf16 context (bf16_gemm_fraction: what the rest of the step costs).
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Backprop.Engine;
using Backprop.Kernels;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Threading;

namespace Backprop.Cli.Bench;

internal sealed record Bf16StepRow(
    [property: JsonPropertyName("model")] string ModelName,
    [property: JsonPropertyName("batch")] int Batch,
    [property: JsonPropertyName("threads")] int Threads,
    [property: JsonPropertyName("bf16_ms_per_step")] double Bf16Ms,
    [property: JsonPropertyName("fp32_ms_per_step")] double Fp32Ms,
    [property: JsonPropertyName("bf16_samples_per_second")] double Bf16Samples,
    [property: JsonPropertyName("fp32_samples_per_second")] double Fp32Samples,
    [property: JsonPropertyName("bf16_gflops")] double Bf16Gflops,
    [property: JsonPropertyName("fp32_gflops")] double Fp32Gflops,
    [property: JsonPropertyName("speedup")] double Speedup,
    [property: JsonPropertyName("speedup_min")] double SpeedupMin,
    [property: JsonPropertyName("speedup_max")] double SpeedupMax,
    [property: JsonPropertyName("bf16_pct_bf16_peak")] double Bf16PctPeak,
    [property: JsonPropertyName("fp32_pct_fp32_peak")] double Fp32PctPeak,
    [property: JsonPropertyName("bf16_gemm_ms")] double Bf16GemmMs,
    [property: JsonPropertyName("bf16_gemm_fraction")] double Bf16GemmFraction);

internal static class Bf16StepBench
{
    public static List<Bf16StepRow> Run(IReadOnlyList<int> threadCounts, int rounds, double minSeconds, string? filter, TextWriter log)
    {
        if (Bf16Gemm.Unavailable is { } why) throw new UsageException($"--precision bf16 cannot run here: {why}");
        var rows = new List<Bf16StepRow>();
        using var pool = new WorkerPool(threadCounts.Max());
        foreach (int threads in threadCounts)
        {
            double fp32Peak = FmaPeak.Measure(pool, threads), bf16Peak = Bf16GemmBench.Bf16Peak(pool, threads);
            using var bctx = new CpuContext(threads, null, pool, GemmPrecision.Bf16);
            foreach (var (name, widths, batch) in StepBench.Shapes)
            {
                if (filter is not null && !name.Contains(filter, StringComparison.OrdinalIgnoreCase)) continue;
                Model Build(GemmPrecision precision) =>
                    new Model(StepBench.Spec(widths), new TrainingOptions
                    {
                        MaxBatch = batch, Threads = threads, Seed = 3, Optimizer = new Adam(lr: 1e-4), Precision = precision,
                    });
                using var bf = Build(GemmPrecision.Bf16);
                using var fp = Build(GemmPrecision.Fp32);
                var (x, labels) = StepBench.Batch(widths, batch);
                var pr = Measure.Compare(() => bf.Step(x, labels), () => fp.Step(x, labels), rounds, minSeconds);
                // The step's GEMMs alone in bf16 (the shapes of bench step's fraction, through a bf16 context) against the bf16 step.
                var gemms = new StepGemms(widths, batch, bctx);
                var pg = Measure.Compare(gemms.Run, () => bf.Step(x, labels), rounds, minSeconds); // Ratio = step / GEMMs
                double flops = StepBench.FlopsPerStep(widths, batch);
                double bg = flops / pr.MedianA / 1e9, fg = flops / pr.MedianB / 1e9;
                var row = new Bf16StepRow(name, batch, threads, Math.Round(pr.MedianA * 1e3, 3), Math.Round(pr.MedianB * 1e3, 3),
                    Math.Round(batch / pr.MedianA), Math.Round(batch / pr.MedianB), Math.Round(bg, 1), Math.Round(fg, 1),
                    Math.Round(pr.Ratio, 3), Math.Round(pr.RatioMin, 3), Math.Round(pr.RatioMax, 3),
                    Math.Round(100 * bg / bf16Peak, 1), Math.Round(100 * fg / fp32Peak, 1), Math.Round(pg.MedianA * 1e3, 3), Math.Round(1 / pg.Ratio, 3));
                rows.Add(row);
                log.WriteLine(FormattableString.Invariant($"  {name} batch {batch} t={threads}: bf16 {row.Bf16Ms:F3} ms ({row.Bf16Gflops:F1} GFLOP/s, {row.Bf16PctPeak:F1} % of {bf16Peak:F0}), fp32 {row.Fp32Ms:F3} ms ({row.Fp32Gflops:F1} GFLOP/s, {row.Fp32PctPeak:F1} % of {fp32Peak:F0}), speedup {row.Speedup:F3} [{row.SpeedupMin:F3}..{row.SpeedupMax:F3}]; bf16 GEMMs alone {row.Bf16GemmMs:F3} ms, fraction {row.Bf16GemmFraction:F3}"));
            }
        }
        return rows;
    }

    public static string ToMarkdown(List<Bf16StepRow> rows)
    {
        var sb = new StringBuilder();
        sb.AppendLine("# Training step: bf16 GEMMs vs float32 (Cpu backend)");
        sb.AppendLine();
        sb.AppendLine("Adam, ReLU hidden layers, softmax cross-entropy. speedup = float32 time / bf16 time, median over rounds that time both back to back [min..max].");
        sb.AppendLine("GFLOP/s count the step's GEMMs (2·batch·in·out, three per layer, two for the first). % peak: bf16 over the VDPBF16PS loop, float32 over the FMA loop, both measured in this process.");
        sb.AppendLine();
        sb.AppendLine("bf16 GEMMs alone: the step's products through a bf16 context back to back; fraction = their time / the bf16 step's (median over rounds).");
        sb.AppendLine();
        sb.AppendLine("| model | batch | threads | bf16 ms/step | fp32 ms/step | bf16 samples/s | fp32 samples/s | bf16 GFLOP/s | fp32 GFLOP/s | speedup | spread | bf16 % bf16 peak | fp32 % fp32 peak | bf16 GEMMs alone ms | bf16 GEMM fraction |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|");
        foreach (var r in rows)
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"| {r.ModelName} | {r.Batch} | {r.Threads} | {r.Bf16Ms:F3} | {r.Fp32Ms:F3} | {r.Bf16Samples:N0} | {r.Fp32Samples:N0} | {r.Bf16Gflops:F1} | {r.Fp32Gflops:F1} | {r.Speedup:F3} | {r.SpeedupMin:F3}..{r.SpeedupMax:F3} | {r.Bf16PctPeak:F1} | {r.Fp32PctPeak:F1} | {r.Bf16GemmMs:F3} | {r.Bf16GemmFraction:F3} |");
        return sb.ToString();
    }

    public static string ToJson(List<Bf16StepRow> rows) => JsonSerializer.Serialize(rows, JsonOutput.Indented);
}
