// MPI_COMM_WORLD of this process and the collectives a data-parallel training step needs, over
// caller-owned memory: Barrier, Broadcast (bytes), AllreduceSum in place (float, double), AllreduceMax of
// a 64-bit flag, Alltoall and Allgather (float, double; [rank][countPerRank] layouts), Wtime, Abort.
//
// Lifetime: InitWorld calls MPI_Init_thread(MPI_THREAD_FUNNELED) once per process and returns the one
// world; calling it again returns the same object until it is disposed. Dispose calls MPI_Finalize once
// (not when MPI was already finalized, and not when MPI was initialized by someone else, whose job it is);
// after that InitWorld throws, because MPI cannot be initialized twice in a process. MPI_Finalize may wait
// for every rank (Open MPI's does), so a rank that fails while the others may be inside a collective
// should Abort rather than dispose, or the job hangs. FUNNELED: every call
// but Abort must come from the thread that called InitWorld, which is checked.
//
// Counts: MPI counts are int. A buffer above MaxElementsPerCall elements (int.MaxValue unless a test
// lowers it) is split into several calls: Broadcast and Allreduce by consecutive ranges; Alltoall and
// Allgather, whose buffers interleave ranks, by column ranges [c, c+w) of every rank's block, sent as one
// element of a derived datatype (w contiguous elements, resized to the extent of a whole block), so the
// layout stays [rank][countPerRank]. A count of 0 makes no MPI call (on every rank alike: MPI wants the
// counts to agree). A collective allocates nothing on the managed heap.
//
// Signals: handlers the MPI library installs for SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGINT or SIGTERM (UCX
// does) are replaced by the ones from before it was loaded (SignalHandlers), or a null dereference in
// managed code would end the process instead of throwing.
//
// Errors: MPI_COMM_WORLD gets MPI_ERRORS_RETURN, so a failing call returns and throws MpiException (an
// InvalidOperationException with MPI_Error_string's text) instead of aborting the job.
using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;

namespace Backprop.Kernels.Mpi;

/// <summary>The MPI world of this process and its collectives over native buffers.</summary>
public sealed unsafe class MpiCommunicator : IDisposable
{
    private static readonly Lock s_gate = new();
    private static MpiCommunicator? s_world;
    private static int s_maxElementsPerCall = int.MaxValue;

    private readonly MpiLibrary _mpi;
    private readonly nint _comm;
    private readonly bool _owned;
    private readonly int _thread;
    private bool _disposed;

