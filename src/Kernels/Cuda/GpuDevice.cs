// The seam between the engine's CUDA backend and a device: memory, pinned staging, kernel launches,
// GEMMs (cuBLAS / cuBLASLt, described column-major exactly as those libraries take them), and stream
// capture into a graph. CudaGpu implements it over the driver API, cuBLAS and cuBLASLt. The tests
// implement it with host memory and a host emulation of the CUDA execution model that runs the very
// same .cu sources, so the backend's lowering of a Plan (offsets, shapes, argument lists, the
// row-major → column-major GEMM mapping, graph capture) is checked on machines without a GPU.
using System.Runtime.InteropServices;

namespace Backprop.Kernels.Cuda;

/// <summary>Per-step values written by the host before each step (native/cuda/common.cuh bp_step_consts).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct StepConstants
{
    /// <summary>The step t, 1-based.</summary>
    public ulong Step;
    /// <summary>The schedule's learning rate for this step.</summary>
    public float LearningRate;
    /// <summary>Adam: lr / (1 − β1^t); Adagrad: lr / (1 + (t − 1)·lr_decay).</summary>
    public float StepSize;
    /// <summary>Adam: sqrt(1 − β2^t).</summary>
    public float SqrtBiasCorrection2;
    /// <summary>AdamW: 1 − lr·wd.</summary>
    public float Decay;
    /// <summary>1 on the first step.</summary>
    public int First;
    private readonly int _pad;
}

/// <summary>What the device reports after a step (native/cuda/common.cuh bp_step_status).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct StepStatus
{
    /// <summary>Mean loss of the batch.</summary>
    public float Loss;
    /// <summary>Global gradient norm (with clip-norm).</summary>
    public float Norm;
    /// <summary>Clip-norm scale applied to the gradients.</summary>
    public float ClipScale;
    /// <summary>0: the update ran; 1: the loss was not finite; 2: a gradient was not finite (and the update was skipped).</summary>
    public int Skip;
}

/// <summary>
/// One GEMM as cuBLAS/cuBLASLt take it, column-major: D[M×N] = epilogue(op(A)·op(B) (+ bias[M])), op(A) is M×K,
/// op(B) is K×N. Aux (with leading dimension AuxLd) holds the pre-activation for the *_AUX epilogues.
/// <see cref="LtEpilogue.Default"/> with no bias runs as cublasSgemm; anything else as cublasLtMatmul. With <paramref name="Bf16"/>,
/// A and B hold bf16 values (2 bytes each; leading dimensions in elements) and the product accumulates in float32 into a float D.
/// With <paramref name="Accumulate"/> the product is added to D (beta = 1; D is also the C operand).
/// </summary>
public readonly record struct GemmDesc(LtEpilogue Epilogue, bool TransA, bool TransB, int M, int N, int K,
    ulong A, int Lda, ulong B, int Ldb, ulong D, int Ldd, ulong Bias = 0, ulong Aux = 0, int AuxLd = 0, bool Bf16 = false, bool Accumulate = false)
{
    /// <summary>
    /// Row-major C[m×n] = op(A)[m×k]·op(B)[k×n] (+ bias[n] per column), as the CPU's Gemm takes it, expressed as the
    /// column-major problem Cᵀ = op(B)ᵀ·op(A)ᵀ: operands swapped, M = n, N = m, and the bias runs along Cᵀ's rows.
    /// </summary>
    public static GemmDesc RowMajor(LtEpilogue epilogue, bool transA, bool transB, int m, int n, int k, ulong a, int lda, ulong b, int ldb,
        ulong c, int ldc, ulong bias = 0, ulong aux = 0, int auxLd = 0, bool bf16 = false, bool accumulate = false) =>
        new(epilogue, transB, transA, n, m, k, b, ldb, a, lda, c, ldc, bias, aux, auxLd, bf16, accumulate);

    /// <summary>True when this needs cuBLASLt (an epilogue, a bias or bf16 operands); else plain cublasSgemm does it.</summary>
    public bool NeedsLt => Epilogue != LtEpilogue.Default || Bias != 0 || Bf16;

    /// <summary>True for the epilogues that write (forward) or read (backward) the aux matrix.</summary>
    public bool UsesAux => Epilogue is LtEpilogue.ReluAuxBias or LtEpilogue.GeluAuxBias or LtEpilogue.DReluBGrad or LtEpilogue.DGeluBGrad;

    /// <summary>Throws naming the value when a size or leading dimension cannot describe the matrices.</summary>
    public void Validate()
    {
        if (M < 1 || N < 1 || K < 1) throw new ArgumentException($"GEMM sizes must be positive; got M={M}, N={N}, K={K}.");
        int aRows = TransA ? K : M, bRows = TransB ? N : K;
        if (Lda < aRows) throw new ArgumentException($"lda = {Lda} is less than op(A)'s stored rows {aRows} (M={M}, K={K}, transA={TransA}).");
        if (Ldb < bRows) throw new ArgumentException($"ldb = {Ldb} is less than op(B)'s stored rows {bRows} (K={K}, N={N}, transB={TransB}).");
        if (Ldd < M) throw new ArgumentException($"ldd = {Ldd} is less than M = {M}.");
        if (A == 0 || B == 0 || D == 0) throw new ArgumentException("GEMM operands must be device pointers; got a null pointer.");
        bool wantsBias = Epilogue is LtEpilogue.Bias or LtEpilogue.ReluBias or LtEpilogue.ReluAuxBias or LtEpilogue.GeluBias or LtEpilogue.GeluAuxBias
            or LtEpilogue.DReluBGrad or LtEpilogue.DGeluBGrad;
        if (wantsBias && Bias == 0) throw new ArgumentException($"epilogue {Epilogue} needs a bias pointer.");
        if (UsesAux && (Aux == 0 || AuxLd < M)) throw new ArgumentException($"epilogue {Epilogue} needs an aux matrix with ld >= M = {M}; got aux {(Aux == 0 ? "null" : "set")}, ld {AuxLd}.");
    }
}

