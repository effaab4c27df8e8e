// Build script (Cake 7). ./build.sh <target>; each target first installs the Debian packages it needs.
//   Deps        install every Debian package the project needs (as root), or print the command to run
//               (DepsTrain: the main job's alone; DepsTest: the tests' as well)
//   Build       Release build of the solution (warnings are errors in the libraries)
//   Test        NUnit tests; TRX results in artifacts/test-results
//   Train       the main job: `backprop train` on Fashion-MNIST, run folder in artifacts/train
//   Bench       `backprop bench gemm`, `bench dense --versus all` (OpenBLAS and oneDNN) and `bench step` reports in artifacts/bench
//   BenchSuite  the BenchmarkDotNet suites in bench/
//   BenchMLNet  Backprop against ML.NET's SdcaMaximumEntropy and LightGbm on one Fashion-MNIST pipeline (artifacts/bench/mlnet)
//   Pack        NuGet packages of the libraries (Kernels, Engine, MLNet) in artifacts/packages
//   Fuzz        afl++ on the loaders (fuzz/README.md): --fuzz-seconds=N per target, --fuzz-target=NAME; finds go to tests/fuzz-corpus
var target = Argument("target", "Build");
var configuration = Argument("configuration", "Release");
var root = MakeAbsolute(Directory("."));
var artifacts = root.Combine("artifacts");

// Debian packages, by what needs them, so that each target installs only its own: the main job (Train,
// Bench) needs OpenBLAS (the reference BLAS and the Blas backend) and the Fashion-MNIST data; the tests
// also need g++ (they build the CUDA kernels' per-element math for the host), PyTorch and ONNX (the
// interop tests run them with /usr/bin/python3) and, from the non-free component, NVRTC (the tests compile
// every .cu file to PTX and cubin without a GPU); the benchmarks and the tests need oneDNN (`bench dense
// --versus onednn` and its tests load libdnnl.so.2); the tests launch `mpirun -np 2` (Open MPI: data-parallel
// training across processes). Deps installs all of them.
var trainPackages = new[] { "libopenblas0-pthread", "dataset-fashion-mnist" };
var benchPackages = new[] { "libdnnl2", "gcc" }; // gcc: the native bf16 kernels the bf16 reports measure
var testPackages = new[] { "g++", "python3-torch", "python3-onnx", "libdnnl2", "openmpi-bin", "libopenmpi3", "libgomp1" };
var mlnetBenchPackages = new[] { "libgomp1" }; // LightGBM's native library (the NuGet package) links OpenMP; the tests run the benchmark small
var testNonFreePackages = new[] { "libnvrtc11.2" };

bool IsInstalled(string pkg)
{
    var settings = new ProcessSettings {
        Arguments = $"-W -f=${{Status}} {pkg}", RedirectStandardOutput = true, RedirectStandardError = true };
    try
    {
        using var p = StartAndReturnProcess("dpkg-query", settings);
        p.WaitForExit();
        return p.GetExitCode() == 0 && string.Join("\n", p.GetStandardOutput()).Contains("install ok installed");
    }
    catch { return false; }
}

int Sh(string command)
{
    Information($"$ {command}");
    return StartProcess("/bin/sh", new ProcessSettings { Arguments = $"-c \"{command}\"" });
}

