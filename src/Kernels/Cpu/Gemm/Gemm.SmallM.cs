// GEMM of a row-major A against a transposed B (C = A·Bᵀ, A rows and B rows contiguous along K)
// when one side is small: a few rows (a dense layer's forward at batch 1..4, inference latency) or a
// few columns (an output layer of 10 classes). Packing would cost more than the products there and the
// 8 x 32 register tile would compute mostly padding, so each C[i, j] is a dot product of row i of A
// with row j of B, taken in tiles of 2 rows of one operand against 6 of the other (2 x 6 for a few rows
// of A, 6 x 2 where that pads less: 10 columns are 5 pairs): per step along K, 8 loads feed 12 FMAs
// into 12 accumulators, then the lanes of each are summed four accumulators at a time (AVX2: in
// Vector256.Sum's order; AVX-512: a transposing tree) and the K tail is added in scalar order. A block of tiles' sums then takes
// alpha, beta and the epilogue in vectors, row by row. Every element goes through the same sequence
// whatever tile or edge it falls in (missing rows of an edge tile re-read row 0 and are not stored),
// so a result does not depend on the split: threads take static ranges of rows (many rows) or
// columns (many columns), and 1 and N threads agree bit for bit.
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
    /// <summary>4 x 2 tiles instead of 2 x 4 (<see cref="PrefersWide"/>).</summary>
    public bool Wide;

    /// <summary>The rows of a tile on its streamed side (<see cref="Tile"/>); the other side holds 2.</summary>
    internal const int Q = 6;

    public void Execute(int part, int parts)
    {
        // Tiles of 2 rows x Q columns, or Q x 2 (Wide) where that computes fewer padding elements (10 columns: 5 pairs,
        // not 2 sixes of which the last is a third empty). Threads split whole tiles of rows, or columns.
        int tr = Wide ? Q : 2, tc = Wide ? 2 : Q;
        int i0 = 0, i1 = M, j0 = 0, j1 = N;
        if (SplitRows)
        {
            int tiles = (M + tr - 1) / tr;
            i0 = Math.Min(M, (int)((long)tiles * part / parts) * tr);
            i1 = Math.Min(M, (int)((long)tiles * (part + 1) / parts) * tr);
        }
        else
        {
            j0 = (int)((long)N * part / parts);
            j1 = (int)((long)N * (part + 1) / parts);
        }
        // The tiles' sums go to a block of tr rows x Chunk columns, whose rows then take alpha, beta and the epilogue in
        // vectors (a Wide block holds all of its <= 16 columns; see PrefersWide).
        T* sums = stackalloc T[2 * Q];
        T* block = stackalloc T[Q * Chunk];
        for (int i = i0; i < i1; i += tr)
        {
            int rows = Math.Min(tr, i1 - i);
            for (int jc = j0; jc < j1; jc += Chunk)
            {
                int jEnd = Math.Min(j1, jc + Chunk);
                for (int j = jc; j < jEnd; j += tc)
                {
                    int cols = Math.Min(tc, jEnd - j);
                    // sums[p * Q + q] = pair row p . streamed row q: the pair is 2 rows of A and the streamed side Q rows of B,
                    // or (Wide) 2 rows of B against Q of A; a product of two rows is the same in either role (a * b == b * a).
                    if (Wide)
                    {
                        Tile(B + (nint)j * Ldb, cols > 1 ? Ldb : 0, A + (nint)i * Lda, rows, Lda, K, Isa, sums);
                        for (int q = 0; q < rows; q++)
                            for (int p = 0; p < cols; p++) block[q * Chunk + j - jc + p] = sums[p * Q + q];
                    }
                    else
                    {
                        Tile(A + (nint)i * Lda, rows > 1 ? Lda : 0, B + (nint)j * Ldb, cols, Ldb, K, Isa, sums);
                        for (int p = 0; p < rows; p++)
                            for (int q = 0; q < cols; q++) block[p * Chunk + j - jc + q] = sums[p * Q + q];
                    }
                }
                for (int r = 0; r < rows; r++)
                    Store(block + r * Chunk, C + (nint)(i + r) * Ldc + jc, jEnd - jc, i + r, jc);
            }
        }
    }

    // Columns per block: a multiple of the tile widths 2 and Q and of the vector width; a Wide block's <= 16 columns fit.
    private const int Chunk = 48;

    /// <summary>c[0..n) = epilogue(alpha · s + beta · c) at row i, columns j.. : vectors of 8 (AVX2 and up), then one by one.</summary>
    private void Store(T* s, T* c, int n, int i, int j)
    {
        int q = 0;
        if (Isa >= Isa.Avx2)
        {
            var alpha = Vector256.Create(Alpha);
            var beta = Vector256.Create(Beta);
            for (; q + Vector256<T>.Count <= n; q += Vector256<T>.Count)
            {
                var x = Vector256.Load(s + q) * alpha;
                if (Beta != T.Zero) x = VectorMath.Fma(beta, Vector256.Load(c + q), x);
                Vector256.Store(Epi.Apply(x, i, j + q), c + q);
            }
        }
        for (; q < n; q++)
        {
            T x = s[q] * Alpha;
            if (Beta != T.Zero) x = T.FusedMultiplyAdd(Beta, c[q], x);
            c[q] = Epi.Apply(x, i, j + q);
        }
    }

    /// <summary>Whether Q x 2 tiles compute fewer elements than 2 x Q ones for an m x n product.</summary>
    internal static bool PrefersWide(int m, int n) =>
        (long)((m + Q - 1) / Q * Q) * ((n + 1) / 2 * 2) < (long)((m + 1) / 2 * 2) * ((n + Q - 1) / Q * Q);

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

    /// <summary>
    /// dst[0..3] = the lane sums of a, b, c, d in three horizontal adds and one add instead of 4 reductions of 8, in the order
    /// of <see cref="Vector256.Sum{T}(Vector256{T})"/>: ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7)), bit for bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Sum4(float* dst, Vector256<float> a, Vector256<float> b, Vector256<float> c, Vector256<float> d)
    {
        // [a01 a23 b01 b23 | a45 a67 b45 b67], then [a0123 b0123 c0123 d0123 | a4567 b4567 c4567 d4567].
        var q = Avx.HorizontalAdd(Avx.HorizontalAdd(a, b), Avx.HorizontalAdd(c, d));
        Sse.Store(dst, q.GetLower() + q.GetUpper());
    }

    /// <summary>
    /// sums[p * Q + q] = row p of x (p &lt; 2; x1 = x0 + ldx1) · row q of y (q &lt; ny; rows past ny re-read row 0). Per vector
    /// step along K: 2 loads of x held in registers, Q loads of y each feeding 2 FMAs, into 2·Q = 12 accumulators (15 of the
    /// 16 ymm registers, no spills; on a Zen 3 the 2 x 4 tile this replaced, with 8, was 1-3 % slower at K = 256 and 3-7 %
    /// at K = 2048).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile(T* x0, int ldx1, T* y, int ny, int ldy, int k, Isa isa, T* sums)
    {
        T* x1 = x0 + ldx1;
        T* y0 = y, y1 = ny > 1 ? y + ldy : y, y2 = ny > 2 ? y + 2 * (nint)ldy : y, y3 = ny > 3 ? y + 3 * (nint)ldy : y;
        T* y4 = ny > 4 ? y + 4 * (nint)ldy : y, y5 = ny > 5 ? y + 5 * (nint)ldy : y;
        int p = 0;
        if (isa >= Isa.Avx512)
        {
            int w = Vector512<T>.Count;
            Vector512<T> s00 = default, s01 = default, s02 = default, s03 = default, s04 = default, s05 = default;
            Vector512<T> s10 = default, s11 = default, s12 = default, s13 = default, s14 = default, s15 = default;
            for (; p + w <= k; p += w)
            {
                var a0 = Vector512.Load(x0 + p);
                var a1 = Vector512.Load(x1 + p);
                var b = Vector512.Load(y0 + p);
                s00 = VectorMath.Fma(a0, b, s00);
                s10 = VectorMath.Fma(a1, b, s10);
                b = Vector512.Load(y1 + p);
                s01 = VectorMath.Fma(a0, b, s01);
                s11 = VectorMath.Fma(a1, b, s11);
                b = Vector512.Load(y2 + p);
                s02 = VectorMath.Fma(a0, b, s02);
                s12 = VectorMath.Fma(a1, b, s12);
                b = Vector512.Load(y3 + p);
                s03 = VectorMath.Fma(a0, b, s03);
                s13 = VectorMath.Fma(a1, b, s13);
                b = Vector512.Load(y4 + p);
                s04 = VectorMath.Fma(a0, b, s04);
                s14 = VectorMath.Fma(a1, b, s14);
                b = Vector512.Load(y5 + p);
                s05 = VectorMath.Fma(a0, b, s05);
                s15 = VectorMath.Fma(a1, b, s15);
            }
            if (typeof(T) == typeof(float))
            {
                Sum4((float*)sums, s00.AsSingle(), s01.AsSingle(), s02.AsSingle(), s03.AsSingle());
                Sum4((float*)sums + 4, s04.AsSingle(), s05.AsSingle(), s10.AsSingle(), s11.AsSingle());
                Sum4((float*)sums + 8, s12.AsSingle(), s13.AsSingle(), s14.AsSingle(), s15.AsSingle());
            }
            else
            {
                sums[0] = Vector512.Sum(s00); sums[1] = Vector512.Sum(s01); sums[2] = Vector512.Sum(s02);
                sums[3] = Vector512.Sum(s03); sums[4] = Vector512.Sum(s04); sums[5] = Vector512.Sum(s05);
                sums[6] = Vector512.Sum(s10); sums[7] = Vector512.Sum(s11); sums[8] = Vector512.Sum(s12);
                sums[9] = Vector512.Sum(s13); sums[10] = Vector512.Sum(s14); sums[11] = Vector512.Sum(s15);
            }
        }
        else if (isa >= Isa.Avx2)
        {
            int w = Vector256<T>.Count;
            Vector256<T> s00 = default, s01 = default, s02 = default, s03 = default, s04 = default, s05 = default;
            Vector256<T> s10 = default, s11 = default, s12 = default, s13 = default, s14 = default, s15 = default;
            for (; p + w <= k; p += w)
            {
                var a0 = Vector256.Load(x0 + p);
                var a1 = Vector256.Load(x1 + p);
                var b = Vector256.Load(y0 + p);
                s00 = VectorMath.Fma(a0, b, s00);
                s10 = VectorMath.Fma(a1, b, s10);
                b = Vector256.Load(y1 + p);
                s01 = VectorMath.Fma(a0, b, s01);
                s11 = VectorMath.Fma(a1, b, s11);
                b = Vector256.Load(y2 + p);
                s02 = VectorMath.Fma(a0, b, s02);
                s12 = VectorMath.Fma(a1, b, s12);
                b = Vector256.Load(y3 + p);
                s03 = VectorMath.Fma(a0, b, s03);
                s13 = VectorMath.Fma(a1, b, s13);
                b = Vector256.Load(y4 + p);
                s04 = VectorMath.Fma(a0, b, s04);
                s14 = VectorMath.Fma(a1, b, s14);
                b = Vector256.Load(y5 + p);
                s05 = VectorMath.Fma(a0, b, s05);
                s15 = VectorMath.Fma(a1, b, s15);
            }
            if (typeof(T) == typeof(float))
            {
                Sum4((float*)sums, s00.AsSingle(), s01.AsSingle(), s02.AsSingle(), s03.AsSingle());
                Sum4((float*)sums + 4, s04.AsSingle(), s05.AsSingle(), s10.AsSingle(), s11.AsSingle());
                Sum4((float*)sums + 8, s12.AsSingle(), s13.AsSingle(), s14.AsSingle(), s15.AsSingle());
            }
            else
            {
                sums[0] = Vector256.Sum(s00); sums[1] = Vector256.Sum(s01); sums[2] = Vector256.Sum(s02);
                sums[3] = Vector256.Sum(s03); sums[4] = Vector256.Sum(s04); sums[5] = Vector256.Sum(s05);
                sums[6] = Vector256.Sum(s10); sums[7] = Vector256.Sum(s11); sums[8] = Vector256.Sum(s12);
                sums[9] = Vector256.Sum(s13); sums[10] = Vector256.Sum(s14); sums[11] = Vector256.Sum(s15);
            }
        }
        else
        {
            for (int q = 0; q < 2 * Q; q++) sums[q] = T.Zero;
        }
        for (; p < k; p++)
        {
            T a0 = x0[p], a1 = x1[p];
            sums[0] = T.FusedMultiplyAdd(a0, y0[p], sums[0]);
            sums[1] = T.FusedMultiplyAdd(a0, y1[p], sums[1]);
            sums[2] = T.FusedMultiplyAdd(a0, y2[p], sums[2]);
            sums[3] = T.FusedMultiplyAdd(a0, y3[p], sums[3]);
            sums[4] = T.FusedMultiplyAdd(a0, y4[p], sums[4]);
            sums[5] = T.FusedMultiplyAdd(a0, y5[p], sums[5]);
            sums[6] = T.FusedMultiplyAdd(a1, y0[p], sums[6]);
            sums[7] = T.FusedMultiplyAdd(a1, y1[p], sums[7]);
            sums[8] = T.FusedMultiplyAdd(a1, y2[p], sums[8]);
            sums[9] = T.FusedMultiplyAdd(a1, y3[p], sums[9]);
            sums[10] = T.FusedMultiplyAdd(a1, y4[p], sums[10]);
            sums[11] = T.FusedMultiplyAdd(a1, y5[p], sums[11]);
        }
    }
}
