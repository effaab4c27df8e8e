// Activations against libtorch (golden/activations.json) in double and float on every ISA path,
// and the float kernels against an independent double formula on lengths 0..256.
using Backprop.Kernels;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cpu.Ops;
using NUnit.Framework;

namespace Backprop.Tests.Ops;

[TestFixture]
[Parallelizable(ParallelScope.Children)] // each case forces its ISA path on its own CpuContext, so the cases run side by side
public class ActivationTests
{
    public static IEnumerable<Isa> AllIsas() => Enum.GetValues<Isa>().Where(i => i <= CpuIsa.Supported);

    public static readonly (string Golden, Activation Act)[] Cases =
    [
        ("relu", new Activation(ActivationKind.ReLU)),
        ("leaky_relu", new Activation(ActivationKind.LeakyReLU, 0.01)),
        ("elu", new Activation(ActivationKind.ELU, 1.0)),
        ("tanh", new Activation(ActivationKind.Tanh)),
        ("sigmoid", new Activation(ActivationKind.Sigmoid)),
        ("gelu", new Activation(ActivationKind.GELU)),
        ("gelu_tanh", new Activation(ActivationKind.GELUTanh)),
        ("silu", new Activation(ActivationKind.SiLU)),
    ];

    public static IEnumerable<string> Names() => Cases.Select(c => c.Golden);

