// OneDnnMatmul: oneDNN's bf16 matmul (inputs reordered f32 -> bf16, weights in the layout the primitive
// prefers, f32 output) agrees, for the four transpose combinations and odd shapes, with a double-precision
// reference computed on the inputs rounded to bf16 (round to nearest even), within the f32 accumulation
// bound (k/2 + 3) · 2⁻²³ · Σ|a·b|; bad arguments throw naming the value. The products of bf16 values are
// exact in f32, so the only error left is the accumulation's. Skipped, with the reason, where libdnnl.so.2
// does not load or the CPU lacks avx512_bf16 (the argument checks run everywhere).
using System.Runtime.Intrinsics.X86;
using Backprop.Cli.Bench;
using Backprop.Kernels.Cpu;
using NUnit.Framework;

namespace Backprop.Tests.Bench;

[TestFixture]
[NonParallelizable] // omp_set_num_threads
public unsafe class OneDnnMatmulTests
{
    private static void RequireBf16OneDnn()
    {
        if (!OneDnn.IsAvailable) Assert.Ignore($"oneDNN not available: {OneDnn.UnavailableReason}");
        if (!X86Base.IsSupported || !Avx512F.IsSupported || (X86Base.CpuId(7, 1).Eax & (1 << 5)) == 0)
            Assert.Ignore("the CPU lacks avx512_bf16 (CPUID.(EAX=7, ECX=1):EAX bit 5)");
    }

    /// <summary>float32 -> bf16 -> float32, round to nearest even (no NaNs here).</summary>
    private static float RoundToBf16(float x)
    {
        uint bits = BitConverter.SingleToUInt32Bits(x);
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16;
        return BitConverter.UInt32BitsToSingle(bits << 16);
    }

    private static float[] RandomMatrix(int count, int seed)
    {
        var rng = new Random(seed);
        var x = new float[count];
        for (int i = 0; i < count; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }

    [TestCase(1, 1, 1, 1)]
    [TestCase(13, 33, 9, 1)]
    [TestCase(64, 96, 130, 2)]
    [TestCase(128, 256, 784, 1)]
    public void Matmul_AgreesWithADoubleReferenceOnBf16Inputs_ForAllTransposes(int m, int n, int k, int threads)
    {
        RequireBf16OneDnn();
        int before = OneDnn.MaxThreads;
        try
        {
            foreach (var transA in new[] { Transpose.N, Transpose.T })
                foreach (var transB in new[] { Transpose.N, Transpose.T })
                    CheckOne(m, n, k, transA, transB, threads);
        }
        finally
        {
            OneDnn.SetThreads(before);
        }
    }

    private static void CheckOne(int m, int n, int k, Transpose transA, Transpose transB, int threads)
    {
        string name = $"{m}x{n}x{k} {transA}{transB}";
        float[] a = RandomMatrix(m * k, seed: 11 + m + 3 * k + (int)transA);
        float[] b = RandomMatrix(k * n, seed: 17 + n + 5 * k + (int)transB);
        float[] c = new float[m * n];
        using (var mm = OneDnnMatmul.Create(m, n, k, transA, transB, threads))
        {
            Assert.That(mm.Implementation, Is.Not.Empty, name);
            TestContext.Out.WriteLine($"{name}: {mm.Implementation}, weights {mm.WeightsFormat}");
            fixed (float* pa = a, pb = b, pc = c)
            {
                mm.SetInputs(pa, pb);
                mm.Execute();
                mm.Execute(); // a second run gives the same C (dst is written, not accumulated)
                mm.CopyOutput(pc);
            }
        }

        // op(A)[i, p] and op(B)[p, j] from the stored layouts, rounded as oneDNN's reorder rounds them.
        var ra = new double[m * k];
        for (int i = 0; i < m; i++)
            for (int p = 0; p < k; p++)
                ra[i * k + p] = RoundToBf16(transA == Transpose.N ? a[i * k + p] : a[p * m + i]);
        var rb = new double[k * n];
        for (int p = 0; p < k; p++)
            for (int j = 0; j < n; j++)
                rb[p * n + j] = RoundToBf16(transB == Transpose.N ? b[p * n + j] : b[j * k + p]);

        double worst = 0;
        int worstI = 0, worstJ = 0;
        double worstExpected = 0, worstTolerance = 0;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0, scale = 0;
                for (int p = 0; p < k; p++)
                {
                    double t = ra[i * k + p] * rb[p * n + j];
                    s += t;
                    scale += Math.Abs(t);
                }
                double tolerance = (k / 2.0 + 3) * Math.ScaleB(1.0, -23) * scale;
                double ratio = Math.Abs(c[i * n + j] - s) / tolerance;
                if (!(ratio <= worst)) // NaN counts as worst
                {
                    worst = ratio;
                    (worstI, worstJ, worstExpected, worstTolerance) = (i, j, s, tolerance);
                }
            }
        Assert.That(worst, Is.LessThanOrEqualTo(1.0),
            $"{name}: C[{worstI}, {worstJ}] = {c[worstI * n + worstJ]:R}, expected {worstExpected:R} within {worstTolerance:R}");
    }

