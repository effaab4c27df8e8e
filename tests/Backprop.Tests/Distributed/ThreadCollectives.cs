// A test double of ICollectives: N ranks as N threads of this process, meeting at a barrier. Each
// collective publishes the ranks' pointers, waits for all, copies, and waits again before any buffer
// may be reused, with the MPI semantics the engine relies on (block layout [rank][count], sums in rank order).
using Backprop.Engine.Training;

namespace Backprop.Tests.Distributed;

internal sealed unsafe class ThreadCollectives(ThreadCollectives.Hub hub, int rank) : ICollectives
{
    internal sealed class Hub(int size)
    {
        public readonly Barrier Barrier = new(size);
        public readonly nint[] Send = new nint[size], Recv = new nint[size];
        public int Size => size;
        public int Calls;
    }

    public int Rank => rank;
    public int Size => hub.Size;

    private void Publish(void* send, void* recv)
    {
        hub.Send[rank] = (nint)send;
        hub.Recv[rank] = (nint)recv;
        hub.Barrier.SignalAndWait();
    }

    public void Alltoall(float* send, float* recv, long countPerRank)
    {
        Publish(send, recv);
        for (int j = 0; j < Size; j++)
            new ReadOnlySpan<float>((float*)hub.Send[j] + rank * countPerRank, (int)countPerRank).CopyTo(new Span<float>(recv + j * countPerRank, (int)countPerRank));
        hub.Barrier.SignalAndWait();
        if (rank == 0) Interlocked.Increment(ref hub.Calls);
    }

    public void Allgather(float* send, float* recv, long countPerRank) => Gather(send, recv, countPerRank * sizeof(float));
    public void Allgather(double* send, double* recv, long countPerRank) => Gather(send, recv, countPerRank * sizeof(double));

    private void Gather(void* send, void* recv, long bytes)
    {
        Publish(send, recv);
        for (int j = 0; j < Size; j++) Buffer.MemoryCopy((void*)hub.Send[j], (byte*)recv + j * bytes, bytes, bytes);
        hub.Barrier.SignalAndWait();
    }

    public void AllreduceSum(float* buffer, long count)
    {
        Publish(buffer, buffer);
        var sum = new float[count];
        for (int j = 0; j < Size; j++)
        {
            var b = new ReadOnlySpan<float>((float*)hub.Send[j], (int)count);
            for (int i = 0; i < count; i++) sum[i] += b[i];
        }
        hub.Barrier.SignalAndWait();
        sum.CopyTo(new Span<float>(buffer, (int)count));
        hub.Barrier.SignalAndWait();
    }

    private readonly List<(nint Buffer, long Count)> _started = [];
    /// <summary>Sums started (StartAllreduceSum) and Progress calls so far.</summary>
    public int Started, Progressed;

    // Started sums run at WaitAll, in the order they were started (the same on every rank), as blocking sums.
    public void StartAllreduceSum(float* buffer, long count)
    {
        _started.Add(((nint)buffer, count));
        Started++;
    }

    public void Progress() => Progressed++;

    public void WaitAll()
    {
        foreach (var (b, n) in _started) AllreduceSum((float*)b, n);
        _started.Clear();
    }

    public void Broadcast(void* buffer, long bytes, int root)
    {
        Publish(buffer, buffer);
        if (rank != root) Buffer.MemoryCopy((void*)hub.Send[root], buffer, bytes, bytes);
        hub.Barrier.SignalAndWait();
    }

    /// <summary>Runs <paramref name="body"/>(rank, collectives) on <paramref name="size"/> threads and returns each rank's result.</summary>
    public static TResult[] Run<TResult>(int size, Func<int, ICollectives, TResult> body)
    {
        var hub = new Hub(size);
        var results = new TResult[size];
        var errors = new Exception?[size];
        var threads = Enumerable.Range(0, size).Select(r => new Thread(() =>
        {
            try { results[r] = body(r, new ThreadCollectives(hub, r)); }
            catch (Exception e)
            {
                errors[r] = e;
                hub.Barrier.RemoveParticipant();
            }
        })).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        if (errors.FirstOrDefault(e => e is not null) is { } first) throw new AggregateException($"rank {Array.IndexOf(errors, first)} failed", first);
        return results;
    }
}
