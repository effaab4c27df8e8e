// Command tree of `backprop`: bench gemm, info. Parsing errors and invalid values exit with 2.
using System.CommandLine;
using System.Globalization;
using Backprop.Cli.Bench;
using Backprop.Kernels.Blas;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cpu.Gemm;
using Backprop.Kernels.Cuda;

namespace Backprop.Cli;

/// <summary>Thrown for a command-line value that parses but makes no sense; reported as one line, exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);

internal static class Commands
{
    public const int ExitUsage = 2;

    public static int Run(string[] args, TextWriter? stdout = null, TextWriter? stderr = null)
    {
        stdout ??= Console.Out;
        stderr ??= Console.Error;
        var root = new RootCommand("Backprop: a fast trainer for dense neural networks.");
        root.Subcommands.Add(BenchCommand(stdout));
        root.Subcommands.Add(InfoCommand(stdout));
        root.Subcommands.Add(CheckCommand(stdout));
        root.Subcommands.Add(GradcheckCommand.Create(stdout));
        root.Subcommands.Add(TrainCommand.Create(stdout));
        root.Subcommands.Add(ExportCommand.Create(stdout));
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            stderr.WriteLine($"backprop: {string.Join("; ", parse.Errors.Select(e => e.Message))} (see 'backprop --help')");
            return ExitUsage;
        }
        try
        {
            return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (UsageException e)
        {
            stderr.WriteLine($"backprop: {e.Message}");
            return ExitUsage;
        }
        catch (DllNotFoundException e)
        {
            stderr.WriteLine($"backprop: {e.Message}");
            return ExitUsage;
        }
    }

