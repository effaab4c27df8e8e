// WorkerPool: a persistent set of worker threads that run one job at a time,
// split into static parts (part t of T runs on thread t; the caller is thread 0).
//
// Why not Parallel.For: it allocates per call and schedules dynamically, so neither
// "zero bytes per step" nor "the same thread computes the same range every time" holds.
// Here a dispatch publishes a function pointer and a pointer to the caller's job struct
// (it lives on the caller's stack, which cannot move), bumps a generation counter and
// waits for the workers to count down. Workers spin briefly, then sleep on a monitor.
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;

namespace Backprop.Kernels.Threading;

/// <summary>A job split into <c>parts</c> static pieces. <see cref="Execute"/> is called once per part.</summary>
public interface IParallelJob
{
    /// <summary>Runs piece <paramref name="part"/> of <paramref name="parts"/>.</summary>
    void Execute(int part, int parts);
}

/// <summary>
/// A persistent worker pool with an allocation-free dispatch. One job runs at a time
/// (concurrent callers are serialized); the calling thread runs part 0.
/// </summary>
public sealed unsafe class WorkerPool : IDisposable
{
    private const int SpinIterations = 2_000;

    private readonly Thread[] _workers;
    private readonly object _sleepLock = new();
    private readonly object _runLock = new();
    private delegate*<void*, int, int, void> _fn;
    private void* _ctx;
    private int _parts;
    private long _generation;
    private int _remaining;
    private int _sleepers;
    private volatile bool _disposed;
    private ExceptionDispatchInfo? _error;

    /// <summary>Creates a pool that runs jobs on <paramref name="threads"/> threads (the caller included).</summary>
    public WorkerPool(int threads)
    {
        if (threads < 1)
            throw new ArgumentOutOfRangeException(nameof(threads), threads, $"threads must be at least 1; got {threads}.");
        Threads = threads;
        _workers = new Thread[threads - 1];
        for (int i = 0; i < _workers.Length; i++)
        {
            int index = i + 1;
            _workers[i] = new Thread(() => WorkerLoop(index))
            {
                IsBackground = true,
                Name = $"backprop-worker-{index}",
            };
            _workers[i].Start();
        }
    }

    /// <summary>Number of threads a job is split over, the caller included.</summary>
    public int Threads { get; }

    /// <summary>Runs <paramref name="job"/> split into <paramref name="parts"/> pieces (1..Threads) and waits for all of them.</summary>
    public void Run<TJob>(ref TJob job, int parts) where TJob : unmanaged, IParallelJob
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (parts < 1 || parts > Threads)
            throw new ArgumentOutOfRangeException(nameof(parts), parts, $"parts must be in [1, {Threads}]; got {parts}.");
        if (parts == 1)
        {
            job.Execute(0, 1);
            return;
        }
        lock (_runLock)
        {
            fixed (TJob* p = &job)
            {
                _fn = &Invoke<TJob>;
                _ctx = p;
                _parts = parts;
                _error = null;
                Volatile.Write(ref _remaining, _workers.Length);
                Interlocked.Increment(ref _generation);
                if (Volatile.Read(ref _sleepers) > 0)
                {
                    lock (_sleepLock) Monitor.PulseAll(_sleepLock);
                }
                try
                {
                    job.Execute(0, parts);
                }
                finally
                {
                    var spin = new SpinWait();
                    while (Volatile.Read(ref _remaining) != 0) spin.SpinOnce(sleep1Threshold: -1);
                    _fn = null;
                    _ctx = null;
                }
                _error?.Throw();
            }
        }
    }

    private static void Invoke<TJob>(void* ctx, int part, int parts) where TJob : unmanaged, IParallelJob
        => ((TJob*)ctx)->Execute(part, parts);

    private void WorkerLoop(int index)
    {
        long seen = 0;
        while (true)
        {
            long gen = WaitForWork(seen);
            if (_disposed) return;
            seen = gen;
            int parts = _parts;
            if (index < parts)
            {
                try
                {
                    _fn(_ctx, index, parts);
                }
                catch (Exception e)
                {
                    _error = ExceptionDispatchInfo.Capture(e);
                }
            }
            Interlocked.Decrement(ref _remaining);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private long WaitForWork(long seen)
    {
        for (int i = 0; i < SpinIterations; i++)
        {
            long gen = Volatile.Read(ref _generation);
            if (gen != seen || _disposed) return gen;
            Thread.SpinWait(4);
        }
        lock (_sleepLock)
        {
            Interlocked.Increment(ref _sleepers);
            try
            {
                while (true)
                {
                    long gen = Volatile.Read(ref _generation);
                    if (gen != seen || _disposed) return gen;
                    Monitor.Wait(_sleepLock);
                }
            }
            finally
            {
                Interlocked.Decrement(ref _sleepers);
            }
        }
    }

    /// <summary>Stops the workers. Running a job afterwards throws <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        lock (_sleepLock) Monitor.PulseAll(_sleepLock);
        foreach (var t in _workers) t.Join();
    }
}
