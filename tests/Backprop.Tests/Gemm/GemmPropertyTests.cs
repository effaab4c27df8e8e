// GEMM properties beyond the reference grid: big squares by random projection, agreement with
// OpenBLAS, thread-count invariance bit for bit, zero allocation per call, argument errors.
using Backprop.Kernels.Blas;
using Backprop.Kernels.Cpu;
using NUnit.Framework;
using G = Backprop.Kernels.Cpu.Gemm;

namespace Backprop.Tests.Gemm;

[TestFixture]
[NonParallelizable]
public class GemmPropertyTests
{
    // C = A·B is checked as C·t == A·(B·t) for random vectors t, in double: O(n^2) instead of O(n^3).
    [TestCase(1024, Transpose.N, Transpose.N)]
    [TestCase(1024, Transpose.T, Transpose.T)]
    [TestCase(2048, Transpose.N, Transpose.T)]
    [TestCase(2048, Transpose.T, Transpose.N)]
    public void LargeSquares_RandomProjection(int n, Transpose ta, Transpose tb)
    {
        var a = TestData.Floats(n * n, 1);
        var b = TestData.Floats(n * n, 2);
        var c = new float[n * n];
        G.Sgemm(ta, tb, n, n, n, 1f, a, n, b, n, 0f, c, n);
        for (int trial = 0; trial < 3; trial++)
        {
            var t = TestData.Doubles(n, 100 + trial);
            // bt = op(B)·t, then abt = op(A)·bt, and ct = C·t.
            var bt = new double[n];
            var abt = new double[n];
            var ct = new double[n];
            var absBt = new double[n];
            for (int p = 0; p < n; p++)
                for (int j = 0; j < n; j++)
                {
                    double bv = tb == Transpose.N ? b[p * n + j] : b[j * n + p];
                    bt[p] += bv * t[j];
                    absBt[p] += Math.Abs(bv * t[j]);
                }
            for (int i = 0; i < n; i++)
            {
                double s = 0, sAbs = 0;
                for (int p = 0; p < n; p++)
                {
                    double av = ta == Transpose.N ? a[i * n + p] : a[p * n + i];
                    s += av * bt[p];
                    sAbs += Math.Abs(av) * absBt[p];
                }
                abt[i] = s;
                double ci = 0;
                for (int j = 0; j < n; j++) ci += c[i * n + j] * t[j];
                ct[i] = ci;
                // Each C element carries float rounding of ~k*eps relative to its absolute dot product.
                double tol = 1e-4 + 2e-7 * n * sAbs;
                Assert.That(ct[i], Is.EqualTo(abt[i]).Within(tol), $"row {i}, trial {trial}");
            }
        }
    }

    [TestCase(Transpose.N, Transpose.N, 128, 256, 784)]
    [TestCase(Transpose.N, Transpose.T, 128, 256, 784)]
    [TestCase(Transpose.T, Transpose.N, 256, 128, 784)]
    [TestCase(Transpose.T, Transpose.T, 33, 65, 129)]
    [TestCase(Transpose.N, Transpose.T, 257, 17, 1000)]
    public void AgreesWithOpenBlas(Transpose ta, Transpose tb, int m, int n, int k)
    {
        if (!OpenBlas.IsAvailable) Assert.Ignore($"OpenBLAS not available: {OpenBlas.UnavailableReason}");
        int lda = ta == Transpose.N ? k : m, ldb = tb == Transpose.N ? n : k;
        var a = TestData.Floats(m * k, 3);
        var b = TestData.Floats(k * n, 4);
        var c0 = TestData.Floats(m * n, 5);
        var ours = (float[])c0.Clone();
        var theirs = (float[])c0.Clone();
        G.Sgemm(ta, tb, m, n, k, 1.5f, a, lda, b, ldb, -0.5f, ours, n);
        OpenBlas.Sgemm(ta, tb, m, n, k, 1.5f, a, lda, b, ldb, -0.5f, theirs, n);
        double worst = 0;
        for (int i = 0; i < ours.Length; i++) worst = Math.Max(worst, Math.Abs(ours[i] - theirs[i]));
        Assert.That(worst, Is.LessThan(1e-6 * k * 1.5 * 4), "max |ours - OpenBLAS|");

        var ad = TestData.ToDouble(a);
        var bd = TestData.ToDouble(b);
        var od = TestData.ToDouble(c0);
        var td = (double[])od.Clone();
        G.Dgemm(ta, tb, m, n, k, 1.5, ad, lda, bd, ldb, -0.5, od, n);
        OpenBlas.Dgemm(ta, tb, m, n, k, 1.5, ad, lda, bd, ldb, -0.5, td, n);
        for (int i = 0; i < od.Length; i++) Assert.That(od[i], Is.EqualTo(td[i]).Within(1e-12 * k), $"dgemm element {i}");
    }

