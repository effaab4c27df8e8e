// ICollectives over an MPI communicator (Backprop.Kernels.Mpi, the project's P/Invoke binding): what
// data-parallel training runs on across processes and machines.
using Backprop.Kernels.Mpi;

namespace Backprop.Engine.Training;

/// <summary>The collectives of an MPI communicator.</summary>
public sealed unsafe class MpiCollectives(MpiCommunicator comm) : ICollectives
{
    /// <inheritdoc />
    public int Rank => comm.Rank;
    /// <inheritdoc />
    public int Size => comm.Size;
    /// <inheritdoc />
    public void Alltoall(float* send, float* recv, long countPerRank) => comm.Alltoall(send, recv, countPerRank);
    /// <inheritdoc />
    public void Allgather(float* send, float* recv, long countPerRank) => comm.Allgather(send, recv, countPerRank);
    /// <inheritdoc />
    public void Allgather(double* send, double* recv, long countPerRank) => comm.Allgather(send, recv, countPerRank);
    /// <inheritdoc />
    public void AllreduceSum(float* buffer, long count) => comm.AllreduceSum(buffer, count);
    /// <inheritdoc />
    public void StartAllreduceSum(float* buffer, long count) => comm.StartAllreduceSum(buffer, count);
    /// <inheritdoc />
    public void Progress() => comm.Progress();
    /// <inheritdoc />
    public void WaitAll() => comm.WaitAll();
    /// <inheritdoc />
    public void Broadcast(void* buffer, long bytes, int root) => comm.Broadcast(buffer, bytes, root);
}