// Installs what of `packages` (main) and `nonFree` is missing, as root; otherwise throws with the exact commands to run.
void EnsurePackages(string who, string[] packages, string[] nonFree)
{
    var missing = packages.Where(p => !IsInstalled(p)).ToArray();
    var missingNonFree = nonFree.Where(p => !IsInstalled(p)).ToArray();
    if (missing.Length == 0 && missingNonFree.Length == 0)
    {
        Information($"{who}: all present ({string.Join(", ", packages.Concat(nonFree))}).");
        return;
    }
    // non-free through a separate apt configuration: a copy of the system's sources with the
    // non-free component added, so the system's own apt sources stay as they are.
    var aptDir = "/var/lib/backprop/apt-sources";
    var nonFreeOpts = $"-o Dir::Etc::SourceParts={aptDir} -o Dir::Etc::SourceList=/dev/null";
    var prepareNonFree = $"mkdir -p {aptDir} && sed -E 's/^Components:.*/Components: main contrib non-free/' /etc/apt/sources.list.d/debian.sources > {aptDir}/debian-nonfree.sources";
    var install = $"apt-get install -y --no-install-recommends {string.Join(" ", missing)}";
    var installNonFree = $"apt-get {nonFreeOpts} update && apt-get {nonFreeOpts} install -y --no-install-recommends {string.Join(" ", missingNonFree)}";
    bool isRoot = Environment.UserName == "root" || EnvironmentVariable("USER") == "root";
    if (!isRoot)
    {
        var steps = new List<string>();
        if (missing.Length > 0) steps.Add($"sudo apt-get update && sudo {install}");
        if (missingNonFree.Length > 0) steps.Add($"sudo sh -c \"{prepareNonFree} && {installNonFree}\"");
        throw new Exception($"{who}: missing Debian packages: {string.Join(", ", missing.Concat(missingNonFree))}. Run:\n  " + string.Join("\n  ", steps));
    }
    Environment.SetEnvironmentVariable("DEBIAN_FRONTEND", "noninteractive");
    if (missing.Length > 0)
    {
        if (Sh("apt-get update") != 0) throw new Exception("apt-get update failed.");
        if (Sh(install) != 0) throw new Exception($"'{install}' failed.");
    }
    if (missingNonFree.Length > 0)
    {
        if (Sh(prepareNonFree) != 0) throw new Exception($"could not write {aptDir}/debian-nonfree.sources.");
        if (Sh(installNonFree) != 0) throw new Exception($"'{installNonFree}' failed.");
    }
    var still = packages.Concat(nonFree).Where(p => !IsInstalled(p)).ToArray();
    if (still.Length > 0) throw new Exception($"{who}: still missing after install: {string.Join(", ", still)}.");
}

Task("Deps")
    .Description("Install every Debian package the project needs (as root), or print the command that does.")
    .Does(() => EnsurePackages("Deps", trainPackages.Concat(testPackages).Concat(benchPackages).Distinct().ToArray(), testNonFreePackages));

Task("DepsTrain")
    .Description("The packages of the main job alone (OpenBLAS, Fashion-MNIST): what Train and Pack need (Bench adds libdnnl2).")
    .Does(() => EnsurePackages("Deps (train)", trainPackages, Array.Empty<string>()));

Task("DepsTest")
    .Description("The packages the tests need as well (g++, PyTorch, ONNX, oneDNN, Open MPI, NVRTC).")
    .Does(() => EnsurePackages("Deps (test)", trainPackages.Concat(testPackages).ToArray(), testNonFreePackages));

// The command-line program alone (the main job): the libraries and the CLI, not the tests, samples or benchmarks.
void BuildCli() => DotNetBuild("src/Cli/Backprop.Cli.csproj", new DotNetBuildSettings { Configuration = configuration });

Task("Build")
    .Description("Release build of the whole solution (the tests' build needs g++: DepsTest).")
    .IsDependentOn("DepsTest")
    .Does(() =>
{
    DotNetBuild("Engine.sln", new DotNetBuildSettings { Configuration = configuration });
});

Task("Test")
    .IsDependentOn("Build")
    .Does(() =>
{
    var results = artifacts.Combine("test-results");
    CleanDirectory(results);
    DotNetTest("Engine.sln", new DotNetTestSettings {
        Configuration = configuration,
        NoBuild = true,
        ResultsDirectory = results,
        Loggers = new[] { "trx", "console;verbosity=normal" },
    });
});

Task("Train")
    .Description("The main job: train the default MLP on Fashion-MNIST (pass flags with --train-args='--epochs 5 ...').")
    .IsDependentOn("DepsTrain")
    .Does(() =>
{
    BuildCli();
    var outDir = artifacts.Combine("train");
    var extra = Argument("train-args", "");
    DotNetRun("src/Cli/Backprop.Cli.csproj", new ProcessArgumentBuilder()
        .Append("train").Append("--output").AppendQuoted(outDir.FullPath).Append(extra),
        new DotNetRunSettings { Configuration = configuration, NoBuild = true });
});

