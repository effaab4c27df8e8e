// GemmContext: what a GEMM call needs besides its operands: the worker pool, the thread count,
// and the packing scratch (one A block and one B block per thread, 64-byte aligned native memory,
// allocated once here and reused by every call, so a call allocates nothing).
using System.Runtime.InteropServices;
using Backprop.Kernels.Threading;

namespace Backprop.Kernels.Cpu.Gemm;

/// <summary>
/// Threads and packing scratch for <see cref="Gemm"/>. A context is used by one GEMM at a time
/// (calls from several threads on one context are serialized).
/// </summary>
public sealed unsafe class GemmContext : IDisposable
{
    // Sized for the largest block of any micro-kernel, in bytes of double (the wider type).
    private const int MaxMcKc = 128 * 256;
    private const int MaxKcNc = 256 * 4096;

    [ThreadStatic] private static GemmContext? t_default;

    private readonly WorkerPool _pool;
    private readonly bool _ownsPool;
    private byte** _packs; // [2*t] = A block of thread t, [2*t+1] = B block of thread t
    private bool _disposed;

    /// <summary>Creates a context that splits each GEMM over up to <paramref name="threads"/> threads.</summary>
    public GemmContext(int threads) : this(threads, null) { }

    /// <summary>Creates a context that runs on <paramref name="pool"/> (or a new pool of <paramref name="threads"/> threads when null).</summary>
    public GemmContext(int threads, WorkerPool? pool)
    {
        if (threads < 1)
            throw new ArgumentOutOfRangeException(nameof(threads), threads, $"threads must be at least 1; got {threads}.");
        if (pool is not null && pool.Threads < threads)
            throw new ArgumentOutOfRangeException(nameof(threads), threads, $"threads must not exceed the pool's {pool.Threads} threads; got {threads}.");
        Threads = threads;
        _ownsPool = pool is null;
        _pool = pool ?? new WorkerPool(threads);
        _packs = (byte**)NativeMemory.AllocZeroed((nuint)(2 * threads), (nuint)sizeof(byte*));
        for (int t = 0; t < threads; t++)
        {
            _packs[2 * t] = (byte*)NativeMemory.AlignedAlloc(MaxMcKc * sizeof(double), 64);
            _packs[2 * t + 1] = (byte*)NativeMemory.AlignedAlloc(MaxKcNc * sizeof(double), 64);
        }
    }

    /// <summary>The most threads one GEMM is split over.</summary>
    public int Threads { get; }

    /// <summary>
    /// The calling thread's default context (created on first use, with
    /// <see cref="Environment.ProcessorCount"/> threads).
    /// </summary>
    public static GemmContext Default => t_default ??= new GemmContext(Environment.ProcessorCount);

    internal WorkerPool Pool
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _pool;
        }
    }

    /// <summary>Per-thread scratch: element 2t is thread t's A block, 2t+1 its B block.</summary>
    internal byte** Packs
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _packs;
        }
    }

    /// <summary>Frees the scratch and, if this context created it, stops the pool.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_ownsPool) _pool.Dispose();
        for (int t = 0; t < 2 * Threads; t++) NativeMemory.AlignedFree(_packs[t]);
        NativeMemory.Free(_packs);
        _packs = null;
        if (ReferenceEquals(t_default, this)) t_default = null;
    }
}
