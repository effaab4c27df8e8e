// Finite-difference gradient checks (double precision, torch.autograd.gradcheck defaults) of every
// activation, every loss, the dense layer's three kernels, dropout with a fixed mask and whole
// networks; and a deliberately wrong derivative that the checker must reject.
using System.Numerics;
using System.Runtime.Intrinsics;
using Backprop.Engine;
using Backprop.Engine.Gradcheck;
using Backprop.Kernels;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cpu.Ops;
using NUnit.Framework;

namespace Backprop.Tests.Gradcheck;

[TestFixture]
[Parallelizable(ParallelScope.Children)] // each case forces its ISA path on its own CpuContext, so the cases run side by side
public class GradcheckTests
{
    public static IEnumerable<Activation> Activations() =>
    [
        new(ActivationKind.Identity), new(ActivationKind.ReLU), new(ActivationKind.LeakyReLU, 0.1), new(ActivationKind.ELU, 1.0),
        new(ActivationKind.ELU, 0.5), new(ActivationKind.Tanh), new(ActivationKind.Sigmoid), new(ActivationKind.GELU),
        new(ActivationKind.GELUTanh), new(ActivationKind.SiLU),
    ];

    private static string Describe(GradcheckReport r) => string.Join("; ", r.Tensors.Select(t =>
        $"{t.Name}: max abs {t.MaxAbsError:G3} rel {t.MaxRelError:G3} worst [{t.WorstIndex}] {t.WorstAnalytic:G6} vs {t.WorstNumerical:G6} {(t.Passed ? "ok" : "FAIL")}"));

    private static double[] Points()
    {
        var x = TestData.Doubles(61, 4, -4, 4);
        x[0] = 0; x[1] = 1e-9; x[2] = -1e-9; x[3] = 7; x[4] = -7;
        return x;
    }

    [Test]
    public void EveryActivation_PassesFullCheck([ValueSource(nameof(Activations))] Activation act)
    {
        foreach (var isa in Enum.GetValues<Isa>().Where(i => i <= CpuIsa.Supported))
        {
            var runner = new KinkedRunner { X = Points(), Isa = isa, Kinked = act.Kind is ActivationKind.ReLU or ActivationKind.LeakyReLU || act.Kind == ActivationKind.ELU && act.EffectiveParameter != 1 };
            act.Visit<double, KinkedRunner>(ref runner);
            Assert.That(runner.Report.Passed, Is.True, $"{act} on {isa}: {Describe(runner.Report)}");
            if (runner.Kinked) Assert.That(runner.Report.Nudges, Is.Not.Empty, "the points at 0 must have been moved off the kink");
        }
    }

    private struct KinkedRunner : IActivationVisitor<double>
    {
        public double[] X;
        public bool Kinked;
        public Isa Isa;
        public GradcheckReport Report;
        public void Visit<TAct>(TAct act) where TAct : unmanaged, IActivation<double> =>
            Report = Gradchecker.Run(new ActivationGradcheck<TAct>(act, X, Kinked, isa: Isa));
    }

    /// <summary>tanh with a derivative that is wrong by 1% of y: the checker must catch it.</summary>
    private readonly struct WrongTanh : IActivation<double>
    {
        public bool GradFromOutput => true;
        public double Forward(double x) => Math.Tanh(x);
        public Vector128<double> Forward(Vector128<double> x) => default(Tanh<double>).Forward(x);
        public Vector256<double> Forward(Vector256<double> x) => default(Tanh<double>).Forward(x);
        public Vector512<double> Forward(Vector512<double> x) => default(Tanh<double>).Forward(x);
        public double Grad(double y) => 1 - y * y + 0.01 * y;
        public Vector128<double> Grad(Vector128<double> y) => Vector128<double>.One - y * y + Vector128.Create(0.01) * y;
        public Vector256<double> Grad(Vector256<double> y) => Vector256<double>.One - y * y + Vector256.Create(0.01) * y;
        public Vector512<double> Grad(Vector512<double> y) => Vector512<double>.One - y * y + Vector512.Create(0.01) * y;
    }

    [Test]
    public void AWrongDerivative_Fails()
    {
        var r = Gradchecker.Run(new ActivationGradcheck<WrongTanh>(default, Points(), hasKink: false));
        Assert.That(r.Passed, Is.False, Describe(r));
        Assert.That(r.Tensors[0].MaxAbsError, Is.GreaterThan(1e-3));
        var fast = Gradchecker.Run(new ActivationGradcheck<WrongTanh>(default, Points(), hasKink: false), new GradcheckOptions { Mode = GradcheckMode.Fast });
        Assert.That(fast.Passed, Is.False, "fast mode must catch it too: " + Describe(fast));
    }

    public static IEnumerable<TestCaseData> LossCases()
    {
        yield return new TestCaseData(LossKind.CrossEntropy, 0.0).SetArgDisplayNames("cross_entropy");
        yield return new TestCaseData(LossKind.CrossEntropy, 0.1).SetArgDisplayNames("cross_entropy_smoothing");
        yield return new TestCaseData(LossKind.Mse, 0.0).SetArgDisplayNames("mse");
        yield return new TestCaseData(LossKind.L1, 0.0).SetArgDisplayNames("l1");
        yield return new TestCaseData(LossKind.Huber, 0.0).SetArgDisplayNames("huber");
        yield return new TestCaseData(LossKind.BceWithLogits, 0.0).SetArgDisplayNames("bce_with_logits");
    }

