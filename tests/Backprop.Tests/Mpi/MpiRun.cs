// Runs the tests' copy of `backprop` (backprop.dll next to the test assembly) as an MPI job:
//   mpirun --allow-run-as-root --oversubscribe --bind-to none -np N -x TERM=dumb [TCP flags] [-x VAR ...] dotnet backprop.dll ARGS
// or alone, as a singleton world. --oversubscribe lets N exceed the cores (CI has 2); --bind-to none keeps
// each rank's threads free to use every core; TERM=dumb stops .NET writing terminal escapes on the pty
// mpirun gives the ranks' stdout. With tcp, Open MPI's TCP transport is forced over loopback (it skips lo
// unless told). A job that outlives its timeout is killed with its process tree and the test fails with
// what it wrote so far.
using System.Diagnostics;
using System.Text;
using NUnit.Framework;

namespace Backprop.Tests.Mpi;

internal static class MpiRun
{
    /// <summary>The flags that make Open MPI use its TCP transport over the loopback interface instead of shared memory.</summary>
    public const string TcpLoopbackFlags = "--mca btl self,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo";

    private static readonly Lazy<string?> s_mpirun = new(() => FindOnPath("mpirun"));

    /// <summary>The launcher variables a job's ranks see; removed for a singleton, so it cannot mistake the test's own environment for a job.</summary>
    private static readonly string[] s_launcherPrefixes = ["OMPI_", "PMIX_", "PMI_", "MV2_", "PRTE_"];

    /// <summary>The full path of mpirun, or null when it is not on PATH.</summary>
    public static string? Mpirun => s_mpirun.Value;

    /// <summary>The backprop.dll the tests run (built next to the test assembly).</summary>
    public static string BackpropDll => Path.Combine(AppContext.BaseDirectory, "backprop.dll");

    /// <summary>Marks the test ignored when mpirun is not installed.</summary>
    public static void RequireMpirun()
    {
        if (Mpirun is null)
            Assert.Ignore("mpirun not found: install Open MPI (apt-get install openmpi-bin libopenmpi3; ./build.sh Deps) to run the MPI tests.");
    }

    /// <summary>
    /// Runs `backprop <paramref name="backpropArgs"/>` as <paramref name="ranks"/> MPI ranks; <paramref name="env"/> is set for mpirun
    /// and passed to every rank (-x). Returns mpirun's exit code and the ranks' stdout and stderr (as mpirun forwards them).
    /// </summary>
    public static (int ExitCode, string StdOut, string StdErr) Launch(int ranks, string backpropArgs, bool tcp = false, int timeoutSeconds = 120,
        string? workingDirectory = null, IDictionary<string, string>? env = null)
    {
        RequireMpirun();
        ArgumentOutOfRangeException.ThrowIfLessThan(ranks, 1);
        var args = new StringBuilder($"--allow-run-as-root --oversubscribe --bind-to none -np {ranks} -x TERM=dumb");
        if (tcp) args.Append(' ').Append(TcpLoopbackFlags);
        foreach (var name in env?.Keys ?? []) args.Append(" -x ").Append(name);
        args.Append($" \"{DotnetHost}\" \"{BackpropDll}\" {backpropArgs}");
        return Run(Mpirun!, args.ToString(), timeoutSeconds, workingDirectory, env, removeLauncherVariables: false);
    }

    /// <summary>
    /// How <see cref="Launch"/> starts mpirun, for a test that must act on the job while it runs (stdout and stderr redirected;
    /// the caller reads them, waits, and kills what is left).
    /// </summary>
    public static ProcessStartInfo StartInfo(int ranks, string backpropArgs, bool tcp = false)
    {
        RequireMpirun();
        var psi = new ProcessStartInfo(Mpirun!,
            $"--allow-run-as-root --oversubscribe --bind-to none -np {ranks} -x TERM=dumb{(tcp ? " " + TcpLoopbackFlags : "")} \"{DotnetHost}\" \"{BackpropDll}\" {backpropArgs}")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        psi.Environment["TERM"] = "dumb";
        return psi;
    }

    /// <summary>Runs `backprop <paramref name="backpropArgs"/>` without a launcher: MPI makes it a world of one rank.</summary>
    public static (int ExitCode, string StdOut, string StdErr) LaunchSingleton(string backpropArgs, int timeoutSeconds = 120,
        string? workingDirectory = null, IDictionary<string, string>? env = null) =>
        Run(DotnetHost, $"\"{BackpropDll}\" {backpropArgs}", timeoutSeconds, workingDirectory, env, removeLauncherVariables: true);

    // The dotnet host running the tests when the SDK says which (dotnet test sets DOTNET_HOST_PATH), else the one on PATH.
    private static string DotnetHost =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host : "dotnet";

    /// <summary>Runs <paramref name="file"/>; past the timeout, kills it with its process tree and fails the test with the output so far.</summary>
    internal static (int ExitCode, string StdOut, string StdErr) Run(string file, string arguments, int timeoutSeconds, string? workingDirectory,
        IDictionary<string, string>? env, bool removeLauncherVariables)
    {
        var psi = new ProcessStartInfo(file, arguments)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
        };
        psi.Environment["TERM"] = "dumb";
        if (removeLauncherVariables)
        {
            foreach (var name in psi.Environment.Keys.Where(k => s_launcherPrefixes.Any(p => k.StartsWith(p, StringComparison.Ordinal))).ToList())
                psi.Environment.Remove(name);
        }
        foreach (var (name, value) in env ?? new Dictionary<string, string>()) psi.Environment[name] = value;
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        using var p = new Process { StartInfo = psi };
        p.OutputDataReceived += (_, e) => Append(stdout, e.Data);
        p.ErrorDataReceived += (_, e) => Append(stderr, e.Data);
        p.Start();
        try
        {
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
            if (!p.WaitForExit(timeoutSeconds * 1000))
            {
                KillTree(p);
                Assert.Fail($"`{file} {arguments}` did not finish within {timeoutSeconds} s and was killed with its process tree.\n" +
                    $"stdout so far:\n{Text(stdout)}\nstderr so far:\n{Text(stderr)}");
            }
            p.WaitForExit();    // the asynchronous readers have everything once this returns
            return (p.ExitCode, Text(stdout), Text(stderr));
        }
        finally
        {
            KillTree(p);
        }
    }

    private static void KillTree(Process p)
    {
        try
        {
            if (!p.HasExited)
            {
                p.Kill(entireProcessTree: true);
                p.WaitForExit(10_000);
            }
        }
        catch (InvalidOperationException)
        {
            // already gone
        }
    }

    private static void Append(StringBuilder sb, string? line)
    {
        if (line is null) return;
        lock (sb) sb.Append(line).Append('\n');
    }

    private static string Text(StringBuilder sb)
    {
        lock (sb) return sb.ToString();
    }

    private static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, name))
            .FirstOrDefault(File.Exists);
}
