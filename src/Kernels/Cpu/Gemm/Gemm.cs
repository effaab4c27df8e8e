// Public GEMM entry points:  C = alpha * op(A) * op(B) + beta * C   (row-major, BLAS semantics)
//   op(A) is M x K: A is stored M x K (transA = N, lda >= K) or K x M (transA = T, lda >= M)
//   op(B) is K x N: B is stored K x N (transB = N, ldb >= N) or N x K (transB = T, ldb >= K)
//   C is M x N with ldc >= N. beta = 0 ignores what C held (NaN included).
// Span overloads check every size, leading dimension and span length; the pointer overload with
// an epilogue is the kernel-level entry point the dense layers build on, and trusts its caller.
using System.Numerics;

namespace Backprop.Kernels.Cpu;

/// <summary>General matrix multiply in float and double, on the project's own BLIS-style kernels.</summary>
public static unsafe partial class Gemm
{
    /// <summary>Single-precision C = alpha·op(A)·op(B) + beta·C (row-major).</summary>
    public static void Sgemm(Transpose transA, Transpose transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc,
        CpuContext? context = null)
        => Compute(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, context);

    /// <summary>Double-precision C = alpha·op(A)·op(B) + beta·C (row-major).</summary>
    public static void Dgemm(Transpose transA, Transpose transB, int m, int n, int k, double alpha,
        ReadOnlySpan<double> a, int lda, ReadOnlySpan<double> b, int ldb, double beta, Span<double> c, int ldc,
        CpuContext? context = null)
        => Compute(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, context);

