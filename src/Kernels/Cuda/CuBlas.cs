// cuBLAS and cuBLASLt through P/Invoke, probing the library names of CUDA 13, 12 and 11.
//   cuBLAS:   handle, stream, math mode (TF32 is off by default, MathMode.Tf32 opts in), cublasSgemm_v2.
//             Row-major C = op(A)·op(B) is issued as the column-major Cᵀ = op(B)ᵀ·op(A)ᵀ (operands swapped).
//   cuBLASLt: matmul descriptors with epilogues (bias, ReLU+bias, GELU+bias with aux output forward;
//             DReLU/DGELU with bias gradient backward), layouts, heuristics and cublasLtMatmul.
// Every status is checked and turned into CuBlasException naming the call and the status.
// Not yet exercised on a device in this project (no GPU was lent); the constants follow the cuBLAS
// documentation (cublasLtEpilogue_t, cublasLtMatmulDescAttributes_t).
using System.Runtime.InteropServices;
using Backprop.Kernels.Native;

namespace Backprop.Kernels.Cuda;

/// <summary>A cuBLAS or cuBLASLt call failed.</summary>
public sealed class CuBlasException(string call, int status)
    : Exception($"{call} failed with {CuBlas.StatusName(status)} ({status}).")
{
    /// <summary>The function that failed.</summary>
    public string Call { get; } = call;
    /// <summary>The cublasStatus_t code.</summary>
    public int Status { get; } = status;
}

/// <summary>cuBLASLt epilogues (cublasLtEpilogue_t).</summary>
public enum LtEpilogue
{
    /// <summary>D = alpha·A·B + beta·C.</summary>
    Default = 1,
    /// <summary>+ bias.</summary>
    Bias = 4,
    /// <summary>ReLU(· + bias).</summary>
    ReluBias = 6,
    /// <summary>ReLU(· + bias), the pre-activation kept in the aux buffer.</summary>
    ReluAuxBias = 134,
    /// <summary>GELU(· + bias).</summary>
    GeluBias = 36,
    /// <summary>GELU(· + bias), the pre-activation kept in the aux buffer.</summary>
    GeluAuxBias = 164,
    /// <summary>Backward: · ⊙ ReLU'(aux) and the bias gradient.</summary>
    DReluBGrad = 152,
    /// <summary>Backward: · ⊙ GELU'(aux) and the bias gradient.</summary>
    DGeluBGrad = 208,
}

/// <summary>Thin cuBLAS / cuBLASLt bindings.</summary>
public static unsafe partial class CuBlas
{
    private const string Blas = "backprop-cublas";
    private const string Lt = "backprop-cublaslt";

    /// <summary>cuBLAS file names probed.</summary>
    public static readonly string[] BlasNames = ["libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so", "cublas64_13.dll", "cublas64_12.dll", "cublas64_11.dll"];
    /// <summary>cuBLASLt file names probed.</summary>
    public static readonly string[] LtNames = ["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11", "libcublasLt.so", "cublasLt64_13.dll", "cublasLt64_12.dll", "cublasLt64_11.dll"];

    static CuBlas()
    {
        NativeLibraries.Register(Blas, BlasNames, "install cuBLAS (the CUDA toolkit or the NVIDIA cuBLAS runtime package).");
        NativeLibraries.Register(Lt, LtNames, "install cuBLASLt (it ships with cuBLAS).");
    }

    /// <summary>Whether cuBLAS and cuBLASLt load, and why not.</summary>
    public static (bool Available, string? Reason) Probe()
    {
        var b = NativeLibraries.Get(Blas);
        if (b.Handle == 0) return (false, b.Error);
        var l = NativeLibraries.Get(Lt);
        return l.Handle == 0 ? (false, l.Error) : (true, null);
    }

    /// <summary>The name of a cublasStatus_t.</summary>
    public static string StatusName(int status) => status switch
    {
        0 => "CUBLAS_STATUS_SUCCESS", 1 => "CUBLAS_STATUS_NOT_INITIALIZED", 3 => "CUBLAS_STATUS_ALLOC_FAILED",
        7 => "CUBLAS_STATUS_INVALID_VALUE", 8 => "CUBLAS_STATUS_ARCH_MISMATCH", 11 => "CUBLAS_STATUS_MAPPING_ERROR",
        13 => "CUBLAS_STATUS_EXECUTION_FAILED", 14 => "CUBLAS_STATUS_INTERNAL_ERROR", 15 => "CUBLAS_STATUS_NOT_SUPPORTED",
        16 => "CUBLAS_STATUS_LICENSE_ERROR",
        _ => $"cublasStatus {status}",
    };

    /// <summary>Throws <see cref="CuBlasException"/> naming <paramref name="call"/> unless <paramref name="status"/> is success.</summary>
    public static void Check(int status, string call)
    {
        if (status != 0) throw new CuBlasException(call, status);
    }