    public static IEnumerable<Isa> Isas() => GemmCorrectnessTests.Isas();

    [Test]
    public void OneAndTwoThreads_AreBitIdentical([ValueSource(nameof(Isas))] Isa isa)
    {
        using var one = new CpuContext(1, isa);
        using var two = new CpuContext(2, isa);
        foreach (var (m, n, k, ta, tb) in new[]
                 {
                     (128, 256, 784, Transpose.N, Transpose.T), (257, 33, 300, Transpose.T, Transpose.N),
                     (31, 513, 65, Transpose.N, Transpose.N), (300, 300, 600, Transpose.T, Transpose.T),
                 })
        {
            int lda = ta == Transpose.N ? k : m, ldb = tb == Transpose.N ? n : k;
            var a = TestData.Floats(m * k, 7);
            var b = TestData.Floats(k * n, 8);
            var c1 = TestData.Floats(m * n, 9);
            var c2 = (float[])c1.Clone();
            G.Sgemm(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, 2f, c1, n, one);
            G.Sgemm(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, 2f, c2, n, two);
            for (int i = 0; i < c1.Length; i++)
                Assert.That(BitConverter.SingleToInt32Bits(c2[i]), Is.EqualTo(BitConverter.SingleToInt32Bits(c1[i])),
                    $"element {i} of {m}x{n}x{k} {ta}{tb}: {c1[i]:R} vs {c2[i]:R}");
        }
    }

    // Reads each pool thread's own allocation counter (part t runs on thread t).
    private unsafe struct AllocationProbe : Backprop.Kernels.Threading.IParallelJob
    {
        public long* Bytes;
        public void Execute(int part, int parts) => Bytes[part] = GC.GetAllocatedBytesForCurrentThread();
    }

