// CpuContext: what a CPU kernel call needs besides its operands: the worker pool and thread count,
// the rung of the ISA ladder its kernels take, the operand precision of its float32 GEMMs (float32 or bf16), and the GEMM packing scratch (one A block and one B
// block per thread, 64-byte aligned native memory sized from the registered micro-kernels' block
// sizes, allocated once here and reused by every call, so a call allocates nothing).
using System.Runtime.InteropServices;
using Backprop.Kernels.Threading;

namespace Backprop.Kernels.Cpu;

/// <summary>
/// Threads, ISA path and packing scratch for the CPU kernels. A context is used by one kernel at a time
/// (calls from several threads on one context are serialized by its pool).
/// </summary>
public sealed unsafe class CpuContext : IDisposable
{
    [ThreadStatic] private static CpuContext? t_default;

    private readonly WorkerPool _pool;
    private readonly bool _ownsPool;
    private byte** _packs; // [2*t] = A block of thread t, [2*t+1] = B block of thread t
    private bool _disposed;

    /// <summary>A context that splits each call over up to <paramref name="threads"/> threads, on the best ISA path of this CPU.</summary>
    public CpuContext(int threads) : this(threads, null, null) { }

    /// <summary>
    /// A context on <paramref name="isa"/> (null: the best this CPU supports; a level it lacks throws
    /// <see cref="PlatformNotSupportedException"/>) running on <paramref name="pool"/> (null: a new pool of
    /// <paramref name="threads"/> threads).
    /// </summary>
    public CpuContext(int threads, Isa? isa, WorkerPool? pool = null) : this(threads, isa, pool, GemmPrecision.Fp32) { }

    /// <summary>
    /// As <see cref="CpuContext(int, Isa?, WorkerPool?)"/>, with the operand precision of its float32 GEMMs: <see cref="GemmPrecision.Bf16"/>
    /// throws <see cref="PlatformNotSupportedException"/> with the reason when this machine cannot run it (no AVX512_BF16, the native
    /// kernels not built) or when <paramref name="isa"/> forces a rung below Avx512.
    /// </summary>
    public CpuContext(int threads, Isa? isa, WorkerPool? pool, GemmPrecision precision)
    {
        if (!Enum.IsDefined(precision))
            throw new ArgumentOutOfRangeException(nameof(precision), precision, $"precision must be Fp32 or Bf16; got {(int)precision}.");
        if (threads < 1)
            throw new ArgumentOutOfRangeException(nameof(threads), threads, $"threads must be at least 1; got {threads}.");
        if (pool is not null && pool.Threads < threads)
            throw new ArgumentOutOfRangeException(nameof(threads), threads, $"threads must not exceed the pool's {pool.Threads} threads; got {threads}.");
        Isa = isa is { } forced ? CpuIsa.Require(forced) : CpuIsa.Supported;
        if (precision == GemmPrecision.Bf16)
        {
            Bf16Gemm.Require();
            if (Isa != Isa.Avx512)
                throw new PlatformNotSupportedException($"bf16 precision runs on the Avx512 rung (VDPBF16PS); this context was forced to {Isa}.");
            // (A machine whose best rung is below Avx512 fails Require above, with the reason.)
        }
        Precision = precision;
        Threads = threads;
        _ownsPool = pool is null;
        _pool = pool ?? new WorkerPool(threads);
        _packs = (byte**)NativeMemory.AllocZeroed((nuint)(2 * threads), (nuint)sizeof(byte*));
        var (packA, packB) = MicroKernels.PackBytes(Isa); // the GEMM dispatches on this rung only (the bf16 kernel is on Avx512's)
        for (int t = 0; t < threads; t++)
        {
            _packs[2 * t] = (byte*)NativeMemory.AlignedAlloc((nuint)packA, 64);
            _packs[2 * t + 1] = (byte*)NativeMemory.AlignedAlloc((nuint)packB, 64);
        }
    }

    /// <summary>The most threads one call is split over.</summary>
    public int Threads { get; }

    /// <summary>The operand precision of this context's float32 GEMMs.</summary>
    public GemmPrecision Precision { get; }

    /// <summary>The rung of the dispatch ladder this context's kernels take (at most <see cref="CpuIsa.Supported"/>).</summary>
    public Isa Isa { get; }

    /// <summary>
    /// The calling thread's default context (created on first use, with
    /// <see cref="Environment.ProcessorCount"/> threads and the best ISA path).
    /// </summary>
    public static CpuContext Default => t_default ??= new CpuContext(Environment.ProcessorCount);

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
