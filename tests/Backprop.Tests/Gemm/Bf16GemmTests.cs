// The bf16 GEMM (GemmPrecision.Bf16) against independent oracles:
//   - the rounding against a C# round-to-nearest-even written from the definition (nearest of the two
//     bf16 neighbours by exact distance, ties to the even one; denormal inputs to a signed zero, as
//     VCVTNE2PS2BF16 does);
//   - C against a double reference over the bf16-rounded operands (the products are exact in float32, so
//     only float32 accumulation separates them: a bound of (k/2 + 2) float32 ulps of sum |a*b|);
//   - C against the double reference over the unrounded operands, with a bound from bf16's 8-bit mantissa:
//     bf16 has 8 significant bits, so each operand is off by at most 2^-8 relative and a product by
//     2^-7 + 2^-16, plus the accumulation term;
//   - 1 and 2 threads equal bit for bit; the bias-gradient row sums equal the float32 path's bit for bit.
// Shapes cover every tail of the 12 x 32 tile, odd K (a padded pair), K and M and N past one cache block.
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cpu.Ops;
using NUnit.Framework;

namespace Backprop.Tests.Gemm;

[TestFixture]
public unsafe class Bf16GemmTests
{
    private static void RequireBf16()
    {
        if (!Bf16Gemm.IsAvailable) Assert.Ignore($"bf16 not available here: {Bf16Gemm.Unavailable}");
    }

    // The definition (VCVTNE2PS2BF16's): a denormal input is a zero of its sign; otherwise the nearer of the two bf16
    // values adjacent to x (its bits truncated to 16 and that plus one ulp), ties to the even one.
    private static float RoundReference(float x)
    {
        if (float.IsNaN(x)) return float.NaN;
        if (float.IsSubnormal(x)) return float.CopySign(0f, x);
        uint u = BitConverter.SingleToUInt32Bits(x);
        uint lo = u & 0xFFFF0000u;
        if (lo == u) return x;
        uint hi = lo + 0x10000u;
        double dlo = Math.Abs((double)BitConverter.UInt32BitsToSingle(lo) - x);
        float fhi = BitConverter.UInt32BitsToSingle(hi); // may be Inf: then the distance to it counts as to 2^128
        double vhi = float.IsInfinity(fhi) ? Math.CopySign(Math.Pow(2, 128), x) : fhi;
        double dhi = Math.Abs(vhi - x);
        if (dlo < dhi) return BitConverter.UInt32BitsToSingle(lo);
        if (dhi < dlo) return fhi;
        return (lo & 0x10000u) == 0 ? BitConverter.UInt32BitsToSingle(lo) : fhi;
    }

    [Test]
    public void Round_IsNearestEven_OnEdgesAndRandomValues()
    {
        RequireBf16();
        var special = new[]
        {
            0f, -0f, 1f, -1f, 1f + MathF.Pow(2, -8), 1f + 3 * MathF.Pow(2, -8), -(1f + 3 * MathF.Pow(2, -8)), float.MaxValue, -float.MaxValue,
            float.PositiveInfinity, float.NegativeInfinity, float.Epsilon, 1e-40f, -1e-40f, 3.3895314e38f, 65504f, 1.0078125f, 255.5f,
        };
        var rng = new Random(7);
        var xs = special.Concat(Enumerable.Range(0, 20000).Select(_ => BitConverter.UInt32BitsToSingle((uint)rng.NextInt64(0, 1L << 32)))).ToArray();
        var got = new float[xs.Length];
        Bf16Gemm.Round(xs, got);
        Assert.That(got[4], Is.EqualTo(1f), "1 + 2^-8 is a tie: to the even 1.0");
        Assert.That(got[5], Is.EqualTo(1.015625f), "1 + 3*2^-8 is a tie: to the even 1 + 2^-6");
        Assert.That(got[7], Is.EqualTo(float.PositiveInfinity), "float.MaxValue rounds past the largest bf16");
        for (int i = 0; i < xs.Length; i++)
        {
            float want = RoundReference(xs[i]);
            if (float.IsNaN(want)) Assert.That(float.IsNaN(got[i]), $"x = {xs[i]:R} (0x{BitConverter.SingleToUInt32Bits(xs[i]):X8}): got {got[i]:R}, want NaN");
            else Assert.That(BitConverter.SingleToUInt32Bits(got[i]), Is.EqualTo(BitConverter.SingleToUInt32Bits(want)),
                $"x = {xs[i]:R} (0x{BitConverter.SingleToUInt32Bits(xs[i]):X8}): got {got[i]:R}, want {want:R}");
        }
    }

