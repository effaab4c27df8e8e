// The checks behind `backprop check mpi`: every collective of MpiCommunicator on rank-dependent data,
// each rank comparing what it received with the result it computes locally (values chosen to be exact
// in float, so sums compare with ==), plus the split of buffers above the per-call limit (forced to 3
// elements), zero managed allocation per call, the FUNNELED thread rule, and that a managed null
// dereference still throws after MPI_Init (an MPI library that took over SIGSEGV would turn every NullReferenceException into a crash).
// After each check the ranks agree on it (a sum of failure flags), so every rank knows whether it passed
// everywhere; a rank whose own comparison failed has the detail.
using System.Globalization;
using System.Runtime.CompilerServices;

namespace Backprop.Kernels.Mpi;

/// <summary>
/// One check: <paramref name="Passed"/> on every rank, or not (<paramref name="FailedRanks"/> of them failed);
/// <paramref name="PassedHere"/> and <paramref name="DetailHere"/> are this rank's own result.
/// </summary>
public sealed record MpiCheckResult(string Name, bool Passed, int FailedRanks, bool PassedHere, string? DetailHere);

/// <summary>Checks the collectives of a world against locally computed results.</summary>
public static unsafe class MpiSelfCheck
{
    private const int SplitLimit = 3, AllocationRounds = 200;

    /// <summary>Runs every check on <paramref name="world"/> (a collective: every rank must call it), reporting each as it completes.</summary>
    public static List<MpiCheckResult> Run(MpiCommunicator world, Action<MpiCheckResult>? report = null)
    {
        ArgumentNullException.ThrowIfNull(world);
        int last = world.Size - 1;
        var checks = new (string Name, Func<MpiCommunicator, string?> Run)[]
        {
            ("barrier", Barrier),
            ("InitWorld again returns the same world", w => ReferenceEquals(MpiCommunicator.InitWorld(), w) ? null : "a second world object"),
            ("a call from another thread is refused (MPI_THREAD_FUNNELED)", OtherThread),
            ($"broadcast 1037 bytes from rank {last}", w => Broadcast(w, 1037, last)),
            ("broadcast 4 MiB from rank 0", w => Broadcast(w, 4 << 20, 0)),
            ("allreduce sum, float, 1037 elements", w => AllreduceFloat(w, 1037)),
            ("allreduce sum, float, 1048576 elements (4 MiB)", w => AllreduceFloat(w, 1 << 20)),
            ("allreduce sum, double, 1037 elements", w => AllreduceDouble(w, 1037)),
            ("nonblocking allreduce sum, float, 3 buffers started, progressed, waited", NonblockingAllreduce),
            ("allreduce max, int64", AllreduceMax),
            ("alltoall, float, 7 per rank", w => AlltoallFloat(w, 7)),
            ("alltoall, double, 7 per rank", w => AlltoallDouble(w, 7)),
            ("allgather, float, 13 per rank", w => AllgatherFloat(w, 13)),
            ("allgather, double, 13 per rank", w => AllgatherDouble(w, 13)),
            ($"split into calls of at most {SplitLimit} elements: broadcast, allreduce, alltoall, allgather", Split),
            ("wtime", Wtime),
            ($"no managed allocation in {AllocationRounds * 7} collective calls", NoAllocation),
            ("a managed null dereference still throws NullReferenceException", NullReference),
        };
        var results = new List<MpiCheckResult>(checks.Length);
        foreach (var (name, run) in checks)
        {
            string? detail;
            try
            {
                detail = run(world);
            }
            catch (Exception e) when (e is InvalidOperationException or ArgumentException)
            {
                detail = $"{e.GetType().Name}: {e.Message}";
            }
            double failed = detail is null ? 0 : 1;
            world.AllreduceSum(&failed, 1);
            var result = new MpiCheckResult(name, failed == 0, (int)failed, detail is null, detail);
            results.Add(result);
            report?.Invoke(result);
        }
        return results;
    }

    private static string? Barrier(MpiCommunicator w)
    {
        w.Barrier();
        return null;
    }

    // The refusal comes before any MPI call, so the other ranks are not left waiting in a collective.
    private static string? OtherThread(MpiCommunicator w)
    {
        string? detail = "Barrier from another thread did not throw";
        var thread = new Thread(() =>
        {
            try
            {
                w.Barrier();
            }
            catch (InvalidOperationException e) when (e.Message.Contains("thread that initialized MPI", StringComparison.Ordinal))
            {
                detail = null;
            }
        });
        thread.Start();
        thread.Join();
        return detail;
    }

