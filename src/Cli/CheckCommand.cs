// `backprop check cuda`: the Cuda backend on this machine's GPU against the CPU backend (Diagnostics/CudaCheck);
// exit 1 when a check fails, 2 when there is no device.
// `backprop check mpi`: the MPI collectives of this process's world (Kernels/Mpi/MpiSelfCheck), under mpirun or
// alone as a singleton; rank 0 reports, other ranks speak only to say what failed there (stderr, "rank R: ...");
// exit 1 when a check fails on any rank, 2 when no MPI library loads.
using System.CommandLine;
using Backprop.Cli.Diagnostics;
using Backprop.Kernels.Cuda;
using Backprop.Kernels.Mpi;

namespace Backprop.Cli;

internal static class CheckCommand
{
    public static Command Create(TextWriter stdout)
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
            var results = CudaCheck.Run(() => CudaGpu.Open(), stdout, p.GetValue(only));
            if (results.Count == 0) throw new UsageException($"--case '{p.GetValue(only)}' matches no check.");
            int passed = results.Count(r => r.Passed);
            stdout.WriteLine($"{passed} of {results.Count} checks passed");
            return passed == results.Count ? 0 : 1;
        });
        check.Subcommands.Add(cuda);
        check.Subcommands.Add(CreateMpi(stdout));
        return check;
    }

    private static Command CreateMpi(TextWriter stdout)
    {
        var mpi = new Command("mpi", "The MPI collectives (broadcast, allreduce, alltoall, allgather, the split of large buffers) on rank-dependent " +
            "data, each rank against the result it computes itself. Run it under a launcher (mpirun -np 2 backprop check mpi) or alone " +
            $"as a one-rank world. ${MpiCommunicator.LibraryVariable} names the MPI library to load. Exit 1 when a check fails on any rank, 2 when no MPI library loads.");
        mpi.SetAction(p =>
        {
            var stderr = p.InvocationConfiguration.Error;
            MpiCommunicator world;
            try
            {
                world = MpiCommunicator.InitWorld();
            }
            catch (DllNotFoundException e)
            {
                throw new UsageException(e.Message);
            }
            using (world)
            {
                bool root = world.Rank == 0;
                if (root)
                {
                    stdout.WriteLine($"MPI library: {world.LibraryName}: {world.LibraryVersion}");
                    stdout.WriteLine($"world: {world.Size} rank{(world.Size == 1 ? "" : "s")}, started by {MpiCommunicator.LauncherDescription ?? "no launcher (a singleton)"}; rank 0 on {world.ProcessorName}");
                    if (world.RestoredSignalHandlers.Count > 0)
                        stdout.WriteLine($"signal handlers: the MPI library replaced those of {string.Join(", ", world.RestoredSignalHandlers)}; the ones .NET relies on were put back");
                }
                List<MpiCheckResult> results;
                try
                {
                    results = MpiSelfCheck.Run(world, r =>
                    {
                        if (!r.PassedHere && !root) stderr.WriteLine($"rank {world.Rank}: FAIL {r.Name}: {r.DetailHere}");
                        if (!root) return;
                        if (r.Passed) stdout.WriteLine($"ok   {r.Name}");
                        else stdout.WriteLine($"FAIL {r.Name}: {r.DetailHere ?? $"failed on {r.FailedRanks} other rank(s), whose stderr says how"}");
                    });
                }
                catch (Exception e) when (world.Size > 1)
                {
                    // The other ranks may be waiting in a collective, and MPI_Finalize (Dispose) would wait for them: end the job.
                    stderr.WriteLine($"rank {world.Rank}: internal error: {e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")}; aborting the MPI job.");
                    world.Abort(Commands.ExitInternal);
                    throw;  // not reached: Abort ends the process
                }
                int passed = results.Count(r => r.Passed);
                if (root) stdout.WriteLine($"{passed} of {results.Count} checks passed on {world.Size} rank{(world.Size == 1 ? "" : "s")}");
                return passed == results.Count ? 0 : 1;
            }
        });
        return mpi;
    }
}
