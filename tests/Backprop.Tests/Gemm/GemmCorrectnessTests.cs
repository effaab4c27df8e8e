// SGEMM/DGEMM against the naive double reference: all four transpose pairs, sizes that hit every
// edge of the register tiles and cache blocks, alpha/beta variations, padded leading dimensions,
// and every ISA path forced in turn.
using System.Runtime.InteropServices;
using Backprop.Kernels.Cpu;
using NUnit.Framework;

namespace Backprop.Tests.Gemm;

[TestFixture]
[Parallelizable(ParallelScope.Children)] // each case forces its ISA path on its own CpuContext, so the cases run side by side
public unsafe class GemmCorrectnessTests
{
    private static readonly int[] Sizes = [0, 1, 2, 3, 7, 15, 16, 17, 31, 33, 63, 64, 65, 127, 255, 257];

    public static IEnumerable<Isa> Isas()
    {
        foreach (var isa in Enum.GetValues<Isa>())
            if (isa <= CpuIsa.Supported && isa != Isa.Vector128) yield return isa; // GEMM runs its scalar kernel at Vector128
    }

    // A sample of the (M, N, K) grid: every size appears in every position, plus the diagonal,
    // without the 16^3 full product (which would take minutes against the naive reference).
    public sealed record Shape(int M, int N, int K)
    {
        public override string ToString() => $"{M}x{N}x{K}";
    }

    public static IEnumerable<Shape> Shapes()
    {
        var seen = new HashSet<(int, int, int)>();
        for (int i = 0; i < Sizes.Length; i++)
        {
            int a = Sizes[i], b = Sizes[(i * 7 + 3) % Sizes.Length], c = Sizes[(i * 5 + 11) % Sizes.Length];
            foreach (var s in new[] { (a, b, c), (b, c, a), (c, a, b), (a, a, a) })
                if (seen.Add(s)) yield return new Shape(s.Item1, s.Item2, s.Item3);
        }
    }