    private static Command BenchCommand(TextWriter stdout)
    {
        var bench = new Command("bench", "Benchmarks: kernels against OpenBLAS and the FMA peak.");
        var shapes = new Option<string[]>("--shape") { Description = "Only shapes whose name contains this text (repeatable).", AllowMultipleArgumentsPerToken = true };
        var sizes = new Option<string[]>("--size") { Description = "Extra shapes MxKxN:OP, e.g. 256x784x128:TN (repeatable); with --size only these run unless --shape is given too.", AllowMultipleArgumentsPerToken = true };
        var gemm = new Command("gemm", "SGEMM GFLOP/s, ours vs OpenBLAS in the same run, and percent of FMA peak.");
        var gt = AddTimingOptions(gemm, [1, 2], 7, 0.15, "gemm.md and gemm.json");
        gemm.Options.Add(shapes);
        gemm.Options.Add(sizes);
        gemm.SetAction(p =>
        {
            var (t, r, s) = ReadTiming(p, gt);
            var filter = p.GetValue(shapes) ?? [];
            var custom = (p.GetValue(sizes) ?? []).Select(GemmBench.ParseSize).ToList();
            var list = custom.Count > 0 && filter.Length == 0
                ? custom
                : GemmBench.DefaultShapes.Where(x => filter.Length == 0 || filter.Any(f => x.Name.Contains(f, StringComparison.OrdinalIgnoreCase))).Concat(custom).ToList();
            if (list.Count == 0) throw new UsageException($"--shape '{string.Join(" ", filter)}' matches no shape; shapes are: {string.Join(", ", GemmBench.DefaultShapes.Select(x => x.Name).Distinct())}.");
            var report = GemmBench.Run(list, t, r, s, stdout);
            WriteReport(stdout, p.GetValue(gt.Output), "gemm", GemmBench.ToMarkdown(report), GemmBench.ToJson(report));
            return 0;
        });
        bench.Subcommands.Add(gemm);

        var dense = new Command("dense", "Fused dense kernels (Fwd, BwdData, BwdWeights) vs OpenBLAS GEMM + a separate pass, same run.");
        var dt = AddTimingOptions(dense, [1, 2], 7, 0.1, "dense.md and dense.json");
        dense.SetAction(p =>
        {
            var (t, r, s) = ReadTiming(p, dt);
            var rows = DenseBench.Run(t, r, s, stdout);
            WriteReport(stdout, p.GetValue(dt.Output), "dense", DenseBench.ToMarkdown(rows), DenseBench.ToJson(rows));
            return 0;
        });
        bench.Subcommands.Add(dense);

        var step = new Command("step", "Training step time of named model shapes: the Cpu and Blas backends in the same run, or (--backend cuda) the Cuda backend against cuBLAS's GEMMs alone.");
        var st = AddTimingOptions(step, [Environment.ProcessorCount], 5, 0.2, "step.md and step.json");
        var sModel = new Option<string?>("--model") { Description = "Only models whose name contains this text (e.g. 784-256-10)." };
        var sBackend = new Option<string>("--backend") { Description = "cpu: Cpu vs Blas backends (default); cuda: the Cuda backend on GPU 0.", DefaultValueFactory = _ => "cpu" };
        var sTf32 = new Option<bool>("--tf32") { Description = "Cuda: allow TF32 tensor-core GEMMs." };
        step.Options.Add(sModel);
        step.Options.Add(sBackend);
        step.Options.Add(sTf32);
        step.SetAction(p =>
        {
            var (t, r, s) = ReadTiming(p, st);
            switch (p.GetValue(sBackend)!.ToLowerInvariant())
            {
                case "cpu": break;
                case "cuda":
                {
                    CudaGpu probe;
                    try { probe = CudaGpu.Open(p.GetValue(sTf32)); }
                    catch (InvalidOperationException e) { throw new UsageException(e.Message); }
                    string device = probe.Description;
                    probe.Dispose();
                    bool tf32 = p.GetValue(sTf32);
                    var cudaRows = CudaStepBench.Run(() => CudaGpu.Open(tf32), CudaStepBench.Shapes, r, s, p.GetValue(sModel), tf32, stdout);
                    if (cudaRows.Count == 0) throw new UsageException($"--model '{p.GetValue(sModel)}' matches no model; models are: {string.Join(", ", CudaStepBench.Shapes.Select(x => x.Name).Distinct())}.");
                    WriteReport(stdout, p.GetValue(st.Output), "step-cuda", CudaStepBench.ToMarkdown(cudaRows, device, tf32), CudaStepBench.ToJson(cudaRows));
                    return 0;
                }
                case var other: throw new UsageException($"--backend must be cpu or cuda; got '{other}'.");
            }
            var rows = StepBench.Run(t, r, s, p.GetValue(sModel), stdout);
            if (rows.Count == 0) throw new UsageException($"--model '{p.GetValue(sModel)}' matches no model; models are: {string.Join(", ", StepBench.Shapes.Select(x => x.Name).Distinct())}.");
            WriteReport(stdout, p.GetValue(st.Output), "step", StepBench.ToMarkdown(rows), StepBench.ToJson(rows));
            return 0;
        });
        bench.Subcommands.Add(step);

        var alloc = new Command("alloc", "Bytes allocated per training step after warm-up (calling thread and all threads); exit 1 if any.");
        var aSteps = new Option<int>("--steps") { Description = "Steps to measure.", DefaultValueFactory = _ => 1000 };
        var aThreads = new Option<int>("--threads") { Description = "Kernel threads.", DefaultValueFactory = _ => 2 };
        alloc.Options.Add(aSteps);
        alloc.Options.Add(aThreads);
        alloc.SetAction(p =>
        {
            int n = p.GetValue(aSteps), t = p.GetValue(aThreads);
            if (n < 1) throw new UsageException($"--steps must be at least 1; got {n}.");
            if (t < 1 || t > 256) throw new UsageException($"--threads must be in [1, 256]; got {t}.");
            return AllocBench.Run(n, t, stdout);
        });
        bench.Subcommands.Add(alloc);

        var predict = new Command("predict", "Predict latency at batch 1, 16 and 256 (median and p99).");
        var pThreads = new Option<int>("--threads") { Description = "Kernel threads.", DefaultValueFactory = _ => 1 };
        var pSeconds = new Option<double>("--seconds") { Description = "Time per batch size.", DefaultValueFactory = _ => 1.0 };
        var pOutput = new Option<DirectoryInfo?>("--output") { Description = "Folder for predict.md." };
        foreach (var o in new Option[] { pThreads, pSeconds, pOutput }) predict.Options.Add(o);
        predict.SetAction(p =>
        {
            int t = p.GetValue(pThreads);
            double s = p.GetValue(pSeconds);
            if (t < 1 || t > 256) throw new UsageException($"--threads must be in [1, 256]; got {t}.");
            if (!(s > 0)) throw new UsageException($"--seconds must be positive; got {s.ToString(CultureInfo.InvariantCulture)}.");
            WriteReport(stdout, p.GetValue(pOutput), "predict", PredictBench.Run(t, s, stdout), null);
            return 0;
        });
        bench.Subcommands.Add(predict);
        return bench;
    }

    /// <summary>The options every timing benchmark shares.</summary>
    private sealed record TimingOptions(Option<int[]> Threads, Option<int> Rounds, Option<double> MinSeconds, Option<DirectoryInfo?> Output);

    private static TimingOptions AddTimingOptions(Command cmd, int[] threads, int rounds, double minSeconds, string files)
    {
        var o = new TimingOptions(
            new Option<int[]>("--threads") { Description = "Thread counts to measure (e.g. --threads 1 2).", AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => threads },
            new Option<int>("--rounds") { Description = "Rounds per shape; each times both sides back to back.", DefaultValueFactory = _ => rounds },
            new Option<double>("--min-seconds") { Description = "Least time per measurement within a round.", DefaultValueFactory = _ => minSeconds },
            new Option<DirectoryInfo?>("--output") { Description = $"Folder for {files}." });
        cmd.Options.Add(o.Threads);
        cmd.Options.Add(o.Rounds);
        cmd.Options.Add(o.MinSeconds);
        cmd.Options.Add(o.Output);
        return o;
    }

