// The native bf16 packing and strips at their edges: every operand sits flush against a PROT_NONE page (after its last
// byte, or before its first), so any read or write out of bounds faults; the packed words are checked against the layout.
using System.Runtime.InteropServices;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cpu.Ops;
using Backprop.Kernels.Native;
using NUnit.Framework;

namespace Backprop.Tests.Gemm;

internal sealed unsafe class Guarded : IDisposable
{
    [DllImport("libc", SetLastError = true)] private static extern nint mmap(nint addr, nuint len, int prot, int flags, int fd, nint off);
    [DllImport("libc", SetLastError = true)] private static extern int munmap(nint addr, nuint len);
    [DllImport("libc", SetLastError = true)] private static extern int mprotect(nint addr, nuint len, int prot);
    private const int Page = 4096;
    private readonly nint _base;
    private readonly nuint _len;
    public readonly byte* Ptr;

    // bytes usable; tail: flush against the guard page after it (else against the one before it).
    public Guarded(long bytes, bool tail)
    {
        long pages = (bytes + Page - 1) / Page;
        _len = (nuint)((pages + 2) * Page);
        _base = mmap(0, _len, 3, 0x22, -1, 0);
        if (_base == -1) throw new InvalidOperationException("mmap");
        mprotect(_base, Page, 0);
        mprotect(_base + (nint)((pages + 1) * Page), Page, 0);
        Ptr = tail ? (byte*)(_base + (nint)((pages + 1) * Page) - (nint)bytes) : (byte*)(_base + Page);
    }

    public void Dispose() => munmap(_base, _len);
}

[TestFixture]
public unsafe class Bf16StressTests
{
    private static uint Bits(float x)
    {
        uint u = BitConverter.SingleToUInt32Bits(x);
        if ((u & 0x7f800000u) == 0) return (u >> 16) & 0x8000u;
        if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
        if ((u & 0x7fffffffu) == 0x7f800000u) return u >> 16;
        return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    }

    [Test]
    public void Pack_EveryShape_StaysInBounds_AndMatchesTheLayout()
    {
        if (!Bf16Gemm.IsAvailable) Assert.Ignore(Bf16Gemm.Unavailable!);
        var rng = new Random(3);
        foreach (bool isA in new[] { true, false })
            foreach (int trans in new[] { 0, 1 })
                for (int rows = 1; rows <= 70; rows += rows < 40 ? 1 : 7)
                    foreach (int kc in new[] { 1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 34, 47, 63, 64, 65, 95, 97, 320, 321 })
                        foreach (int extra in new[] { 0, 5 })
                            foreach (bool tail in new[] { true, false })
                            {
                                int w = isA ? Bf16Native.MR : Bf16Native.NR;
                                bool inner = isA ? trans == 0 : trans == 1; // row r's k contiguous
                                long ld = (inner ? kc : rows) + extra;
                                long extent = inner ? (rows - 1) * ld + kc : (kc - 1) * ld + rows;
                                int kc2 = (kc + 1) / 2, panels = (rows + w - 1) / w;
                                long dstN = (long)panels * w * kc2;
                                using var src = new Guarded(extent * 4, tail);
                                using var dst = new Guarded(dstN * 4, tail);
                                float* x = (float*)src.Ptr;
                                for (long i = 0; i < extent; i++) x[i] = (float)(rng.NextDouble() * 4 - 2);
                                uint* d = (uint*)dst.Ptr;
                                for (long i = 0; i < dstN; i++) d[i] = 0xAAAAAAAAu;
                                if (isA) Bf16Native.PackA(trans, x, (nint)ld, rows, kc, d);
                                else Bf16Native.PackB(trans, x, (nint)ld, rows, kc, d);
                                for (int r = 0; r < panels * w; r++)
                                    for (int p = 0; p < kc2; p++)
                                    {
                                        uint want = 0;
                                        for (int h = 0; h < 2; h++)
                                        {
                                            int k = 2 * p + h;
                                            if (r < rows && k < kc) want |= Bits(inner ? x[r * ld + k] : x[k * ld + r]) << (16 * h);
                                        }
                                        uint got = d[(long)(r / w) * w * kc2 + (long)p * w + r % w];
                                        if (got != want)
                                            Assert.Fail($"{(isA ? "A" : "B")} trans={trans} rows={rows} kc={kc} ld={ld}: [{r},{p}] = {got:X8}, want {want:X8}");
                                    }
                            }
    }

    private static IEnumerable<(int M, int N, int K)> Shapes()
    {
        var b = Bf16Gemm.Blocks;
        return new[]
        {
            (1, 1, 1), (5, 1, 5), (13, 17, 1), (12, 33, 3), (23, 31, 33), (25, 64, 65), (37, 95, 2 * b.KC + 1), (b.MC + 13, 45, 7),
            (29, b.NC + 33, 9), (2 * b.MC + 1, 65, b.KC + 9), (100, 3, 40), (3, 100, 40),
        };
    }