    /// <summary>C = alpha·op(A)·op(B) + beta·C for T = float or double, with every argument checked.</summary>
    public static void Compute<T>(Transpose transA, Transpose transB, int m, int n, int k, T alpha,
        ReadOnlySpan<T> a, int lda, ReadOnlySpan<T> b, int ldb, T beta, Span<T> c, int ldc,
        CpuContext? context = null)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var epi = default(IdentityEpilogue<T>);
        Compute(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ref epi, context);
    }

    /// <summary>
    /// C = epilogue(alpha·op(A)·op(B) + beta·C) with every argument checked; the epilogue is applied
    /// once to each element of C, in the final store.
    /// </summary>
    public static void Compute<T, TEpi>(Transpose transA, Transpose transB, int m, int n, int k, T alpha,
        ReadOnlySpan<T> a, int lda, ReadOnlySpan<T> b, int ldb, T beta, Span<T> c, int ldc,
        ref TEpi epilogue, CpuContext? context = null)
        where T : unmanaged, IFloatingPointIeee754<T>
        where TEpi : unmanaged, IGemmEpilogue<T>
    {
        Validate(transA, transB, m, n, k, a.Length, lda, b.Length, ldb, c.Length, ldc);
        fixed (T* pa = a)
        fixed (T* pb = b)
        fixed (T* pc = c)
        {
            GemmDriver.Run(context ?? CpuContext.Default, transA == Transpose.T, transB == Transpose.T,
                m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc, ref epilogue);
        }
    }

    /// <summary>
    /// Unchecked pointer entry point for kernels that validated their shapes when they were planned.
    /// </summary>
    public static void Compute<T, TEpi>(CpuContext context, Transpose transA, Transpose transB, int m, int n, int k,
        T alpha, T* a, int lda, T* b, int ldb, T beta, T* c, int ldc, ref TEpi epilogue)
        where T : unmanaged, IFloatingPointIeee754<T>
        where TEpi : unmanaged, IGemmEpilogue<T>
        => GemmDriver.Run(context, transA == Transpose.T, transB == Transpose.T, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ref epilogue);

    /// <summary>
    /// As the unchecked entry point, and also rowSums[i] (=, or += when <paramref name="accumulateRowSums"/>)
    /// Σ_k op(A)[i, k], computed from the packed blocks of A in the same pass (a dense layer's bias gradient).
    /// The sums do not depend on the thread count.
    /// </summary>
    public static void ComputeWithRowSums<T, TEpi>(CpuContext context, Transpose transA, Transpose transB, int m, int n, int k,
        T alpha, T* a, int lda, T* b, int ldb, T beta, T* c, int ldc, ref TEpi epilogue, T* rowSums, bool accumulateRowSums)
        where T : unmanaged, IFloatingPointIeee754<T>
        where TEpi : unmanaged, IGemmEpilogue<T>
        => GemmDriver.Run(context, transA == Transpose.T, transB == Transpose.T, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ref epilogue, rowSums, accumulateRowSums);

    /// <summary>
    /// The width of the panels <see cref="PackPanels{T}(CpuContext, int, int, T*, int, T*, int, int)"/> writes for <paramref name="context"/>:
    /// its micro-kernel's columns (with bf16 operands, the bf16 kernel's).
    /// </summary>
    public static int PanelWidth<T>(CpuContext context) where T : unmanaged, IFloatingPointIeee754<T> => GemmDriver.PanelWidth<T>(context);

    /// <summary>
    /// Elements of T the panels of a B stored <paramref name="n"/> x <paramref name="k"/> take: n rounded up to <see cref="PanelWidth{T}"/>,
    /// times k (with bf16 operands, times the (k + 1) / 2 bf16 pairs, each held in one 4-byte element).
    /// </summary>
    public static long PanelsLength<T>(CpuContext context, int n, int k) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var layout = PanelLayout.Of<T>(context);
        return (long)((n + layout.Width - 1) / layout.Width) * layout.Width * layout.Depth(k);
    }

    /// <summary>
    /// Writes Bᵀ (B stored n x k, rows contiguous along k) as the k-major panels that <see cref="ComputeWithPanels{T,TEpi}"/> reads
    /// instead of packing B in each call: rows [rowStart, rowEnd) of B (rowStart a multiple of <see cref="PanelWidth{T}"/>, rowEnd
    /// that or n), panel p holding rows p·w.. over the whole of k, rows past n zero. With bf16 operands (a float context of
    /// <see cref="GemmPrecision.Bf16"/>) the panels hold the values rounded to bf16, in pairs along k, as the bf16 GEMM packs them.
    /// Packs on the calling thread.
    /// </summary>
    public static void PackPanels<T>(CpuContext context, int n, int k, T* b, int ldb, T* panels, int rowStart, int rowEnd)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int w = PanelWidth<T>(context);
        if (rowStart < 0 || rowStart % w != 0 || rowEnd < rowStart || rowEnd > n || (rowEnd % w != 0 && rowEnd != n))
            throw new ArgumentOutOfRangeException(nameof(rowStart), $"rows [{rowStart}, {rowEnd}) of {n}: the start must be a multiple of {w} and the end one or {n}.");
        if (rowEnd > rowStart && k > 0) PanelRows(PanelLayout.Of<T>(context), b, ldb, k, rowStart, rowEnd, panels);
    }

    /// <summary>
    /// C = epilogue(alpha·A·Bᵀ + beta·C) (A stored m x k, B stored n x k) with Bᵀ read from <paramref name="panels"/>, made by
    /// <see cref="PackPanels{T}(CpuContext, int, int, T*, int, T*, int, int)"/> for this context from the same B, instead of packed in the call. Where a call takes no panels
    /// (a few rows or columns: the dot-product path, float32 operands whatever the precision), B is read as in <see cref="Compute{T,TEpi}(CpuContext, Transpose, Transpose, int, int, int, T, T*, int, T*, int, T, T*, int, ref TEpi)"/>;
    /// the results are the same bit for bit either way. Unchecked, like that entry point.
    /// </summary>
    public static void ComputeWithPanels<T, TEpi>(CpuContext context, int m, int n, int k, T alpha, T* a, int lda, T* b, int ldb, T* panels,
        T beta, T* c, int ldc, ref TEpi epilogue)
        where T : unmanaged, IFloatingPointIeee754<T>
        where TEpi : unmanaged, IGemmEpilogue<T>
        => GemmDriver.Run(context, false, true, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ref epilogue,
            panelsB: panels, panelsWidth: panels == null ? 0 : PanelWidth<T>(context));

    /// <summary>Throws an exception naming the argument, the value seen and the bound when a GEMM argument is invalid.</summary>
    public static void Validate(Transpose transA, Transpose transB, int m, int n, int k,
        long aLength, int lda, long bLength, int ldb, long cLength, int ldc)
    {
        if (m < 0) throw new ArgumentOutOfRangeException(nameof(m), m, $"m must be >= 0; got {m}.");
        if (n < 0) throw new ArgumentOutOfRangeException(nameof(n), n, $"n must be >= 0; got {n}.");
        if (k < 0) throw new ArgumentOutOfRangeException(nameof(k), k, $"k must be >= 0; got {k}.");
        if (transA != Transpose.N && transA != Transpose.T)
            throw new ArgumentOutOfRangeException(nameof(transA), transA, $"transA must be N or T; got {(int)transA}.");
        if (transB != Transpose.N && transB != Transpose.T)
            throw new ArgumentOutOfRangeException(nameof(transB), transB, $"transB must be N or T; got {(int)transB}.");
        // Stored shapes (rows x cols) of A, B and C.
        (int aRows, int aCols) = transA == Transpose.N ? (m, k) : (k, m);
        (int bRows, int bCols) = transB == Transpose.N ? (k, n) : (n, k);
        CheckOperand("a", "lda", "A", transA, aRows, aCols, lda, aLength);
        CheckOperand("b", "ldb", "B", transB, bRows, bCols, ldb, bLength);
        CheckOperand("c", "ldc", "C", null, m, n, ldc, cLength);
    }

    private static string Stored(string matrix, Transpose? trans, int rows, int cols) =>
        trans is null ? $"{matrix} is {rows}x{cols}" : $"{matrix} is stored {rows}x{cols} (trans{matrix}={trans})";

    private static void CheckOperand(string span, string ldName, string matrix, Transpose? trans, int rows, int cols, int ld, long length)
    {
        int minLd = Math.Max(1, cols);
        if (ld < minLd)
            throw new ArgumentOutOfRangeException(ldName, ld,
                $"{ldName} must be at least {minLd} (the row length of {matrix}; {Stored(matrix, trans, rows, cols)}); got {ld}.");
        long need = rows == 0 || cols == 0 ? 0 : (long)(rows - 1) * ld + cols;
        if (length < need)
            throw new ArgumentException(
                $"{span} has {length} elements but {Stored(matrix, trans, rows, cols)} with {ldName}={ld} needs at least {need} ((rows-1)*{ldName} + cols).", span);
    }
}
