// oneDNN's bf16 matmul on one shape, created once at a given OpenMP thread count (oneDNN sizes its work
// split when the primitive descriptor is created, and Execute runs at the same count):
//   C[m, n] = op(A) · op(B), op(X) = X (Transpose.N) or Xᵀ (Transpose.T)
// A and B come as float32 row-major, tightly packed: A is m x k (N) or k x m (T), B is k x n (N) or n x k (T).
// oneDNN sees the logical src [m, k] and weights [k, n]; a transposed operand is the same buffer described
// with tag ba (strides { 1, rows }) instead of ab. SetInputs reorders the float32 inputs to bf16 (round to
// nearest even), outside any timing: A into a bf16 buffer of its own layout (ab or ba, so the primitive
// itself handles op(A)), B into the layout the primitive prefers (weights format_tag any, e.g. BA16a64b2a).
// Execute runs dnnl_matmul (src/weights bf16, dst f32, no bias, f32 accumulation) and waits for the
// stream; C is plain f32 ab [m, n] (ldc = n), copied out by CopyOutput.
using System.Runtime.InteropServices;
using Backprop.Kernels.Cpu;

namespace Backprop.Cli.Bench;

/// <summary>
/// C[m, n] (float32, row-major, ldc = n) = op(A) · op(B) with A and B given as float32 row-major arrays,
/// converted once to bf16 (oneDNN reorder f32 -> bf16, outside any timing), multiplied by oneDNN's bf16 matmul
/// primitive (dnnl_matmul, src/weights bf16, dst f32), weights in the layout the primitive prefers (format_tag_any, reordered once).
/// </summary>
internal sealed unsafe class OneDnnMatmul : IDisposable
{
    private readonly int _threads;
    private readonly OneDnnOwned _owned = new();
    private nint _engine, _stream;
    private nint _matmul, _aToBf16, _bToWeights;
    private nint _mAF32, _mBF32;
    private float* _c;
    private DnnlExecArg* _args; // matmul [0..3), A reorder [3..5), B reorder [5..7)
    private bool _inputsSet, _disposed;

    private OneDnnMatmul(int m, int n, int k, Transpose transA, Transpose transB, int threads)
    {
        M = m;
        N = n;
        K = k;
        TransA = transA;
        TransB = transB;
        _threads = threads;
    }

    public int M { get; }
    public int N { get; }
    public int K { get; }
    public Transpose TransA { get; }
    public Transpose TransB { get; }

    /// <summary>The primitive's impl_info_str (e.g. "brg:avx512_core_bf16").</summary>
    public string Implementation { get; private set; } = "";

    /// <summary>The layout of bf16 B the primitive chose (oneDNN's notation, e.g. BA16a64b2a).</summary>
    public string WeightsFormat { get; private set; } = "";

