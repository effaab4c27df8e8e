// cuBLAS and cuBLASLt through P/Invoke, probing the library names of CUDA 13, 12 and 11.
//   cuBLAS:   handle, stream, workspace, math mode (TF32 is off by default, MathMode.Tf32 opts in),
//             cublasSgemm_v2 on a column-major GemmDesc (GemmDesc.RowMajor maps a row-major problem).
//   cuBLASLt: matmuls prepared once (descriptor with epilogue — bias, ReLU+bias, GELU+bias with aux output
//             forward; DReLU/DGELU with bias gradient backward —, layouts, heuristic algorithm) and issued
//             with cublasLtMatmul.
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

    [LibraryImport(Blas)] private static partial int cublasGetProperty(int type, int* value);

    /// <summary>The loaded cuBLAS version (major.minor.patch), or null when cuBLAS is not available.</summary>
    public static Version? Version
    {
        get
        {
            if (!Probe().Available) return null;
            int major, minor, patch;
            if (cublasGetProperty(0, &major) != 0 || cublasGetProperty(1, &minor) != 0 || cublasGetProperty(2, &patch) != 0) return null;
            return new Version(major, minor, patch);
        }
    }

    /// <summary>The name of a cublasStatus_t.</summary>
    public static string StatusName(int status) => status switch
    {
        0 => "CUBLAS_STATUS_SUCCESS",
        1 => "CUBLAS_STATUS_NOT_INITIALIZED",
        3 => "CUBLAS_STATUS_ALLOC_FAILED",
        7 => "CUBLAS_STATUS_INVALID_VALUE",
        8 => "CUBLAS_STATUS_ARCH_MISMATCH",
        11 => "CUBLAS_STATUS_MAPPING_ERROR",
        13 => "CUBLAS_STATUS_EXECUTION_FAILED",
        14 => "CUBLAS_STATUS_INTERNAL_ERROR",
        15 => "CUBLAS_STATUS_NOT_SUPPORTED",
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

    [LibraryImport(Blas, EntryPoint = "cublasSetWorkspace_v2")] private static partial int cublasSetWorkspace(nint handle, ulong workspace, nuint bytes);

    /// <summary>Gives cuBLAS a fixed workspace so that it allocates nothing while a stream is captured into a graph.</summary>
    public static void SetWorkspace(nint handle, ulong workspace, nuint bytes) => Check(cublasSetWorkspace(handle, workspace, bytes), "cublasSetWorkspace_v2");

    /// <summary>D = op(A)·op(B) as cublasSgemm_v2 takes it (column-major; <see cref="GemmDesc.RowMajor"/> maps a row-major problem).</summary>
    public static void Sgemm(nint handle, in GemmDesc g)
    {
        if (g.NeedsLt) throw new ArgumentException($"epilogue {g.Epilogue} with bias {(g.Bias != 0 ? "set" : "none")} needs cuBLASLt; cublasSgemm takes plain products.");
        float alpha = 1f, beta = g.Accumulate ? 1f : 0f;
        Check(cublasSgemm(handle, g.TransA ? 1 : 0, g.TransB ? 1 : 0, g.M, g.N, g.K, &alpha, g.A, g.Lda, g.B, g.Ldb, &beta, g.D, g.Ldd), "cublasSgemm_v2");
    }

    // ---- cuBLASLt ----
    private const int ComputeF32 = 68, ComputeF32FastTf32 = 77, CudaR32F = 0, CudaR16BF = 14; // cublasComputeType_t, cudaDataType_t (library_types.h)
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
    /// A cuBLASLt matmul prepared once: descriptor with the epilogue, bias and aux pointers, the three layouts and the
    /// heuristic's algorithm. <see cref="Run"/> issues it on a stream and allocates nothing, so it can be captured.
    /// </summary>
    public sealed class LtMatmul : IDisposable
    {
        private nint _desc, _la, _lb, _ld;
        private HeuristicResult _algo;
        private readonly GemmDesc _g;

        /// <summary>Prepares <paramref name="g"/> (column-major) with at most <paramref name="workspaceSize"/> bytes of workspace.</summary>
        public LtMatmul(nint ltHandle, in GemmDesc g, nuint workspaceSize, bool allowTf32)
        {
            g.Validate();
            _g = g;
            try
            {
                nint desc, la, lb, ld, pref = 0;
                // bf16 operands accumulate in float32 (CUBLAS_COMPUTE_32F, scale float, C and D float; the bias and aux follow D's type).
                Check(cublasLtMatmulDescCreate(&desc, allowTf32 && !g.Bf16 ? ComputeF32FastTf32 : ComputeF32, CudaR32F), "cublasLtMatmulDescCreate");
                _desc = desc;
                int opA = g.TransA ? 1 : 0, opB = g.TransB ? 1 : 0, epi = (int)g.Epilogue;
                Check(cublasLtMatmulDescSetAttribute(desc, DescTransA, &opA, sizeof(int)), "cublasLtMatmulDescSetAttribute(TRANSA)");
                Check(cublasLtMatmulDescSetAttribute(desc, DescTransB, &opB, sizeof(int)), "cublasLtMatmulDescSetAttribute(TRANSB)");
                Check(cublasLtMatmulDescSetAttribute(desc, DescEpilogue, &epi, sizeof(int)), "cublasLtMatmulDescSetAttribute(EPILOGUE)");
                ulong bias = g.Bias, aux = g.Aux;
                if (bias != 0) Check(cublasLtMatmulDescSetAttribute(desc, DescBiasPointer, &bias, (nuint)sizeof(ulong)), "cublasLtMatmulDescSetAttribute(BIAS_POINTER)");
                if (g.UsesAux)
                {
                    long auxLd = g.AuxLd;
                    Check(cublasLtMatmulDescSetAttribute(desc, DescAuxPointer, &aux, (nuint)sizeof(ulong)), "cublasLtMatmulDescSetAttribute(EPILOGUE_AUX_POINTER)");
                    Check(cublasLtMatmulDescSetAttribute(desc, DescAuxLd, &auxLd, sizeof(long)), "cublasLtMatmulDescSetAttribute(EPILOGUE_AUX_LD)");
                }
                Check(cublasLtMatrixLayoutCreate(&la, g.Bf16 ? CudaR16BF : CudaR32F, (ulong)(g.TransA ? g.K : g.M), (ulong)(g.TransA ? g.M : g.K), g.Lda), "cublasLtMatrixLayoutCreate(A)");
                _la = la;
                Check(cublasLtMatrixLayoutCreate(&lb, g.Bf16 ? CudaR16BF : CudaR32F, (ulong)(g.TransB ? g.N : g.K), (ulong)(g.TransB ? g.K : g.N), g.Ldb), "cublasLtMatrixLayoutCreate(B)");
                _lb = lb;
                Check(cublasLtMatrixLayoutCreate(&ld, CudaR32F, (ulong)g.M, (ulong)g.N, g.Ldd), "cublasLtMatrixLayoutCreate(D)");
                _ld = ld;
                try
                {
                    Check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
                    ulong ws = workspaceSize;
                    Check(cublasLtMatmulPreferenceSetAttribute(pref, PrefMaxWorkspace, &ws, sizeof(ulong)), "cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)");
                    HeuristicResult result;
                    int returned;
                    Check(cublasLtMatmulAlgoGetHeuristic(ltHandle, desc, la, lb, ld, ld, pref, 1, &result, &returned), "cublasLtMatmulAlgoGetHeuristic");
                    if (returned == 0)
                        throw new CuBlasException($"cublasLtMatmulAlgoGetHeuristic (no algorithm for {g.Epilogue}, M={g.M} N={g.N} K={g.K})", 15);
                    _algo = result;
                }
                catch
                {
                    if (pref != 0) _ = cublasLtMatmulPreferenceDestroy(pref); // the first error is the one to report
                    throw;
                }
                Check(cublasLtMatmulPreferenceDestroy(pref), "cublasLtMatmulPreferenceDestroy");
            }
            catch
            {
                Release(check: false);
                throw;
            }
        }

        /// <summary>Issues the matmul on <paramref name="stream"/>.</summary>
        public void Run(nint ltHandle, nint stream, ulong workspace, nuint workspaceSize)
        {
            float alpha = 1f, beta = _g.Accumulate ? 1f : 0f;
            var algo = _algo;
            Check(cublasLtMatmul(ltHandle, _desc, &alpha, _g.A, _la, _g.B, _lb, &beta, _g.D, _ld, _g.D, _ld, algo.Algo, workspace, workspaceSize, stream), "cublasLtMatmul");
        }

        /// <summary>Frees the descriptors; a failure is reported (after all are freed) as a <see cref="CuBlasException"/>.</summary>
        public void Dispose() => Release(check: true);

        // Frees every descriptor; with check, throws for the first that failed (a constructor cleaning up after its own
        // error does not, so that error is the one reported).
        private void Release(bool check)
        {
            int status = 0;
            string? failed = null;
            void Note(int s, string call)
            {
                if (s != 0 && failed is null) (status, failed) = (s, call);
            }
            if (_ld != 0) Note(cublasLtMatrixLayoutDestroy(_ld), "cublasLtMatrixLayoutDestroy(D)");
            if (_lb != 0) Note(cublasLtMatrixLayoutDestroy(_lb), "cublasLtMatrixLayoutDestroy(B)");
            if (_la != 0) Note(cublasLtMatrixLayoutDestroy(_la), "cublasLtMatrixLayoutDestroy(A)");
            if (_desc != 0) Note(cublasLtMatmulDescDestroy(_desc), "cublasLtMatmulDescDestroy");
            _ld = _lb = _la = _desc = 0;
            if (check && failed is not null) throw new CuBlasException(failed, status);
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
