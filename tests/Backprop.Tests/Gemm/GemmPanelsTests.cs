// Weight panels made ahead of the GEMM (Gemm.PackPanels) and by the optimizer pass (Optimizer.UpdateAndPack):
// the GEMM reading them gives the bits of the GEMM that packs in the call, on every ISA rung and thread count and
// with bf16 operands, and the fused pass gives the bits of Update followed by PackPanels.
using Backprop.Kernels;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cpu.Optim;
using NUnit.Framework;

namespace Backprop.Tests.Gemm;

[TestFixture]
[Parallelizable(ParallelScope.Children)]
public unsafe class GemmPanelsTests
{
    public static IEnumerable<Isa> Isas() => GemmCorrectnessTests.Isas();

    private static int[] Bits(float[] x) => x.Select(BitConverter.SingleToInt32Bits).ToArray();

    [Test]
    public void ComputeWithPanels_MatchesPackingInTheCall_BitForBit([ValueSource(nameof(Isas))] Isa isa, [Values(1, 2)] int threads)
    {
        // Several K blocks (650, 1000), N off the panel width (100, 513), the dot-product path (10 columns, 3 rows: panels unused).
        foreach (var (m, n, k) in new[] { (64, 256, 784), (37, 100, 650), (128, 10, 256), (3, 300, 40), (301, 513, 1000) })
        {
            using var ctx = new CpuContext(threads, isa);
            AssertPanelsGiveTheCallsBits(ctx, m, n, k, new float[Kernels.Cpu.Gemm.PanelsLength<float>(ctx, n, k)]);
        }
    }

    // C = 0.5·A·Bᵀ + 1.5·C through PackPanels + ComputeWithPanels equals Compute's, bit for bit; returns B (the panels are filled in place).
    private static float[] AssertPanelsGiveTheCallsBits(CpuContext ctx, int m, int n, int k, float[] panels)
    {
        var a = TestData.Floats(m * k, m + n);
        var b = TestData.Floats(n * k, n + k);
        var c0 = TestData.Floats(m * n, 7);
        var c1 = (float[])c0.Clone();
        var epi = default(IdentityEpilogue<float>);
        fixed (float* pa = a, pb = b, pc0 = c0, pc1 = c1, pp = panels)
        {
            Kernels.Cpu.Gemm.PackPanels(ctx, n, k, pb, k, pp, 0, n);
            Kernels.Cpu.Gemm.Compute(ctx, Transpose.N, Transpose.T, m, n, k, 0.5f, pa, k, pb, k, 1.5f, pc0, n, ref epi);
            Kernels.Cpu.Gemm.ComputeWithPanels(ctx, m, n, k, 0.5f, pa, k, pb, k, pp, 1.5f, pc1, n, ref epi);
        }
        Assert.That(Bits(c1), Is.EqualTo(Bits(c0)), $"{m}x{n}x{k}");
        return b;
    }

    [Test]
    public void ComputeWithPanels_WithBf16Operands_MatchesPackingInTheCall_BitForBit([Values(1, 2)] int threads)
    {
        if (!Bf16Gemm.IsAvailable) Assert.Ignore($"bf16 not available here: {Bf16Gemm.Unavailable}");
        using var ctx = new CpuContext(threads, null, null, GemmPrecision.Bf16);
        int w = Kernels.Cpu.Gemm.PanelWidth<float>(ctx);
        Assert.That(w, Is.EqualTo(Bf16Gemm.Blocks.NR));
        // Odd K (a padded last pair) in one and in several K blocks, N off the panel width, M over several row blocks.
        foreach (var (m, n, k) in new[] { (64, 256, 784), (37, 100, 651), (300, 70, 1001), (24, 21, 37), (129, 1030, 320) })
        {
            var panels = TestData.Floats((int)Kernels.Cpu.Gemm.PanelsLength<float>(ctx, n, k), 9); // every element overwritten
            Assert.That(panels.Length, Is.EqualTo((n + w - 1) / w * w * ((k + 1) / 2)), "one 4-byte element per bf16 pair");
            var b = AssertPanelsGiveTheCallsBits(ctx, m, n, k, panels);
            // The panels hold bf16(B): row r, pair q of panel r / w is element q·w + r % w, k = 2q in its low half.
            var rounded = new float[1];
            Bf16Gemm.Round([b[(n - 1) * k + 2]], rounded);
            uint word = BitConverter.SingleToUInt32Bits(panels[(n - 1) / w * w * ((k + 1) / 2) + 1 * w + (n - 1) % w]);
            Assert.That(word & 0xffff, Is.EqualTo(BitConverter.SingleToUInt32Bits(rounded[0]) >> 16), $"{m}x{n}x{k}: bf16 of B[n-1, 2]");
        }
    }