    /// <summary>cublasMath_t: the default keeps full FP32; TF32 tensor cores are an explicit opt-in.</summary>
    public enum MathMode
    {
        /// <summary>CUBLAS_DEFAULT_MATH: FP32 arithmetic.</summary>
        Default = 0,
        /// <summary>CUBLAS_PEDANTIC_MATH.</summary>
        Pedantic = 2,
        /// <summary>CUBLAS_TF32_TENSOR_OP_MATH (opt-in).</summary>
        Tf32 = 3,
    }

    [LibraryImport(Blas, EntryPoint = "cublasCreate_v2")] private static partial int cublasCreate(nint* handle);
    [LibraryImport(Blas, EntryPoint = "cublasDestroy_v2")] private static partial int cublasDestroy(nint handle);
    [LibraryImport(Blas, EntryPoint = "cublasSetStream_v2")] private static partial int cublasSetStream(nint handle, nint stream);
    [LibraryImport(Blas)] private static partial int cublasSetMathMode(nint handle, int mode);
    [LibraryImport(Blas, EntryPoint = "cublasSgemm_v2")]
    private static partial int cublasSgemm(nint handle, int transa, int transb, int m, int n, int k, float* alpha, ulong a, int lda, ulong b, int ldb, float* beta, ulong c, int ldc);

    /// <summary>A cuBLAS handle bound to a stream, FP32 math unless <paramref name="mode"/> says otherwise.</summary>
    public static nint Create(nint stream, MathMode mode = MathMode.Default)
    {
        nint h;
        Check(cublasCreate(&h), "cublasCreate_v2");
        Check(cublasSetStream(h, stream), "cublasSetStream_v2");
        Check(cublasSetMathMode(h, (int)mode), "cublasSetMathMode");
        return h;
    }

    /// <summary>Destroys a handle from <see cref="Create"/>.</summary>
    public static void Destroy(nint handle) => Check(cublasDestroy(handle), "cublasDestroy_v2");

    /// <summary>Row-major C[m×n] = alpha·op(A)·op(B) + beta·C on device pointers (as Gemm.Sgemm on the CPU).</summary>
    public static void SgemmRowMajor(nint handle, bool transA, bool transB, int m, int n, int k, float alpha, ulong a, int lda, ulong b, int ldb, float beta, ulong c, int ldc) =>
        Check(cublasSgemm(handle, transB ? 1 : 0, transA ? 1 : 0, n, m, k, &alpha, b, ldb, a, lda, &beta, c, ldc), "cublasSgemm_v2");

    // ---- cuBLASLt ----
    private const int ComputeF32 = 68, ComputeF32FastTf32 = 77, CudaR32F = 0;
    private const int DescTransA = 3, DescTransB = 4, DescEpilogue = 7, DescBiasPointer = 8, DescAuxPointer = 11, DescAuxLd = 12;
    private const int PrefMaxWorkspace = 1;

    [LibraryImport(Lt)] private static partial int cublasLtCreate(nint* handle);
    [LibraryImport(Lt)] private static partial int cublasLtDestroy(nint handle);
    [LibraryImport(Lt)] private static partial int cublasLtMatmulDescCreate(nint* desc, int computeType, int scaleType);
    [LibraryImport(Lt)] private static partial int cublasLtMatmulDescDestroy(nint desc);
    [LibraryImport(Lt)] private static partial int cublasLtMatmulDescSetAttribute(nint desc, int attr, void* buf, nuint size);
    [LibraryImport(Lt)] private static partial int cublasLtMatrixLayoutCreate(nint* layout, int type, ulong rows, ulong cols, long ld);
    [LibraryImport(Lt)] private static partial int cublasLtMatrixLayoutDestroy(nint layout);
    [LibraryImport(Lt)] private static partial int cublasLtMatrixLayoutSetAttribute(nint layout, int attr, void* buf, nuint size);
    [LibraryImport(Lt)] private static partial int cublasLtMatmulPreferenceCreate(nint* pref);
    [LibraryImport(Lt)] private static partial int cublasLtMatmulPreferenceDestroy(nint pref);
    [LibraryImport(Lt)] private static partial int cublasLtMatmulPreferenceSetAttribute(nint pref, int attr, void* buf, nuint size);
    [LibraryImport(Lt)] private static partial int cublasLtMatmulAlgoGetHeuristic(nint handle, nint desc, nint a, nint b, nint c, nint d, nint pref, int requested, HeuristicResult* results, int* returned);
    [LibraryImport(Lt)] private static partial int cublasLtMatmul(nint handle, nint desc, float* alpha, ulong a, nint adesc, ulong b, nint bdesc, float* beta, ulong c, nint cdesc, ulong d, nint ddesc, void* algo, ulong workspace, nuint workspaceSize, nint stream);

    [StructLayout(LayoutKind.Sequential)]
    private struct HeuristicResult
    {
        public fixed ulong Algo[8];       // cublasLtMatmulAlgo_t
        public nuint WorkspaceSize;
        public int State;
        public float WavesCount;
        public fixed int Reserved[4];
    }

