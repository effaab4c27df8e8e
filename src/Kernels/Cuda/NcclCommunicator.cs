// One process's NCCL communicator on its device, bootstrapped through the host job (MPI): rank 0 makes the
// unique id, the host broadcasts its 128 bytes, then every rank joins with ncclCommInitRank(size, id, rank),
// in that order (a rank that joined before the id arrived would hang). Every collective runs on the device's
// own stream, so it is ordered after the backward pass that wrote the gradients and before the update that
// reads them, with no extra synchronization:
//   AllreduceSum: in place;  Allgather: [size, count] in rank order;
//   Alltoall:     block j of send to rank j, block r of every rank into recv[r], as one group of sends and receives.
namespace Backprop.Kernels.Cuda;

/// <summary>Device collectives over NCCL (or a test double of it) on one device's stream.</summary>
public sealed class NcclCommunicator : IDisposable
{
    private readonly INccl _nccl;
    private readonly IGpuDevice _gpu;
    private nint _comm;

    private NcclCommunicator(INccl nccl, IGpuDevice gpu, nint comm, int rank, int size)
    {
        _nccl = nccl;
        _gpu = gpu;
        _comm = comm;
        Rank = rank;
        Size = size;
    }

    /// <summary>This rank.</summary>
    public int Rank { get; }
    /// <summary>Ranks in the communicator.</summary>
    public int Size { get; }
    /// <summary>The library and world, for display.</summary>
    public string Description => $"{_nccl.Version}, {Size} ranks";

    /// <summary>
    /// Joins the communicator of <paramref name="size"/> ranks on <paramref name="gpu"/>: rank 0 makes the id and
    /// <paramref name="broadcastFromRank0"/> (the host job's broadcast of the bytes at the pointer) hands it to every rank.
    /// </summary>
    public static unsafe NcclCommunicator Create(INccl nccl, IGpuDevice gpu, int rank, int size, Action<nint, int> broadcastFromRank0)
    {
        ArgumentNullException.ThrowIfNull(nccl);
        ArgumentNullException.ThrowIfNull(gpu);
        if (size < 1 || (uint)rank >= (uint)size) throw new ArgumentOutOfRangeException(nameof(rank), rank, $"rank must be in [0, {size}) for {size} ranks.");
        var id = new byte[128];
        if (rank == 0) nccl.GetUniqueId(id);
        fixed (byte* p = id) broadcastFromRank0((nint)p, id.Length);
        return new NcclCommunicator(nccl, gpu, nccl.CommInitRank(size, id, rank), rank, size);
    }

    /// <summary>Sum over ranks of <paramref name="count"/> floats at <paramref name="buffer"/>, in place, on the device's stream.</summary>
    public void AllreduceSum(ulong buffer, long count) => _nccl.AllReduceSum(buffer, buffer, count, Comm, _gpu.Stream);

    /// <summary><paramref name="recv"/> [Size, count] receives every rank's <paramref name="send"/> [count], in rank order.</summary>
    public void Allgather(ulong send, ulong recv, long countPerRank) => _nccl.AllGather(send, recv, countPerRank, Comm, _gpu.Stream);

    /// <summary>Block j of <paramref name="send"/> ([Size, count]) to rank j; block r of every rank r into <paramref name="recv"/>[r].</summary>
    public void Alltoall(ulong send, ulong recv, long countPerRank)
    {
        ulong bytes = (ulong)countPerRank * sizeof(float);
        _nccl.GroupStart();
        try
        {
            for (int peer = 0; peer < Size; peer++)
            {
                _nccl.Send(send + (ulong)peer * bytes, countPerRank, peer, Comm, _gpu.Stream);
                _nccl.Recv(recv + (ulong)peer * bytes, countPerRank, peer, Comm, _gpu.Stream);
            }
        }
        finally { _nccl.GroupEnd(); }
    }

    private nint Comm => _comm != 0 ? _comm : throw new ObjectDisposedException(nameof(NcclCommunicator));

    /// <summary>Frees the communicator.</summary>
    public void Dispose()
    {
        if (_comm == 0) return;
        _nccl.CommDestroy(_comm);
        _comm = 0;
    }
}
