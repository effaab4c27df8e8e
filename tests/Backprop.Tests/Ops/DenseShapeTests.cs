// The float dense kernels against a naive double reference on shapes that cover every vector tail
// (batch and widths 1, 3, 17, 33, 127, 257; batch 300 > KC so the bias sums span K blocks),
// each ISA path forced, overwrite and accumulate modes, 1 and 2 threads.
using Backprop.Kernels;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cpu.Ops;
using NUnit.Framework;

namespace Backprop.Tests.Ops;

[TestFixture]
[Parallelizable(ParallelScope.Children)] // each case forces its ISA path on its own CpuContext, so the cases run side by side
public unsafe class DenseShapeTests
{
    public static IEnumerable<Isa> AllIsas() => Enum.GetValues<Isa>().Where(i => i <= CpuIsa.Supported);

    private static readonly (int Batch, int In, int Out)[] Shapes =
        [(1, 1, 1), (3, 17, 33), (17, 3, 127), (33, 127, 3), (127, 33, 17), (300, 257, 33), (257, 1, 257)];

    private static double RefAct(ActivationKind k, double z) => k switch
    {
        ActivationKind.ReLU => Math.Max(z, 0),
        ActivationKind.Tanh => Math.Tanh(z),
        ActivationKind.GELU => 0.5 * z * (1 + SpecialFunctions.Erf(z / Math.Sqrt(2))),
        _ => throw new ArgumentException(k.ToString()),
    };

    private static double RefGrad(ActivationKind k, double z) => k switch
    {
        ActivationKind.ReLU => z > 0 ? 1 : 0,
        ActivationKind.Tanh => 1 - Math.Tanh(z) * Math.Tanh(z),
        ActivationKind.GELU => 0.5 * (1 + SpecialFunctions.Erf(z / Math.Sqrt(2))) + z * Math.Exp(-0.5 * z * z) / Math.Sqrt(2 * Math.PI),
        _ => throw new ArgumentException(k.ToString()),
    };

    [Test]
    public void FloatKernels_MatchDoubleReference(
        [ValueSource(nameof(AllIsas))] Isa isa,
        [Values(ActivationKind.ReLU, ActivationKind.Tanh, ActivationKind.GELU)] ActivationKind kind,
        [Values(1, 2)] int threads)
    {
        using var ctx = new CpuContext(threads, isa);
        var act = new Activation(kind);
        foreach (var (b, i, o) in Shapes)
        {
            var x = TestData.Floats(b * i, 1);
            var w = TestData.Floats(o * i, 2, -0.5f, 0.5f);
            var bias = TestData.Floats(o, 3);
            var y = new float[b * o];
            var pre = new float[b * o];
            fixed (float* px = x) fixed (float* pw = w) fixed (float* pb = bias) fixed (float* py = y) fixed (float* pp = pre)
                ActivationDispatch.DenseFwd(act, ctx, b, i, o, px, pw, pb, py, act.GradFromOutput ? null : pp);
            var z = new double[b * o];
            for (int r = 0; r < b; r++)
                for (int c = 0; c < o; c++)
                {
                    double s = bias[c], sAbs = Math.Abs(bias[c]);
                    for (int k = 0; k < i; k++) { s += (double)x[r * i + k] * w[c * i + k]; sAbs += Math.Abs((double)x[r * i + k] * w[c * i + k]); }
                    z[r * o + c] = s;
                    double yr = RefAct(kind, s), tol = 1e-5 + 1e-5 * Math.Abs(yr) + 1e-6 * sAbs;
                    Assert.That(y[r * o + c], Is.EqualTo(yr).Within(tol), $"y[{r},{c}] {b}x{i}x{o}");
                    if (!act.GradFromOutput) Assert.That(pre[r * o + c], Is.EqualTo(s).Within(1e-6 + 1e-6 * sAbs), $"pre[{r},{c}]");
                }

            // BwdWeights, overwrite then accumulate (dW, db doubled).
            var dy = TestData.Floats(b * o, 4);
            var dW = new float[o * i];
            var dB = new float[o];
            for (int mode = 0; mode < 2; mode++)
            {
                fixed (float* pdy = dy) fixed (float* px = x) fixed (float* pdw = dW) fixed (float* pdb = dB)
                    Dense.BwdWeights(ctx, mode == 0 ? GradientMode.Overwrite : GradientMode.Accumulate, b, i, o, pdy, px, pdw, pdb);
                for (int c = 0; c < o; c++)
                {
                    double sb = 0;
                    for (int r = 0; r < b; r++) sb += dy[r * o + c];
                    Assert.That(dB[c], Is.EqualTo((mode + 1) * sb).Within(1e-5 * b), $"db[{c}] mode {mode} {b}x{i}x{o}");
                    for (int k = 0; k < i; k++)
                    {
                        double s = 0;
                        for (int r = 0; r < b; r++) s += (double)dy[r * o + c] * x[r * i + k];
                        Assert.That(dW[c * i + k], Is.EqualTo((mode + 1) * s).Within(1e-5 * b), $"dW[{c},{k}] mode {mode}");
                    }
                }
            }

            // BwdData with the activation mask of a "previous layer" whose pre-activation is zp = x.
            var saved = new float[b * i];
            var zp = x;
            for (int n = 0; n < saved.Length; n++) saved[n] = act.GradFromOutput ? (float)RefAct(kind, zp[n]) : zp[n];
            var dx = new float[b * i];
            fixed (float* pdy = dy) fixed (float* pw = w) fixed (float* ps = saved) fixed (float* pdx = dx)
                ActivationDispatch.DenseBwdData(act, ctx, b, i, o, pdy, pw, ps, pdx);
            for (int r = 0; r < b; r++)
                for (int k = 0; k < i; k++)
                {
                    double s = 0;
                    for (int c = 0; c < o; c++) s += (double)dy[r * o + c] * w[c * i + k];
                    double gr = kind == ActivationKind.ReLU ? (saved[r * i + k] > 0 ? 1 : 0) : RefGrad(kind, zp[r * i + k]);
                    Assert.That(dx[r * i + k], Is.EqualTo(s * gr).Within(1e-5 + 1e-5 * o * Math.Abs(gr)), $"dx[{r},{k}] {b}x{i}x{o}");
                }
        }
    }
}
