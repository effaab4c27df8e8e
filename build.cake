// Build script (Cake 7). ./build.sh <target>; every target depends on Deps.
//   Deps        install the Debian packages the project needs (as root), or print the command to run
//   Build       Release build of the solution (warnings are errors in the libraries)
//   Test        NUnit tests; TRX results in artifacts/test-results
//   Train       the main job: `backprop train` on Fashion-MNIST, run folder in artifacts/train
//   Bench       `backprop bench gemm`, `bench dense` and `bench step` reports in artifacts/bench
//   BenchSuite  the BenchmarkDotNet suites in bench/
//   Pack        NuGet packages of the two libraries in artifacts/packages
var target = Argument("target", "Build");
var configuration = Argument("configuration", "Release");
var root = MakeAbsolute(Directory("."));
var artifacts = root.Combine("artifacts");

// Debian packages: OpenBLAS (the reference BLAS and the Blas backend), the Fashion-MNIST data, g++ (the
// tests build the CUDA kernels' per-element math for the host) and, from the non-free component,
// NVRTC (the tests compile every .cu file to PTX and cubin without a GPU).
var debPackages = new[] { "libopenblas0-pthread", "dataset-fashion-mnist", "g++" };
var nonFreePackages = new[] { "libnvrtc11.2" };

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

Task("Deps")
    .Description("Install missing Debian packages (as root) or print the command that does.")
    .Does(() =>
{
    var missing = debPackages.Where(p => !IsInstalled(p)).ToArray();
    var missingNonFree = nonFreePackages.Where(p => !IsInstalled(p)).ToArray();
    if (missing.Length == 0 && missingNonFree.Length == 0)
    {
        Information($"Deps: all present ({string.Join(", ", debPackages.Concat(nonFreePackages))}).");
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
        throw new Exception($"Missing Debian packages: {string.Join(", ", missing.Concat(missingNonFree))}. Run:\n  " + string.Join("\n  ", steps));
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
    var still = debPackages.Concat(nonFreePackages).Where(p => !IsInstalled(p)).ToArray();
    if (still.Length > 0) throw new Exception($"Still missing after install: {string.Join(", ", still)}.");
});

Task("Build")
    .IsDependentOn("Deps")
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
    .IsDependentOn("Build")
    .Does(() =>
{
    var outDir = artifacts.Combine("train");
    var extra = Argument("train-args", "");
    DotNetRun("src/Cli/Backprop.Cli.csproj", new ProcessArgumentBuilder()
        .Append("train").Append("--output").AppendQuoted(outDir.FullPath).Append(extra),
        new DotNetRunSettings { Configuration = configuration, NoBuild = true });
});

Task("Bench")
    .Description("Reports: GEMM vs OpenBLAS, fused dense kernels, training steps per backend (artifacts/bench).")
    .IsDependentOn("Build")
    .Does(() =>
{
    var outDir = artifacts.Combine("bench");
    foreach (var suite in new[] { "gemm", "dense", "step" })
        DotNetRun("src/Cli/Backprop.Cli.csproj", new ProcessArgumentBuilder()
            .Append("bench").Append(suite).Append("--output").AppendQuoted(outDir.FullPath),
            new DotNetRunSettings { Configuration = configuration, NoBuild = true });
});

Task("BenchSuite")
    .Description("BenchmarkDotNet suites (pass --filter via --bench-args, e.g. --bench-args='--filter *Gemm*').")
    .IsDependentOn("Build")
    .Does(() =>
{
    var extra = Argument("bench-args", "--filter *");
    DotNetRun("bench/Backprop.Benchmarks/Backprop.Benchmarks.csproj", new ProcessArgumentBuilder().Append(extra),
        new DotNetRunSettings { Configuration = configuration, NoBuild = true });
});

Task("Pack")
    .Description("NuGet packages of Backprop.Kernels and Backprop.Engine into artifacts/packages.")
    .IsDependentOn("Build")
    .Does(() =>
{
    var outDir = artifacts.Combine("packages");
    foreach (var project in new[] { "src/Kernels/Backprop.Kernels.csproj", "src/Engine/Backprop.Engine.csproj" })
        DotNetPack(project, new DotNetPackSettings { Configuration = configuration, NoBuild = true, OutputDirectory = outDir });
});

RunTarget(target);