Task("Bench")
    .Description("Reports: GEMM vs OpenBLAS, fused dense kernels vs OpenBLAS and oneDNN, training steps per backend, bf16 vs fp32 where bf16 runs (artifacts/bench).")
    .IsDependentOn("DepsTrain")
    .Does(() =>
{
    EnsurePackages("Deps (bench)", benchPackages, Array.Empty<string>());
    BuildCli();
    var outDir = artifacts.Combine("bench");
    foreach (var suite in new[] { "gemm", "dense --versus all", "step" })
        DotNetRun("src/Cli/Backprop.Cli.csproj", new ProcessArgumentBuilder()
            .Append("bench").Append(suite).Append("--output").AppendQuoted(outDir.FullPath),
            new DotNetRunSettings { Configuration = configuration, NoBuild = true });
    // bf16 against fp32 (and oneDNN's bf16 matmul) where this machine runs bf16; elsewhere they exit 2 saying why, and are skipped.
    foreach (var suite in new[] { "gemm --precision bf16", "step --precision bf16" })
    {
        int code = 0;
        DotNetRun("src/Cli/Backprop.Cli.csproj", new ProcessArgumentBuilder()
            .Append("bench").Append(suite).Append("--output").AppendQuoted(outDir.FullPath),
            new DotNetRunSettings { Configuration = configuration, NoBuild = true, HandleExitCode = c => { code = c; return c == 0 || c == 2; } });
        if (code == 2) Information($"bench {suite}: skipped, bf16 cannot run on this machine (the message above says why).");
    }
});

Task("BenchMLNet")
    .Description("Backprop's ML.NET trainer against SdcaMaximumEntropy and LightGbm on one Fashion-MNIST pipeline: accuracy, training time, PredictionEngine latency (pass flags with --bench-args='--epochs 5 ...').")
    .IsDependentOn("DepsTrain")
    .Does(() =>
{
    EnsurePackages("Deps (ML.NET bench)", mlnetBenchPackages, Array.Empty<string>());
    var project = "bench/Backprop.MLNet.Bench/Backprop.MLNet.Bench.csproj";
    DotNetBuild(project, new DotNetBuildSettings { Configuration = configuration });
    var extra = Argument("bench-args", "");
    DotNetRun(project, new ProcessArgumentBuilder().Append("--out").AppendQuoted(artifacts.Combine("bench/mlnet").FullPath).Append(extra),
        new DotNetRunSettings { Configuration = configuration, NoBuild = true });
});

Task("BenchSuite")
    .Description("BenchmarkDotNet suites (pass --filter via --bench-args, e.g. --bench-args='--filter *Gemm*').")
    .IsDependentOn("DepsTrain")
    .Does(() =>
{
    DotNetBuild("bench/Backprop.Benchmarks/Backprop.Benchmarks.csproj", new DotNetBuildSettings { Configuration = configuration });
    var extra = Argument("bench-args", "--filter *");
    DotNetRun("bench/Backprop.Benchmarks/Backprop.Benchmarks.csproj", new ProcessArgumentBuilder().Append(extra),
        new DotNetRunSettings { Configuration = configuration, NoBuild = true });
});

Task("Pack")
    .Description("NuGet packages of Backprop.Kernels, Backprop.Engine and Backprop.MLNet into artifacts/packages.")
    .IsDependentOn("DepsTrain")
    .Does(() =>
{
    var outDir = artifacts.Combine("packages");
    foreach (var project in new[] { "src/Kernels/Backprop.Kernels.csproj", "src/Engine/Backprop.Engine.csproj", "src/MLNet/Backprop.MLNet.csproj" })
        DotNetPack(project, new DotNetPackSettings { Configuration = configuration, OutputDirectory = outDir });
});

// ---- Fuzz: coverage-guided fuzzing of the loaders with SharpFuzz + afl++ (fuzz/README.md). Nothing else depends on it. ----
//   ./build.sh Fuzz [--fuzz-seconds=60] [--fuzz-target=idx|csv|npy|safetensors|checkpoint] [--fuzz-timeout-ms=3000] [--fuzz-keep=0]
// Installs afl++ (Debian's afl++, as root; else prints the command) and the SharpFuzz instrumenter (the local tool manifest
// fuzz/.config/dotnet-tools.json), builds the harness twice (plain, for seeds and replays; published and instrumented, for
// afl-fuzz), starts each target from fresh seeds plus the corpus files that pass, fuzzes it for the budget, and copies every
// crash and hang into tests/fuzz-corpus/<target>/ (named by content hash) with a one-line triage of each. --fuzz-keep=N also
// keeps up to N of afl-cmin's minimized queue as queue-* corpus files. Work folders: artifacts/fuzz/<target>/.
var fuzzTargets = new[] { "idx", "csv", "npy", "safetensors", "checkpoint" };