/// <summary>A device the CUDA backend runs on. Work is ordered on one stream; copies and launches are asynchronous until <see cref="Synchronize"/>.</summary>
public interface IGpuDevice : IDisposable
{
    /// <summary>A human-readable description (name, compute capability, memory).</summary>
    string Description { get; }
    /// <summary>Streaming multiprocessors (sizes grid-stride launches).</summary>
    int Multiprocessors { get; }
    /// <summary>The stream every copy, launch and GEMM is ordered on (CUstream; what NCCL's collectives are enqueued on).</summary>
    nint Stream { get; }
    /// <summary>Device memory, at least 256-byte aligned.</summary>
    ulong Allocate(long bytes);
    /// <summary>Frees <see cref="Allocate"/>'s memory.</summary>
    void Free(ulong address);
    /// <summary>Page-locked host memory for staging copies.</summary>
    nint AllocatePinned(long bytes);
    /// <summary>Frees <see cref="AllocatePinned"/>'s memory.</summary>
    void FreePinned(nint address);
    /// <summary>Host → device copy, ordered on the stream (and captured into a graph while capturing).</summary>
    void CopyToDevice(ulong destination, nint source, long bytes);
    /// <summary>Device → host copy, ordered on the stream.</summary>
    void CopyToHost(nint destination, ulong source, long bytes);
    /// <summary>Waits for all work on the stream.</summary>
    void Synchronize();
    /// <summary>A kernel <paramref name="name"/> from the embedded source <paramref name="source"/> (compiled and loaded on first use).</summary>
    nint GetFunction(string source, string name);
    /// <summary>Launches a 1-D grid of <paramref name="block"/>-thread blocks with <paramref name="args"/> (cuLaunchKernel's kernelParams).</summary>
    void Launch(nint kernel, uint grid, uint block, KernelArgs args);
    /// <summary>Prepares a GEMM once (descriptors, layouts, algorithm); the handle lives as long as the device.</summary>
    nint PrepareGemm(in GemmDesc desc);
    /// <summary>Runs a prepared GEMM on the stream.</summary>
    void Gemm(nint prepared);
    /// <summary>Starts capturing the stream's work into a graph instead of running it.</summary>
    void BeginCapture();
    /// <summary>Ends the capture and returns the instantiated graph.</summary>
    nint EndCapture();
    /// <summary>Replays an instantiated graph on the stream.</summary>
    void LaunchGraph(nint graph);
    /// <summary>Frees an instantiated graph.</summary>
    void DestroyGraph(nint graph);
}