    [Test]
    public void ComputeWithPanels_InDouble_MatchesPackingInTheCall()
    {
        using var ctx = new CpuContext(2);
        const int m = 45, n = 70, k = 333;
        var a = TestData.Doubles(m * k, 1);
        var b = TestData.Doubles(n * k, 2);
        var c0 = new double[m * n];
        var c1 = new double[m * n];
        var panels = new double[Kernels.Cpu.Gemm.PanelsLength<double>(ctx, n, k)];
        var epi = default(IdentityEpilogue<double>);
        fixed (double* pa = a, pb = b, pc0 = c0, pc1 = c1, pp = panels)
        {
            Kernels.Cpu.Gemm.PackPanels(ctx, n, k, pb, k, pp, 0, n);
            Kernels.Cpu.Gemm.Compute(ctx, Transpose.N, Transpose.T, m, n, k, 1.0, pa, k, pb, k, 0.0, pc0, n, ref epi);
            Kernels.Cpu.Gemm.ComputeWithPanels(ctx, m, n, k, 1.0, pa, k, pb, k, pp, 0.0, pc1, n, ref epi);
        }
        Assert.That(c1.Select(BitConverter.DoubleToInt64Bits), Is.EqualTo(c0.Select(BitConverter.DoubleToInt64Bits)));
    }

    [Test]
    public void PackPanels_ByRowRangesOrManyMatricesAtOnce_WritesTheSamePanels()
    {
        using var ctx = new CpuContext(2);
        int w = Kernels.Cpu.Gemm.PanelWidth<float>(ctx);
        int n1 = 5 * w + 3, k1 = 77, n2 = 2 * w, k2 = 40;
        var b1 = TestData.Floats(n1 * k1, 1);
        var b2 = TestData.Floats(n2 * k2, 2);
        var whole = new float[Kernels.Cpu.Gemm.PanelsLength<float>(ctx, n1, k1)];
        var parts = TestData.Floats(whole.Length, 3); // garbage that every element must overwrite, padding included
        var many1 = new float[whole.Length];
        var many2 = new float[Kernels.Cpu.Gemm.PanelsLength<float>(ctx, n2, k2)];
        var single2 = new float[many2.Length];
        fixed (float* p1 = b1, p2 = b2, pw = whole, pp = parts, pm1 = many1, pm2 = many2, ps2 = single2)
        {
            Kernels.Cpu.Gemm.PackPanels(ctx, n1, k1, p1, k1, pw, 0, n1);
            Kernels.Cpu.Gemm.PackPanels(ctx, n1, k1, p1, k1, pp, 0, 2 * w);
            Kernels.Cpu.Gemm.PackPanels(ctx, n1, k1, p1, k1, pp, 2 * w, n1);
            Kernels.Cpu.Gemm.PackPanels(ctx, n2, k2, p2, k2, ps2, 0, n2);
            Kernels.Cpu.Gemm.PackPanels<float>(ctx, [new PanelMatrix<float>(p1, n1, k1, k1, pm1), new PanelMatrix<float>(p2, n2, k2, k2, pm2)]);
        }
        Assert.That(Bits(parts), Is.EqualTo(Bits(whole)), "two row ranges");
        Assert.That(Bits(many1), Is.EqualTo(Bits(whole)), "first of two matrices");
        Assert.That(Bits(many2), Is.EqualTo(Bits(single2)), "second of two matrices");
        // Row r, column k of B is element k·w + r % w of panel r / w.
        Assert.That(whole[(n1 / w) * w * k1 + 5 * w + n1 % w - 1], Is.EqualTo(b1[(n1 - 1) * k1 + 5]));
        Assert.That(whole[(n1 / w) * w * k1 + 5 * w + n1 % w], Is.Zero, "a row past N is zero");
    }