    /// <summary>
    /// A bf16 matmul for C[m, n] = op(A) · op(B) with its own engine and stream. Sets the calling thread's
    /// OpenMP thread count to <paramref name="threads"/> (omp_set_num_threads), and leaves it there.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">m, n, k or threads below 1, or a transpose other than N or T.</exception>
    /// <exception cref="DllNotFoundException">oneDNN cannot be used.</exception>
    /// <exception cref="OneDnnException">oneDNN refused the shape (e.g. dnnl_unimplemented where the CPU has no bf16 matmul).</exception>
    public static OneDnnMatmul Create(int m, int n, int k, Transpose transA, Transpose transB, int threads)
    {
        if (m < 1) throw new ArgumentOutOfRangeException(nameof(m), m, $"m must be at least 1; got {m}.");
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), n, $"n must be at least 1; got {n}.");
        if (k < 1) throw new ArgumentOutOfRangeException(nameof(k), k, $"k must be at least 1; got {k}.");
        if (transA is not (Transpose.N or Transpose.T))
            throw new ArgumentOutOfRangeException(nameof(transA), transA, $"transA must be Transpose.N or Transpose.T; got {(int)transA}.");
        if (transB is not (Transpose.N or Transpose.T))
            throw new ArgumentOutOfRangeException(nameof(transB), transB, $"transB must be Transpose.N or Transpose.T; got {(int)transB}.");
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), threads, $"threads must be at least 1; got {threads}.");
        OneDnn.EnsureAvailable();

        var mm = new OneDnnMatmul(m, n, k, transA, transB, threads);
        try
        {
            mm.Build();
        }
        catch
        {
            mm.Dispose();
            throw;
        }
        return mm;
    }

    private void Build()
    {
        OneDnn.SetThreads(_threads);
        _args = (DnnlExecArg*)NativeMemory.AllocZeroed(7, (nuint)sizeof(DnnlExecArg));
        _engine = OneDnn.EngineCreate();
        _stream = OneDnn.StreamCreate(_engine);

        int tagA = TransA == Transpose.N ? OneDnn.TagAb : OneDnn.TagBa;
        int tagB = TransB == Transpose.N ? OneDnn.TagAb : OneDnn.TagBa;
        var aF32Md = OneDnn.Md2(OneDnn.F32, tagA, M, K);
        var aMd = OneDnn.Md2(OneDnn.Bf16, tagA, M, K);
        var bF32Md = OneDnn.Md2(OneDnn.F32, tagB, K, N);
        var bAnyMd = OneDnn.Md2(OneDnn.Bf16, OneDnn.TagAny, K, N);
        var cMd = OneDnn.Md2(OneDnn.F32, OneDnn.TagAb, M, N);

        var desc = OneDnn.Matmul(&aMd, &bAnyMd, null, &cMd);
        string what = $"matmul bf16 {M}x{N}x{K} {TransA}{TransB}";
        nint pd = _owned.Pd(OneDnn.PrimitiveDescCreate(&desc, 0, _engine, 0, what));
        var wMd = OneDnn.QueryMd(pd, OneDnn.QueryWeightsMd);
        var srcMd = OneDnn.QueryMd(pd, OneDnn.QuerySrcMd);
        var dstMd = OneDnn.QueryMd(pd, OneDnn.QueryDstMd);
        if (!OneDnn.MdEqual(&srcMd, &aMd) || !OneDnn.MdEqual(&dstMd, &cMd))
            throw new OneDnnException($"oneDNN: the {what} primitive changed the src or dst layout (src {OneDnn.FormatName(&srcMd)}, dst {OneDnn.FormatName(&dstMd)}); expected {OneDnn.FormatName(&aMd)} and ab.");
        Implementation = OneDnn.ImplInfo(pd);
        WeightsFormat = OneDnn.FormatName(&wMd);
        _matmul = _owned.Prim(pd, what);

        // The float32 inputs get their buffers in SetInputs; bf16 A, bf16 B (oneDNN's layout) and C are ours.
        _mAF32 = _owned.Mem(&aF32Md, _engine, null);
        _mBF32 = _owned.Mem(&bF32Md, _engine, null);
        nint mA = _owned.Mem(&aMd, _engine, _owned.Buffer(OneDnn.MdSize(&aMd)));
        nint mB = _owned.Mem(&wMd, _engine, _owned.Buffer(OneDnn.MdSize(&wMd)));
        long cBytes = OneDnn.MdSize(&cMd);
        if (cBytes != (long)M * N * sizeof(float))
            throw new OneDnnException($"oneDNN: the f32 ab descriptor of C [{M}, {N}] is {cBytes} bytes; expected {(long)M * N * sizeof(float)}.");
        _c = (float*)_owned.Buffer(cBytes);
        nint mC = _owned.Mem(&cMd, _engine, _c);

        _aToBf16 = _owned.Prim(_owned.Pd(OneDnn.ReorderDescCreate(&aF32Md, &aMd, _engine)), "reorder A f32 -> bf16");
        _bToWeights = _owned.Prim(_owned.Pd(OneDnn.ReorderDescCreate(&bF32Md, &wMd, _engine)), $"reorder B f32 -> bf16 {WeightsFormat}");

        _args[0] = new() { Arg = OneDnn.ArgSrc, Memory = mA };
        _args[1] = new() { Arg = OneDnn.ArgWeights, Memory = mB };
        _args[2] = new() { Arg = OneDnn.ArgDst, Memory = mC };
        _args[3] = new() { Arg = OneDnn.ArgFrom, Memory = _mAF32 };
        _args[4] = new() { Arg = OneDnn.ArgTo, Memory = mA };
        _args[5] = new() { Arg = OneDnn.ArgFrom, Memory = _mBF32 };
        _args[6] = new() { Arg = OneDnn.ArgTo, Memory = mB };
    }

    /// <summary>
    /// Reorders A (m x k, or k x m when transposed) and B (k x n, or n x k) from float32 into the bf16 memories
    /// the primitive reads (not timed); the pointers are not kept.
    /// </summary>
    public void SetInputs(float* a, float* b)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        EnsureThreads();
        try
        {
            OneDnn.MemorySetDataHandle(_mAF32, a);
            OneDnn.MemorySetDataHandle(_mBF32, b);
            OneDnn.Execute(_aToBf16, _stream, 2, _args + 3, "reorder A f32 -> bf16");
            OneDnn.Execute(_bToWeights, _stream, 2, _args + 5, "reorder B f32 -> bf16");
            _inputsSet = true;
        }
        finally
        {
            OneDnn.MemorySetDataHandle(_mAF32, null);
            OneDnn.MemorySetDataHandle(_mBF32, null);
        }
    }

    /// <summary>Runs the matmul primitive once and waits for the stream (what gets timed).</summary>
    public void Execute()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_inputsSet) throw new InvalidOperationException("OneDnnMatmul.Execute before SetInputs: the bf16 inputs are not set.");
        EnsureThreads();
        OneDnn.Execute(_matmul, _stream, 3, _args, "matmul bf16");
    }

    /// <summary>Copies C (m x n float32, row-major) to <paramref name="c"/>.</summary>
    public void CopyOutput(float* c)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(c);
        long bytes = (long)M * N * sizeof(float);
        System.Buffer.MemoryCopy(_c, c, bytes, bytes);
    }

    /// <summary>The calling thread runs oneDNN's OpenMP regions at the count given to <see cref="Create"/>.</summary>
    private void EnsureThreads()
    {
        if (OneDnn.MaxThreads != _threads) OneDnn.SetThreads(_threads);
    }





    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _owned.Dispose();
        if (_stream != 0) OneDnn.StreamDestroy(_stream);
        if (_engine != 0) OneDnn.EngineDestroy(_engine);
        NativeMemory.Free(_args);
    }
}
