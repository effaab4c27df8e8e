// The MPI binding: `backprop check mpi` (every collective on rank-dependent data, checked by every rank)
// passes with 2 ranks over shared memory and over TCP loopback, with 3 ranks (an odd world), and alone
// as a singleton; without an MPI library it exits 2 saying what to install. The probe, the launcher
// detection and the per-call limit are tested in this process, which never initializes MPI (MPI can be
// initialized once per process, so that is left to child processes).
using Backprop.Kernels.Mpi;
using NUnit.Framework;

namespace Backprop.Tests.Mpi;

[TestFixture]
[NonParallelizable]
public class MpiCommunicatorTests
{
    private static readonly string[] s_checks =
    [
        "barrier", "InitWorld again returns the same world", "a call from another thread is refused (MPI_THREAD_FUNNELED)",
        "broadcast 4 MiB from rank 0", "allreduce sum, float, 1037 elements", "allreduce sum, double, 1037 elements",
        "allreduce max, int64", "alltoall, float, 7 per rank", "alltoall, double, 7 per rank", "allgather, float, 13 per rank",
        "allgather, double, 13 per rank", "split into calls of at most 3 elements: broadcast, allreduce, alltoall, allgather",
        "no managed allocation in 1400 collective calls", "a managed null dereference still throws NullReferenceException",
    ];

    private static void AssertAllPassed((int ExitCode, string StdOut, string StdErr) run, int ranks)
    {
        string all = $"stdout:\n{run.StdOut}\nstderr:\n{run.StdErr}";
        Assert.That(run.ExitCode, Is.EqualTo(0), all);
        Assert.That(run.StdOut, Does.Contain("MPI library: ").And.Contain($"world: {ranks} rank"), all);
        foreach (var check in s_checks) Assert.That(run.StdOut, Does.Contain($"ok   {check}\n"), all);
        Assert.That(run.StdOut, Does.Not.Contain("FAIL"), all);
        Assert.That(run.StdOut, Does.Match(@$"(\d+) of \1 checks passed on {ranks} rank"), all);
        Assert.That(run.StdErr, Does.Not.Contain("rank "), "the other ranks are quiet when they pass: " + all);
        // Only rank 0 reports: one header, one line per check.
        Assert.That(run.StdOut.Split('\n').Count(l => l.StartsWith("MPI library: ", StringComparison.Ordinal)), Is.EqualTo(1), all);
    }

    [Test]
    public void CheckMpi_TwoRanksOverSharedMemory_Passes()
    {
        var run = MpiRun.Launch(2, "check mpi");
        AssertAllPassed(run, 2);
        Assert.That(run.StdOut, Does.Contain("started by Open MPI mpirun (OMPI_COMM_WORLD_SIZE=2)").Or.Contain("started by a P"));
    }

    [Test]
    public void CheckMpi_TwoRanksOverTcpLoopback_Passes() => AssertAllPassed(MpiRun.Launch(2, "check mpi", tcp: true), 2);

    [Test]
    public void CheckMpi_ThreeRanks_AnOddWorld_Passes() => AssertAllPassed(MpiRun.Launch(3, "check mpi"), 3);

    [Test]
    public void CheckMpi_WithoutALauncher_IsAOneRankWorld_AndPasses()
    {
        MpiRun.RequireMpirun();     // Open MPI installed: its library makes the singleton
        var run = MpiRun.LaunchSingleton("check mpi");
        AssertAllPassed(run, 1);
        Assert.That(run.StdOut, Does.Contain("world: 1 rank, started by no launcher (a singleton)"));
    }

    [Test]
    public void CheckMpi_WithoutAnMpiLibrary_Exits2_AndSaysWhatToInstall()
    {
        var run = MpiRun.LaunchSingleton("check mpi",
            env: new Dictionary<string, string> { [MpiCommunicator.LibraryVariable] = "libno-such-mpi.so.99" });
        Assert.That(run.ExitCode, Is.EqualTo(2), run.StdOut + run.StdErr);
        Assert.That(run.StdErr, Does.StartWith("backprop: none of libno-such-mpi.so.99 could be loaded")
            .And.Contain("apt-get install openmpi-bin libopenmpi3"));
        Assert.That(run.StdOut, Is.Empty);
    }

