// `backprop bench distributed`: what data parallelism costs and buys on this machine, for the benchmark
// shapes of `bench step`, at the same global batch:
//   1 rank x 1 thread and 1 rank x 2 threads (a lone process, in this process), and
//   2 ranks x 1 thread (this program relaunched under `mpirun -np 2`, once per reduction: deterministic,
//   fast, and fast with each layer's sum overlapped with the backward pass),
// each as the median ms per step over a fixed number of steps (every rank must take the same number,
// so there is no time-based loop) with min and max. For the job: the share of a step spent summing
// gradients (GradientReducer's collectives and folds, waiting for the slower rank included), the
// gradient bytes per step over that time, and a raw MPI_Allreduce of the same bytes timed in the same
// job (ours / raw = how close the reduction comes to the library's own). Started under a launcher by the
// user (`mpirun -np N backprop bench distributed`), it measures that job alone.
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Backprop.Engine;
using Backprop.Engine.Training;
using Backprop.Kernels;
using Backprop.Kernels.Mpi;

namespace Backprop.Cli.Bench;

internal sealed record DistributedBenchRow(
    [property: JsonPropertyName("model")] string ModelName,
    [property: JsonPropertyName("batch")] int Batch,
    [property: JsonPropertyName("ranks")] int Ranks,
    [property: JsonPropertyName("threads_per_rank")] int Threads,
    [property: JsonPropertyName("reduction")] string Reduction,
    [property: JsonPropertyName("ms_per_step")] double Ms,
    [property: JsonPropertyName("ms_min")] double MsMin,
    [property: JsonPropertyName("ms_max")] double MsMax,
    [property: JsonPropertyName("samples_per_second")] double Samples,
    [property: JsonPropertyName("reduce_ms")] double ReduceMs,
    [property: JsonPropertyName("reduce_fraction")] double ReduceFraction,
    [property: JsonPropertyName("gradient_mb")] double GradientMb,
    [property: JsonPropertyName("reduce_gb_per_s")] double ReduceGbs,
    [property: JsonPropertyName("raw_allreduce_ms")] double RawMs,
    [property: JsonPropertyName("raw_allreduce_gb_per_s")] double RawGbs,
    [property: JsonPropertyName("reduce_over_raw")] double OverRaw);

internal static class DistributedBench
{
    private const int WarmupSteps = 3;

    /// <summary>The lone-process rows here, then the 2-rank rows from `mpirun -np 2` of this program, per reduction mode.</summary>
    public static List<DistributedBenchRow> Run(int steps, string? filter, IReadOnlyList<(ReductionMode Mode, bool Overlap)> modes, TextWriter log)
    {
        var rows = new List<DistributedBenchRow>();
        foreach (var (name, widths, batch) in Shapes(filter))
            foreach (int threads in new[] { 1, 2 })
            {
                using var m = Build(widths, batch, threads, null);
                var (med, min, max) = TimeSteps(m, widths, batch, steps, out _);
                var row = new DistributedBenchRow(name, batch, 1, threads, "none", R(med * 1e3), R(min * 1e3), R(max * 1e3), Math.Round(batch / med), 0, 0,
                    R(GradientBytes(m) / 1e6), 0, 0, 0, 0);
                rows.Add(row);
                log.WriteLine(FormattableString.Invariant($"  {name} batch {batch}: 1 rank x {threads} thread(s): {row.Ms:F3} ms/step [{row.MsMin:F3}..{row.MsMax:F3}]"));
            }
        string mpirun = FindMpirun() ?? throw new UsageException($"bench distributed launches `mpirun -np 2` for its 2-rank rows, and mpirun is not on PATH; {MpiCommunicator.InstallHint} (or run ./build.sh Deps as root).");
        foreach (var (mode, overlap) in modes)
        {
            string file = Path.Combine(Path.GetTempPath(), $"backprop-bench-distributed-{Environment.ProcessId}-{Label(mode, overlap)}.json");
            try
            {
                var (exe, pre) = Self();
                var args = new List<string> { "--allow-run-as-root", "--oversubscribe", "-np", "2", "-x", "TERM=dumb", exe };
                args.AddRange(pre);
                args.AddRange(["bench", "distributed", "--steps", steps.ToString(CultureInfo.InvariantCulture), "--reduction", Label(mode, overlap), "--rows-to", file]);
                if (filter is not null) args.AddRange(["--model", filter]);
                var psi = new ProcessStartInfo(mpirun) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
                foreach (var a in args) psi.ArgumentList.Add(a);
                using var p = Process.Start(psi)!;
                var err = p.StandardError.ReadToEndAsync();
                string output = p.StandardOutput.ReadToEnd();
                p.WaitForExit();
                foreach (var line in output.Split('\n').Where(l => l.StartsWith("  ", StringComparison.Ordinal))) log.WriteLine(line.TrimEnd('\r'));
                if (p.ExitCode != 0 || !File.Exists(file))
                    throw new InvalidOperationException($"mpirun -np 2 {string.Join(" ", args.Skip(6))} failed (exit {p.ExitCode}): {(output + err.Result).Trim()}");
                rows.AddRange(JsonSerializer.Deserialize<List<DistributedBenchRow>>(File.ReadAllText(file))!);
            }
            finally { File.Delete(file); }
        }
        return rows;
    }

