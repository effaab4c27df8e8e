// Data-parallel training: the seam between the engine and a distributed runtime. Each process (rank) holds
// the whole model and passes the whole global batch to Step; the batch is split into Accumulate × Size
// contiguous micro-batches of near-equal size, and rank r runs micro-batches r, r + Size, r + 2·Size, …
// (round k runs micro-batch k·Size + r on every rank at once). The gradients of all micro-batches are then
// summed and every rank applies the same update.
// A batch smaller than Accumulate × Size (an epoch's last) leaves micro-batches empty: an empty one adds
// zero gradients (exact, so the fold stays the same for every spread).
//   Deterministic: after each round the gradients are exchanged (all-to-all: rank r receives chunk r of every
//                  rank's gradient) and each rank folds its chunk in micro-batch order (round by round, rank by
//                  rank); an all-gather of the folded chunks gives every rank the sum. The sum is the left fold
//                  over micro-batches 0, 1, …, M − 1, so N ranks equal one process accumulating N micro-batches
//                  bit for bit, and any split of the same M micro-batches over ranks and rounds gives the same
//                  weights. It moves Accumulate times the gradient bytes of one all-reduce.
//   Fast:          each rank accumulates its micro-batches locally, then one MPI_Allreduce of the gradient
//                  (the library's own order: reproducible for a fixed world size only). With Overlap (and no
//                  accumulation) each layer's sum starts as soon as the backward pass has written its
//                  gradients, and runs while the layers before it go backward.
namespace Backprop.Engine.Training;

/// <summary>How gradients are summed across processes.</summary>
public enum ReductionMode
{
    /// <summary>In micro-batch order, whatever the world size: bit for bit one process accumulating the same micro-batches (the default).</summary>
    Deterministic,
    /// <summary>The MPI library's all-reduce: less traffic with accumulation, reproducible for a fixed world size only.</summary>
    Fast,
}

/// <summary>The collective operations data-parallel training needs, over the processes of one job (an MPI communicator, or a test double).</summary>
public unsafe interface ICollectives
{
    /// <summary>This process's index in [0, Size).</summary>
    int Rank { get; }
    /// <summary>Processes in the job.</summary>
    int Size { get; }
    /// <summary>Starts an in-place sum over ranks of <paramref name="buffer"/> and returns; the buffer is not touched until <see cref="WaitAll"/>.</summary>
    void StartAllreduceSum(float* buffer, long count);
    /// <summary>Lets started sums progress (between other work).</summary>
    void Progress();
    /// <summary>Waits for every started sum.</summary>
    void WaitAll();
    /// <summary>Block j of <paramref name="send"/> ([Size, count]) goes to rank j; <paramref name="recv"/> ([Size, count]) receives block r of every rank r.</summary>
    void Alltoall(float* send, float* recv, long countPerRank);
    /// <summary><paramref name="recv"/> ([Size, count]) receives every rank's <paramref name="send"/> ([count]), in rank order.</summary>
    void Allgather(float* send, float* recv, long countPerRank);
    /// <summary>As the float overload, for doubles.</summary>
    void Allgather(double* send, double* recv, long countPerRank);
    /// <summary>The elementwise sum over ranks, in place, in the library's own order.</summary>
    void AllreduceSum(float* buffer, long count);
    /// <summary>Rank <paramref name="root"/>'s bytes into every rank's <paramref name="buffer"/>.</summary>
    void Broadcast(void* buffer, long bytes, int root);
}

/// <summary>Data-parallel training: the job's collectives and how gradients are summed.</summary>
public sealed record DistributedOptions(ICollectives Collectives, ReductionMode Mode = ReductionMode.Deterministic)
{
    /// <summary>
    /// The Cuda backend: makes this process's device communicator (NcclCommunicator.Create over the job's collectives), which sums the
    /// gradients on the device in the same order as the CPU backend's exchange. Called once, when the model is built.
    /// </summary>
    public Func<Kernels.Cuda.IGpuDevice, Kernels.Cuda.NcclCommunicator>? DeviceCollectives { get; init; }

    /// <summary>
    /// Fast mode without accumulation, CPU backends: start summing each layer's gradients as soon as its backward pass has written
    /// them (MPI_Iallreduce, progressed between the kernels of the layers before it), instead of one sum after the backward pass.
    /// The same sums (for two ranks bit for bit); whether it pays depends on the network (README).
    /// </summary>
    public bool Overlap { get; init; }

    /// <summary>
    /// Where micro-batch <paramref name="m"/> of <paramref name="microBatches"/> lies in a batch of <paramref name="batch"/> samples: contiguous,
    /// the first batch % M one longer; a batch smaller than M (an epoch's last) leaves the last micro-batches empty.
    /// </summary>
    public static (int Start, int Count) MicroBatch(int batch, int microBatches, int m)
    {
        if (microBatches < 1 || batch < 0 || (uint)m >= (uint)microBatches)
            throw new ArgumentOutOfRangeException(nameof(m), m, $"micro-batch {m} of {microBatches} in a batch of {batch}: expected 0 <= m < M and batch >= 0.");
        int q = batch / microBatches, rem = batch % microBatches;
        return (m * q + Math.Min(m, rem), q + (m < rem ? 1 : 0));
    }
}
