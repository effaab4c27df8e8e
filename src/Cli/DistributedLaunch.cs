// `train` under an MPI launcher: `--distributed auto` (the default) joins the MPI job when the process was
// started by mpirun/srun (their environment variables say so) and stays a lone process otherwise, without
// loading MPI at all; `--distributed mpi` requires MPI. Rank 0 alone prints and writes; another rank keeps
// quiet unless it fails. A failure on one rank that the others cannot see (a checkpoint write, an
// unexpected error) prints one line naming the rank and aborts the whole job (MPI_Abort), so no rank waits
// forever in a collective; the checkpoint on disk is the last one written whole (writes are atomic).
using Backprop.Engine.Training;
using Backprop.Kernels.Cuda;
using Backprop.Kernels.Mpi;

namespace Backprop.Cli;

internal sealed class DistributedLaunch : IDisposable
{
    private readonly MpiCommunicator _comm;
    private readonly TextWriter _stderr;

    private DistributedLaunch(MpiCommunicator comm, ReductionMode mode, bool overlap, TextWriter stderr)
    {
        _comm = comm;
        _stderr = stderr;
        // The Cuda backend's device communicator: NCCL, bootstrapped through this job (rank 0's id broadcast over MPI).
        Options = new DistributedOptions(new MpiCollectives(comm), mode)
        {
            Overlap = overlap,
            DeviceCollectives = gpu => NcclCommunicator.Create(NcclLibrary.Require(), gpu, comm.Rank, comm.Size, (p, n) => Broadcast(comm, p, n)),
        };
    }

    public DistributedOptions Options { get; }
    public MpiCommunicator Communicator => _comm;
    public int Rank => _comm.Rank;
    public int Size => _comm.Size;
    public string Describe => $"{Size} processes (MPI, {_comm.LibraryVersion}), {Options.Mode.ToString().ToLowerInvariant()} reduction{(Options.Overlap ? " overlapped with the backward pass" : "")}";

    /// <summary>The job this process belongs to, or null for a lone process (auto outside a launcher, or none).</summary>
    public static DistributedLaunch? Start(string flag, string mode, ReductionMode reduction, TextWriter stderr, bool overlap = false)
    {
        string kind = Flags.Choice(flag, mode, ("auto", "auto"), ("none", "none"), ("mpi", "mpi"));
        if (kind == "none" || kind == "auto" && !MpiCommunicator.LauncherDetected) return null;
        MpiCommunicator comm;
        try { comm = MpiCommunicator.InitWorld(); }
        catch (Exception e) when (e is InvalidOperationException or DllNotFoundException or EntryPointNotFoundException)
        {
            throw new UsageException($"{flag} {mode}: {e.Message}");
        }
        return new DistributedLaunch(comm, reduction, overlap, stderr);
    }

    /// <summary>Prints why this rank fails and stops every rank of the job; does not return.</summary>
    public void Abort(string message)
    {
        _stderr.WriteLine($"backprop: rank {Rank} of {Size}: {message.TrimEnd('.')}; stopping every rank of the job.");
        _stderr.Flush();
        Console.Out.Flush();
        _comm.Abort(1);
    }

    private static unsafe void Broadcast(MpiCommunicator comm, nint p, int bytes) => comm.Broadcast((void*)p, bytes, 0);

    public void Dispose() => _comm.Dispose();
}