    [Test]
    public void PackPanels_RejectsRowRangesOffThePanelGrid()
    {
        using var ctx = new CpuContext(1);
        int w = Kernels.Cpu.Gemm.PanelWidth<float>(ctx);
        var b = new float[40 * 10];
        var panels = new float[Kernels.Cpu.Gemm.PanelsLength<float>(ctx, 40, 10)];
        fixed (float* pb = b, pp = panels)
        {
            float* bp = pb, ppp = pp;
            var e = Assert.Throws<ArgumentOutOfRangeException>(() => Kernels.Cpu.Gemm.PackPanels(ctx, 40, 10, bp, 10, ppp, 3, 40))!;
            Assert.That(e.Message, Does.Contain("rows [3, 40) of 40").And.Contain($"a multiple of {w}"));
            Assert.Throws<ArgumentOutOfRangeException>(() => Kernels.Cpu.Gemm.PackPanels(ctx, 40, 10, bp, 10, ppp, 0, 41));
            var ldb = Assert.Throws<ArgumentOutOfRangeException>(() => new PanelMatrix<float>(bp, 40, 10, 9, ppp))!;
            Assert.That(ldb.Message, Does.Contain("ldb must be at least k = 10; got 9"));
        }
    }

    public static IEnumerable<OptimizerSettings> Optimizers() =>
        [new Adam(1e-2, weightDecay: 0.01), new Sgd(0.1, momentum: 0.9), new AdamW(1e-3, amsgrad: true), new RmsProp(1e-3, centered: true)];

    [Test]
    public void UpdateAndPack_GivesUpdatesBitsAndThePanelsOfTheUpdatedWeights([ValueSource(nameof(Optimizers))] OptimizerSettings opt, [Values(1, 2)] int threads)
    {
        using var ctx = new CpuContext(threads);
        // A block of 40,000 elements: a gap, W0 (3w + 5 rows x 300), a gap, W1 (w rows x 111), a tail.
        AssertUpdateAndPackIsUpdateThenPack(ctx, opt, new OptimizerStep(1e-2, 3), slots: 3, o0: 96, k0: 300, gap: 48, k1: 111, checkStates: true, "panels of");
    }

    [Test]
    public void UpdateAndPack_WithBf16Operands_WritesThePanelsOfTheUpdatedWeights([Values(1, 2)] int threads)
    {
        if (!Bf16Gemm.IsAvailable) Assert.Ignore($"bf16 not available here: {Bf16Gemm.Unavailable}");
        using var ctx = new CpuContext(threads, null, null, GemmPrecision.Bf16);
        // W0 (3w + 5 rows x 301: odd K) and W1 (w rows x 112) inside a block of 40,000 elements.
        var panels0 = AssertUpdateAndPackIsUpdateThenPack(ctx, new Adam(1e-2), new OptimizerStep(1e-2, 2), slots: 2, o0: 64, k0: 301, gap: 16, k1: 112,
            checkStates: false, "bf16 panels of");
        Assert.That(panels0.Any(v => v != 0f), Is.True);
    }