/// <summary>
/// The argument list of one kernel launch in native memory: each argument in its own 8-byte slot and an
/// array of pointers to the slots (cuLaunchKernel's kernelParams). Built once, argument by typed argument
/// (<c>new KernelArgs(3).Address(x).I64(n).F32(scale)</c>); launching it allocates nothing.
/// </summary>
public sealed unsafe class KernelArgs : IDisposable
{
    private byte* _slots;
    private nint* _pointers;
    private readonly char[] _signature;

    /// <summary>An empty list with room for <paramref name="capacity"/> arguments.</summary>
    public KernelArgs(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(capacity);
        _signature = new char[capacity];
        _slots = (byte*)NativeMemory.AllocZeroed((nuint)Math.Max(1, capacity * 8));
        _pointers = (nint*)NativeMemory.AllocZeroed((nuint)Math.Max(1, capacity * sizeof(nint)));
    }

    /// <summary>The number of arguments added.</summary>
    public int Count { get; private set; }

    /// <summary>
    /// One letter per argument: 'u' ulong (a device pointer or a 64-bit unsigned integer), 'q' long, 'i' int or uint,
    /// 'f' float, 'd' double.
    /// </summary>
    public string Signature => new(_signature, 0, Count);

    private byte* Next(char kind)
    {
        ObjectDisposedException.ThrowIf(_slots == null, this);
        if (Count == _signature.Length)
            throw new InvalidOperationException($"this argument list holds {_signature.Length} arguments; argument {Count + 1} does not fit.");
        byte* slot = _slots + 8 * Count;
        _pointers[Count] = (nint)slot;
        _signature[Count++] = kind;
        return slot;
    }

    /// <summary>Adds a device pointer (0 for null).</summary>
    public KernelArgs Address(ulong address) { *(ulong*)Next('u') = address; return this; }
    /// <summary>Adds a 64-bit unsigned integer.</summary>
    public KernelArgs U64(ulong value) { *(ulong*)Next('u') = value; return this; }
    /// <summary>Adds a 64-bit signed integer (long long).</summary>
    public KernelArgs I64(long value) { *(long*)Next('q') = value; return this; }
    /// <summary>Adds a 32-bit signed integer.</summary>
    public KernelArgs I32(int value) { *(int*)Next('i') = value; return this; }
    /// <summary>Adds a 32-bit unsigned integer.</summary>
    public KernelArgs U32(uint value) { *(uint*)Next('i') = value; return this; }
    /// <summary>Adds a float.</summary>
    public KernelArgs F32(float value) { *(float*)Next('f') = value; return this; }
    /// <summary>Adds a double.</summary>
    public KernelArgs F64(double value) { *(double*)Next('d') = value; return this; }

    /// <summary>
    /// Whether these arguments fit a kernel whose parameters are <paramref name="kernel"/> ('p' pointer, 'q' 8-byte integer,
    /// 'i' 4-byte integer, 'f' float, 'd' double): same count, and each value of the parameter's size and kind.
    /// </summary>
    public bool Fits(string kernel)
    {
        if (kernel.Length != Count) return false;
        for (int i = 0; i < Count; i++)
        {
            char a = Signature[i], k = kernel[i];
            bool ok = k switch { 'p' => a == 'u', 'q' => a is 'u' or 'q', _ => a == k };
            if (!ok) return false;
        }
        return true;
    }

    /// <summary>The kernelParams array.</summary>
    public nint KernelParams => (nint)_pointers;

    /// <summary>Frees the native memory.</summary>
    public void Dispose()
    {
        if (_slots == null) return;
        NativeMemory.Free(_slots);
        NativeMemory.Free(_pointers);
        _slots = null;
        _pointers = null;
    }
}