    private static void RunFloat(Isa isa, Transpose ta, Transpose tb, int m, int n, int k, float alpha, float beta, int pad, int seed)
    {
        using var ctx = new CpuContext(2, isa);
        bool tA = ta == Transpose.T, tB = tb == Transpose.T;
        int lda = Math.Max(1, tA ? m : k) + pad, ldb = Math.Max(1, tB ? k : n) + pad, ldc = Math.Max(1, n) + pad;
        int aRows = tA ? k : m, bRows = tB ? n : k;
        var a = TestData.Floats(Math.Max(1, aRows * lda), seed);
        var b = TestData.Floats(Math.Max(1, bRows * ldb), seed + 1);
        var c = TestData.Floats(Math.Max(1, m * ldc), seed + 2);
        var cRef = TestData.ToDouble(c);
        GemmReference.Compute(tA, tB, m, n, k, alpha, TestData.ToDouble(a), lda, TestData.ToDouble(b), ldb, beta, cRef, ldc);
        var cIn = (float[])c.Clone();
        Kernels.Cpu.Gemm.Sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ctx);
        var ad = TestData.ToDouble(a);
        var bd = TestData.ToDouble(b);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < ldc; j++)
            {
                int idx = i * ldc + j;
                if (j >= n)
                {
                    Assert.That(c[idx], Is.EqualTo(cIn[idx]), $"padding C[{i},{j}] was written");
                    continue;
                }
                // float rounding: each product and partial sum contributes ~2^-24 relative of its magnitude.
                double scale = Math.Abs(alpha) * GemmReference.AbsDot(tA, tB, k, ad, lda, bd, ldb, i, j) + Math.Abs(beta * cIn[idx]);
                double tol = 1e-6 + 4e-7 * (k + 2) * scale;
                Assert.That(c[idx], Is.EqualTo(cRef[idx]).Within(tol), $"C[{i},{j}] isa={isa} {ta}{tb} m={m} n={n} k={k}");
            }
    }

    [Test]
    public void Sgemm_MatchesReference_AllTransposes_AllIsas(
        [ValueSource(nameof(Isas))] Isa isa,
        [Values(Transpose.N, Transpose.T)] Transpose ta,
        [Values(Transpose.N, Transpose.T)] Transpose tb,
        [ValueSource(nameof(Shapes))] Shape shape)
    {
        RunFloat(isa, ta, tb, shape.M, shape.N, shape.K, 1f, 0f, 0, shape.M * 31 + shape.N * 7 + shape.K);
    }

    [TestCase(1.0f, 0.0f, 0)]
    [TestCase(0.5f, 1.0f, 3)]
    [TestCase(-2.0f, 0.25f, 5)]
    [TestCase(1.0f, -1.0f, 1)]
    [TestCase(0.0f, 2.0f, 2)]
    public void Sgemm_AlphaBeta_AndPaddedLeadingDimensions(float alpha, float beta, int pad)
    {
        foreach (var isa in Isas())
            foreach (var ta in new[] { Transpose.N, Transpose.T })
                foreach (var tb in new[] { Transpose.N, Transpose.T })
                {
                    RunFloat(isa, ta, tb, 33, 65, 17, alpha, beta, pad, 11);
                    RunFloat(isa, ta, tb, 127, 31, 257, alpha, beta, pad, 12);
                }
    }

    [Test]
    public void SmallM_TimesTransposedB_DotProductPath([ValueSource(nameof(Isas))] Isa isa)
    {
        // M <= 4 with op(A) = A, op(B) = Bᵀ takes the dot-product path (no packing): every M, tails of K, alpha/beta, padding.
        foreach (int m in new[] { 1, 2, 3, 4 })
            foreach (int k in new[] { 1, 7, 16, 63, 64, 65, 257 })
            {
                RunFloat(isa, Transpose.N, Transpose.T, m, 37, k, 1f, 0f, 0, m * 100 + k);
                RunFloat(isa, Transpose.N, Transpose.T, m, 19, k, -0.5f, 1.5f, 3, m * 100 + k + 1);
            }
        using var one = new CpuContext(1);
        using var two = new CpuContext(2);
        var a = TestData.Floats(3 * 300, 1);
        var b = TestData.Floats(2000 * 300, 2);
        var c1 = new float[3 * 2000];
        var c2 = new float[3 * 2000];
        Kernels.Cpu.Gemm.Sgemm(Transpose.N, Transpose.T, 3, 2000, 300, 1f, a, 300, b, 300, 0f, c1, 2000, one);
        Kernels.Cpu.Gemm.Sgemm(Transpose.N, Transpose.T, 3, 2000, 300, 1f, a, 300, b, 300, 0f, c2, 2000, two);
        Assert.That(c2.Select(BitConverter.SingleToInt32Bits), Is.EqualTo(c1.Select(BitConverter.SingleToInt32Bits)), "1 and 2 threads bit for bit");
    }

    [Test]
    public void SmallN_TimesTransposedB_DotProductPath([ValueSource(nameof(Isas))] Isa isa)
    {
        // N <= 16 with op(A) = A, op(B) = Bᵀ (an output layer's forward) takes the dot-product path too: odd rows and
        // columns (edge tiles of the 6 x 2 tiling), tails of K, alpha/beta, padding; N = 17 goes back to the tiled GEMM.
        foreach (int n in new[] { 1, 3, 10, 16, 17 })
            foreach (int k in new[] { 1, 15, 16, 17, 256, 300 })
            {
                RunFloat(isa, Transpose.N, Transpose.T, 37, n, k, 1f, 0f, 0, n * 1000 + k);
                RunFloat(isa, Transpose.N, Transpose.T, 128, n, k, -0.5f, 1.5f, 3, n * 1000 + k + 1);
            }
        using var one = new CpuContext(1, isa);
        using var two = new CpuContext(2, isa);
        var a = TestData.Floats(257 * 300, 3);
        var b = TestData.Floats(10 * 300, 4);
        var c1 = new float[257 * 10];
        var c2 = new float[257 * 10];
        Kernels.Cpu.Gemm.Sgemm(Transpose.N, Transpose.T, 257, 10, 300, 1f, a, 300, b, 300, 0f, c1, 10, one);
        Kernels.Cpu.Gemm.Sgemm(Transpose.N, Transpose.T, 257, 10, 300, 1f, a, 300, b, 300, 0f, c2, 10, two);
        Assert.That(c2.Select(BitConverter.SingleToInt32Bits), Is.EqualTo(c1.Select(BitConverter.SingleToInt32Bits)), "1 and 2 threads bit for bit");
        // An element's value does not depend on where the tiling put it: row 0 alone equals row 0 of the whole product.
        var row = new float[10];
        Kernels.Cpu.Gemm.Sgemm(Transpose.N, Transpose.T, 1, 10, 300, 1f, a, 300, b, 300, 0f, row, 10, one);
        Assert.That(row.Select(BitConverter.SingleToInt32Bits), Is.EqualTo(c1.Take(10).Select(BitConverter.SingleToInt32Bits)), "the same sum in any tile");
    }

    [Test]
    public void DotProductPath_SumsEachElementInItsDocumentedOrder([ValueSource(nameof(Isas))] Isa isa)
    {
        // Both tilings (2 rows x 6 columns for few rows, 6 x 2 for few columns), edge tiles, a K tail: every element is
        // lane-wise FMAs over whole vectors, the lanes summed in Vector256.Sum's order (AVX2) or the AVX-512 tree's, then
        // the tail's FMAs in order. Computed here lane by lane and compared bit for bit.
        foreach (var (m, n, k) in new[] { (3, 13, 300), (4, 40, 37), (37, 10, 300), (13, 7, 64), (2, 5, 7) })
        {
            var a = TestData.Floats(m * k, m + k);
            var b = TestData.Floats(n * k, n + k + 1);
            var c = new float[m * n];
            using var ctx = new CpuContext(1, isa);
            Kernels.Cpu.Gemm.Sgemm(Transpose.N, Transpose.T, m, n, k, 1f, a, k, b, k, 0f, c, n, ctx);
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                    Assert.That(BitConverter.SingleToInt32Bits(c[i * n + j]), Is.EqualTo(BitConverter.SingleToInt32Bits(DotInOrder(isa, a, i * k, b, j * k, k))),
                        $"{m}x{n}x{k} at ({i}, {j})");
        }
    }

    private static float DotInOrder(Isa isa, float[] a, int ai, float[] b, int bi, int k)
    {
        int w = isa >= Isa.Avx512 ? 16 : isa >= Isa.Avx2 ? 8 : 0, p = 0;
        float sum = 0f;
        if (w > 0)
        {
            var l = new float[w];
            for (; p + w <= k; p += w)
                for (int q = 0; q < w; q++) l[q] = MathF.FusedMultiplyAdd(a[ai + p + q], b[bi + p + q], l[q]);
            if (w == 8) sum = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
            else
            {
                var t = new float[4];
                for (int j = 0; j < 4; j++) t[j] = (l[j] + l[j + 8]) + (l[j + 4] + l[j + 12]);
                sum = (t[0] + t[1]) + (t[2] + t[3]);
            }
        }
        for (; p < k; p++) sum = MathF.FusedMultiplyAdd(a[ai + p], b[bi + p], sum);
        return sum;
    }

    [Test]
    public void DotProductPath_TilesTheWayThatPadsLess()
    {
        // 6 x 2 tiles for an output layer of 10 (5 column pairs, no padding); 2 x 6 for a batch of up to 4 against many columns.
        Assert.That(SmallMJob<float, IdentityEpilogue<float>>.PrefersWide(128, 10), Is.True);
        Assert.That(SmallMJob<float, IdentityEpilogue<float>>.PrefersWide(37, 16), Is.True);
        Assert.That(SmallMJob<float, IdentityEpilogue<float>>.PrefersWide(1, 256), Is.False);
        Assert.That(SmallMJob<float, IdentityEpilogue<float>>.PrefersWide(4, 256), Is.False);
        Assert.That(SmallMJob<float, IdentityEpilogue<float>>.PrefersWide(4, 3), Is.False, "a tie keeps 2 x 6");
    }

    [Test]
    [NonParallelizable] // switches GemmDriver.ReadAInPlace, which every GEMM of the process reads
    public void ReadingAInPlace_MatchesPackingBitForBit([ValueSource(nameof(Isas))] Isa isa, [Values(1, 2)] int threads)
    {
        // A row-major A is read in place by the micro-kernels (two threads splitting N; one AVX-512 thread): edge rows of
        // the 8-row tile, several K blocks, a padded lda. Packing it (ReadAInPlace off) must give the same bits, and so must
        // the other thread count: the micro-kernels do the same FMAs in the same order either way.
        if (isa < Isa.Avx2) Assert.Ignore("the scalar rung always packs");
        bool saved = GemmDriver.ReadAInPlace;
        try
        {
            foreach (var (m, n, k, lda) in new[] { (37, 300, 600, 603), (128, 256, 784, 784), (9, 100, 40, 41), (256, 256, 784, 784), (300, 128, 50, 50) })
            {
                var a = TestData.Floats(m * lda, m);
                var b = TestData.Floats(k * n, n);
                var packed = new float[m * n];
                var inPlace = new float[m * n];
                var other = new float[m * n];
                using var ctx = new CpuContext(threads, isa);
                using var otherCtx = new CpuContext(3 - threads, isa);
                GemmDriver.ReadAInPlace = false;
                Kernels.Cpu.Gemm.Sgemm(Transpose.N, Transpose.N, m, n, k, 1f, a, lda, b, n, 0f, packed, n, ctx);
                GemmDriver.ReadAInPlace = true;
                Kernels.Cpu.Gemm.Sgemm(Transpose.N, Transpose.N, m, n, k, 1f, a, lda, b, n, 0f, inPlace, n, ctx);
                Kernels.Cpu.Gemm.Sgemm(Transpose.N, Transpose.N, m, n, k, 1f, a, lda, b, n, 0f, other, n, otherCtx);
                Assert.That(inPlace.Select(BitConverter.SingleToInt32Bits), Is.EqualTo(packed.Select(BitConverter.SingleToInt32Bits)),
                    $"{m}x{n}x{k} lda {lda}, {threads} thread(s): in place against packed");
                Assert.That(other.Select(BitConverter.SingleToInt32Bits), Is.EqualTo(inPlace.Select(BitConverter.SingleToInt32Bits)),
                    $"{m}x{n}x{k} lda {lda}: {3 - threads} thread(s) against {threads}");
                RunFloat(isa, Transpose.N, Transpose.N, m, n, k, 1f, 0f, lda - k, m + n + k);
            }
        }
        finally
        {
            GemmDriver.ReadAInPlace = saved;
        }
    }

    [Test]
    public void AInPlace_WhereThreadsSplitN_OrOnOneAvx512Thread()
    {
        Assert.That(GemmDriver.AInPlaceFits(Isa.Avx512, transA: false, rowSums: false, 784 * 4), Is.True, "784 floats a row");
        Assert.That(GemmDriver.AInPlaceFits(Isa.Avx512, transA: false, rowSums: false, 1024 * 4), Is.False, "rows 4 KiB apart share an L1 set");
        Assert.That(GemmDriver.AInPlaceFits(Isa.Avx512, transA: true, rowSums: false, 784 * 4), Is.False, "a transposed A is packed");
        Assert.That(GemmDriver.AInPlaceFits(Isa.Avx512, transA: false, rowSums: true, 784 * 4), Is.False, "row sums come from the packing");
        Assert.That(GemmDriver.AInPlaceFits(Isa.Scalar, transA: false, rowSums: false, 784 * 4), Is.False, "the scalar rung packs");
        Assert.That(GemmDriver.StridesA(Isa.Avx512, fits: true, splitM: false, parts: 1), Is.True, "one AVX-512 thread");
        Assert.That(GemmDriver.StridesA(Isa.Avx2, fits: true, splitM: false, parts: 1), Is.False, "one AVX2 thread packs");
        Assert.That(GemmDriver.StridesA(Isa.Avx2, fits: true, splitM: false, parts: 2), Is.True, "threads splitting N");
        Assert.That(GemmDriver.StridesA(Isa.Avx512, fits: true, splitM: true, parts: 2), Is.False, "threads splitting M pack their rows");
        Assert.That(GemmDriver.StridesA(Isa.Avx512, fits: false, splitM: false, parts: 1), Is.False);
    }

    [Test]
    public void BInPlace_OnlyWhereItsPanelStaysInL1OrFewRowsReadIt()
    {
        float* b = (float*)NativeMemory.AlignedAlloc(4096, 64);
        try
        {
            Assert.That(GemmDriver.BInPlaceFits(b, 784, 128, 6), Is.True, "784 floats: 49 lines, every L1 set");
            Assert.That(GemmDriver.BInPlaceFits(b, 256, 128, 6), Is.False, "256 floats: 16 lines, 4 sets");
            Assert.That(GemmDriver.BInPlaceFits(b, 512, 128, 6), Is.False, "512 floats: 32 lines, 2 sets");
            Assert.That(GemmDriver.BInPlaceFits(b, 300, 128, 6), Is.False, "rows not line-aligned: each spans two lines");
            Assert.That(GemmDriver.BInPlaceFits(b + 1, 784, 128, 6), Is.False, "B not line-aligned");
            Assert.That(GemmDriver.BInPlaceFits(b, 256, 12, 6), Is.True, "two row tiles: each panel read twice");
            Assert.That(GemmDriver.BInPlaceFits(b, 256, 13, 6), Is.False, "three row tiles");
        }
        finally
        {
            NativeMemory.AlignedFree(b);
        }
    }

    [Test]
    public void Split_PrefersN_WhenAIsReadInPlace()
    {
        // Splitting M makes each thread pack the whole of B; with A read in place an N split packs nothing twice.
        Assert.That(GemmDriver.Split(2, 256, 256, 784, 6, 16), Is.EqualTo((true, 2)));
        Assert.That(GemmDriver.Split(2, 256, 256, 784, 6, 16, nSplitIsFree: true), Is.EqualTo((false, 2)));
        Assert.That(GemmDriver.Split(2, 300, 128, 50, 6, 16, nSplitIsFree: true), Is.EqualTo((false, 2)), "eight 16-column tiles: four per thread");
        Assert.That(GemmDriver.Split(2, 300, 40, 50, 6, 16, nSplitIsFree: true), Is.EqualTo((true, 2)), "three column tiles would split unevenly: M is split");
        Assert.That(GemmDriver.Split(2, 8, 8, 8, 6, 16, nSplitIsFree: true).Parts, Is.EqualTo(1), "below the threshold one thread runs");
    }

    [Test]
    [NonParallelizable] // switches GemmDriver.ReadBInPlace, which every GEMM of the process reads
    public void ReadingBInPlace_MatchesPackingBitForBit([ValueSource(nameof(Isas))] Isa isa, [Values(1, 2)] int threads)
    {
        // A non-transposed B is read in place by the micro-kernels, only a last panel narrower than NR packed (n % NR != 0),
        // several K blocks, padded ldb, both op(A); the packed path must give the same bits. B is 64-byte aligned, and its
        // strides are odd numbers of lines (in place whatever M) or the rows are few (in place whatever the stride).
        if (isa < Isa.Avx2) Assert.Ignore("the scalar rung always packs");
        using var ctx = new CpuContext(threads, isa);
        bool saved = GemmDriver.ReadBInPlace;
        try
        {
            foreach (var (m, n, k, ldb) in new[] { (37, 300, 600, 304), (128, 784, 256, 784), (9, 100, 40, 101), (5, 16, 9, 16), (10, 256, 128, 256) })
                foreach (var ta in new[] { Transpose.N, Transpose.T })
                {
                    int lda = ta == Transpose.N ? k : m;
                    var a = TestData.Floats(m * k, m + k);
                    float* bAligned = (float*)NativeMemory.AlignedAlloc((nuint)(k * ldb * sizeof(float)), 64);
                    try
                    {
                        var b = new Span<float>(bAligned, k * ldb);
                        TestData.Floats(k * ldb, n + k).CopyTo(b);
                        Assert.That(GemmDriver.BInPlaceFits(bAligned, ldb, m, isa == Isa.Avx512 ? 8 : 6), Is.True, $"{m}x{n}x{k} ldb {ldb} is read in place");
                        var packed = new float[m * n];
                        var inPlace = new float[m * n];
                        GemmDriver.ReadBInPlace = false;
                        Kernels.Cpu.Gemm.Sgemm(ta, Transpose.N, m, n, k, 1f, a, lda, b, ldb, 0f, packed, n, ctx);
                        GemmDriver.ReadBInPlace = true;
                        Kernels.Cpu.Gemm.Sgemm(ta, Transpose.N, m, n, k, 1f, a, lda, b, ldb, 0f, inPlace, n, ctx);
                        Assert.That(inPlace.Select(BitConverter.SingleToInt32Bits), Is.EqualTo(packed.Select(BitConverter.SingleToInt32Bits)),
                            $"{ta}N {m}x{n}x{k} ldb {ldb}, {threads} thread(s)");
                    }
                    finally
                    {
                        NativeMemory.AlignedFree(bAligned);
                    }
                    RunFloat(isa, ta, Transpose.N, m, n, k, 1f, 0.5f, ldb - n, m * n + k);
                }
        }
        finally
        {
            GemmDriver.ReadBInPlace = saved;
        }
    }

    [Test]
    public void Sgemm_KZero_ScalesC()
    {
        foreach (var isa in Isas())
        {
            RunFloat(isa, Transpose.N, Transpose.N, 17, 33, 0, 1f, 0.5f, 0, 3);
            RunFloat(isa, Transpose.T, Transpose.N, 17, 33, 0, 1f, 0f, 2, 3);
        }
    }

    [Test]
    public void BetaZero_IgnoresNaNInC([ValueSource(nameof(Isas))] Isa isa)
    {
        using var ctx = new CpuContext(2, isa);
        int m = 19, n = 37, k = 300; // k > KC so several K blocks run
        var a = TestData.Floats(m * k, 1);
        var b = TestData.Floats(k * n, 2);
        var c = Enumerable.Repeat(float.NaN, m * n).ToArray();
        Kernels.Cpu.Gemm.Sgemm(Transpose.N, Transpose.N, m, n, k, 1f, a, k, b, n, 0f, c, n, ctx);
        Assert.That(c.All(float.IsFinite), Is.True, "beta = 0 must not read C");
        var d = Enumerable.Repeat(double.NaN, m * n).ToArray();
        Kernels.Cpu.Gemm.Dgemm(Transpose.N, Transpose.N, m, n, 0, 1.0, new double[1], 1, new double[1], n, 0.0, d, n, ctx);
        Assert.That(d.All(x => x == 0), Is.True, "k = 0 and beta = 0 must zero C");
    }

    [Test]
    public void Dgemm_MatchesReferenceTightly(
        [ValueSource(nameof(Isas))] Isa isa,
        [Values(Transpose.N, Transpose.T)] Transpose ta,
        [Values(Transpose.N, Transpose.T)] Transpose tb)
    {
        using var ctx = new CpuContext(2, isa);
        foreach (var (m, n, k) in new[] { (1, 1, 1), (3, 17, 33), (65, 31, 257), (127, 64, 15), (257, 33, 300) })
        {
            bool tA = ta == Transpose.T, tB = tb == Transpose.T;
            int lda = (tA ? m : k) + 1, ldb = (tB ? k : n) + 2, ldc = n + 3;
            var a = TestData.Doubles((tA ? k : m) * lda, 5);
            var b = TestData.Doubles((tB ? n : k) * ldb, 6);
            var c = TestData.Doubles(m * ldc, 7);
            var r = (double[])c.Clone();
            GemmReference.Compute(tA, tB, m, n, k, 0.75, a, lda, b, ldb, -0.5, r, ldc);
            Kernels.Cpu.Gemm.Dgemm(ta, tb, m, n, k, 0.75, a, lda, b, ldb, -0.5, c, ldc, ctx);
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                    Assert.That(c[i * ldc + j], Is.EqualTo(r[i * ldc + j]).Within(1e-13 * (k + 1)), $"C[{i},{j}] {m}x{n}x{k}");
        }
    }
}