    // Optimizer.UpdateAndPack over a block of 40,000 parameters holding W0 (3w + 5 rows x k0, at o0) and W1 (w rows x k1,
    // gap elements after W0) against Optimizer.Update then Gemm.PackPanels of both, bit for bit; returns W0's panels.
    private static float[] AssertUpdateAndPackIsUpdateThenPack(CpuContext ctx, OptimizerSettings opt, OptimizerStep step, int slots,
        int o0, int k0, int gap, int k1, bool checkStates, string panelsOf)
    {
        int w = Kernels.Cpu.Gemm.PanelWidth<float>(ctx);
        const int n = 40_000;
        int n0 = 3 * w + 5, o1 = o0 + n0 * k0 + gap, n1 = w;
        var p = TestData.Floats(n, 1);
        var g = TestData.Floats(n, 2);
        // Unused slots are empty arrays: fixed gives null for them, as the optimizer expects.
        var s = Enumerable.Range(0, 3).Select(i => i < slots ? TestData.Floats(n, 3 + i, 0f, 1f) : []).ToArray();
        var (pRef, sRef) = ((float[])p.Clone(), s.Select(a => (float[])a.Clone()).ToArray());
        var panels0 = new float[Kernels.Cpu.Gemm.PanelsLength<float>(ctx, n0, k0)];
        var panels1 = new float[Kernels.Cpu.Gemm.PanelsLength<float>(ctx, n1, k1)];
        var ref0 = new float[panels0.Length];
        var ref1 = new float[panels1.Length];
        fixed (float* pp = p, pg = g, s0 = s[0], s1 = s[1], s2 = s[2], q0 = panels0, q1 = panels1)
        fixed (float* rp = pRef, r0 = sRef[0], r1 = sRef[1], r2 = sRef[2], e0 = ref0, e1 = ref1)
        {
            Optimizer.UpdateAndPack<float>(ctx, opt, step, pp, pg, s0, s1, s2, n,
                [new PanelMatrix<float>(pp + o0, n0, k0, k0, q0), new PanelMatrix<float>(pp + o1, n1, k1, k1, q1)]);
            Optimizer.Update(ctx, opt, step, rp, pg, r0, r1, r2, n);
            Kernels.Cpu.Gemm.PackPanels(ctx, n0, k0, rp + o0, k0, e0, 0, n0);
            Kernels.Cpu.Gemm.PackPanels(ctx, n1, k1, rp + o1, k1, e1, 0, n1);
        }
        Assert.That(Bits(p), Is.EqualTo(Bits(pRef)), "parameters");
        if (checkStates)
            for (int i = 0; i < opt.StateSlots; i++) Assert.That(Bits(s[i]), Is.EqualTo(Bits(sRef[i])), $"state {i}");
        Assert.That(Bits(panels0), Is.EqualTo(Bits(ref0)), $"{panelsOf} W0");
        Assert.That(Bits(panels1), Is.EqualTo(Bits(ref1)), $"{panelsOf} W1");
        return panels0;
    }

    [Test]
    public void UpdateAndPack_RejectsMatricesOutsideTheBlockOrWithGappedRows()
    {
        using var ctx = new CpuContext(1);
        var p = new float[1000];
        var g = new float[1000];
        var s0 = new float[1000];
        var s1 = new float[1000];
        var q = new float[Kernels.Cpu.Gemm.PanelsLength<float>(ctx, 20, 30)];
        var opt = new Adam();
        fixed (float* pp = p, pg = g, ps0 = s0, ps1 = s1, pq = q)
        {
            float* a = pp, b = pg, c = ps0, d = ps1, e = pq;
            var gap = Assert.Throws<ArgumentException>(() =>
                Optimizer.UpdateAndPack<float>(ctx, opt, new OptimizerStep(1e-3, 1), a, b, c, d, null, 1000, [new PanelMatrix<float>(a, 20, 30, 31, e)]))!;
            Assert.That(gap.Message, Does.Contain("rows must be contiguous (ldb = k = 30); got ldb 31"));
            var outside = Assert.Throws<ArgumentException>(() =>
                Optimizer.UpdateAndPack<float>(ctx, opt, new OptimizerStep(1e-3, 1), a, b, c, d, null, 1000, [new PanelMatrix<float>(a + 500, 20, 30, 30, e)]))!;
            Assert.That(outside.Message, Does.Contain("spans elements [500, 1100) of the block; expected them inside [0, 1000)"));
            var overlap = Assert.Throws<ArgumentException>(() =>
                Optimizer.UpdateAndPack<float>(ctx, opt, new OptimizerStep(1e-3, 1), a, b, c, d, null, 1000,
                    [new PanelMatrix<float>(a, 10, 30, 30, e), new PanelMatrix<float>(a + 200, 10, 30, 30, e)]))!;
            Assert.That(overlap.Message, Does.Contain("spans elements [200, 500)").And.Contain("inside [300, 1000)"));
        }
    }
}