// ShQuote for a /bin/sh command line; Q for an argument of a process started directly (.NET splits those on spaces outside double quotes).
string ShQuote(string s) => "'" + s.Replace("'", "'\\''") + "'";
string Q(string s) => "\"" + s.Replace("\"", "\\\"") + "\"";
int ShWith(string command, IDictionary<string, string> env) =>
    StartProcess("/bin/sh", new ProcessSettings { Arguments = "-c " + Q(command), EnvironmentVariables = env });

(int Code, string Output) Capture(string file, string arguments, string workingDirectory = null, int timeoutMs = 0)
{
    var settings = new ProcessSettings { Arguments = arguments, RedirectStandardOutput = true, RedirectStandardError = true };
    if (workingDirectory != null) settings.WorkingDirectory = workingDirectory;
    using var p = StartAndReturnProcess(file, settings);
    if (timeoutMs > 0 && !p.WaitForExit(timeoutMs))
    {
        p.Kill();
        return (-1, $"timed out after {timeoutMs} ms");
    }
    p.WaitForExit();
    var lines = p.GetStandardOutput().Concat(p.GetStandardError());
    int code;
    try { code = p.GetExitCode(); } catch { code = -1; }
    return (code, string.Join("\n", lines));
}

string Sha(string path)
{
    using var sha = System.Security.Cryptography.SHA1.Create();
    return Convert.ToHexString(sha.ComputeHash(System.IO.File.ReadAllBytes(path))).ToLowerInvariant().Substring(0, 12);
}

Dictionary<string, string> FuzzerStats(string path) =>
    System.IO.File.Exists(path)
        ? System.IO.File.ReadAllLines(path).Where(l => l.Contains(':')).ToDictionary(l => l.Split(':', 2)[0].Trim(), l => l.Split(':', 2)[1].Trim())
        : new Dictionary<string, string>();

