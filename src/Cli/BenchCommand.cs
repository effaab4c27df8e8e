// `backprop bench gemm|dense|step|distributed|alloc|predict`: the end-to-end benchmark reports (GFLOP/s, percent of
// the FMA peak measured in the same process, ratios to OpenBLAS, oneDNN or cuBLAS measured in the same run),
// printed as Markdown and, with --output, written as Markdown and JSON.
using System.CommandLine;
using System.Globalization;
using Backprop.Cli.Bench;
using Backprop.Engine.Training;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cuda;
using Backprop.Kernels.Mpi;

namespace Backprop.Cli;

internal static class BenchCommand
{
    public static Command Create(TextWriter stdout)
    {
        var bench = new Command("bench", "Benchmarks: kernels against OpenBLAS and the FMA peak.");
        var shapes = new Option<string[]>("--shape") { Description = "Only shapes whose name contains this text (repeatable).", AllowMultipleArgumentsPerToken = true };
        var sizes = new Option<string[]>("--size") { Description = "Extra shapes MxKxN:OP, e.g. 256x784x128:TN (repeatable); with --size only these run unless --shape is given too.", AllowMultipleArgumentsPerToken = true };
        var gemm = new Command("gemm", "SGEMM GFLOP/s, ours vs OpenBLAS in the same run, and percent of FMA peak; --precision bf16: our bf16 GEMM vs our float32 GEMM and oneDNN's bf16 matmul.");
        var gt = AddTimingOptions(gemm, [1, 2], 7, 0.15, "gemm.md and gemm.json (gemm-bf16.md and gemm-bf16.json with --precision bf16)");
        var gemmPrecision = new Option<string>("--precision") { Description = "Operand precision: fp32 (against OpenBLAS) or bf16 (bf16 operands, float32 accumulation; needs AVX512_BF16).", DefaultValueFactory = _ => "fp32" };
        gemm.Options.Add(shapes);
        gemm.Options.Add(sizes);
        gemm.Options.Add(gemmPrecision);
        gemm.SetAction(p =>
        {
            var (t, r, s) = ReadTiming(p, gt);
            var filter = p.GetValue(shapes) ?? [];
            var custom = (p.GetValue(sizes) ?? []).Select(GemmBench.ParseSize).ToList();
            var list = custom.Count > 0 && filter.Length == 0
                ? custom
                : GemmBench.DefaultShapes.Where(x => filter.Length == 0 || filter.Any(f => x.Name.Contains(f, StringComparison.OrdinalIgnoreCase))).Concat(custom).ToList();
            if (list.Count == 0) throw new UsageException($"--shape '{string.Join(" ", filter)}' matches no shape; shapes are: {string.Join(", ", GemmBench.DefaultShapes.Select(x => x.Name).Distinct())}.");
            if (Flags.Precision(p.GetValue(gemmPrecision)!) == GemmPrecision.Bf16)
            {
                var bf = Bf16GemmBench.Run(list, t, r, s, stdout);
                WriteReport(stdout, p.GetValue(gt.Output), "gemm-bf16", Bf16GemmBench.ToMarkdown(bf), Bf16GemmBench.ToJson(bf));
                return 0;
            }
            var report = GemmBench.Run(list, t, r, s, stdout);
            WriteReport(stdout, p.GetValue(gt.Output), "gemm", GemmBench.ToMarkdown(report), GemmBench.ToJson(report));
            return 0;
        });
        bench.Subcommands.Add(gemm);

        var dense = new Command("dense", "Fused dense kernels (Fwd, BwdData, BwdWeights) vs OpenBLAS GEMM + a separate pass (--versus openblas) or oneDNN's inner-product primitives (--versus onednn), same run.");
        var dt = AddTimingOptions(dense, [1, 2], 7, 0.1, "dense.md and dense.json (dense-onednn.md and dense-onednn.json with --versus onednn)");
        var dShapes = new Option<string[]>("--shape") { Description = "Only shapes whose name contains this text, e.g. b256-1024x1024 (repeatable).", AllowMultipleArgumentsPerToken = true };
        var versus = new Option<string>("--versus") { Description = "openblas: OpenBLAS GEMM + a separate pass (default); onednn: oneDNN 2.x (libdnnl.so.2) primitives; all: both.", DefaultValueFactory = _ => "openblas" };
        dense.Options.Add(dShapes);
        dense.Options.Add(versus);
        dense.SetAction(p =>
        {
            var (t, r, s) = ReadTiming(p, dt);
            var (openBlas, oneDnn) = Flags.Choice("--versus", p.GetValue(versus)!, ("openblas", (true, false)), ("onednn", (false, true)), ("all", (true, true)));
            var filter = p.GetValue(dShapes) ?? [];
            bool Match(DenseShape x) => filter.Length == 0 || filter.Any(f => x.Name.Contains(f, StringComparison.OrdinalIgnoreCase));
            var blasShapes = openBlas ? DenseBench.Shapes.Where(Match).ToList() : [];
            var dnnlShapes = oneDnn ? OneDnnDenseBench.Shapes.Where(Match).ToList() : [];
            if (blasShapes.Count == 0 && dnnlShapes.Count == 0)
            {
                var names = (openBlas ? DenseBench.Shapes : []).Concat(oneDnn ? OneDnnDenseBench.Shapes : []).Select(x => x.Name).Distinct();
                throw new UsageException($"--shape '{string.Join(" ", filter)}' matches no shape; shapes are: {string.Join(", ", names)}.");
            }
            if (oneDnn) OneDnn.EnsureAvailable(); // before any timing: a missing library is exit 2 with the install hint
            if (blasShapes.Count > 0)
            {
                var rows = DenseBench.Run(blasShapes, t, r, s, stdout);
                WriteReport(stdout, p.GetValue(dt.Output), "dense", DenseBench.ToMarkdown(rows), DenseBench.ToJson(rows));
            }
            if (dnnlShapes.Count > 0)
            {
                OneDnnDenseReport report;
                try { report = OneDnnDenseBench.Run(dnnlShapes, t, r, s, stdout); }
                catch (OracleMismatchException e)
                {
                    stdout.WriteLine($"FAIL: bench dense --versus onednn: {e.Message}");
                    return 1;
                }
                WriteReport(stdout, p.GetValue(dt.Output), "dense-onednn", OneDnnDenseBench.ToMarkdown(report), OneDnnDenseBench.ToJson(report));
            }
            return 0;
        });
        bench.Subcommands.Add(dense);

        var step = new Command("step", "Training step time of named model shapes: the Cpu and Blas backends in the same run, or (--backend cuda) the Cuda backend against cuBLAS's GEMMs alone.");
        var st = AddTimingOptions(step, [Environment.ProcessorCount], 5, 0.2, "step.md and step.json (step-bf16.* with --precision bf16)");
        var sModel = new Option<string?>("--model") { Description = "Only models whose name contains this text (e.g. 784-256-10)." };
        var sBackend = new Option<string>("--backend") { Description = "cpu: Cpu vs Blas backends (default); cuda: the Cuda backend on GPU 0.", DefaultValueFactory = _ => "cpu" };
        var sTf32 = new Option<bool>("--tf32") { Description = "Cuda: allow TF32 tensor-core GEMMs." };
        var sPrecision = new Option<string>("--precision") { Description = "fp32: Cpu vs Blas (default); bf16: the Cpu step with bf16 GEMMs against the same model in fp32 (needs AVX512_BF16).", DefaultValueFactory = _ => "fp32" };
        step.Options.Add(sModel);
        step.Options.Add(sBackend);
        step.Options.Add(sTf32);
        step.Options.Add(sPrecision);
        step.SetAction(p =>
        {
            var (t, r, s) = ReadTiming(p, st);
            if (Flags.Precision(p.GetValue(sPrecision)!) == GemmPrecision.Bf16)
            {
                if (Flags.Choice("--backend", p.GetValue(sBackend)!, ("cpu", false), ("cuda", true)))
                    throw new UsageException("bench step --precision bf16 measures the cpu backend; on cuda, train with --precision bf16 (its bf16 GEMMs are not benchmarked yet).");
                var bfRows = Bf16StepBench.Run(t, r, s, p.GetValue(sModel), stdout);
                if (bfRows.Count == 0) throw new UsageException($"--model '{p.GetValue(sModel)}' matches no model; models are: {string.Join(", ", StepBench.Shapes.Select(x => x.Name).Distinct())}.");
                WriteReport(stdout, p.GetValue(st.Output), "step-bf16", Bf16StepBench.ToMarkdown(bfRows), Bf16StepBench.ToJson(bfRows));
                return 0;
            }
            if (Flags.Choice("--backend", p.GetValue(sBackend)!, ("cpu", false), ("cuda", true)))
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
            var rows = StepBench.Run(t, r, s, p.GetValue(sModel), stdout);
            if (rows.Count == 0) throw new UsageException($"--model '{p.GetValue(sModel)}' matches no model; models are: {string.Join(", ", StepBench.Shapes.Select(x => x.Name).Distinct())}.");
            WriteReport(stdout, p.GetValue(st.Output), "step", StepBench.ToMarkdown(rows), StepBench.ToJson(rows));
            return 0;
        });
        bench.Subcommands.Add(step);

        var dist = new Command("distributed", "Data-parallel training: ms per step and the share spent summing gradients for 1 rank x 1 and x 2 threads and 2 ranks x 1 thread (mpirun -np 2), against a raw MPI_Allreduce of the same bytes.");
        var dModel = new Option<string?>("--model") { Description = "Only models whose name contains this text (e.g. 784-256-10)." };
        var dSteps = new Option<int>("--steps") { Description = "Timed steps per configuration (the same on every rank).", DefaultValueFactory = _ => 20 };
        var dReduction = new Option<string>("--reduction") { Description = "deterministic, fast, overlap (fast, each layer's sum during the backward pass) or all.", DefaultValueFactory = _ => "all" };
        var dThreads = new Option<int>("--threads") { Description = "Under a launcher: kernel threads per rank.", DefaultValueFactory = _ => 1 };
        var dRows = new Option<FileInfo?>("--rows-to") { Description = "Under a launcher: write rank 0's rows as JSON to FILE instead of a report (what the 2-rank run of the report uses).", Hidden = true };
        var dOutput = new Option<DirectoryInfo?>("--output") { Description = "Folder for distributed.md and distributed.json." };
        foreach (var o in new Option[] { dModel, dSteps, dReduction, dThreads, dRows, dOutput }) dist.Options.Add(o);
        dist.SetAction(p =>
        {
            int n = p.GetValue(dSteps), t = p.GetValue(dThreads);
            if (n < 1) throw new UsageException($"--steps must be at least 1; got {n}.");
            if (t < 1 || t > 256) throw new UsageException($"--threads must be in [1, 256]; got {t}.");
            var modes = Flags.Choice("--reduction", p.GetValue(dReduction)!, ("deterministic", new[] { (ReductionMode.Deterministic, false) }),
                ("fast", new[] { (ReductionMode.Fast, false) }), ("overlap", new[] { (ReductionMode.Fast, true) }),
                ("all", new[] { (ReductionMode.Deterministic, false), (ReductionMode.Fast, false), (ReductionMode.Fast, true) }));
            List<DistributedBenchRow> rows;
            if (MpiCommunicator.LauncherDetected)
            {
                using var launch = DistributedLaunch.Start("bench distributed", "mpi", ReductionMode.Deterministic, Console.Error);
                var comm = launch!.Communicator;
                rows = [.. modes.SelectMany(m => DistributedBench.Worker(comm, t, n, p.GetValue(dModel), m.Item1, m.Item2, comm.Rank == 0 ? stdout : TextWriter.Null))];
                if (comm.Rank != 0) return 0;
                if (p.GetValue(dRows) is { } file)
                {
                    File.WriteAllText(file.FullName, DistributedBench.ToJson(rows));
                    return 0;
                }
            }
            else rows = DistributedBench.Run(n, p.GetValue(dModel), modes, stdout);
            WriteReport(stdout, p.GetValue(dOutput), "distributed", DistributedBench.ToMarkdown(rows), DistributedBench.ToJson(rows));
            return 0;
        });
        bench.Subcommands.Add(dist);

        var alloc = new Command("alloc", "Bytes allocated per training step after warm-up (calling thread and all threads); exit 1 if any.");
        var aSteps = new Option<int>("--steps") { Description = "Steps to measure.", DefaultValueFactory = _ => 1000 };
        var aThreads = new Option<int>("--threads") { Description = "Kernel threads.", DefaultValueFactory = _ => 2 };
        var aAccumulate = new Option<int>("--accumulate") { Description = "Micro-batches per step (1 to 3: the small batch has 7 samples).", DefaultValueFactory = _ => 1 };
        alloc.Options.Add(aSteps);
        alloc.Options.Add(aThreads);
        alloc.Options.Add(aAccumulate);
        alloc.SetAction(p =>
        {
            int n = p.GetValue(aSteps), t = p.GetValue(aThreads), k = p.GetValue(aAccumulate);
            if (n < 1) throw new UsageException($"--steps must be at least 1; got {n}.");
            if (t < 1 || t > 256) throw new UsageException($"--threads must be in [1, 256]; got {t}.");
            if (k < 1 || k > 3) throw new UsageException($"--accumulate must be in [1, 3] (the small batch has 7 samples); got {k}.");
            if (!MpiCommunicator.LauncherDetected) return AllocBench.Run(n, t, k, null, stdout);
            using var launch = DistributedLaunch.Start("bench alloc", "mpi", ReductionMode.Deterministic, Console.Error);
            if (7 < k * launch!.Size) throw new UsageException($"bench alloc's small batch of 7 samples cannot be split into {k * launch.Size} micro-batches (--accumulate {k} x {launch.Size} ranks).");
            return AllocBench.Run(n, t, k, launch.Options, stdout);
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
}