    [Test]
    public unsafe void NoAllocationPerCall_AfterWarmUp()
    {
        // GC.GetTotalAllocatedBytes would also count the test runner's own threads, which allocate
        // now and then; the pool's threads are probed one by one instead, together with the caller.
        using var pool = new Backprop.Kernels.Threading.WorkerPool(2);
        using var ctx = new CpuContext(2, null, pool);
        long* before = stackalloc long[2];
        long* after = stackalloc long[2];
        int m = 128, n = 256, k = 784;
        var a = TestData.Floats(m * k, 1);
        var b = TestData.Floats(n * k, 2);
        var c = new float[m * n];
        var ad = new double[m * k];
        var bd = new double[n * k];
        var cd = new double[m * n];
        // Warm-up long enough for tiered compilation to settle (its rejits happen after 30 calls).
        for (int i = 0; i < 200; i++)
        {
            G.Sgemm(Transpose.N, Transpose.T, m, n, k, 1f, a, k, b, k, 0f, c, n, ctx);
            G.Dgemm(Transpose.T, Transpose.N, m, n, k, 1.0, ad, m, bd, n, 0.0, cd, n, ctx);
        }
        var probe = new AllocationProbe { Bytes = before };
        pool.Run(ref probe, 2);
        long mine = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 50; i++)
        {
            G.Sgemm(Transpose.N, Transpose.T, m, n, k, 1f, a, k, b, k, 0f, c, n, ctx);
            G.Dgemm(Transpose.T, Transpose.N, m, n, k, 1.0, ad, m, bd, n, 0.0, cd, n, ctx);
        }
        long mineAfter = GC.GetAllocatedBytesForCurrentThread();
        probe = new AllocationProbe { Bytes = after };
        pool.Run(ref probe, 2);
        Assert.That(mineAfter - mine, Is.EqualTo(0), "bytes allocated on the calling thread");
        Assert.That(after[1] - before[1], Is.EqualTo(0), "bytes allocated on the worker thread");
    }

    private static string Throws(Action d)
    {
        var e = Assert.Throws(Is.InstanceOf<ArgumentException>(), d)!;
        return e.Message;
    }

    [Test]
    public void BadArguments_NameTheArgumentValueAndBound()
    {
        var x = new float[100];
        Assert.That(Throws(() => G.Sgemm(Transpose.N, Transpose.N, -1, 2, 2, 1, x, 2, x, 2, 0, x, 2)),
            Does.Contain("m must be >= 0; got -1"));
        Assert.That(Throws(() => G.Sgemm(Transpose.N, Transpose.N, 2, -3, 2, 1, x, 2, x, 2, 0, x, 2)),
            Does.Contain("n must be >= 0; got -3"));
        Assert.That(Throws(() => G.Sgemm(Transpose.N, Transpose.N, 2, 2, -5, 1, x, 2, x, 2, 0, x, 2)),
            Does.Contain("k must be >= 0; got -5"));
        Assert.That(Throws(() => G.Sgemm(Transpose.N, Transpose.N, 4, 5, 6, 1, x, 5, x, 5, 0, x, 5)),
            Does.Contain("lda must be at least 6").And.Contain("got 5"));
        Assert.That(Throws(() => G.Sgemm(Transpose.T, Transpose.N, 4, 5, 6, 1, x, 3, x, 5, 0, x, 5)),
            Does.Contain("lda must be at least 4").And.Contain("transA=T").And.Contain("got 3"));
        Assert.That(Throws(() => G.Sgemm(Transpose.N, Transpose.T, 4, 5, 6, 1, x, 6, x, 5, 0, x, 5)),
            Does.Contain("ldb must be at least 6").And.Contain("got 5"));
        Assert.That(Throws(() => G.Sgemm(Transpose.N, Transpose.N, 4, 5, 6, 1, x, 6, x, 5, 0, x, 4)),
            Does.Contain("ldc must be at least 5").And.Contain("got 4"));
        Assert.That(Throws(() => G.Sgemm(Transpose.N, Transpose.N, 4, 5, 6, 1, new float[23], 6, x, 5, 0, x, 5)),
            Does.Contain("a has 23 elements").And.Contain("needs at least 24"));
        Assert.That(Throws(() => G.Sgemm(Transpose.N, Transpose.N, 4, 5, 6, 1, x, 6, new float[29], 5, 0, x, 5)),
            Does.Contain("b has 29 elements").And.Contain("needs at least 30"));
        Assert.That(Throws(() => G.Sgemm(Transpose.N, Transpose.N, 4, 5, 6, 1, x, 6, x, 5, 0, new float[19], 5)),
            Does.Contain("c has 19 elements").And.Contain("needs at least 20"));
        Assert.That(Throws(() => G.Sgemm((Transpose)7, Transpose.N, 1, 1, 1, 1, x, 1, x, 1, 0, x, 1)),
            Does.Contain("transA must be N or T; got 7"));
        // Padded leading dimensions need (rows-1)*ld + cols, not rows*ld.
        Assert.DoesNotThrow(() => G.Sgemm(Transpose.N, Transpose.N, 2, 2, 2, 1, new float[2 * 10 - 8], 10, x, 2, 0, x, 2));
    }

    [Test]
    public void ForcingAnUnsupportedIsa_Throws()
    {
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new CpuContext(1, (Isa)9))!.Message, Does.Contain("got 9"));
        if (CpuIsa.Supported == Isa.Avx512) Assert.Ignore("this CPU supports every level, so no level can be refused here");
        var e = Assert.Throws<PlatformNotSupportedException>(() => new CpuContext(1, Isa.Avx512))!;
        Assert.That(e.Message, Does.Contain("supports at most"));
    }
}