    /// <summary>Under a launcher: this job's rows (every rank measures; rank 0 returns them, the others an empty list).</summary>
    public static List<DistributedBenchRow> Worker(MpiCommunicator comm, int threads, int steps, string? filter, ReductionMode mode, bool overlap, TextWriter log)
    {
        var rows = new List<DistributedBenchRow>();
        var collectives = new MpiCollectives(comm);
        foreach (var (name, widths, batch) in Shapes(filter))
        {
            using var m = Build(widths, batch, threads, new DistributedOptions(collectives, mode) { Overlap = overlap });
            var (med, min, max) = TimeSteps(m, widths, batch, steps, out double reduceSeconds);
            long bytes = GradientBytes(m);
            double raw = RawAllreduce(comm, bytes / sizeof(float), steps);
            double reduce = reduceSeconds / steps;
            var row = new DistributedBenchRow(name, batch, comm.Size, threads, Label(mode, overlap), R(med * 1e3), R(min * 1e3), R(max * 1e3),
                Math.Round(batch / med), R(reduce * 1e3), R(reduce / med), R(bytes / 1e6), R(bytes / reduce / 1e9), R(raw * 1e3), R(bytes / raw / 1e9), R(raw / reduce));
            rows.Add(row);
            if (comm.Rank == 0)
                log.WriteLine(FormattableString.Invariant($"  {name} batch {batch}: {comm.Size} ranks x {threads} thread(s), {row.Reduction}: {row.Ms:F3} ms/step [{row.MsMin:F3}..{row.MsMax:F3}], reducing {row.ReduceMs:F3} ms ({100 * row.ReduceFraction:F1} %), {row.ReduceGbs:F2} GB/s; raw MPI_Allreduce of {row.GradientMb:F1} MB {row.RawMs:F3} ms ({row.RawGbs:F2} GB/s)"));
        }
        return comm.Rank == 0 ? rows : [];
    }

    private static (string Name, int[] Widths, int Batch)[] Shapes(string? filter)
    {
        var shapes = StepBench.Shapes.Where(s => filter is null || s.Name.Contains(filter, StringComparison.OrdinalIgnoreCase)).ToArray();
        if (shapes.Length == 0)
            throw new UsageException($"--model '{filter}' matches no model; models are: {string.Join(", ", StepBench.Shapes.Select(x => x.Name).Distinct())}.");
        return shapes;
    }

    private static Model Build(int[] widths, int batch, int threads, DistributedOptions? distributed) =>
        new(StepBench.Spec(widths), new TrainingOptions { MaxBatch = batch, Threads = threads, Seed = 3, Optimizer = new Adam(lr: 1e-4), Distributed = distributed });

    private static long GradientBytes(Model m) => m.Plan.ParameterSection * sizeof(float);

