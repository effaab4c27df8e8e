// GEMM of a row-major A against a transposed B (C = A·Bᵀ, A rows and B rows contiguous along K)
// when one side is small: a few rows (a dense layer's forward at batch 1..4, inference latency) or a
// few columns (an output layer of 10 classes). Packing would cost more than the products there and the
// 8 x 32 register tile would compute mostly padding, so each C[i, j] is a dot product of row i of A
// with row j of B, taken in 2 x 4 tiles: per step along K, 2 loads of A and 4 of B feed 8 FMAs into 8
// accumulators (enough independent chains to hide the FMA latency), then each accumulator is summed
// across its lanes and the K tail is added in scalar order. Every element goes through the same
// sequence whatever tile or edge it falls in (missing rows and columns of an edge tile re-read row 0
// and are not stored), so a result does not depend on the split: threads take static ranges of
// rows (many rows) or columns (many columns), and 1 and N threads agree bit for bit.
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Backprop.Kernels.Threading;

namespace Backprop.Kernels.Cpu;

internal unsafe struct SmallMJob<T, TEpi> : IParallelJob
    where T : unmanaged, IFloatingPointIeee754<T>
    where TEpi : unmanaged, IGemmEpilogue<T>
{
    public int M, N, K, Lda, Ldb, Ldc;
    public T Alpha, Beta;
    public T* A, B, C;
    public TEpi Epi;
    public Isa Isa;
    /// <summary>Threads split the rows (true) or the columns.</summary>
    public bool SplitRows;

    public void Execute(int part, int parts)
    {
        int i0 = 0, i1 = M, j0 = 0, j1 = N;
        if (SplitRows)
        {
            int pairs = (M + 1) / 2;
            i0 = Math.Min(M, (int)((long)pairs * part / parts) * 2);
            i1 = Math.Min(M, (int)((long)pairs * (part + 1) / parts) * 2);
        }
        else
        {
            j0 = (int)((long)N * part / parts);
            j1 = (int)((long)N * (part + 1) / parts);
        }
        T* sums = stackalloc T[8];
        for (int i = i0; i < i1; i += 2)
        {
            int rows = Math.Min(2, i1 - i);
            for (int j = j0; j < j1; j += 4)
            {
                int cols = Math.Min(4, j1 - j);
                Tile(A + (nint)i * Lda, rows > 1 ? Lda : 0, B + (nint)j * Ldb, cols, Ldb, K, Isa, sums);
                for (int r = 0; r < rows; r++)
                    for (int q = 0; q < cols; q++)
                    {
                        T* c = C + (nint)(i + r) * Ldc + j + q;
                        T x = sums[r * 4 + q] * Alpha;
                        if (Beta != T.Zero) x = T.FusedMultiplyAdd(Beta, *c, x);
                        *c = Epi.Apply(x, i + r, j + q);
                    }
            }
        }
    }

    /// <summary>
    /// dst[0..3] = the lane sums of a, b, c, d in one transposing tree (8 shuffles and 5 adds instead of 4 reductions of
    /// 8): lane j pairs with j + 8, then j + 4, then j + 2 and j + 1, the same order for each of the four.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Sum4(float* dst, Vector512<float> a, Vector512<float> b, Vector512<float> c, Vector512<float> d)
    {
        var ab = Avx512F.Shuffle4x128(a, b, 0x44) + Avx512F.Shuffle4x128(a, b, 0xEE); // [a j + a j+8 (8 lanes) | b ...]
        var cd = Avx512F.Shuffle4x128(c, d, 0x44) + Avx512F.Shuffle4x128(c, d, 0xEE);
        var q = Avx512F.Shuffle4x128(ab, cd, 0x88) + Avx512F.Shuffle4x128(ab, cd, 0xDD); // quarter i: 4 partial sums of a, b, c, d
        q += Vector512.Shuffle(q, Vector512.Create(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14));
        q += Vector512.Shuffle(q, Vector512.Create(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13));
        dst[0] = q.GetElement(0);
        dst[1] = q.GetElement(4);
        dst[2] = q.GetElement(8);
        dst[3] = q.GetElement(12);
    }

    /// <summary>sums[r * 4 + q] = row r of a (r &lt; 2; a1 = a + lda1) · row q of b (q &lt; cols, rows past cols re-read row 0).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile(T* a0, int lda1, T* b, int cols, int ldb, int k, Isa isa, T* sums)
    {
        T* a1 = a0 + lda1;
        T* b0 = b, b1 = cols > 1 ? b + ldb : b, b2 = cols > 2 ? b + 2 * (nint)ldb : b, b3 = cols > 3 ? b + 3 * (nint)ldb : b;
        int p = 0;
        if (isa >= Isa.Avx512)
        {
            int w = Vector512<T>.Count;
            Vector512<T> s00 = default, s01 = default, s02 = default, s03 = default, s10 = default, s11 = default, s12 = default, s13 = default;
            for (; p + w <= k; p += w)
            {
                var x0 = Vector512.Load(a0 + p);
                var x1 = Vector512.Load(a1 + p);
                var y = Vector512.Load(b0 + p);
                s00 = VectorMath.Fma(x0, y, s00);
                s10 = VectorMath.Fma(x1, y, s10);
                y = Vector512.Load(b1 + p);
                s01 = VectorMath.Fma(x0, y, s01);
                s11 = VectorMath.Fma(x1, y, s11);
                y = Vector512.Load(b2 + p);
                s02 = VectorMath.Fma(x0, y, s02);
                s12 = VectorMath.Fma(x1, y, s12);
                y = Vector512.Load(b3 + p);
                s03 = VectorMath.Fma(x0, y, s03);
                s13 = VectorMath.Fma(x1, y, s13);
            }
            if (typeof(T) == typeof(float))
            {
                Sum4((float*)sums, s00.AsSingle(), s01.AsSingle(), s02.AsSingle(), s03.AsSingle());
                Sum4((float*)sums + 4, s10.AsSingle(), s11.AsSingle(), s12.AsSingle(), s13.AsSingle());
            }
            else
            {
                sums[0] = Vector512.Sum(s00); sums[1] = Vector512.Sum(s01); sums[2] = Vector512.Sum(s02); sums[3] = Vector512.Sum(s03);
                sums[4] = Vector512.Sum(s10); sums[5] = Vector512.Sum(s11); sums[6] = Vector512.Sum(s12); sums[7] = Vector512.Sum(s13);
            }
        }
        else if (isa >= Isa.Avx2)
        {
            int w = Vector256<T>.Count;
            Vector256<T> s00 = default, s01 = default, s02 = default, s03 = default, s10 = default, s11 = default, s12 = default, s13 = default;
            for (; p + w <= k; p += w)
            {
                var x0 = Vector256.Load(a0 + p);
                var x1 = Vector256.Load(a1 + p);
                var y = Vector256.Load(b0 + p);
                s00 = VectorMath.Fma(x0, y, s00);
                s10 = VectorMath.Fma(x1, y, s10);
                y = Vector256.Load(b1 + p);
                s01 = VectorMath.Fma(x0, y, s01);
                s11 = VectorMath.Fma(x1, y, s11);
                y = Vector256.Load(b2 + p);
                s02 = VectorMath.Fma(x0, y, s02);
                s12 = VectorMath.Fma(x1, y, s12);
                y = Vector256.Load(b3 + p);
                s03 = VectorMath.Fma(x0, y, s03);
                s13 = VectorMath.Fma(x1, y, s13);
            }
            sums[0] = Vector256.Sum(s00); sums[1] = Vector256.Sum(s01); sums[2] = Vector256.Sum(s02); sums[3] = Vector256.Sum(s03);
            sums[4] = Vector256.Sum(s10); sums[5] = Vector256.Sum(s11); sums[6] = Vector256.Sum(s12); sums[7] = Vector256.Sum(s13);
        }
        else
        {
            for (int q = 0; q < 8; q++) sums[q] = T.Zero;
        }
        for (; p < k; p++)
        {
            sums[0] = T.FusedMultiplyAdd(a0[p], b0[p], sums[0]);
            sums[1] = T.FusedMultiplyAdd(a0[p], b1[p], sums[1]);
            sums[2] = T.FusedMultiplyAdd(a0[p], b2[p], sums[2]);
            sums[3] = T.FusedMultiplyAdd(a0[p], b3[p], sums[3]);
            sums[4] = T.FusedMultiplyAdd(a1[p], b0[p], sums[4]);
            sums[5] = T.FusedMultiplyAdd(a1[p], b1[p], sums[5]);
            sums[6] = T.FusedMultiplyAdd(a1[p], b2[p], sums[6]);
            sums[7] = T.FusedMultiplyAdd(a1[p], b3[p], sums[7]);
        }
    }
}