    // Runs forward then backward (dy = 1) through the Elementwise kernels.
    private struct Runner<T> : IActivationVisitor<T> where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        public T[] X, Y, Dydx;
        public Isa Isa;
        public void Visit<TAct>(TAct act) where TAct : unmanaged, IActivation<T>
        {
            Elementwise.Forward(act, X, Y, Isa);
            var ones = Enumerable.Repeat(T.One, X.Length).ToArray();
            Elementwise.Backward<T, TAct>(act, act.GradFromOutput ? Y : X, ones, Dydx, Isa);
        }
    }

    private static (T[] Y, T[] Dydx) Run<T>(Activation a, T[] x, Isa isa = Isa.Avx512) where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        var r = new Runner<T> { X = x, Y = new T[x.Length], Dydx = new T[x.Length], Isa = isa };
        a.Visit<T, Runner<T>>(ref r);
        return (r.Y, r.Dydx);
    }

    [Test]
    public void MatchesLibtorch_Double([ValueSource(nameof(Names))] string name, [ValueSource(nameof(AllIsas))] Isa isa)
    {
        var g = Golden.Load("activations");
        var x = g.Tensor("x").Data;
        var f = g.GetProperty("functions").GetProperty(name);
        var (y, d) = Run(Cases.Single(c => c.Golden == name).Act, x, isa);
        var yRef = f.Tensor("y").Data;
        var dRef = f.Tensor("dydx").Data;
        for (int i = 0; i < x.Length; i++)
        {
            Assert.That(y[i], Is.EqualTo(yRef[i]).Within(1e-14 + 1e-12 * Math.Abs(yRef[i])), $"{name}({x[i]:R})");
            Assert.That(d[i], Is.EqualTo(dRef[i]).Within(1e-14 + 1e-12 * Math.Abs(dRef[i])), $"{name}'({x[i]:R})");
            Assert.That(double.IsNaN(y[i]) || double.IsNaN(d[i]), Is.False);
        }
    }

    [Test]
    public void MatchesLibtorch_Float([ValueSource(nameof(Names))] string name, [ValueSource(nameof(AllIsas))] Isa isa)
    {
        var g = Golden.Load("activations");
        var x = g.Tensor("x").ToFloat();
        var f = g.GetProperty("functions").GetProperty(name);
        var (y, d) = Run(Cases.Single(c => c.Golden == name).Act, x, isa);
        // The reference at the float-rounded input, from the double kernel (itself checked above).
        var (yRef, dRef) = Run(Cases.Single(c => c.Golden == name).Act, Array.ConvertAll(x, v => (double)v));
        for (int i = 0; i < x.Length; i++)
        {
            Assert.That(y[i], Is.EqualTo(yRef[i]).Within(1e-6 + 2e-5 * Math.Abs(yRef[i])), $"{name}({x[i]:R})");
            Assert.That(d[i], Is.EqualTo(dRef[i]).Within(1e-6 + 2e-5 * Math.Abs(dRef[i])), $"{name}'({x[i]:R})");
            Assert.That(float.IsNaN(y[i]) || float.IsNaN(d[i]), Is.False);
        }
        // and libtorch itself, loosely (float rounding of x moves f(x) by f'(x)*|x|*6e-8)
        var yTorch = f.Tensor("y").Data;
        for (int i = 0; i < x.Length; i++)
            Assert.That(y[i], Is.EqualTo(yTorch[i]).Within(1e-5 + 1e-5 * Math.Abs(yTorch[i])), $"{name}({x[i]:R}) vs libtorch");
    }

    // Independent double formulas (no shared code with the kernels except Erf, checked on its own).
    private static double RefForward(string name, double x) => name switch
    {
        "relu" => Math.Max(x, 0),
        "leaky_relu" => x > 0 ? x : 0.01 * x,
        "elu" => x > 0 ? x : Math.Exp(x) - 1,
        "tanh" => Math.Tanh(x),
        "sigmoid" => 1 / (1 + Math.Exp(-x)),
        "gelu" => 0.5 * x * (1 + SpecialFunctions.Erf(x / Math.Sqrt(2))),
        "gelu_tanh" => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x))),
        "silu" => x / (1 + Math.Exp(-x)),
        _ => throw new ArgumentException(name),
    };

    private static double RefGrad(string name, double x)
    {
        const double h = 1e-6;
        if (name is "relu" or "leaky_relu" or "elu" && Math.Abs(x) < 1e-3) x += 2e-3; // away from the kink
        return (RefForward(name, x + h) - RefForward(name, x - h)) / (2 * h);
    }

    // NaN in, NaN out on every path and at every lane (PyTorch's relu(NaN) = NaN): a step cannot swallow a NaN input on one
    // rung and propagate it on another.
    [Test]
    public void ReLU_PropagatesNaN_OnEveryPathAndLane([ValueSource(nameof(AllIsas))] Isa isa)
    {
        for (int n = 1; n <= 40; n++)
            for (int at = 0; at < n; at++)
            {
                var x = TestData.Floats(n, n, -1f, 1f);
                x[at] = float.NaN;
                var y = new float[n];
                Elementwise.Forward(default(ReLU<float>), x, y, isa);
                Assert.That(float.IsNaN(y[at]), Is.True, $"n={n}, NaN at {at}, {isa}");
            }
    }

    [Test]
    public void FloatKernels_AllLengths_AllPaths([ValueSource(nameof(Names))] string name, [ValueSource(nameof(AllIsas))] Isa isa)
    {
        var act = Cases.Single(c => c.Golden == name).Act;
        for (int n = 0; n <= 256; n += n < 40 ? 1 : 17)
        {
            var x = TestData.Floats(n, n + 1, -6f, 6f);
            for (int i = 0; i < n; i++) if (Math.Abs(x[i]) < 2e-3f) x[i] = 0.5f; // keep off the kinks for the FD reference
            var (y, d) = Run(act, x, isa);
            for (int i = 0; i < n; i++)
            {
                double yr = RefForward(name, x[i]), dr = RefGrad(name, x[i]);
                Assert.That(y[i], Is.EqualTo(yr).Within(2e-6 + 2e-5 * Math.Abs(yr)), $"{name}({x[i]:R}) n={n} i={i}");
                Assert.That(d[i], Is.EqualTo(dr).Within(2e-5 + 1e-4 * Math.Abs(dr)), $"{name}'({x[i]:R}) n={n} i={i}");
            }
        }
    }

    [Test]
    public void Erf_KnownValues()
    {
        // erf(0.5), erf(1), erf(2), erf(3), erf(-0.1): values from Abramowitz & Stegun table 7.1 / standard references.
        Assert.That(SpecialFunctions.Erf(0.5), Is.EqualTo(0.5204998778130465).Within(1e-15));
        Assert.That(SpecialFunctions.Erf(1.0), Is.EqualTo(0.8427007929497149).Within(1e-15));
        Assert.That(SpecialFunctions.Erf(2.0), Is.EqualTo(0.9953222650189527).Within(1e-15));
        Assert.That(SpecialFunctions.Erf(3.0), Is.EqualTo(0.9999779095030014).Within(1e-15));
        Assert.That(SpecialFunctions.Erf(-0.1), Is.EqualTo(-0.1124629160182849).Within(1e-16));
        Assert.That(SpecialFunctions.Erf(10), Is.EqualTo(1.0));
        Assert.That(double.IsNaN(SpecialFunctions.Erf(double.NaN)), Is.True);
    }

    [Test]
    public void Parse_NamesAndErrors()
    {
        Assert.That(Activation.Parse("relu").Kind, Is.EqualTo(ActivationKind.ReLU));
        Assert.That(Activation.Parse("leaky_relu:0.2").EffectiveParameter, Is.EqualTo(0.2));
        Assert.That(Activation.Parse("LeakyReLU").EffectiveParameter, Is.EqualTo(0.01));
        Assert.That(Activation.Parse("gelu_tanh").Kind, Is.EqualTo(ActivationKind.GELUTanh));
        Assert.That(Assert.Throws<ArgumentException>(() => Activation.Parse("softsign"))!.Message, Does.Contain("Unknown activation 'softsign'"));
        Assert.That(Assert.Throws<ArgumentException>(() => Activation.Parse("relu:2"))!.Message, Does.Contain("takes no parameter"));
        Assert.That(Assert.Throws<ArgumentException>(() => Activation.Parse("elu:-1"))!.Message, Does.Contain("must be a positive number; got '-1'"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new LeakyReLU<float>(0f))!.Message, Does.Contain("slope must be positive"));
    }
}