    // Median, min and max seconds per step over `steps` timed steps after a warm-up; the reduction seconds of the timed steps.
    private static (double Median, double Min, double Max) TimeSteps(Model m, int[] widths, int batch, int steps, out double reduceSeconds)
    {
        var (x, labels) = StepBench.Batch(widths, batch);
        for (int i = 0; i < WarmupSteps; i++) m.Step(x, labels);
        double before = m.ReductionSeconds;
        var t = new double[steps];
        for (int i = 0; i < steps; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            m.Step(x, labels);
            t[i] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        }
        reduceSeconds = m.ReductionSeconds - before;
        return (Measure.Median(t), t.Min(), t.Max());
    }

    // Median seconds of MPI_Allreduce (sum, in place) of `count` floats, over `reps` calls after a warm-up.
    private static unsafe double RawAllreduce(MpiCommunicator comm, long count, int reps)
    {
        var buffer = (float*)NativeMemory.AlignedAlloc((nuint)(count * sizeof(float)), 64);
        try
        {
            new Span<float>(buffer, checked((int)count)).Fill(1f / 1024);
            for (int i = 0; i < WarmupSteps; i++) comm.AllreduceSum(buffer, count);
            var t = new double[reps];
            for (int i = 0; i < reps; i++)
            {
                comm.Barrier();
                long t0 = Stopwatch.GetTimestamp();
                comm.AllreduceSum(buffer, count);
                t[i] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            }
            return Measure.Median(t);
        }
        finally { NativeMemory.AlignedFree(buffer); }
    }

    private static double R(double v) => Math.Round(v, 4);

    /// <summary>The reduction as the report and --reduction name it.</summary>
    public static string Label(ReductionMode mode, bool overlap) => overlap ? "overlap" : mode.ToString().ToLowerInvariant();

    // How to start this program again: the apphost itself (a published backprop), else `dotnet backprop.dll` (also from a test host).
    private static (string Exe, string[] Pre) Self()
    {
        string? process = Environment.ProcessPath;
        if (process is not null && Path.GetFileNameWithoutExtension(process) == "backprop") return (process, []);
        string dotnet = process is not null && Path.GetFileNameWithoutExtension(process) == "dotnet" ? process
            : Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet";
        return (dotnet, [typeof(DistributedBench).Assembly.Location]);
    }

    private static string? FindMpirun() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, "mpirun")).FirstOrDefault(File.Exists);

    public static string ToMarkdown(List<DistributedBenchRow> rows)
    {
        var sb = new StringBuilder();
        sb.AppendLine("# Data-parallel training: ms per step at the same global batch");
        sb.AppendLine();
        sb.AppendLine("Adam, ReLU hidden layers, softmax cross-entropy; median ms per step [min..max]. reduce: the share of a step in the gradient sum across ranks " +
            "(collectives and folds, waiting for the slower rank included); GB/s: gradient bytes per step over that time; raw: MPI_Allreduce of the same bytes in the same job; ours/raw = raw time / our time.");
        sb.AppendLine();
        sb.AppendLine("| model | batch | ranks x threads | reduction | ms/step | spread | samples/s | reduce ms | reduce share | gradient MB | reduce GB/s | raw allreduce ms | raw GB/s | ours/raw |");
        sb.AppendLine("|---|---:|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in rows)
        {
            string head = FormattableString.Invariant($"| {r.ModelName} | {r.Batch} | {r.Ranks} x {r.Threads} | {r.Reduction} | {r.Ms:F3} | {r.MsMin:F3}..{r.MsMax:F3} | {r.Samples:N0} | ");
            string tail = r.Ranks == 1
                ? FormattableString.Invariant($"– | – | {r.GradientMb:F1} | – | – | – | – |")
                : FormattableString.Invariant($"{r.ReduceMs:F3} | {100 * r.ReduceFraction:F1} % | {r.GradientMb:F1} | {r.ReduceGbs:F2} | {r.RawMs:F3} | {r.RawGbs:F2} | {r.OverRaw:F2} |");
            sb.AppendLine(head + tail);
        }
        return sb.ToString();
    }

    public static string ToJson(List<DistributedBenchRow> rows) => JsonSerializer.Serialize(rows, JsonOutput.Indented);
}
