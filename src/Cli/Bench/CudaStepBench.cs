// `backprop bench step --backend cuda`: ms per training step and samples/s of the Cuda backend (each step
// = stage the batch, one graph launch, wait, read the loss) for the engine's step shapes plus wide ones,
// and, in the same run on the same device, the time of the step's GEMMs alone through cuBLAS (forward,
// dW and dX of every layer, plain cublasSgemm, launched back to back). gemm_fraction = GEMM-only time /
// step time: how close the whole step gets to cuBLAS's own GEMM throughput on those shapes.
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Backprop.Engine;
using Backprop.Kernels;
using Backprop.Kernels.Cuda;

namespace Backprop.Cli.Bench;

internal sealed record CudaStepBenchRow(
    [property: JsonPropertyName("model")] string ModelName,
    [property: JsonPropertyName("batch")] int Batch,
    [property: JsonPropertyName("ms_per_step")] double StepMs,
    [property: JsonPropertyName("samples_per_second")] double Samples,
    [property: JsonPropertyName("step_gflops")] double StepGflops,
    [property: JsonPropertyName("cublas_gemm_ms")] double GemmMs,
    [property: JsonPropertyName("cublas_gemm_gflops")] double GemmGflops,
    [property: JsonPropertyName("gemm_fraction")] double Fraction);

internal static class CudaStepBench
{
    public static readonly (string Name, int[] Widths, int Batch)[] Shapes =
    [
        .. StepBench.Shapes,
        ("4096-4096-4096-4096", [4096, 4096, 4096, 4096], 4096),
    ];

    /// <summary>Runs the shapes whose name contains <paramref name="filter"/> on devices from <paramref name="open"/> (one per shape).</summary>
    public static List<CudaStepBenchRow> Run(Func<IGpuDevice> open, IEnumerable<(string Name, int[] Widths, int Batch)> shapes, int rounds, double minSeconds,
        string? filter, bool tf32, TextWriter log)
    {
        var rows = new List<CudaStepBenchRow>();
        foreach (var (name, widths, batch) in shapes)
        {
            if (filter is not null && !name.Contains(filter, StringComparison.OrdinalIgnoreCase)) continue;
            using var gpu = open();
            var options = new TrainingOptions
            {
                MaxBatch = batch, Backend = Backend.Cuda, Seed = 3, AllowTf32 = tf32,
                Optimizer = new Adam(lr: 1e-4),
            };
            using var model = new Model(StepBench.Spec(widths), options, gpu);
            var (x, labels) = StepBench.Batch(widths, batch);

            using var gemms = new GemmOnly(gpu, widths, batch);
            var stepTimes = new double[rounds];
            var gemmTimes = new double[rounds];
            model.Step(x, labels); // capture
            gemms.Run();
            for (int r = 0; r < rounds; r++)
            {
                stepTimes[r] = Measure.Time(() => model.Step(x, labels), minSeconds);
                gemmTimes[r] = Measure.Time(gemms.Run, minSeconds);
            }
            double step = Measure.Median(stepTimes), gemm = Measure.Median(gemmTimes);
            double flops = StepBench.FlopsPerStep(widths, batch);
            var row = new CudaStepBenchRow(name, batch, Math.Round(step * 1e3, 4), Math.Round(batch / step), Math.Round(flops / step / 1e9, 1),
                Math.Round(gemm * 1e3, 4), Math.Round(flops / gemm / 1e9, 1), gemm / step);
            rows.Add(row);
            log.WriteLine(FormattableString.Invariant($"  {name} batch {batch}: {row.StepMs:F4} ms/step, {row.Samples:N0} samples/s, {row.StepGflops:F1} GFLOP/s; cuBLAS GEMMs alone {row.GemmMs:F4} ms ({row.GemmGflops:F1} GFLOP/s), fraction {row.Fraction:F3}"));
        }
        return rows;
    }

    // The step's GEMMs alone, with plain cublasSgemm on buffers of the same shapes.
    private sealed class GemmOnly : IDisposable
    {
        private readonly IGpuDevice _gpu;
        private readonly List<ulong> _buffers = [];
        private readonly List<nint> _gemms = [];

        public GemmOnly(IGpuDevice gpu, int[] widths, int batch)
        {
            _gpu = gpu;
            ulong Buffer(long floats)
            {
                ulong p = gpu.Allocate(floats * 4);
                _buffers.Add(p);
                return p;
            }
            for (int l = 1; l < widths.Length; l++)
            {
                int inW = widths[l - 1], outW = widths[l];
                ulong xin = Buffer((long)batch * inW), w = Buffer((long)outW * inW), y = Buffer((long)batch * outW), dw = Buffer((long)outW * inW), dx = Buffer((long)batch * inW);
                _gemms.Add(gpu.PrepareGemm(GemmDesc.RowMajor(LtEpilogue.Default, false, true, batch, outW, inW, xin, inW, w, inW, y, outW)));
                _gemms.Add(gpu.PrepareGemm(GemmDesc.RowMajor(LtEpilogue.Default, true, false, outW, inW, batch, y, outW, xin, inW, dw, inW)));
                if (l > 1) _gemms.Add(gpu.PrepareGemm(GemmDesc.RowMajor(LtEpilogue.Default, false, false, batch, inW, outW, y, outW, w, inW, dx, inW)));
            }
        }

        public void Run()
        {
            foreach (var g in _gemms) _gpu.Gemm(g);
            _gpu.Synchronize();
        }

        public void Dispose()
        {
            foreach (var b in _buffers) _gpu.Free(b);
        }
    }

    public static string ToMarkdown(List<CudaStepBenchRow> rows, string device, bool tf32)
    {
        var sb = new StringBuilder();
        sb.AppendLine("# Training step on the Cuda backend");
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Device: {device}. {(tf32 ? "TF32 allowed" : "FP32 GEMMs (no TF32)")}. Adam, ReLU hidden layers, softmax cross-entropy; a step is one CUDA graph launch plus staging copies and a wait.");
        sb.AppendLine("cuBLAS GEMMs alone: the step's forward, dW and dX GEMMs through cublasSgemm in the same run; fraction = GEMM-only time / step time (median over rounds).");
        sb.AppendLine();
        sb.AppendLine("| model | batch | ms/step | samples/s | step GFLOP/s | cuBLAS GEMMs ms | cuBLAS GFLOP/s | fraction |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in rows)
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {r.ModelName} | {r.Batch} | {r.StepMs:F4} | {r.Samples:N0} | {r.StepGflops:F1} | {r.GemmMs:F4} | {r.GemmGflops:F1} | {r.Fraction:F3} |");
        return sb.ToString();
    }

    public static string ToJson(List<CudaStepBenchRow> rows) => JsonSerializer.Serialize(rows, JsonOutput.Indented);
}
