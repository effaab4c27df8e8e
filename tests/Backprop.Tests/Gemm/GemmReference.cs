// Naive double-precision GEMM, the oracle for every GEMM test: three loops, no blocking.
namespace Backprop.Tests.Gemm;

internal static class GemmReference
{
    public static double At(double[] x, int ld, bool trans, int row, int col) => trans ? x[col * ld + row] : x[row * ld + col];

    /// <summary>C = alpha*op(A)*op(B) + beta*C in double; beta == 0 overwrites C.</summary>
    public static void Compute(bool ta, bool tb, int m, int n, int k, double alpha, double[] a, int lda,
        double[] b, int ldb, double beta, double[] c, int ldc)
    {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++) s += At(a, lda, ta, i, p) * At(b, ldb, tb, p, j);
                c[i * ldc + j] = alpha * s + (beta == 0 ? 0 : beta * c[i * ldc + j]);
            }
    }

    /// <summary>Sum over p of |op(A)[i,p] * op(B)[p,j]|: the scale of the rounding error of C[i,j].</summary>
    public static double AbsDot(bool ta, bool tb, int k, double[] a, int lda, double[] b, int ldb, int i, int j)
    {
        double s = 0;
        for (int p = 0; p < k; p++) s += Math.Abs(At(a, lda, ta, i, p) * At(b, ldb, tb, p, j));
        return s;
    }
}