    private static byte Pattern(long i, int root) => (byte)(i ^ (i >> 8) ^ (i >> 16) ^ (root * 37));

    private static string? Broadcast(MpiCommunicator w, int bytes, int root)
    {
        var buffer = new byte[bytes];
        for (int i = 0; i < bytes; i++) buffer[i] = w.Rank == root ? Pattern(i, root) : (byte)0xEE;
        fixed (byte* p = buffer) w.Broadcast(p, bytes, root);
        return Compare<byte>(buffer, i => Pattern(i, root));
    }

    // Rank r contributes r + (i mod 1024)·0.5: every partial sum is a multiple of 0.5 far below 2^23, so exact in float.
    private static string? AllreduceFloat(MpiCommunicator w, int count)
    {
        var buffer = new float[count];
        for (int i = 0; i < count; i++) buffer[i] = w.Rank + (i % 1024) * 0.5f;
        fixed (float* p = buffer) w.AllreduceSum(p, count);
        int s = w.Size;
        return Compare<float>(buffer, i => s * (s - 1) / 2 + s * (i % 1024) * 0.5f);
    }

    // Three buffers (1037, 5, 70000 elements) started one after another, progressed, then waited for.
    private static string? NonblockingAllreduce(MpiCommunicator w)
    {
        int[] counts = [1037, 5, 70000];
        var buffers = counts.Select(n => new float[n]).ToArray();
        var handles = new System.Runtime.InteropServices.GCHandle[buffers.Length];
        try
        {
            for (int b = 0; b < buffers.Length; b++)
            {
                for (int i = 0; i < counts[b]; i++) buffers[b][i] = w.Rank + (i % 1024) * 0.5f + b;
                handles[b] = System.Runtime.InteropServices.GCHandle.Alloc(buffers[b], System.Runtime.InteropServices.GCHandleType.Pinned);
                w.StartAllreduceSum((float*)handles[b].AddrOfPinnedObject(), counts[b]);
                w.Progress();
            }
            w.WaitAll();
            if (!w.Progress()) return "requests left after MPI_Waitall";
        }
        finally
        {
            foreach (var h in handles) if (h.IsAllocated) h.Free();
        }
        int s = w.Size;
        for (int b = 0; b < buffers.Length; b++)
            if (Compare<float>(buffers[b], i => s * (s - 1) / 2 + s * ((i % 1024) * 0.5f + b)) is { } bad) return $"buffer {b}: {bad}";
        return null;
    }

    private static string? AllreduceDouble(MpiCommunicator w, int count)
    {
        var buffer = new double[count];
        for (int i = 0; i < count; i++) buffer[i] = w.Rank * 0.25 + i * (w.Rank + 1.0);
        fixed (double* p = buffer) w.AllreduceSum(p, count);
        int s = w.Size;
        return Compare<double>(buffer, i => 0.25 * s * (s - 1) / 2 + i * (s * (s + 1) / 2.0));
    }

    private static string? AllreduceMax(MpiCommunicator w)
    {
        long high = w.AllreduceMax(((long)w.Rank << 40) + 7), low = w.AllreduceMax(-w.Rank - 1);
        long expectedHigh = ((long)(w.Size - 1) << 40) + 7;
        if (high != expectedHigh) return Invariant($"max of (rank << 40) + 7 is {high}, expected {expectedHigh}");
        return low == -1 ? null : Invariant($"max of -(rank + 1) is {low}, expected -1");
    }

    // Block j of rank r's send holds r·10000 + j·100 + k: what arrives in block i on rank r is i·10000 + r·100 + k.
    private static double Sent(int from, int to, int k) => from * 10000 + to * 100 + k + 0.25;

    private static string? AlltoallFloat(MpiCommunicator w, int per)
    {
        int s = w.Size, r = w.Rank;
        var send = new float[s * per];
        var recv = new float[s * per];
        for (int i = 0; i < send.Length; i++) send[i] = (float)Sent(r, i / per, i % per);
        fixed (float* ps = send) fixed (float* pr = recv) w.Alltoall(ps, pr, per);
        return Compare<float>(recv, i => (float)Sent(i / per, r, i % per));
    }

    private static string? AlltoallDouble(MpiCommunicator w, int per)
    {
        int s = w.Size, r = w.Rank;
        var send = new double[s * per];
        var recv = new double[s * per];
        for (int i = 0; i < send.Length; i++) send[i] = Sent(r, i / per, i % per);
        fixed (double* ps = send) fixed (double* pr = recv) w.Alltoall(ps, pr, per);
        return Compare<double>(recv, i => Sent(i / per, r, i % per));
    }