    /// <summary>
    /// Row-major D[m×n] = epilogue(op(A)[m×k]·op(B)[k×n] (+ bias[n])), with aux [m×n] (pre-activation forward,
    /// or the saved input of the derivative backward) and the bias gradient written to <paramref name="bias"/> for the BGRAD epilogues.
    /// All pointers are device pointers; <paramref name="workspace"/> may be 0 with size 0.
    /// </summary>
    public static void LtMatmulRowMajor(nint handle, nint stream, LtEpilogue epilogue, bool transA, bool transB, int m, int n, int k,
        ulong a, ulong b, ulong d, ulong bias, ulong aux, ulong workspace, nuint workspaceSize, bool allowTf32 = false)
    {
        // Row-major D = A·B is column-major Dᵀ = Bᵀ·Aᵀ: the cuBLASLt problem is (n × m) = (n × k)(k × m) with the
        // row-major buffers read as column-major transposes; bias runs along n = the rows of Dᵀ, as cuBLASLt wants.
        nint desc = 0, la = 0, lb = 0, ld = 0, pref = 0;
        try
        {
            Check(cublasLtMatmulDescCreate(&desc, allowTf32 ? ComputeF32FastTf32 : ComputeF32, CudaR32F), "cublasLtMatmulDescCreate");
            int opA = transB ? 1 : 0, opB = transA ? 1 : 0, epi = (int)epilogue;
            Check(cublasLtMatmulDescSetAttribute(desc, DescTransA, &opA, sizeof(int)), "cublasLtMatmulDescSetAttribute(TRANSA)");
            Check(cublasLtMatmulDescSetAttribute(desc, DescTransB, &opB, sizeof(int)), "cublasLtMatmulDescSetAttribute(TRANSB)");
            Check(cublasLtMatmulDescSetAttribute(desc, DescEpilogue, &epi, sizeof(int)), "cublasLtMatmulDescSetAttribute(EPILOGUE)");
            if (bias != 0) Check(cublasLtMatmulDescSetAttribute(desc, DescBiasPointer, &bias, (nuint)sizeof(ulong)), "cublasLtMatmulDescSetAttribute(BIAS_POINTER)");
            if (aux != 0)
            {
                long auxLd = n;
                Check(cublasLtMatmulDescSetAttribute(desc, DescAuxPointer, &aux, (nuint)sizeof(ulong)), "cublasLtMatmulDescSetAttribute(EPILOGUE_AUX_POINTER)");
                Check(cublasLtMatmulDescSetAttribute(desc, DescAuxLd, &auxLd, sizeof(long)), "cublasLtMatmulDescSetAttribute(EPILOGUE_AUX_LD)");
            }
            // Column-major views: B as (transB ? k×n : n×k) etc.
            Check(cublasLtMatrixLayoutCreate(&la, CudaR32F, (ulong)(transB ? k : n), (ulong)(transB ? n : k), transB ? k : n), "cublasLtMatrixLayoutCreate(B)");
            Check(cublasLtMatrixLayoutCreate(&lb, CudaR32F, (ulong)(transA ? m : k), (ulong)(transA ? k : m), transA ? m : k), "cublasLtMatrixLayoutCreate(A)");
            Check(cublasLtMatrixLayoutCreate(&ld, CudaR32F, (ulong)n, (ulong)m, n), "cublasLtMatrixLayoutCreate(D)");
            Check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
            ulong ws = workspaceSize;
            Check(cublasLtMatmulPreferenceSetAttribute(pref, PrefMaxWorkspace, &ws, sizeof(ulong)), "cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)");
            HeuristicResult result;
            int returned;
            Check(cublasLtMatmulAlgoGetHeuristic(handle, desc, la, lb, ld, ld, pref, 1, &result, &returned), "cublasLtMatmulAlgoGetHeuristic");
            if (returned == 0) throw new CuBlasException("cublasLtMatmulAlgoGetHeuristic (no algorithm for this problem)", 15);
            float alpha = 1f, beta = 0f;
            Check(cublasLtMatmul(handle, desc, &alpha, b, la, a, lb, &beta, d, ld, d, ld, result.Algo, workspace, workspaceSize, stream), "cublasLtMatmul");
        }
        finally
        {
            if (pref != 0) cublasLtMatmulPreferenceDestroy(pref);
            if (ld != 0) cublasLtMatrixLayoutDestroy(ld);
            if (lb != 0) cublasLtMatrixLayoutDestroy(lb);
            if (la != 0) cublasLtMatrixLayoutDestroy(la);
            if (desc != 0) cublasLtMatmulDescDestroy(desc);
        }
    }

    /// <summary>A cuBLASLt handle.</summary>
    public static nint CreateLt()
    {
        nint h;
        Check(cublasLtCreate(&h), "cublasLtCreate");
        return h;
    }

    /// <summary>Destroys a handle from <see cref="CreateLt"/>.</summary>
    public static void DestroyLt(nint handle) => Check(cublasLtDestroy(handle), "cublasLtDestroy");
}