    /// <summary>
    /// The most elements one MPI call moves (per rank block for Alltoall/Allgather); larger buffers are split.
    /// int.MaxValue, MPI's own limit; tests lower it to exercise the split with small buffers.
    /// </summary>
    internal static int MaxElementsPerCall
    {
        get => s_maxElementsPerCall;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            s_maxElementsPerCall = value;
        }
    }

    /// <summary>How many collective MPI calls this communicator has made (to see the split at work).</summary>
    internal long NativeCalls { get; private set; }

    /// <summary>True when the environment says an MPI launcher (mpirun, mpiexec, srun, ...) started this process.</summary>
    public static bool LauncherDetected => LauncherDescription is not null;

    /// <summary>This process's rank and the world size from the launcher's environment, before any MPI call (null outside a launcher, or when it does not say).</summary>
    public static (int Rank, int Size)? LauncherRank => MpiLauncher.RankAndSize(Environment.GetEnvironmentVariable);

    /// <summary>Which launcher started this process and the variable that says so (e.g. "Open MPI mpirun (OMPI_COMM_WORLD_SIZE=2)"), or null.</summary>
    public static string? LauncherDescription => MpiLauncher.Describe(Environment.GetEnvironmentVariable);

    /// <summary>The environment variable that names the MPI library to load (a file name or path) instead of the default list.</summary>
    public const string LibraryVariable = MpiLibrary.LibraryVariable;

    /// <summary>What to install when no MPI library loads.</summary>
    public const string InstallHint = MpiLibrary.InstallHint;

    /// <summary>True when an MPI library loads (probing it once).</summary>
    public static bool IsAvailable => MpiLibrary.Default.Library is not null;

    /// <summary>Why no MPI library loads, with what to install (null when one does).</summary>
    public static string? UnavailableReason => MpiLibrary.Default.Error;

    /// <summary>This process's rank in the world, 0 ≤ Rank &lt; Size.</summary>
    public int Rank { get; }

    /// <summary>The number of processes in the world (1 for a singleton started without a launcher).</summary>
    public int Size { get; }

    /// <summary>The file name of the MPI library that loaded (e.g. libmpi.so.40).</summary>
    public string LibraryName => _mpi.Name;

    /// <summary>The first line of MPI_Get_library_version (e.g. "Open MPI v4.1.4, package: Debian OpenMPI, ...").</summary>
    public string LibraryVersion { get; }

    /// <summary>MPI_Get_processor_name: the host this rank runs on.</summary>
    public string ProcessorName { get; }

    /// <summary>
    /// The signals whose handlers the MPI library replaced when it loaded or in MPI_Init and that were put back, so that .NET's
    /// exceptions (NullReferenceException from SIGSEGV, ...) and SIGINT/SIGTERM handling keep working; e.g. SIGSEGV under UCX.
    /// </summary>
    public IReadOnlyList<string> RestoredSignalHandlers => _mpi.RestoredSignals;

    /// <summary>The thread level MPI provides (MPI_THREAD_SINGLE 0, FUNNELED 1, SERIALIZED 2, MULTIPLE 3).</summary>
    public int ThreadLevel { get; }

    private MpiCommunicator(MpiLibrary mpi, bool owned, int threadLevel)
    {
        _mpi = mpi;
        _comm = mpi.CommWorld;
        _owned = owned;
        _thread = Environment.CurrentManagedThreadId;
        ThreadLevel = threadLevel;
        mpi.Check(mpi.CommSetErrhandler(_comm, mpi.ErrorsReturn), "MPI_Comm_set_errhandler");
        int rank = 0, size = 0;
        mpi.Check(mpi.CommRank(_comm, &rank), "MPI_Comm_rank");
        mpi.Check(mpi.CommSize(_comm, &size), "MPI_Comm_size");
        Rank = rank;
        Size = size;
        LibraryVersion = MpiLibrary.FirstLine(mpi.QueryLibraryVersion());
        ProcessorName = mpi.QueryProcessorName();
    }

    /// <summary>
    /// Initializes MPI (MPI_Init_thread with MPI_THREAD_FUNNELED) and returns MPI_COMM_WORLD; under a launcher the
    /// world has its ranks, without one it is a singleton of one rank. Called again, returns the same world until it is
    /// disposed. Throws <see cref="DllNotFoundException"/> (with what to install) when no MPI library loads, and
    /// <see cref="InvalidOperationException"/> when the world was disposed, since MPI cannot be initialized twice.
    /// </summary>
    public static MpiCommunicator InitWorld()
    {
        lock (s_gate)
        {
            if (s_world is { } world)
            {
                if (world._disposed)
                    throw new InvalidOperationException("MPI was finalized in this process when its world was disposed; MPI cannot be initialized twice in one process.");
                return world;
            }
            var (mpi, error) = MpiLibrary.Default;
            if (mpi is null) throw new DllNotFoundException(error);
            int finalized = 0, initialized = 0, provided = 0;
            mpi.Check(mpi.Finalized(&finalized), "MPI_Finalized");
            if (finalized != 0)
                throw new InvalidOperationException("MPI was already finalized in this process (outside this binding); it cannot be initialized again.");
            mpi.Check(mpi.Initialized(&initialized), "MPI_Initialized");
            bool owned = initialized == 0;
            if (owned)
            {
                mpi.Check(mpi.InitThread(MpiLibrary.ThreadFunneled, &provided), "MPI_Init_thread");
                mpi.RestoreSignalHandlers();
            }
            else mpi.Check(mpi.QueryThread(&provided), "MPI_Query_thread");
            s_world = new MpiCommunicator(mpi, owned, provided);
            return s_world;
        }
    }

    /// <summary>MPI_Barrier: returns when every rank has called it.</summary>
    public void Barrier()
    {
        EnsureUsable();
        NativeCalls++;
        _mpi.Check(_mpi.Barrier(_comm), "MPI_Barrier");
    }

    /// <summary>MPI_Bcast of <paramref name="bytes"/> bytes from <paramref name="root"/>'s buffer into every other rank's.</summary>
    public void Broadcast(void* buffer, long bytes, int root)
    {
        EnsureUsable();
        CheckBuffer(buffer, bytes, nameof(buffer), nameof(bytes));
        if ((uint)root >= (uint)Size)
            throw new ArgumentOutOfRangeException(nameof(root), root, $"root must be a rank of the world, 0 to {Size - 1}; got {root}.");
        int limit = s_maxElementsPerCall;
        for (long done = 0; done < bytes;)
        {
            int n = (int)Math.Min(limit, bytes - done);
            NativeCalls++;
            _mpi.Check(_mpi.Bcast((byte*)buffer + done, n, _mpi.Byte, root, _comm), "MPI_Bcast");
            done += n;
        }
    }

    /// <summary>In place: <paramref name="buffer"/>[i] becomes the sum over ranks of their buffer[i], on every rank.</summary>
    public void AllreduceSum(float* buffer, long count) => AllreduceInPlace(buffer, count, sizeof(float), _mpi.Float, _mpi.OpSum);

    /// <summary>In place: <paramref name="buffer"/>[i] becomes the sum over ranks of their buffer[i], on every rank.</summary>
    public void AllreduceSum(double* buffer, long count) => AllreduceInPlace(buffer, count, sizeof(double), _mpi.Double, _mpi.OpSum);

    private const int MaxRequests = 256;
    private readonly nint* _requests = (nint*)NativeMemory.AllocZeroed(MaxRequests * (nuint)sizeof(nint));
    private int _pending;

    /// <summary>
    /// Starts an in-place sum over ranks of <paramref name="buffer"/> (MPI_Iallreduce) and returns at once: the buffer must not be
    /// touched until <see cref="WaitAll"/>. <see cref="Progress"/> between other work lets the library move it along.
    /// </summary>
    public void StartAllreduceSum(float* buffer, long count)
    {
        EnsureUsable();
        CheckBuffer(buffer, count * sizeof(float), nameof(buffer), nameof(count));
        int limit = s_maxElementsPerCall;
        for (long done = 0; done < count;)
        {
            if (_pending == MaxRequests) throw new InvalidOperationException($"more than {MaxRequests} sums in flight: wait for them first.");
            int n = (int)Math.Min(limit, count - done);
            NativeCalls++;
            _mpi.Check(_mpi.Iallreduce(_mpi.InPlace, buffer + done, n, _mpi.Float, _mpi.OpSum, _comm, _requests + _pending), "MPI_Iallreduce");
            _pending++;
            done += n;
        }
    }

    /// <summary>Lets the started sums progress (MPI_Testall); true when all have completed.</summary>
    public bool Progress()
    {
        EnsureUsable();
        if (_pending == 0) return true;
        int flag = 0;
        NativeCalls++;
        _mpi.Check(_mpi.Testall(_pending, _requests, &flag), "MPI_Testall");
        if (flag != 0) _pending = 0;
        return flag != 0;
    }

    /// <summary>Waits for every started sum (MPI_Waitall).</summary>
    public void WaitAll()
    {
        EnsureUsable();
        if (_pending == 0) return;
        NativeCalls++;
        _mpi.Check(_mpi.Waitall(_pending, _requests), "MPI_Waitall");
        _pending = 0;
    }

    /// <summary>The largest <paramref name="value"/> over all ranks (e.g. a "some rank must stop" flag), on every rank.</summary>
    public long AllreduceMax(long value)
    {
        EnsureUsable();
        long result = 0;
        NativeCalls++;
        _mpi.Check(_mpi.Allreduce(&value, &result, 1, _mpi.LongLong, _mpi.OpMax, _comm), "MPI_Allreduce");
        return result;
    }

    /// <summary>
    /// MPI_Alltoall: <paramref name="send"/> and <paramref name="recv"/> are [Size][countPerRank]; block j of this rank's send goes
    /// to rank j, and block i of recv comes from rank i. The buffers must not overlap.
    /// </summary>
    public void Alltoall(float* send, float* recv, long countPerRank) =>
        Exchange(true, send, recv, countPerRank, sizeof(float), _mpi.Float);

    /// <inheritdoc cref="Alltoall(float*, float*, long)"/>
    public void Alltoall(double* send, double* recv, long countPerRank) =>
        Exchange(true, send, recv, countPerRank, sizeof(double), _mpi.Double);

    /// <summary>
    /// MPI_Allgather: <paramref name="send"/> is [countPerRank], <paramref name="recv"/> is [Size][countPerRank] and block i of it
    /// is rank i's send, on every rank. The buffers must not overlap.
    /// </summary>
    public void Allgather(float* send, float* recv, long countPerRank) =>
        Exchange(false, send, recv, countPerRank, sizeof(float), _mpi.Float);

    /// <inheritdoc cref="Allgather(float*, float*, long)"/>
    public void Allgather(double* send, double* recv, long countPerRank) =>
        Exchange(false, send, recv, countPerRank, sizeof(double), _mpi.Double);

    /// <summary>MPI_Wtime: seconds since some time in the past, on this rank's clock.</summary>
    public double Wtime()
    {
        EnsureUsable();
        return _mpi.Wtime();
    }

    /// <summary>
    /// MPI_Abort: ends every rank of the world with <paramref name="errorCode"/> (mpirun's exit code). Does not return; may be
    /// called from any thread, since it is the way out when the thread that owns MPI is stuck.
    /// </summary>
    [DoesNotReturn]
    public void Abort(int errorCode)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        int result = _mpi.Abort(_comm, errorCode);
        _mpi.Check(result, "MPI_Abort");
        throw new InvalidOperationException($"MPI_Abort({errorCode}) returned instead of ending the job.");
    }

    /// <summary>MPI_Finalize, once, when this binding initialized MPI and nobody finalized it since. Collective: every rank must dispose.</summary>
    public void Dispose()
    {
        lock (s_gate)
        {
            if (_disposed) return;
            _disposed = true;
            NativeMemory.Free(_requests);
            if (!_owned) return;
            int finalized = 0;
            _mpi.Check(_mpi.Finalized(&finalized), "MPI_Finalized");
            if (finalized == 0) _mpi.Check(_mpi.Finalize(), "MPI_Finalize");
        }
    }

    private void AllreduceInPlace(void* buffer, long count, int elementSize, nint type, nint op)
    {
        EnsureUsable();
        CheckBuffer(buffer, count, nameof(buffer), nameof(count));
        int limit = s_maxElementsPerCall;
        for (long done = 0; done < count;)
        {
            int n = (int)Math.Min(limit, count - done);
            NativeCalls++;
            _mpi.Check(_mpi.Allreduce(_mpi.InPlace, (byte*)buffer + done * elementSize, n, type, op, _comm), "MPI_Allreduce");
            done += n;
        }
    }

    // Alltoall (alltoall true) or Allgather (false): recv is [Size][countPerRank]; send is the same for Alltoall, [countPerRank] for Allgather.
    private void Exchange(bool alltoall, void* send, void* recv, long countPerRank, int elementSize, nint type)
    {
        EnsureUsable();
        ArgumentOutOfRangeException.ThrowIfNegative(countPerRank);
        if (countPerRank > long.MaxValue / elementSize / Size)
            throw new ArgumentOutOfRangeException(nameof(countPerRank), countPerRank, $"countPerRank × {Size} ranks does not fit a 64-bit byte count; got {countPerRank}.");
        if (countPerRank == 0) return;
        long recvBytes = countPerRank * Size * elementSize, sendBytes = alltoall ? recvBytes : countPerRank * elementSize;
        CheckBuffer(send, 1, nameof(send), nameof(countPerRank));
        CheckBuffer(recv, 1, nameof(recv), nameof(countPerRank));
        if ((byte*)send < (byte*)recv + recvBytes && (byte*)recv < (byte*)send + sendBytes)
            throw new ArgumentException($"send and recv overlap ({sendBytes} bytes at 0x{(nint)send:x}, {recvBytes} bytes at 0x{(nint)recv:x}); MPI forbids aliased buffers, so pass separate ones.", nameof(recv));
        string call = alltoall ? "MPI_Alltoall" : "MPI_Allgather";
        int limit = s_maxElementsPerCall;
        if (countPerRank <= limit)
        {
            int n = (int)countPerRank;
            NativeCalls++;
            _mpi.Check(alltoall ? _mpi.Alltoall(send, n, type, recv, n, type, _comm) : _mpi.Allgather(send, n, type, recv, n, type, _comm), call);
            return;
        }
        nint full = 0, tail = 0;
        bool completed = false;
        try
        {
            full = ColumnType(limit, countPerRank, elementSize, type);
            long c = 0;
            for (; countPerRank - c >= limit; c += limit) ExchangeColumns(alltoall, send, recv, c, limit, full, elementSize, type, call);
            int rest = (int)(countPerRank - c);
            if (rest > 0)
            {
                tail = ColumnType(rest, countPerRank, elementSize, type);
                ExchangeColumns(alltoall, send, recv, c, rest, tail, elementSize, type, call);
            }
            completed = true;
        }
        finally
        {
            // Freed on every path; the codes are checked only when no other exception is on its way out.
            int freeFull = full != 0 ? _mpi.TypeFree(&full) : MpiLibrary.Success;
            int freeTail = tail != 0 ? _mpi.TypeFree(&tail) : MpiLibrary.Success;
            if (completed)
            {
                _mpi.Check(freeFull, "MPI_Type_free");
                _mpi.Check(freeTail, "MPI_Type_free");
            }
        }
    }

    // Columns [column, column + width) of every rank's block, as one element of columnType per rank.
    private void ExchangeColumns(bool alltoall, void* send, void* recv, long column, int width, nint columnType, int elementSize, nint type, string call)
    {
        byte* s = (byte*)send + column * elementSize, r = (byte*)recv + column * elementSize;
        NativeCalls++;
        _mpi.Check(alltoall
            ? _mpi.Alltoall(s, 1, columnType, r, 1, columnType, _comm)
            : _mpi.Allgather(s, width, type, r, 1, columnType, _comm), call);
    }

    // width contiguous elements whose extent is a whole block (stride elements), so block j of a buffer starts at j·stride.
    private nint ColumnType(int width, long stride, int elementSize, nint type)
    {
        nint contiguous = 0, column = 0;
        _mpi.Check(_mpi.TypeContiguous(width, type, &contiguous), "MPI_Type_contiguous");
        int resized = _mpi.TypeCreateResized(contiguous, 0, (nint)(stride * elementSize), &column);
        int freed = _mpi.TypeFree(&contiguous);     // the resized type keeps what it needs
        _mpi.Check(resized, "MPI_Type_create_resized");
        int committed = _mpi.TypeCommit(&column);
        if (committed != MpiLibrary.Success) _mpi.TypeFree(&column);
        _mpi.Check(committed, "MPI_Type_commit");
        _mpi.Check(freed, "MPI_Type_free");
        return column;
    }

    private void EnsureUsable()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Environment.CurrentManagedThreadId != _thread) ThrowWrongThread();
    }

    [DoesNotReturn]
    private void ThrowWrongThread() => throw new InvalidOperationException(
        $"MPI calls must come from the thread that initialized MPI (managed thread {_thread}; MPI_THREAD_FUNNELED), not from thread {Environment.CurrentManagedThreadId}.");

    private static void CheckBuffer(void* buffer, long count, string bufferName, string countName)
    {
        if (count < 0) throw new ArgumentOutOfRangeException(countName, count, $"{countName} must not be negative; got {count}.");
        if (buffer == null && count > 0) throw new ArgumentNullException(bufferName, $"{bufferName} is null but {countName} is {count}.");
    }
}