    [Test]
    public void Sgemm_GuardedOperands_EveryTransAndThreadCount_MatchesReference()
    {
        if (!Bf16Gemm.IsAvailable) Assert.Ignore(Bf16Gemm.Unavailable!);
        using var one = new CpuContext(1, null, null, GemmPrecision.Bf16);
        using var two = new CpuContext(2, null, null, GemmPrecision.Bf16);
        var rng = new Random(5);
        foreach (var (m, n, k) in Shapes())
            foreach (var (ta, tb) in new[] { (false, false), (false, true), (true, false), (true, true) })
                foreach (var (alpha, beta) in new[] { (1f, 0f), (0.5f, -1f) })
                    foreach (bool tail in new[] { true, false })
                    {
                        int lda = (ta ? m : k) + 1, ldb = (tb ? k : n) + 2, ldc = n + 1;
                        long aN = (long)((ta ? k : m) - 1) * lda + (ta ? m : k), bN = (long)((tb ? n : k) - 1) * ldb + (tb ? k : n);
                        long cN = (long)(m - 1) * ldc + n;
                        using var ga = new Guarded(aN * 4, tail);
                        using var gb = new Guarded(bN * 4, tail);
                        using var gc1 = new Guarded(cN * 4, tail);
                        using var gc2 = new Guarded(cN * 4, tail);
                        float* a = (float*)ga.Ptr, b = (float*)gb.Ptr, c1 = (float*)gc1.Ptr, c2 = (float*)gc2.Ptr;
                        for (long i = 0; i < aN; i++) a[i] = (float)(rng.NextDouble() * 2 - 1);
                        for (long i = 0; i < bN; i++) b[i] = (float)(rng.NextDouble() * 2 - 1);
                        var c0 = new float[cN];
                        for (long i = 0; i < cN; i++) c1[i] = c2[i] = c0[i] = (float)(rng.NextDouble() * 2 - 1);
                        var epi = default(IdentityEpilogue<float>);
                        Kernels.Cpu.Gemm.Compute(one, ta ? Transpose.T : Transpose.N, tb ? Transpose.T : Transpose.N, m, n, k, alpha, a, lda, b, ldb, beta, c1, ldc, ref epi);
                        Kernels.Cpu.Gemm.Compute(two, ta ? Transpose.T : Transpose.N, tb ? Transpose.T : Transpose.N, m, n, k, alpha, a, lda, b, ldb, beta, c2, ldc, ref epi);
                        bool fp32 = GemmDriver.TakesDotProducts(ta, tb, m, n, false);
                        var ra = new float[aN];
                        var rb = new float[bN];
                        new Span<float>(a, (int)aN).CopyTo(ra);
                        new Span<float>(b, (int)bN).CopyTo(rb);
                        if (!fp32) { Bf16Gemm.Round(ra, ra); Bf16Gemm.Round(rb, rb); }
                        double[] da = ra.Select(v => (double)v).ToArray(), db = rb.Select(v => (double)v).ToArray();
                        var refC = c0.Select(v => (double)v).Concat(new double[ldc]).ToArray();
                        GemmReference.Compute(ta, tb, m, n, k, alpha, da, lda, db, ldb, beta, refC, ldc);
                        for (int i = 0; i < m; i++)
                            for (int j = 0; j < ldc && (long)i * ldc + j < cN; j++)
                            {
                                long at = (long)i * ldc + j;
                                Assert.That(c2[at], Is.EqualTo(c1[at]), $"1 vs 2 threads m={m} n={n} k={k} ta={ta} tb={tb} [{i},{j}]");
                                if (j >= n) { Assert.That(c1[at], Is.EqualTo(c0[at]), $"padding written m={m} n={n} k={k} [{i},{j}]"); continue; }
                                double tol = (k / 2 + 3) * 2 * Math.Pow(2, -24) * (Math.Abs(alpha) * GemmReference.AbsDot(ta, tb, k, da, lda, db, ldb, i, j) + Math.Abs(beta * c0[at])) + 1e-30;
                                if (Math.Abs(c1[at] - refC[at]) > tol)
                                    Assert.Fail($"m={m} n={n} k={k} ta={ta} tb={tb} a={alpha} b={beta}: C[{i},{j}] = {c1[at]:R}, ref {refC[at]:R}");
                            }
                    }
    }

    [Test]
    public void DenseFwd_BiasEpilogue_AppliedOnce_AcrossKAndNBlocks()
    {
        if (!Bf16Gemm.IsAvailable) Assert.Ignore(Bf16Gemm.Unavailable!);
        using var ctx = new CpuContext(2, null, null, GemmPrecision.Bf16);
        var bl = Bf16Gemm.Blocks;
        foreach (var (batch, inW, outW) in new[] { (37, 2 * bl.KC + 5, 70), (30, 21, bl.NC + 45), (5, 33, 17) })
        {
            var rng = new Random(batch);
            float[] x = Enumerable.Range(0, batch * inW).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
            float[] w = Enumerable.Range(0, outW * inW).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
            float[] bias = Enumerable.Range(0, outW).Select(i => 100f + i).ToArray();
            float[] y = new float[batch * outW];
            float[] rx = new float[x.Length], rw = new float[w.Length];
            Bf16Gemm.Round(x, rx);
            Bf16Gemm.Round(w, rw);
            bool fp32 = GemmDriver.TakesDotProducts(false, true, batch, outW, false);
            if (fp32) { rx = x; rw = w; }
            fixed (float* px = x, pw = w, pb = bias, py = y)
                Dense.Fwd(ctx, default(Identity<float>), batch, inW, outW, px, pw, pb, py, null);
            for (int i = 0; i < batch; i++)
                for (int j = 0; j < outW; j++)
                {
                    double s = bias[j];
                    for (int p = 0; p < inW; p++) s += (double)rx[i * inW + p] * rw[j * inW + p];
                    Assert.That(y[i * outW + j], Is.EqualTo(s).Within(1e-3), $"{batch}x{inW}->{outW} [{i},{j}]");
                }
        }
    }
}