    [TestCaseSource(nameof(LossCases))]
    public void EveryLoss_PassesFullCheck(LossKind kind, double smoothing)
    {
        int batch = 7, width = 5;
        var input = TestData.Doubles(batch * width, 21, -3, 3);
        int[]? labels = kind == LossKind.CrossEntropy ? Enumerable.Range(0, batch).Select(i => i % width).ToArray() : null;
        double[]? t = kind == LossKind.CrossEntropy ? null
            : kind == LossKind.BceWithLogits ? TestData.Doubles(batch * width, 22, 0, 1) : TestData.Doubles(batch * width, 22, -3, 3);
        if (kind == LossKind.L1) input[3] = t![3];             // sits on the kink: must be nudged
        if (kind == LossKind.Huber) input[4] = t![4] + 1.0;    // |d| = delta
        var r = Gradchecker.Run(new LossGradcheck(kind, input, width, labels, t, smoothing));
        Assert.That(r.Passed, Is.True, Describe(r));
        if (kind is LossKind.L1 or LossKind.Huber) Assert.That(r.Nudges, Is.Not.Empty);
    }

    [Test]
    public void DenseLayer_AllThreeKernels_PassFullCheck([ValueSource(nameof(Activations))] Activation act)
    {
        using var ctx = new CpuContext(2);
        var r = Gradchecker.Run(new DenseGradcheck(act, 5, 7, 6, ctx));
        Assert.That(r.Passed, Is.True, $"{act}: {Describe(r)}");
        Assert.That(r.Tensors.Select(t => t.Name), Is.EqualTo(new[] { "x", "weight", "bias" }));
    }

    [Test]
    public void Dropout_WithFixedMask_PassesFullCheck()
    {
        var r = Gradchecker.Run(new DropoutGradcheck(0.4, TestData.Doubles(50, 8)));
        Assert.That(r.Passed, Is.True, Describe(r));
    }

    public static IEnumerable<TestCaseData> EngineConfigurations()
    {
        foreach (var isa in Enum.GetValues<Isa>().Where(i => i <= CpuIsa.Supported))
            yield return new TestCaseData(Backend.Cpu, isa, GradcheckMode.Full).SetArgDisplayNames("cpu", isa.ToString(), "full");
        yield return new TestCaseData(Backend.Cpu, CpuIsa.Supported, GradcheckMode.Fast).SetArgDisplayNames("cpu", CpuIsa.Supported.ToString(), "fast");
        yield return new TestCaseData(Backend.Blas, CpuIsa.Supported, GradcheckMode.Full).SetArgDisplayNames("blas", CpuIsa.Supported.ToString(), "full");
    }

    // The whole network through the engine that trains it: the plan and kernels of each backend and ISA path, in double.
    [TestCaseSource(nameof(EngineConfigurations))]
    public void ThreeLayerNetwork_EndToEnd_Passes(Backend backend, Isa isa, GradcheckMode mode)
    {
        var spec = new ModelSpec(6, [
            new LayerSpec(9, new Activation(ActivationKind.ReLU), Dropout: 0.25),
            new LayerSpec(7, new Activation(ActivationKind.GELU)),
            new LayerSpec(4, new Activation(ActivationKind.Identity))], LossKind.CrossEntropy, LabelSmoothing: 0.05);
        var options = new TrainingOptions { LabelSmoothing = 0.05, Init = InitScheme.PyTorchDefault, Seed = 42, Threads = 2, Backend = backend, Isa = isa };
        var batch = new GradcheckBatch(TestData.Doubles(5 * 6, 9), Labels: [0, 3, 1, 2, 3]);
        var r = Gradchecker.Check(spec, options, batch, new GradcheckOptions { Mode = mode });
        Assert.That(r.Passed, Is.True, Describe(r));
        Assert.That(r.Tensors.Select(z => z.Name), Is.EqualTo(new[] { "x", "0.weight", "0.bias", "3.weight", "3.bias", "5.weight", "5.bias" }));
    }

    [Test]
    public void RegressionNetwork_WithTanhAndSigmoid_Passes()
    {
        var spec = new ModelSpec(3, [
            new LayerSpec(8, new Activation(ActivationKind.Tanh)),
            new LayerSpec(8, new Activation(ActivationKind.SiLU)),
            new LayerSpec(2, new Activation(ActivationKind.Sigmoid))], LossKind.Huber, HuberDelta: 0.5);
        var options = new TrainingOptions { Loss = LossKind.Huber, HuberDelta = 0.5, Init = InitScheme.XavierUniform, Seed = 1, Threads = 1 };
        var r = Gradchecker.Check(spec, options, new GradcheckBatch(TestData.Doubles(12, 2), Targets: TestData.Doubles(8, 3, 0, 1)));
        Assert.That(r.Passed, Is.True, Describe(r));
    }
}
