// ELU at and around x = 0, for alpha in {0.5, 1, 1.7}, in float and double, on every ISA path:
//   forward:  f(±0) = 0 exactly, f(x) <= 0 for x <= 0, f(x) = x exactly for x > 0;
//   backward: f'(0) from the saved output = alpha exactly (PyTorch's elu'(0)), 1 for x > 0, and
//             elsewhere the scalar path's value.
// The backward takes its branch from the sign of the saved output, so a forward that returns a tiny
// positive value at x = 0 (a vector e^0 of 1 + 1 ulp) turns alpha into 1. Exact zeros sit at every
// lane position of a vector (Elementwise, lengths 0..70) and of a GEMM tile (the fused Dense.Fwd and
// Dense.BwdData epilogues, widths 1..70), among values near 0.
using System.Numerics;
using Backprop.Kernels;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cpu.Ops;
using NUnit.Framework;

namespace Backprop.Tests.Ops;

[TestFixture]
[Parallelizable(ParallelScope.Children)] // each case forces its ISA path on its own CpuContext, so the cases run side by side
public unsafe class EluAtZeroTests
{
    public static IEnumerable<Isa> AllIsas() => Enum.GetValues<Isa>().Where(i => i <= CpuIsa.Supported);

    public static readonly double[] Alphas = [0.5, 1.0, 1.7];

    // Values near 0 on both sides (subnormal ones included), both zeros, and a few away from 0 on
    // either side of the small-|x| range an implementation may special-case.
    private static readonly double[] Near =
    [
        -1e-3, 1e-3, -1e-7, 1e-7, -1e-8, 1e-8, -3e-8, -6e-8, 6e-8, -1e-17, 1e-17, -1e-30, 1e-30,
        -1e-40, 1e-40, -1.4e-45, -1e-310, -0.0, 0.0, -1e-5, 1e-5, -0.04, 0.04, -0.06, 0.06, -0.5, 0.5, -3, 2,
    ];

    private static T[] NearValues<T>(int n, int shift) where T : IFloatingPointIeee754<T>
    {
        var x = new T[n];
        for (int i = 0; i < n; i++) x[i] = T.CreateTruncating(Near[(i + shift) % Near.Length]);
        return x;
    }

    // Float: the tolerance of the activation tests; double: 1e-14 + 1e-12 relative. A branch taken
    // wrongly moves the derivative by |1 - alpha| or the output from <= 0 to > 0, far beyond either.
    private static bool Close<T>(T got, T want) where T : IFloatingPointIeee754<T>
    {
        double g = double.CreateTruncating(got), w = double.CreateTruncating(want);
        double tol = typeof(T) == typeof(float) ? 1e-6 + 2e-5 * Math.Abs(w) : 1e-14 + 1e-12 * Math.Abs(w);
        return Math.Abs(g - w) <= tol;
    }

    private static void Note(List<string> failures, string what)
    {
        if (failures.Count < 20) failures.Add(what);
    }

    // The forward y = f(x) and the derivative d of the path under test against the scalar path's
    // (yS, dS) at the same x: the properties of the header, element by element.
    private static void CheckElement<T>(List<string> failures, string where, T alpha, T x, T y, T d, T yS, T dS)
        where T : IFloatingPointIeee754<T>
    {
        if (x == T.Zero)
        {
            if (y != T.Zero) Note(failures, $"{where}: f({x:R}) = {y:R}, want 0");
            if (d != alpha) Note(failures, $"{where}: f'({x:R}) = {d:R}, want alpha = {alpha:R}");
        }
        else if (x > T.Zero)
        {
            if (y != x) Note(failures, $"{where}: f({x:R}) = {y:R}, want x");
            if (d != T.One) Note(failures, $"{where}: f'({x:R}) = {d:R}, want 1");
        }
        else
        {
            if (y > T.Zero) Note(failures, $"{where}: f({x:R}) = {y:R} > 0 for x < 0");
            if (!Close(y, yS)) Note(failures, $"{where}: f({x:R}) = {y:R}, scalar path {yS:R}");
            if (!Close(d, dS)) Note(failures, $"{where}: f'({x:R}) = {d:R}, scalar path {dS:R}");
        }
    }

    [Test]
    public void Elementwise_Float([ValueSource(nameof(Alphas))] double alpha, [ValueSource(nameof(AllIsas))] Isa isa) => CheckElementwise<float>(alpha, isa);

    [Test]
    public void Elementwise_Double([ValueSource(nameof(Alphas))] double alpha, [ValueSource(nameof(AllIsas))] Isa isa) => CheckElementwise<double>(alpha, isa);