    private static float[] Random(int n, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(r.NextDouble() * 2 - 1)).ToArray();
    }

    private static float[] Rounded(float[] x)
    {
        var y = new float[x.Length];
        Bf16Gemm.Round(x, y);
        return y;
    }

    // Shapes (m, n, k) over the tile's tails, odd and even K, and one cache block in each dimension.
    private static IEnumerable<(int M, int N, int K)> Shapes()
    {
        var blocks = Bf16Gemm.Blocks;
        foreach (var (m, n, k) in new[] { (1, 1, 1), (5, 17, 3), (12, 32, 2), (13, 33, 9), (24, 64, 64), (25, 31, 129), (37, 100, 255), (11, 47, 256), (64, 20, 5) })
            yield return (m, n, k);
        yield return (7, 40, blocks.KC * 2 + 3);               // three K blocks, the last of odd length
        yield return (blocks.MC + 5, 33, 17);                  // two M blocks
        yield return (9, Math.Min(blocks.NC, 4096) + 35, 10);  // two N blocks
    }

    [Test]
    public void Sgemm_Bf16_MatchesDoubleReference_OnRoundedOperands_AndBoundsTheErrorOnExactOnes()
    {
        RequireBf16();
        using var ctx = new CpuContext(2, null, null, GemmPrecision.Bf16);
        int seed = 1;
        foreach (var (m, n, k) in Shapes())
            foreach (var (ta, tb) in new[] { (false, false), (false, true), (true, false), (true, true) })
                foreach (var (alpha, beta) in new[] { (1f, 0f), (-0.5f, 1f), (2f, 0.25f) })
                {
                    int lda = (ta ? m : k) + 1, ldb = (tb ? k : n) + 3, ldc = n + 2;
                    var a = Random((ta ? k : m) * lda, seed++);
                    var b = Random((tb ? n : k) * ldb, seed++);
                    var c0 = Random(m * ldc, seed++);
                    var c = (float[])c0.Clone();
                    Kernels.Cpu.Gemm.Sgemm(ta ? Transpose.T : Transpose.N, tb ? Transpose.T : Transpose.N, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ctx);

                    // A few rows or columns against a transposed B take the float32 dot products: their operands are not rounded.
                    bool fp32 = GemmDriver.TakesDotProducts(ta, tb, m, n, rowSums: false);
                    double[] ea = a.Select(v => (double)v).ToArray(), eb = b.Select(v => (double)v).ToArray();
                    double[] ra = fp32 ? ea : Rounded(a).Select(v => (double)v).ToArray(), rb = fp32 ? eb : Rounded(b).Select(v => (double)v).ToArray();
                    var refRounded = c0.Select(v => (double)v).ToArray();
                    var refExact = (double[])refRounded.Clone();
                    GemmReference.Compute(ta, tb, m, n, k, alpha, ra, lda, rb, ldb, beta, refRounded, ldc);
                    GemmReference.Compute(ta, tb, m, n, k, alpha, ea, lda, eb, ldb, beta, refExact, ldc);
                    double u32 = Math.Pow(2, -24), accum = (k / 2 + 3) * 2 * u32;
                    for (int i = 0; i < m; i++)
                        for (int j = 0; j < n; j++)
                        {
                            double scale = Math.Abs(alpha) * GemmReference.AbsDot(ta, tb, k, ra, lda, rb, ldb, i, j) + Math.Abs(beta * c0[i * ldc + j]);
                            double got = c[i * ldc + j];
                            double tolR = accum * scale + 1e-30;
                            double errR = Math.Abs(got - refRounded[i * ldc + j]);
                            if (errR > tolR)
                                Assert.Fail($"m={m} n={n} k={k} ta={ta} tb={tb} alpha={alpha} beta={beta}: C[{i},{j}] = {got:R}, reference over bf16 operands {refRounded[i * ldc + j]:R}, |err| {errR:E3} > {tolR:E3}");
                            double scaleE = Math.Abs(alpha) * GemmReference.AbsDot(ta, tb, k, ea, lda, eb, ldb, i, j);
                            double tolE = (Math.Pow(2, -7) + Math.Pow(2, -16)) * scaleE + accum * 1.01 * scaleE + accum * Math.Abs(beta * c0[i * ldc + j]) + 1e-30;
                            double errE = Math.Abs(got - refExact[i * ldc + j]);
                            if (errE > tolE)
                                Assert.Fail($"m={m} n={n} k={k} ta={ta} tb={tb}: C[{i},{j}] = {got:R}, exact reference {refExact[i * ldc + j]:R}, |err| {errE:E3} > the bf16 bound {tolE:E3}");
                        }
                    for (int i = 0; i < m; i++)
                        for (int j = n; j < ldc; j++)
                            Assert.That(c[i * ldc + j], Is.EqualTo(c0[i * ldc + j]), $"padding C[{i},{j}] was written (m={m} n={n} k={k})");
                }
    }

    [Test]
    public void Bf16_IsBitIdentical_OnOneAndTwoThreads_WithTheFusedDenseKernels()
    {
        RequireBf16();
        using var one = new CpuContext(1, null, null, GemmPrecision.Bf16);
        using var two = new CpuContext(2, null, null, GemmPrecision.Bf16);
        foreach (var (batch, inW, outW) in new[] { (128, 784, 256), (33, 65, 70), (256, 300, 1030) })
        {
            float[] x = Random(batch * inW, 1), w = Random(outW * inW, 2), bias = Random(outW, 3), dz = Random(batch * outW, 4);
            float[] y1 = new float[batch * outW], y2 = new float[batch * outW];
            float[] dw1 = new float[outW * inW], dw2 = new float[outW * inW], db1 = new float[outW], db2 = new float[outW];
            float[] dx1 = new float[batch * inW], dx2 = new float[batch * inW];
            fixed (float* px = x, pw = w, pb = bias, pdz = dz, py1 = y1, py2 = y2, pdw1 = dw1, pdw2 = dw2, pdb1 = db1, pdb2 = db2, pdx1 = dx1, pdx2 = dx2)
            {
                var relu = default(ReLU<float>);
                Dense.Fwd(one, relu, batch, inW, outW, px, pw, pb, py1, null);
                Dense.Fwd(two, relu, batch, inW, outW, px, pw, pb, py2, null);
                Dense.BwdWeights(one, GradientMode.Overwrite, batch, inW, outW, pdz, px, pdw1, pdb1);
                Dense.BwdWeights(two, GradientMode.Overwrite, batch, inW, outW, pdz, px, pdw2, pdb2);
                Dense.BwdData(one, relu, batch, inW, outW, pdz, pw, px, pdx1);
                Dense.BwdData(two, relu, batch, inW, outW, pdz, pw, px, pdx2);
            }
            string shape = $"batch {batch}, {inW} -> {outW}";
            Assert.That(y2, Is.EqualTo(y1), $"Fwd, {shape}");
            Assert.That(dw2, Is.EqualTo(dw1), $"BwdWeights dW, {shape}");
            Assert.That(db2, Is.EqualTo(db1), $"BwdWeights db, {shape}");
            Assert.That(dx2, Is.EqualTo(dx1), $"BwdData, {shape}");
        }
    }

    [Test]
    public void Bf16_DenseKernels_ApplyTheirEpilogues_AndSumTheBiasGradientInFloat32()
    {
        RequireBf16();
        using var bf = new CpuContext(2, null, null, GemmPrecision.Bf16);
        using var fp = new CpuContext(2, null, null, GemmPrecision.Fp32);
        const int batch = 70, inW = 90, outW = 45;
        float[] x = Random(batch * inW, 11), w = Random(outW * inW, 12), bias = Random(outW, 13), dz = Random(batch * outW, 14);
        float[] rx = Rounded(x), rw = Rounded(w), rdz = Rounded(dz);
        float[] yb = new float[batch * outW], yf = new float[batch * outW], dwb = new float[outW * inW], dbb = new float[outW], dbf = new float[outW], dwf = new float[outW * inW];
        float[] dxb = new float[batch * inW], dxf = new float[batch * inW];
        fixed (float* px = x, pw = w, pb = bias, pdz = dz, prx = rx, prw = rw, prdz = rdz, pyb = yb, pyf = yf, pdwb = dwb, pdbb = dbb, pdbf = dbf, pdwf = dwf, pdxb = dxb, pdxf = dxf)
        {
            var relu = default(ReLU<float>);
            // bf16 on x and w against float32 on their rounded values: the same products, so float32-accumulation close.
            Dense.Fwd(bf, relu, batch, inW, outW, px, pw, pb, pyb, null);
            Dense.Fwd(fp, relu, batch, inW, outW, prx, prw, pb, pyf, null);
            Dense.BwdWeights(bf, GradientMode.Overwrite, batch, inW, outW, pdz, px, pdwb, pdbb);
            Dense.BwdWeights(fp, GradientMode.Overwrite, batch, inW, outW, pdz, px, pdwf, pdbf);
            Assert.That(dbb, Is.EqualTo(dbf), "db is summed from dZ in float32, as the float32 path sums it");
            Dense.BwdWeights(fp, GradientMode.Overwrite, batch, inW, outW, prdz, prx, pdwf, pdbf);
            Dense.BwdData(bf, relu, batch, inW, outW, pdz, pw, px, pdxb);
            Dense.BwdData(fp, relu, batch, inW, outW, prdz, prw, px, pdxf);
        }
        AssertClose(yb, yf, inW, "Fwd bias+ReLU");
        AssertClose(dwb, dwf, batch, "BwdWeights dW");
        AssertClose(dxb, dxf, outW, "BwdData ReLU mask");
        Assert.That(yb.Count(v => v == 0), Is.GreaterThan(yb.Length / 4), "ReLU zeroed the negative half");
        for (int i = 0; i < batch * inW; i++)
            if (x[i] <= 0) Assert.That(dxb[i], Is.Zero, $"BwdData: the ReLU mask of x[{i}] = {x[i]} was not applied");
    }

    private static void AssertClose(float[] got, float[] want, int k, string what)
    {
        double tol = (k / 2 + 3) * Math.Pow(2, -23) * k; // |a|, |b| < 1: sum |a*b| < k
        for (int i = 0; i < got.Length; i++)
            if (Math.Abs(got[i] - want[i]) > tol) Assert.Fail($"{what}[{i}]: bf16 {got[i]:R}, float32 on rounded operands {want[i]:R}, |err| > {tol:E3}");
    }

    [Test]
    public void Bf16Context_OnAForcedRungBelowAvx512_SaysWhy()
    {
        RequireBf16();
        var e = Assert.Throws<PlatformNotSupportedException>(() => new CpuContext(1, Isa.Avx2, null, GemmPrecision.Bf16).Dispose());
        Assert.That(e!.Message, Does.Contain("Avx512").And.Contain("Avx2"));
        var bad = Assert.Throws<ArgumentOutOfRangeException>(() => new CpuContext(1, null, null, (GemmPrecision)7).Dispose());
        Assert.That(bad!.Message, Does.Contain("Fp32 or Bf16").And.Contain("7"));
    }

    [Test]
    public void Bf16Unavailable_NamesTheReason()
    {
        if (Bf16Gemm.IsAvailable)
        {
            Assert.That(Bf16Gemm.Unavailable, Is.Null);
            Assert.That(MicroKernels.All.Select(k => k.Name), Does.Contain("Avx512Bf16/bf16"));
            return;
        }
        var e = Assert.Throws<PlatformNotSupportedException>(() => new CpuContext(1, null, null, GemmPrecision.Bf16).Dispose());
        Assert.That(e!.Message, Does.Contain(Bf16Gemm.Unavailable!));
        Assert.That(MicroKernels.All.Select(k => k.Name), Does.Not.Contain("Avx512Bf16/bf16"));
    }
}