    private static (int[] Threads, int Rounds, double MinSeconds) ReadTiming(ParseResult p, TimingOptions o)
    {
        int[] t = p.GetValue(o.Threads)!;
        int r = p.GetValue(o.Rounds);
        double s = p.GetValue(o.MinSeconds);
        if (t.Length == 0 || t.Any(x => x < 1 || x > 256))
            throw new UsageException($"--threads must be whole numbers in [1, 256]; got '{string.Join(" ", t)}'.");
        if (r < 1) throw new UsageException($"--rounds must be at least 1; got {r}.");
        if (!(s > 0)) throw new UsageException($"--min-seconds must be positive; got {s.ToString(CultureInfo.InvariantCulture)}.");
        return (t, r, s);
    }

    /// <summary>Prints the Markdown report and, with --output, writes NAME.md (and NAME.json).</summary>
    private static void WriteReport(TextWriter stdout, DirectoryInfo? dir, string name, string md, string? json)
    {
        stdout.WriteLine();
        stdout.Write(md);
        if (dir is null) return;
        Directory.CreateDirectory(dir.FullName);
        File.WriteAllText(Path.Combine(dir.FullName, name + ".md"), md);
        if (json is not null) File.WriteAllText(Path.Combine(dir.FullName, name + ".json"), json);
        stdout.WriteLine($"wrote {Path.Combine(dir.FullName, name + ".md")}" + (json is null ? "" : $" and {name}.json"));
    }

    private static Command CheckCommand(TextWriter stdout)
    {
        var check = new Command("check", "Correctness checks of a backend on this machine.");
        var cuda = new Command("cuda", "The Cuda backend on GPU 0 against the CPU backend: every activation, loss and optimizer for 20 steps, and graph replay against eager launches bit for bit. Exit 1 when a check fails.");
        var only = new Option<string?>("--case") { Description = "Only cases whose name contains this text (e.g. gelu, optimizer, graph)." };
        cuda.Options.Add(only);
        cuda.SetAction(p =>
        {
            string device;
            try
            {
                using var probe = CudaGpu.Open();
                device = probe.Description;
            }
            catch (InvalidOperationException e) { throw new UsageException(e.Message); }
            stdout.WriteLine($"checking the Cuda backend on {device} against the CPU backend");
            var results = Backprop.Engine.Cuda.CudaCheck.Run(() => CudaGpu.Open(), stdout, p.GetValue(only));
            if (results.Count == 0) throw new UsageException($"--case '{p.GetValue(only)}' matches no check.");
            int passed = results.Count(r => r.Passed);
            stdout.WriteLine($"{passed} of {results.Count} checks passed");
            return passed == results.Count ? 0 : 1;
        });
        check.Subcommands.Add(cuda);
        return check;
    }

    private static Command InfoCommand(TextWriter stdout)
    {
        var info = new Command("info", "What this machine offers: ISA path, cores, OpenBLAS, CUDA (device, compute capability, memory, driver, cuBLAS and NVRTC versions, or why not).");
        info.SetAction(_ =>
        {
            stdout.WriteLine($"cpu: {Environment.ProcessorCount} logical cores, kernel ISA {CpuIsa.Supported}");
            stdout.WriteLine($"gemm micro-kernel: {CpuIsa.Active}");
            stdout.WriteLine(OpenBlas.IsAvailable
                ? $"openblas: core {OpenBlas.CoreName}, {OpenBlas.Threads} threads, config '{OpenBlas.Config.Trim()}'"
                : $"openblas: not available: {OpenBlas.UnavailableReason}");
            var cuda = Backprop.Kernels.Cuda.CudaDriver.Probe();
            stdout.WriteLine(cuda.Available
                ? $"cuda: {cuda.DeviceName}, compute capability {cuda.Major}.{cuda.Minor} ({cuda.Arch}), {cuda.TotalMemory / (1L << 20):N0} MiB, {cuda.Multiprocessors} SMs, driver {cuda.DriverVersion / 1000}.{cuda.DriverVersion % 1000 / 10}"
                : $"cuda: not available: {cuda.Reason}");
            var (blas, blasWhy) = Backprop.Kernels.Cuda.CuBlas.Probe();
            stdout.WriteLine(blas ? $"cublas: {Backprop.Kernels.Cuda.CuBlas.Version?.ToString() ?? "version unknown"} (cuBLAS and cuBLASLt)" : $"cublas: not available: {blasWhy}");
            stdout.WriteLine(Backprop.Kernels.Cuda.Nvrtc.IsAvailable
                ? $"nvrtc: {Backprop.Kernels.Cuda.Nvrtc.Version.Major}.{Backprop.Kernels.Cuda.Nvrtc.Version.Minor}; kernels: {string.Join(", ", Backprop.Kernels.Cuda.CudaSources.Kernels)}"
                : $"nvrtc: not available: {Backprop.Kernels.Cuda.Nvrtc.UnavailableReason}");
            return 0;
        });
        return info;
    }
}