    private static void CheckElementwise<T>(double alphaValue, Isa isa) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var act = new Elu<T>(T.CreateTruncating(alphaValue));
        T alpha = T.CreateTruncating(alphaValue);
        var failures = new List<string>();
        var ones = Enumerable.Repeat(T.One, 71).ToArray();
        for (int n = 0; n <= 70; n++)
        {
            var y = new T[n];
            var d = new T[n];
            var yS = new T[n];
            var dS = new T[n];
            var dFromScalarY = new T[n];
            // zero = -1: only the values near 0 (which hold zeros of their own); else an exact +0 or -0 at index zero.
            for (int zero = -1; zero < n; zero++)
            {
                foreach (var zeroValue in new[] { T.Zero, -T.Zero })
                {
                    var x = NearValues<T>(n, n + zero);
                    if (zero >= 0) x[zero] = zeroValue;
                    Elementwise.Forward(act, x, y, isa);
                    Elementwise.Backward(act, y, ones.AsSpan(0, n), d, isa);
                    Elementwise.Forward(act, x, yS, Isa.Scalar);
                    Elementwise.Backward(act, yS, ones.AsSpan(0, n), dS, Isa.Scalar);
                    // The derivative's vector path on the scalar path's output: the same values, bit for bit.
                    Elementwise.Backward(act, yS, ones.AsSpan(0, n), dFromScalarY, isa);
                    for (int i = 0; i < n; i++)
                    {
                        string where = $"{typeof(T).Name} alpha={alphaValue} {isa} n={n} zero at {zero} i={i}";
                        CheckElement(failures, where, alpha, x[i], y[i], d[i], yS[i], dS[i]);
                        if (dFromScalarY[i] != dS[i] && !(T.IsNaN(dFromScalarY[i]) && T.IsNaN(dS[i])))
                            Note(failures, $"{where}: f' from the scalar path's y = {yS[i]:R}: {dFromScalarY[i]:R} on {isa}, {dS[i]:R} on Scalar");
                    }
                    if (zero < 0) break; // one pass without an inserted zero
                }
            }
        }
        Assert.That(failures, Is.Empty);
    }

    [Test]
    public void Dense_Float([ValueSource(nameof(Alphas))] double alpha, [ValueSource(nameof(AllIsas))] Isa isa) => CheckDense<float>(alpha, isa);

    [Test]
    public void Dense_Double([ValueSource(nameof(Alphas))] double alpha, [ValueSource(nameof(AllIsas))] Isa isa) => CheckDense<double>(alpha, isa);

    // Fwd with W = 0, so the pre-activation is the bias exactly: b = 0 (z = 0 at every position of
    // every tile), then b = values near 0 (with zeros among them). BwdData then takes that forward's
    // output as the saved value, with diff_dst = 1 and W = 1 over one output feature, so diff_src is
    // the derivative itself.
    private static void CheckDense<T>(double alphaValue, Isa isa) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var elu = new Activation(ActivationKind.ELU, alphaValue);
        var act = new Elu<T>(T.CreateTruncating(alphaValue));
        T alpha = T.CreateTruncating(alphaValue);
        var failures = new List<string>();
        using var ctx = new CpuContext(1, isa);
        const int inFeatures = 3;
        foreach (int batch in new[] { 1, 3, 8, 17 })
        {
            var src = NearValues<T>(batch * inFeatures, 5);
            for (int i = 0; i < src.Length; i++) src[i] += T.CreateTruncating(i % 2 == 0 ? -0.75 : 1.25); // any finite input: W = 0
            var ones = Enumerable.Repeat(T.One, Math.Max(batch, 70)).ToArray();
            for (int width = 1; width <= 70; width++)
            {
                var w = new T[width * inFeatures];
                var dst = new T[batch * width];
                var pre = new T[batch * width];
                var diffSrc = new T[batch * width];
                var wOnes = Enumerable.Repeat(T.One, width).ToArray(); // W [1, width]
                foreach (bool zeroBias in new[] { true, false })
                {
                    var b = zeroBias ? new T[width] : NearValues<T>(width, width);
                    fixed (T* ps = src) fixed (T* pw = w) fixed (T* pb = b) fixed (T* pd = dst) fixed (T* pp = pre)
                        ActivationDispatch.DenseFwd(elu, ctx, batch, inFeatures, width, ps, pw, pb, pd, pp);
                    fixed (T* pdy = ones) fixed (T* pw1 = wOnes) fixed (T* py = dst) fixed (T* pdx = diffSrc)
                        ActivationDispatch.DenseBwdData(elu, ctx, batch, width, 1, pdy, pw1, py, pdx);
                    for (int c = 0; c < width; c++)
                    {
                        // The scalar path at this column's pre-activation b[c].
                        T yS = act.Forward(b[c]), dS = act.Grad(yS);
                        for (int r = 0; r < batch; r++)
                        {
                            int k = r * width + c;
                            string where = $"{typeof(T).Name} alpha={alphaValue} {isa} batch={batch} width={width} b={(zeroBias ? "0" : "near 0")} [{r},{c}]";
                            if (pre[k] != b[c]) Note(failures, $"{where}: pre-activation {pre[k]:R}, want b = {b[c]:R}");
                            CheckElement(failures, where, alpha, b[c], dst[k], diffSrc[k], yS, dS);
                            T dFromY = act.Grad(dst[k]);
                            if (diffSrc[k] != dFromY) Note(failures, $"{where}: BwdData f'(y = {dst[k]:R}) = {diffSrc[k]:R}, scalar Grad {dFromY:R}");
                        }
                    }
                }
            }
        }
        Assert.That(failures, Is.Empty);
    }
}