Task("Fuzz")
    .Description("afl++ on each loader for --fuzz-seconds (default 60) each, or only --fuzz-target; finds go to tests/fuzz-corpus/<target>/.")
    .IsDependentOn("DepsTrain")
    .Does(() =>
{
    int seconds = Argument("fuzz-seconds", 60);
    int timeoutMs = Argument("fuzz-timeout-ms", 3000);
    int keep = Argument("fuzz-keep", 0);
    string only = Argument("fuzz-target", "");
    if (only.Length > 0 && !fuzzTargets.Contains(only)) throw new Exception($"--fuzz-target={only}: expected one of {string.Join(", ", fuzzTargets)}.");
    var targets = only.Length > 0 ? new[] { only } : fuzzTargets;

    // afl++ from Debian (the only thing fuzzing needs from apt).
    bool isRoot = Environment.UserName == "root" || EnvironmentVariable("USER") == "root";
    if (!IsInstalled("afl++"))
    {
        const string install = "apt-get install -y --no-install-recommends afl++";
        if (!isRoot) throw new Exception($"Fuzz needs afl++ (Debian package afl++). Run:\n  sudo apt-get update && sudo {install}");
        Environment.SetEnvironmentVariable("DEBIAN_FRONTEND", "noninteractive");
        if (Sh("apt-get update") != 0 || Sh(install) != 0) throw new Exception($"'{install}' failed.");
    }
    var fuzzDir = root.Combine("fuzz");
    if (StartProcess("dotnet", new ProcessSettings { Arguments = "tool restore", WorkingDirectory = fuzzDir }) != 0)
        throw new Exception("dotnet tool restore in fuzz/ (SharpFuzz.CommandLine) failed.");

    // The plain harness (seeds, replays: instrumented code faults outside afl) and the instrumented one (afl-fuzz).
    var project = fuzzDir.CombineWithFilePath("Backprop.Fuzz/Backprop.Fuzz.csproj").FullPath;
    DotNetBuild(project, new DotNetBuildSettings { Configuration = configuration });
    string plain = fuzzDir.CombineWithFilePath($"Backprop.Fuzz/bin/{configuration}/net10.0/Backprop.Fuzz").FullPath;
    var fuzzArtifacts = artifacts.Combine("fuzz");
    var bin = fuzzArtifacts.Combine("bin");
    if (DirectoryExists(bin)) DeleteDirectory(bin, new DeleteDirectorySettings { Recursive = true, Force = true });
    DotNetPublish(project, new DotNetPublishSettings { Configuration = configuration, OutputDirectory = bin });
    var engineDll = bin.CombineWithFilePath("Backprop.Engine.dll").FullPath;
    var instrument = Capture("dotnet", $"tool run sharpfuzz {Q(engineDll)}", fuzzDir.FullPath);
    if (instrument.Code != 0) throw new Exception($"sharpfuzz {engineDll} failed ({instrument.Code}): {instrument.Output}");
    Information($"Fuzz: instrumented {engineDll} (SharpFuzz); afl-fuzz runs {bin.CombineWithFilePath("Backprop.Fuzz").FullPath} <target>.");

    var env = new Dictionary<string, string>
    {
        ["AFL_SKIP_BIN_CHECK"] = "1",                        // the target is dotnet, not an afl-cc binary; SharpFuzz speaks the fork-server protocol
        ["AFL_NO_UI"] = "1",
        ["AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES"] = "1",     // core_pattern may pipe to a handler here
        ["AFL_SKIP_CPUFREQ"] = "1",
        ["AFL_NO_AFFINITY"] = "1",                           // a shared machine: do not pin a core
        ["AFL_SKIP_CRASHES"] = "1",
        ["AFL_ALLOW_TMP"] = "1",                             // afl-cmin refuses folders under /tmp (a clone there) without it
    };
    var summary = new List<string>();
    int reproduced = 0;
    foreach (var t in targets)
    {
        var work = fuzzArtifacts.Combine(t);
        if (DirectoryExists(work)) DeleteDirectory(work, new DeleteDirectorySettings { Recursive = true, Force = true });
        var input = work.Combine("in");
        var corpus = root.Combine($"tests/fuzz-corpus/{t}");
        EnsureDirectoryExists(corpus);
        // Seeds: fresh valid files of this version, and the corpus files that load or are refused as documented
        // (a known defect's input would crash the dry run).
        var seeds = Capture(plain, $"seeds {t} {Q(input.FullPath)}");
        if (seeds.Code != 0) throw new Exception($"seeds {t} failed: {seeds.Output}");
        var passing = Capture(plain, $"replay {t} {Q(corpus.FullPath)} --passing {Q(input.FullPath)}");
        Information(passing.Output.Split('\n').LastOrDefault() ?? "");
        foreach (var line in passing.Output.Split('\n').Where(l => l.StartsWith("CRASH ")))
            Information($"  (not a seed) {line}");

        var output = work.Combine("out");
        string dict = fuzzDir.CombineWithFilePath($"dict/{t}.dict").FullPath;
        var afl = $"-i {ShQuote(input.FullPath)} -o {ShQuote(output.FullPath)} -V {seconds} -t {timeoutMs} -m none -x {ShQuote(dict)} -- {ShQuote(bin.CombineWithFilePath("Backprop.Fuzz").FullPath)} {t}";
        Information($"$ afl-fuzz {afl}   (log: {work.CombineWithFilePath("afl-fuzz.log").FullPath})");
        var logPath = work.CombineWithFilePath("afl-fuzz.log").FullPath;
        int rc = ShWith($"afl-fuzz {afl} > {ShQuote(logPath)} 2>&1", env);
        var stats = FuzzerStats(output.Combine("default").CombineWithFilePath("fuzzer_stats").FullPath);
        if (rc != 0 || stats.Count == 0)
            throw new Exception($"afl-fuzz on {t} exited with {rc}; the end of {logPath}:\n" + string.Join("\n", System.IO.File.ReadAllLines(logPath).TakeLast(15)));

        // Every crash and hang into the corpus, each replayed in a process of its own (a crash may take the runtime down).
        var found = new List<string>();
        foreach (var kind in new[] { "crashes", "hangs" })
        {
            var dir = output.Combine("default").Combine(kind);
            if (!DirectoryExists(dir)) continue;
            foreach (var f in GetFiles(dir.FullPath + "/id:*"))
            {
                string name = $"{(kind == "crashes" ? "crash" : "hang")}-{Sha(f.FullPath)}";
                CopyFile(f, corpus.CombineWithFilePath(name));
                var replay = Capture(plain, $"replay {t} {Q(f.FullPath)}", timeoutMs: Math.Max(10_000, 4 * timeoutMs));
                string line = replay.Output.Split('\n').FirstOrDefault(l => l.StartsWith("CRASH ") || l.StartsWith("ok ")) ?? $"no result (exit {replay.Code})";
                if (replay.Code != 0) reproduced++;
                found.Add($"  {name}: {(line.StartsWith("CRASH ") ? line.Substring(line.IndexOf("): ") + 3) : line.StartsWith("ok ") ? "does not reproduce outside afl (" + line.Substring(line.LastIndexOf('(')) : line)}");
            }
        }
        // A few of the minimized queue, when asked for: afl-cmin's set, then greedily the inputs that add the most edges
        // to what the seeds and the corpus already cover (afl-showmap's tuples of each).
        int kept = 0;
        if (keep > 0)
        {
            var cmin = work.Combine("cmin");
            string harness = ShQuote(bin.CombineWithFilePath("Backprop.Fuzz").FullPath);
            string Log(string name) => ShQuote(work.CombineWithFilePath(name).FullPath);
            HashSet<string> Edges(string file) => new(System.IO.File.ReadAllLines(file).Select(l => l.Split(':')[0]));
            bool ok = ShWith($"afl-cmin -i {ShQuote(output.Combine("default").Combine("queue").FullPath)} -o {ShQuote(cmin.FullPath)} -t {timeoutMs} -m none -- {harness} {t} > {Log("afl-cmin.log")} 2>&1", env) == 0
                && ShWith($"afl-showmap -i {ShQuote(cmin.FullPath)} -o {ShQuote(work.Combine("maps-cmin").FullPath)} -t {timeoutMs} -m none -- {harness} {t} > {Log("afl-showmap.log")} 2>&1", env) == 0
                && ShWith($"afl-showmap -i {ShQuote(input.FullPath)} -o {ShQuote(work.Combine("maps-in").FullPath)} -t {timeoutMs} -m none -- {harness} {t} >> {Log("afl-showmap.log")} 2>&1", env) == 0;
            if (ok)
            {
                var covered = new HashSet<string>(GetFiles(work.Combine("maps-in").FullPath + "/*").SelectMany(f => Edges(f.FullPath)));
                var existing = new HashSet<string>(GetFiles(corpus.FullPath + "/*").Select(f => Sha(f.FullPath)));
                var candidates = GetFiles(cmin.FullPath + "/*")
                    .Select(f => (File: f, Edges: Edges(work.Combine("maps-cmin").CombineWithFilePath(f.GetFilename()).FullPath)))
                    .Where(c => !existing.Contains(Sha(c.File.FullPath))).ToList();
                while (kept < keep && candidates.Count > 0)
                {
                    var best = candidates.OrderByDescending(c => c.Edges.Count(e => !covered.Contains(e))).ThenBy(c => new System.IO.FileInfo(c.File.FullPath).Length).First();
                    if (best.Edges.All(covered.Contains)) break;
                    covered.UnionWith(best.Edges);
                    candidates.Remove(best);
                    CopyFile(best.File, corpus.CombineWithFilePath($"queue-{Sha(best.File.FullPath)}"));
                    kept++;
                }
            }
            else Warning($"afl-cmin or afl-showmap on {t} failed; see {work.CombineWithFilePath("afl-cmin.log").FullPath} and afl-showmap.log.");
        }
        string Stat(string key) => stats.TryGetValue(key, out var v) ? v : "?";
        summary.Add($"{t}: {Stat("run_time")} s, {Stat("execs_done")} execs ({Stat("execs_per_sec")}/s), corpus {Stat("corpus_count")}, edges {Stat("edges_found")}, "
            + $"crashes {Stat("saved_crashes")}, hangs {Stat("saved_hangs")}{(keep > 0 ? $", {kept} queue inputs kept" : "")}");
        summary.AddRange(found);
    }
    Information("Fuzz summary (finds copied to tests/fuzz-corpus/<target>/; FuzzCorpusTests runs them):\n" + string.Join("\n", summary));
    if (reproduced > 0) throw new Exception($"Fuzz: {reproduced} finds reproduce outside afl (an exception other than the documented one); see the summary above.");
});

RunTarget(target);
