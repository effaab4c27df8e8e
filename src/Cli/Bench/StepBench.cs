// `backprop bench step`: ms per training step, samples/s and achieved GFLOP/s for named model
// shapes on both backends in the same run (interleaved rounds, median and spread), plus the ratio
// Cpu/Blas throughput. FLOPs per step count the three GEMMs of each layer (forward, dW, dX; the
// first layer has no dX): 2·batch·in·out each.
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Backprop.Engine;
using Backprop.Kernels;
using Backprop.Kernels.Blas;

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
    [property: JsonPropertyName("ratio_max")] double RatioMax);

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

    /// <summary>The benchmarked MLP: ReLU hidden layers, identity output, softmax cross-entropy.</summary>
    public static ModelSpec Spec(int[] widths)
    {
        var net = new Sequential(widths[0]);
        for (int i = 1; i < widths.Length; i++) net.Dense(widths[i], i < widths.Length - 1 ? "relu" : "identity");
        return net.ToSpec(LossKind.CrossEntropy);
    }

    /// <summary>FLOPs of a training step: forward, dW and dX GEMMs of every layer (the first has no dX), 2·batch·in·out each.</summary>
    public static double FlopsPerStep(int[] widths, int batch)
    {
        double flops = 0;
        for (int l = 1; l < widths.Length; l++) flops += 2.0 * batch * widths[l - 1] * widths[l] * (l == 1 ? 2 : 3);
        return flops;
    }

    public static List<StepBenchRow> Run(IReadOnlyList<int> threadCounts, int rounds, double minSeconds, string? filter, TextWriter log)
    {
        OpenBlas.EnsureAvailable();
        var rows = new List<StepBenchRow>();
        foreach (int threads in threadCounts)
        {
            OpenBlas.Threads = threads;
            foreach (var (name, widths, batch) in Shapes)
            {
                if (filter is not null && !name.Contains(filter, StringComparison.OrdinalIgnoreCase)) continue;
                Model Build(Backend be) =>
                    new Model(Spec(widths), new TrainingOptions
                    {
                        MaxBatch = batch, Threads = threads, Backend = be, Seed = 3,
                        Optimizer = new Adam(lr: 1e-4),
                    });
                using var cpu = Build(Backend.Cpu);
                using var blas = Build(Backend.Blas);
                var x = Measure.Random(batch * widths[0], 1);
                var labels = new int[batch];
                for (int i = 0; i < batch; i++) labels[i] = i % widths[^1];
                var pr = Measure.Compare(() => cpu.Step(x, labels), () => blas.Step(x, labels), rounds, minSeconds);
                double flops = FlopsPerStep(widths, batch);
                var row = new StepBenchRow(name, batch, threads, Math.Round(pr.MedianA * 1e3, 3), Math.Round(pr.MedianB * 1e3, 3),
                    Math.Round(batch / pr.MedianA), Math.Round(batch / pr.MedianB), Math.Round(flops / pr.MedianA / 1e9, 1), Math.Round(flops / pr.MedianB / 1e9, 1),
                    Math.Round(pr.Ratio, 3), Math.Round(pr.RatioMin, 3), Math.Round(pr.RatioMax, 3));
                rows.Add(row);
                log.WriteLine(FormattableString.Invariant($"  {name} batch {batch} t={threads}: cpu {row.CpuMs:F3} ms ({row.CpuGflops:F1} GFLOP/s), blas {row.BlasMs:F3} ms, cpu/blas {row.Ratio:F3} [{row.RatioMin:F3}..{row.RatioMax:F3}]"));
            }
        }
        return rows;
    }

    public static string ToMarkdown(List<StepBenchRow> rows)
    {
        var sb = new StringBuilder();
        sb.AppendLine("# Training step: Cpu (fused) vs Blas (OpenBLAS + passes) backends");
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"OpenBLAS core: {OpenBlas.CoreName}. Adam, ReLU hidden layers, softmax cross-entropy. cpu/blas = Blas time / Cpu time, median over rounds [min..max].");
        sb.AppendLine();
        sb.AppendLine("| model | batch | threads | Cpu ms/step | Blas ms/step | Cpu samples/s | Blas samples/s | Cpu GFLOP/s | Blas GFLOP/s | cpu/blas | spread |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        foreach (var r in rows)
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"| {r.ModelName} | {r.Batch} | {r.Threads} | {r.CpuMs:F3} | {r.BlasMs:F3} | {r.CpuSamples:N0} | {r.BlasSamples:N0} | {r.CpuGflops:F1} | {r.BlasGflops:F1} | {r.Ratio:F3} | {r.RatioMin:F3}..{r.RatioMax:F3} |");
        return sb.ToString();
    }

    public static string ToJson(List<StepBenchRow> rows) => JsonSerializer.Serialize(rows, JsonOutput.Indented);
}