    [Test]
    public void Matmul_RoundsInputsToNearestEvenBf16_NotTruncates()
    {
        RequireBf16OneDnn();
        int before = OneDnn.MaxThreads;
        // bf16 keeps 7 fraction bits (ulp 2⁻⁷ at 1). 1 + 2⁻⁸ + 2⁻¹⁰ is above the midpoint of 1 and 1 + 2⁻⁷: it rounds
        // up to 1 + 2⁻⁷ (truncation: 1). 1 + 3·2⁻⁸ is the midpoint of 1 + 2⁻⁷ and 1 + 2⁻⁶: it rounds to the even one, 1 + 2⁻⁶.
        float above = 1f + MathF.ScaleB(1f, -8) + MathF.ScaleB(1f, -10), tie = 1f + 3f * MathF.ScaleB(1f, -8);
        float[] a = [above, tie], b = [1f], c = [0f, 0f];
        try
        {
            using var mm = OneDnnMatmul.Create(2, 1, 1, Transpose.N, Transpose.N, 1);
            fixed (float* pa = a, pb = b, pc = c)
            {
                mm.SetInputs(pa, pb);
                mm.Execute();
                mm.CopyOutput(pc);
            }
            Assert.That(c[0], Is.EqualTo(1f + MathF.ScaleB(1f, -7)).And.EqualTo(RoundToBf16(above)));
            Assert.That(c[1], Is.EqualTo(1f + MathF.ScaleB(1f, -6)).And.EqualTo(RoundToBf16(tie)));
        }
        finally
        {
            OneDnn.SetThreads(before);
        }
    }

    [TestCase(0, 4, 4, 0, 0, 1, "m", "m must be at least 1; got 0.")]
    [TestCase(4, -1, 4, 0, 0, 1, "n", "n must be at least 1; got -1.")]
    [TestCase(4, 4, 0, 0, 0, 1, "k", "k must be at least 1; got 0.")]
    [TestCase(4, 4, 4, 2, 0, 1, "transA", "transA must be Transpose.N or Transpose.T; got 2.")]
    [TestCase(4, 4, 4, 0, -1, 1, "transB", "transB must be Transpose.N or Transpose.T; got -1.")]
    [TestCase(4, 4, 4, 0, 0, 0, "threads", "threads must be at least 1; got 0.")]
    public void Create_RefusesABadArgument_NamingTheValue(int m, int n, int k, int transA, int transB, int threads, string param, string message)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => OneDnnMatmul.Create(m, n, k, (Transpose)transA, (Transpose)transB, threads))!;
        Assert.That(e.ParamName, Is.EqualTo(param));
        Assert.That(e.Message, Does.StartWith(message));
    }

    [Test]
    public void ExecuteBeforeSetInputs_AndAfterDispose_Throw()
    {
        RequireBf16OneDnn();
        int before = OneDnn.MaxThreads;
        try
        {
            var mm = OneDnnMatmul.Create(3, 5, 7, Transpose.T, Transpose.N, 1);
            var e = Assert.Throws<InvalidOperationException>(mm.Execute)!;
            Assert.That(e.Message, Does.Contain("before SetInputs"));
            mm.Dispose();
            mm.Dispose(); // twice is fine
            Assert.Throws<ObjectDisposedException>(mm.Execute);
        }
        finally
        {
            OneDnn.SetThreads(before);
        }
    }
}