    private static double Gathered(int rank, int k) => rank * 1000 + k + 0.5;

    private static string? AllgatherFloat(MpiCommunicator w, int per)
    {
        var send = new float[per];
        var recv = new float[w.Size * per];
        for (int k = 0; k < per; k++) send[k] = (float)Gathered(w.Rank, k);
        fixed (float* ps = send) fixed (float* pr = recv) w.Allgather(ps, pr, per);
        return Compare<float>(recv, i => (float)Gathered(i / per, i % per));
    }

    private static string? AllgatherDouble(MpiCommunicator w, int per)
    {
        var send = new double[per];
        var recv = new double[w.Size * per];
        for (int k = 0; k < per; k++) send[k] = Gathered(w.Rank, k);
        fixed (double* ps = send) fixed (double* pr = recv) w.Allgather(ps, pr, per);
        return Compare<double>(recv, i => Gathered(i / per, i % per));
    }

    // Each collective with the limit at 3: the same results as unsplit, in the expected number of MPI calls.
    private static string? Split(MpiCommunicator w)
    {
        int saved = MpiCommunicator.MaxElementsPerCall;
        MpiCommunicator.MaxElementsPerCall = SplitLimit;
        try
        {
            var failures = new List<string>();
            void Step(string what, long calls, Func<string?> run)
            {
                long before = w.NativeCalls;
                var detail = run();
                long made = w.NativeCalls - before;
                if (detail is not null) failures.Add($"{what}: {detail}");
                else if (made != calls) failures.Add(Invariant($"{what}: {made} MPI calls, expected {calls}"));
            }
            Step("broadcast 10 bytes", 4, () => Broadcast(w, 10, 0));
            Step("allreduce float 10", 4, () => AllreduceFloat(w, 10));
            Step("allreduce double 10", 4, () => AllreduceDouble(w, 10));
            Step("alltoall float 7 per rank", 3, () => AlltoallFloat(w, 7));
            Step("alltoall double 6 per rank", 2, () => AlltoallDouble(w, 6));
            Step("allgather float 7 per rank", 3, () => AllgatherFloat(w, 7));
            Step("allgather double 8 per rank", 3, () => AllgatherDouble(w, 8));
            return failures.Count == 0 ? null : string.Join("; ", failures);
        }
        finally
        {
            MpiCommunicator.MaxElementsPerCall = saved;
        }
    }

    private static string? Wtime(MpiCommunicator w)
    {
        double t0 = w.Wtime();
        w.Barrier();
        double t1 = w.Wtime();
        return double.IsFinite(t0) && t1 >= t0 ? null : Invariant($"MPI_Wtime went from {t0} to {t1}");
    }

    private static string? NoAllocation(MpiCommunicator w)
    {
        int s = w.Size, per = 5;
        var floats = new float[s * per];
        var floats2 = new float[s * per];
        var doubles = new double[s * per];
        var doubles2 = new double[s * per];
        var bytes = new byte[64];
        fixed (float* f = floats) fixed (float* f2 = floats2) fixed (double* d = doubles) fixed (double* d2 = doubles2) fixed (byte* b = bytes)
        {
            Round(w, f, f2, d, d2, b, per);     // compiles everything first
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < AllocationRounds; i++) Round(w, f, f2, d, d2, b, per);
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            return allocated == 0 ? null : Invariant($"{allocated} bytes allocated on the managed heap");
        }
    }

    private static void Round(MpiCommunicator w, float* f, float* f2, double* d, double* d2, byte* b, int per)
    {
        w.Barrier();
        w.Broadcast(b, 64, 0);
        w.AllreduceSum(f, per);
        w.AllreduceSum(d, per);
        w.AllreduceMax(w.Rank);
        w.Alltoall(f, f2, per);
        w.Allgather(d, d2, per);
    }

    private static string? NullReference(MpiCommunicator w)
    {
        try
        {
            return Invariant($"reading a null string's length returned {LengthOf(null)}");
        }
        catch (NullReferenceException)
        {
            return null;
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static int LengthOf(string? s) => s!.Length;

    private static string? Compare<T>(ReadOnlySpan<T> got, Func<int, T> expected) where T : IEquatable<T>
    {
        int wrong = 0, first = -1;
        for (int i = 0; i < got.Length; i++)
        {
            if (got[i].Equals(expected(i))) continue;
            if (wrong++ == 0) first = i;
        }
        return wrong == 0 ? null
            : Invariant($"{wrong} of {got.Length} elements wrong, the first at index {first}: {got[first]}, expected {expected(first)}");
    }

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
