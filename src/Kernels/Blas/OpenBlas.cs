// OpenBLAS through P/Invoke: cblas_sgemm / cblas_dgemm (row-major), thread control and build info.
// The library is resolved at first use from libopenblas.so.0 (Debian: libopenblas0-pthread) and a
// few other names; when none loads, every call throws an exception that says which package to install.
using System.Runtime.InteropServices;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Native;

namespace Backprop.Kernels.Blas;

/// <summary>Thin bindings to OpenBLAS, the reference BLAS the project measures itself against.</summary>
public static unsafe partial class OpenBlas
{
    private const string Lib = "backprop-openblas";
    private const int CblasRowMajor = 101;
    private const int CblasNoTrans = 111;
    private const int CblasTrans = 112;

    /// <summary>File names tried, in order, when loading OpenBLAS.</summary>
    public static readonly IReadOnlyList<string> LibraryNames =
        ["libopenblas.so.0", "libopenblas.so", "libopenblasp-r0.3.21.so", "libopenblas.dylib", "libopenblas.dll", "openblas"];

    /// <summary>What to install when OpenBLAS is missing.</summary>
    public const string InstallHint = "install it with: apt-get install libopenblas0-pthread (or run ./build.sh Deps as root)";

    static OpenBlas()
    {
        NativeLibraries.Register(Lib, [.. LibraryNames], $"OpenBLAS is missing: {InstallHint}.");
    }

    /// <summary>Loads the first of <paramref name="names"/> that loads, or says which were tried and what to install.</summary>
    internal static (nint Handle, string? Error) TryLoad(IEnumerable<string> names) =>
        NativeLibraries.TryLoad(names, $"OpenBLAS is missing: {InstallHint}.");

    /// <summary>True when the library loads.</summary>
    public static bool IsAvailable => NativeLibraries.Get(Lib).Handle != 0;

    /// <summary>Why the library is not available (null when it is).</summary>
    public static string? UnavailableReason => NativeLibraries.Get(Lib).Error;

    /// <summary>Throws <see cref="DllNotFoundException"/> with the install hint when OpenBLAS is missing.</summary>
    public static void EnsureAvailable()
    {
        var (handle, error) = NativeLibraries.Get(Lib);
        if (handle == 0) throw new DllNotFoundException(error);
    }

    [LibraryImport(Lib, EntryPoint = "cblas_sgemm")]
    private static partial void cblas_sgemm(int order, int transA, int transB, int m, int n, int k,
        float alpha, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc);

    [LibraryImport(Lib, EntryPoint = "cblas_dgemm")]
    private static partial void cblas_dgemm(int order, int transA, int transB, int m, int n, int k,
        double alpha, double* a, int lda, double* b, int ldb, double beta, double* c, int ldc);

    [LibraryImport(Lib, EntryPoint = "openblas_set_num_threads")]
    private static partial void openblas_set_num_threads(int n);

    [LibraryImport(Lib, EntryPoint = "openblas_get_num_threads")]
    private static partial int openblas_get_num_threads();

    [LibraryImport(Lib, EntryPoint = "openblas_get_corename")]
    private static partial byte* openblas_get_corename();

    [LibraryImport(Lib, EntryPoint = "openblas_get_config")]
    private static partial byte* openblas_get_config();

    private static int T(Transpose t) => t == Transpose.T ? CblasTrans : CblasNoTrans;

    /// <summary>Row-major cblas_sgemm with the same argument checks as <see cref="Cpu.Gemm.Sgemm"/>.</summary>
    public static void Sgemm(Transpose transA, Transpose transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc)
    {
        Cpu.Gemm.Validate(transA, transB, m, n, k, a.Length, lda, b.Length, ldb, c.Length, ldc);
        EnsureAvailable();
        fixed (float* pa = a) fixed (float* pb = b) fixed (float* pc = c)
            Sgemm(transA, transB, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc);
    }

    /// <summary>Row-major cblas_dgemm with the same argument checks as <see cref="Cpu.Gemm.Dgemm"/>.</summary>
    public static void Dgemm(Transpose transA, Transpose transB, int m, int n, int k, double alpha,
        ReadOnlySpan<double> a, int lda, ReadOnlySpan<double> b, int ldb, double beta, Span<double> c, int ldc)
    {
        Cpu.Gemm.Validate(transA, transB, m, n, k, a.Length, lda, b.Length, ldb, c.Length, ldc);
        EnsureAvailable();
        fixed (double* pa = a) fixed (double* pb = b) fixed (double* pc = c)
            cblas_dgemm(CblasRowMajor, T(transA), T(transB), m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc);
    }

    /// <summary>Unchecked row-major cblas_sgemm on raw pointers.</summary>
    public static void Sgemm(Transpose transA, Transpose transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        if (m == 0 || n == 0) return;
        cblas_sgemm(CblasRowMajor, T(transA), T(transB), m, n, k, alpha, a, Math.Max(1, lda), b, Math.Max(1, ldb), beta, c, ldc);
    }

    /// <summary>Unchecked row-major cblas_dgemm on raw pointers.</summary>
    public static void Dgemm(Transpose transA, Transpose transB, int m, int n, int k, double alpha,
        double* a, int lda, double* b, int ldb, double beta, double* c, int ldc)
    {
        if (m == 0 || n == 0) return;
        cblas_dgemm(CblasRowMajor, T(transA), T(transB), m, n, k, alpha, a, Math.Max(1, lda), b, Math.Max(1, ldb), beta, c, ldc);
    }

    /// <summary>Unchecked row-major GEMM on raw pointers for T = float (cblas_sgemm) or double (cblas_dgemm).</summary>
    public static void Gemm<T>(Transpose transA, Transpose transB, int m, int n, int k, T alpha, T* a, int lda, T* b, int ldb, T beta, T* c, int ldc)
        where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float))
            Sgemm(transA, transB, m, n, k, float.CreateTruncating(alpha), (float*)a, lda, (float*)b, ldb, float.CreateTruncating(beta), (float*)c, ldc);
        else if (typeof(T) == typeof(double))
            Dgemm(transA, transB, m, n, k, double.CreateTruncating(alpha), (double*)a, lda, (double*)b, ldb, double.CreateTruncating(beta), (double*)c, ldc);
        else throw new NotSupportedException($"OpenBLAS GEMM takes float or double; got {typeof(T).Name}.");
    }

    /// <summary>OpenBLAS's thread count (openblas_get_num_threads).</summary>
    public static int Threads
    {
        get { EnsureAvailable(); return openblas_get_num_threads(); }
        set
        {
            if (value < 1) throw new ArgumentOutOfRangeException(nameof(value), value, $"threads must be at least 1; got {value}.");
            EnsureAvailable();
            openblas_set_num_threads(value);
        }
    }

    /// <summary>The CPU core OpenBLAS picked its kernels for (openblas_get_corename), e.g. "Cooperlake".</summary>
    public static string CoreName { get { EnsureAvailable(); return Marshal.PtrToStringUTF8((nint)openblas_get_corename()) ?? ""; } }

    /// <summary>OpenBLAS's build configuration string (openblas_get_config).</summary>
    public static string Config { get { EnsureAvailable(); return Marshal.PtrToStringUTF8((nint)openblas_get_config()) ?? ""; } }
}