    [Test]
    public void AJobPastItsTimeout_IsKilledWithItsChildren_AndFailsWithItsOutputSoFar()
    {
        var e = Assert.Throws<AssertionException>(() =>
            MpiRun.Run("/bin/sh", "-c \"sleep 60 & echo child $!; sleep 60\"", timeoutSeconds: 2, workingDirectory: null, env: null, removeLauncherVariables: false))!;
        Assert.That(e.Message, Does.Contain("did not finish within 2 s").And.Contain("stdout so far:\nchild "));
        int child = int.Parse(e.Message.Split("stdout so far:\nchild ")[1].Split('\n')[0], System.Globalization.CultureInfo.InvariantCulture);
        // SIGKILL lands at once, but the exit and the reaping (by whoever adopted the orphan) take a moment.
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!Gone(child) && DateTime.UtcNow < deadline) Thread.Sleep(50);
        Assert.That(Gone(child), Is.True, $"the background child {child} was killed too");
    }

    // No such process, or a zombie waiting to be reaped (the third field of /proc/PID/stat is its state).
    private static bool Gone(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)..].StartsWith('Z');
        }
        catch (IOException)
        {
            return true;
        }
    }

    [Test]
    public void Probe_WithBogusNames_NamesEachAndThePackageToInstall()
    {
        var (library, error) = MpiLibrary.Open(["libno-such-mpi.so.99", "libno-such-mpich.so.7"]);
        Assert.That(library, Is.Null);
        Assert.That(error, Does.Contain("libno-such-mpi.so.99, libno-such-mpich.so.7").And.Contain("apt-get install openmpi-bin libopenmpi3")
            .And.Contain(MpiLibrary.LibraryVariable));
    }

    [Test]
    public void Probe_ALibraryThatIsNotMpi_IsPassedOver_AndSaid()
    {
        var (library, error) = MpiLibrary.Open(["libc.so.6", "libno-such-mpi.so.99"]);
        Assert.That(library, Is.Null);
        Assert.That(error, Does.StartWith("libc.so.6 loaded but exports no MPI_Initialized").And.Contain("none of libno-such-mpi.so.99 could be loaded"));
    }

    [Test]
    public void Probe_TriesOpenMpiThenMpich_OrOnlyTheNamedLibrary()
    {
        Assert.That(MpiLibrary.Candidates(null).Take(2), Is.EqualTo(new[] { "libmpi.so.40", "libmpi.so.12" }));
        Assert.That(MpiLibrary.Candidates(" "), Is.EqualTo(MpiLibrary.LibraryNames));
        Assert.That(MpiLibrary.Candidates("/opt/mpi/lib/libmpi.so "), Is.EqualTo(new[] { "/opt/mpi/lib/libmpi.so" }));
    }

    [TestCase("MPICH Version:\t4.0.2\nMPICH Release date: Thu Apr  7 12:34:45 CDT 2022", true)]
    [TestCase("Intel(R) MPI Library 2021.6 for Linux* OS", true)]
    [TestCase("MVAPICH2 Version      :\t2.3.7", true)]
    [TestCase("Open MPI v4.1.4, package: Debian OpenMPI", false)]
    [TestCase("Microsoft MPI 10.1", false)]
    public void TheMpichAbi_IsToldByTheVersionString(string version, bool mpich)
    {
        Assert.That(MpiLibrary.IsMpichFamily(version), Is.EqualTo(mpich));
        Assert.That(MpiLibrary.FirstLine("\n  " + version + "\nmore"), Is.EqualTo(version.Split('\n')[0].Replace('\t', ' ').Trim()), "tabs become spaces");
    }

    [Test]
    public void TheLauncher_IsToldByItsEnvironment()
    {
        static string? Env(string name, string value, string asked) => asked == name ? value : null;
        Assert.That(MpiLauncher.Describe(_ => null), Is.Null);
        Assert.That(MpiLauncher.Describe(n => Env("OMPI_COMM_WORLD_SIZE", "4", n)), Is.EqualTo("Open MPI mpirun (OMPI_COMM_WORLD_SIZE=4)"));
        Assert.That(MpiLauncher.Describe(n => Env("PMIX_RANK", "1", n)), Does.StartWith("a PMIx launcher").And.EndWith("(PMIX_RANK=1)"));
        Assert.That(MpiLauncher.Describe(n => Env("PMI_SIZE", "2", n)), Does.StartWith("a PMI launcher").And.EndWith("(PMI_SIZE=2)"));
        Assert.That(MpiLauncher.Describe(n => Env("PMI_RANK", "", n)), Is.Null, "an empty variable is no launcher");
    }

    [Test]
    public void ThePerCallLimit_IsAtLeastOneElement()
    {
        Assert.That(MpiCommunicator.MaxElementsPerCall, Is.EqualTo(int.MaxValue));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => MpiCommunicator.MaxElementsPerCall = 0)!;
        Assert.That(e.Message, Does.Contain("0"));
        Assert.That(MpiCommunicator.MaxElementsPerCall, Is.EqualTo(int.MaxValue));
    }
}
