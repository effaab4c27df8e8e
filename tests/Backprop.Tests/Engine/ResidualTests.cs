// Residual blocks, LayerNorm and BatchNorm through the engine: the builder's rules, the state_dict names of the
// equivalent torch module tree, the forward pass against a naive double reference written here, finite-
// difference gradient checks in double on every ISA rung and the Blas backend, bit-identical training on
// 1 and 2 threads, no allocation per step (the Cuda backend's kernels: tests/Backprop.Tests/Cuda/CudaTreeTests.cs).
using Backprop.Engine;
using Backprop.Engine.Gradcheck;
using Backprop.Engine.Planning;
using Backprop.Kernels;
using Backprop.Kernels.Cpu;
using NUnit.Framework;

namespace Backprop.Tests.Engine;

[TestFixture]
[Parallelizable(ParallelScope.Children)]
public class ResidualTests
{
    private static string Describe(GradcheckReport r) => string.Join("; ", r.Tensors.Select(t =>
        $"{t.Name}: max abs {t.MaxAbsError:G3} rel {t.MaxRelError:G3} worst [{t.WorstIndex}] {t.WorstAnalytic:G6} vs {t.WorstNumerical:G6} {(t.Passed ? "ok" : "FAIL")}"));

    // 6 → Dense 8 tanh → Residual[Dense 8 gelu, LayerNorm] → Residual[Dense 5 silu] (projection 8 → 5) → LayerNorm → Dense 3
    private static Sequential ResMlp(int input = 6) => new Sequential(input)
        .Dense(8, "tanh")
        .Residual(b => b.Dense(8, "gelu").LayerNorm())
        .Residual(b => b.Dense(5, "silu"))
        .LayerNorm()
        .Dense(3);

    [Test]
    public void Names_AreThoseOfTheTorchModuleTree()
    {
        var spec = ResMlp().ToSpec(LossKind.CrossEntropy);
        Assert.That(spec.IsTree, Is.True);
        Assert.That(spec.Layers.Select(l => l.Units), Is.EqualTo(new[] { 8, 8, 5, 5, 3 }), "Dense layers depth-first, the projection after its body");
        using var m = new Model(spec, new TrainingOptions { MaxBatch = 4, Threads = 1 });
        Assert.That(m.Parameters.Select(p => p.Name), Is.EqualTo(new[]
        {
            "0.weight", "0.bias",
            "2.body.0.weight", "2.body.0.bias", "2.body.2.weight", "2.body.2.bias",
            "3.body.0.weight", "3.body.0.bias", "3.proj.weight", "3.proj.bias",
            "4.weight", "4.bias",
            "5.weight", "5.bias",
        }));
        Assert.That(m.Parameters.Select(p => string.Join("x", p.Shape)), Is.EqualTo(new[]
        {
            "8x6", "8", "8x8", "8", "8", "8", "5x8", "5", "5x8", "5", "5", "5", "3x5", "3",
        }));
        Assert.That(spec.Describe(), Is.EqualTo("6-8-[8-LN]-[5]-LN-3"));
        Assert.That(m.Parameter("2.body.2.weight").ToArray(), Is.All.EqualTo(1f), "LayerNorm weight starts at 1, as torch");
        Assert.That(m.Parameter("2.body.2.bias").ToArray(), Is.All.EqualTo(0f));
        Assert.That(spec.OutputWidth, Is.EqualTo(3));
        Assert.That(spec.Width(3), Is.EqualTo(8), "the projection reads the block's input");
    }

    [Test]
    public void Builder_And_Spec_RefuseBadTrees_NamingTheModule()
    {
        Assert.That(Assert.Throws<ArgumentException>(() => new Sequential(4).Dense(4).Residual(b => b))!.Message,
            Does.Contain("module 1 (Residual): the block's body is empty"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new Sequential(4).Dense(4).Residual(b => b.Dense(4).LayerNorm(0)))!.Message,
            Does.Contain("module 1.body.1 (LayerNorm): eps must be a positive finite number; got 0"), "Dense(4) is body index 0 (no activation module), the LayerNorm 1");
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new Sequential(4).Dense(4, "relu").LayerNorm(double.NaN))!.Message,
            Does.Contain("module 2 (LayerNorm): eps must be a positive finite number; got NaN"));
        Assert.That(Assert.Throws<InvalidOperationException>(() => new Sequential(4).Dense(4).LayerNorm().Dropout(0.1))!.Message,
            Does.Contain("Dropout must follow a Dense layer; module 1 is a LayerNorm"));
        Assert.That(Assert.Throws<ArgumentException>(() => new Sequential(4).Residual(b => new Sequential(4).Dense(4)))!.Message,
            Does.Contain("the block must return the Sequential it was given"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new Sequential(4).Residual(b => b.Dense(0)))!.Message,
            Does.Contain("layer 0 (Dense): units must be at least 1; got 0"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new Sequential(4).Dense(3).Residual(b => b.Dense(4).Dropout(1.5)))!.Message,
            Does.Contain("layer 1: dropout must be in [0, 1); got 1.5"), "a layer inside a block is numbered among all Dense layers");

        // A spec built by hand whose Layers disagree with its tree (a damaged checkpoint's, say).
        var good = ResMlp().ToSpec(LossKind.CrossEntropy);
        var bad = good with { Layers = good.Layers.Take(3).ToArray() };
        Assert.That(Assert.Throws<ArgumentException>(() => bad.Validate())!.Message,
            Does.Contain("the spec's layers (8, 8, 5) are not the Dense layers of its modules (8, 8, 5, 5, 3, projections included)"));
        // Layers are numbered as the plan numbers them: a block's projection after its body.
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => ModelSpec.FromModules(4,
            [new ResidualSpec([new LayerSpec(8, new Activation(ActivationKind.ReLU))]), new LayerSpec(3, new Activation(ActivationKind.Identity), 1.5)], LossKind.Mse))!.Message,
            Does.Contain("layer 2: dropout must be in [0, 1); got 1.5"));
        Assert.That(Assert.Throws<ArgumentException>(() => ModelSpec.FromModules(4, [new ResidualSpec(null!)], LossKind.Mse))!.Message,
            Does.Contain("module 0 (Residual): the block's body is empty"));
        var empty = new ModelSpec(4, [new LayerSpec(4, new Activation(ActivationKind.Identity))], LossKind.Mse, Modules: [new ResidualSpec([])]);
        Assert.That(Assert.Throws<ArgumentException>(() => empty.Validate())!.Message, Does.Contain("module 0 (Residual): the block's body is empty"));

        // The output rules look at the module that makes the output.
        Assert.That(Assert.Throws<ArgumentException>(() => new Sequential(4).Residual(b => b.Dense(5)).Dense(3, "relu").Compile(new TrainingOptions()))!.Message,
            Does.Contain("layer 2 (Dense 3): cross-entropy takes logits"), "the block's projection is layer 1");
        using var endsInNorm = new Sequential(4).Dense(3).LayerNorm().Compile(new TrainingOptions { MaxBatch = 2 });
        Assert.That(endsInNorm.Spec.OutputWidth, Is.EqualTo(3));
    }

    // --- forward against a naive double reference ---------------------------------------------------------------------

    // y = module(x) for a batch in double, the parameters read from the model by name: an independent reading of the spec.
    private static double[] Reference(Model m, double[] x, int batch)
    {
        int dense = 0, norm = 0, batchNorm = 0;
        var spec = m.Spec;
        double[] Linear(int l, double[] v, int inW)
        {
            var (wn, bn) = spec.ParameterNames(l);
            var w = m.Parameter(wn).ToArray();
            var b = m.Parameter(bn).ToArray();
            int outW = spec.Layers[l].Units;
            var y = new double[batch * outW];
            for (int r = 0; r < batch; r++)
                for (int o = 0; o < outW; o++)
                {
                    double s = b[o];
                    for (int i = 0; i < inW; i++) s += v[r * inW + i] * (double)w[o * inW + i];
                    y[r * outW + o] = spec.Layers[l].Activation.Kind switch
                    {
                        ActivationKind.Identity => s,
                        ActivationKind.Tanh => Math.Tanh(s),
                        ActivationKind.ReLU => Math.Max(0, s),
                        ActivationKind.GELU => 0.5 * s * (1 + Erf(s / Math.Sqrt(2))),
                        ActivationKind.SiLU => s / (1 + Math.Exp(-s)),
                        var k => throw new NotSupportedException(k.ToString()),
                    };
                }
            return y;
        }
        (double[], int) Seq(IReadOnlyList<ModuleSpec> mods, double[] v, int w)
        {
            foreach (var mod in mods)
                switch (mod)
                {
                    case LayerSpec d:
                        v = Linear(dense++, v, w);
                        w = d.Units;
                        break;
                    case LayerNormSpec ln:
                    {
                        var site = spec.NormSites[norm++];
                        var g = m.Parameter(site.Prefix + "weight").ToArray();
                        var b = m.Parameter(site.Prefix + "bias").ToArray();
                        var y = new double[v.Length];
                        for (int r = 0; r < batch; r++)
                        {
                            double mean = 0, var = 0;
                            for (int i = 0; i < w; i++) mean += v[r * w + i];
                            mean /= w;
                            for (int i = 0; i < w; i++) var += (v[r * w + i] - mean) * (v[r * w + i] - mean);
                            var /= w;
                            for (int i = 0; i < w; i++) y[r * w + i] = (v[r * w + i] - mean) / Math.Sqrt(var + ln.Eps) * g[i] + b[i];
                        }
                        v = y;
                        break;
                    }
                    case BatchNormSpec bn:
                    {
                        // Inference: the running statistics.
                        var site = spec.BatchNormSites[batchNorm++];
                        var g = m.Parameter(site.Prefix + "weight").ToArray();
                        var b = m.Parameter(site.Prefix + "bias").ToArray();
                        var rm = m.Buffer(site.Prefix + "running_mean").ToArray();
                        var rv = m.Buffer(site.Prefix + "running_var").ToArray();
                        var y = new double[v.Length];
                        for (int r = 0; r < batch; r++)
                            for (int i = 0; i < w; i++) y[r * w + i] = (v[r * w + i] - rm[i]) / Math.Sqrt(rv[i] + bn.Eps) * g[i] + b[i];
                        v = y;
                        break;
                    }
                    case ResidualSpec res:
                    {
                        var (f, fw) = Seq(res.Body, v, w);
                        var skip = fw != w ? Linear(dense++, v, w) : v;
                        v = f.Zip(skip, (p, q) => p + q).ToArray();
                        w = fw;
                        break;
                    }
                }
            return (v, w);
        }
        return Seq(spec.Tree, x, spec.InputWidth).Item1;
    }

    // Abramowitz–Stegun 7.1.26 is too coarse for a 1e-5 check; this is the series / continued fraction pair in double.
    private static double Erf(double x)
    {
        double ax = Math.Abs(x);
        double r;
        if (ax < 2.5)
        {
            double sum = 0, term = ax;
            for (int n = 0; n < 60; n++)
            {
                sum += term / (2 * n + 1);
                term *= -ax * ax / (n + 1);
            }
            r = 2 / Math.Sqrt(Math.PI) * sum;
        }
        else
        {
            double f = 0;
            for (int n = 60; n >= 1; n--) f = n / 2.0 / (ax + f);
            r = 1 - Math.Exp(-ax * ax) / Math.Sqrt(Math.PI) / (ax + f);
        }
        return x < 0 ? -r : r;
    }

    [Test]
    public void Predict_MatchesANaiveDoubleReference([Values(Backend.Cpu, Backend.Blas)] Backend backend)
    {
        using var m = ResMlp().Compile(new TrainingOptions { MaxBatch = 16, Threads = 2, Seed = 5, Backend = backend });
        var y = Enumerable.Range(0, 16).Select(i => i % 3).ToArray();
        for (int t = 0; t < 4; t++) m.Step(TestData.Floats(16 * 6, 30 + t, -2, 2), y); // weights away from their initial values
        var x = TestData.Floats(11 * 6, 7, -3, 3);
        var ours = new float[11 * 3];
        m.Predict(x, ours);
        var want = Reference(m, TestData.ToDouble(x), 11);
        for (int i = 0; i < ours.Length; i++) Assert.That(ours[i], Is.EqualTo(want[i]).Within(2e-5 + 2e-5 * Math.Abs(want[i])), $"output {i}");
    }

    [Test]
    public void ConstantFeatures_NormalizeToTheBias()
    {
        // A constant row has variance 0: x̂ = 0 and the LayerNorm's output is its bias (torch gives the same).
        using var m = new Sequential(4).LayerNorm().Dense(2).Compile(new TrainingOptions { Loss = LossKind.Mse, MaxBatch = 2, Threads = 1 });
        m.SetParameter("0.bias", [0.5f, -1f, 2f, 0f]);
        var x = new float[] { 3, 3, 3, 3, -7, -7, -7, -7 };
        var ours = new float[4];
        m.Predict(x, ours);
        var want = Reference(m, TestData.ToDouble(x), 2);
        for (int i = 0; i < 4; i++) Assert.That(ours[i], Is.EqualTo(want[i]).Within(1e-6));
        double loss = m.Step(x, [1f, 1f, 1f, 1f]);
        Assert.That(double.IsFinite(loss), Is.True);
        Assert.That(m.Parameter("0.weight").ToArray(), Is.All.EqualTo(1f), "x̂ = 0: no gradient reaches the LayerNorm's weight");
    }

    // --- gradient checks in double ----------------------------------------------------------------------------------------

    public static IEnumerable<TestCaseData> Trees()
    {
        yield return new TestCaseData("layernorm alone", new Sequential(5).LayerNorm().Dense(3), LossKind.CrossEntropy);
        yield return new TestCaseData("norm after activation", new Sequential(5).Dense(6, "tanh").LayerNorm().Dense(3), LossKind.CrossEntropy);
        yield return new TestCaseData("norm before activation", new Sequential(5).Dense(6).LayerNorm().Dense(6, "sigmoid").Dense(3), LossKind.CrossEntropy);
        yield return new TestCaseData("residual, same width", new Sequential(5).Dense(6, "tanh").Residual(b => b.Dense(6, "gelu").Dense(6)).Dense(3), LossKind.CrossEntropy);
        yield return new TestCaseData("residual, projection", new Sequential(5).Residual(b => b.Dense(4, "silu")).Dense(3), LossKind.CrossEntropy);
        yield return new TestCaseData("residual body ending in an activation", new Sequential(5).Dense(5, "tanh").Residual(b => b.Dense(5, "tanh")).Dense(2), LossKind.Mse);
        yield return new TestCaseData("nested blocks", new Sequential(4)
            .Residual(b => b.Dense(6, "tanh").Residual(c => c.Dense(6, "gelu").LayerNorm()).Residual(c => c.Residual(d => d.Dense(6, "silu"))))
            .LayerNorm().Dense(3), LossKind.CrossEntropy);
        yield return new TestCaseData("resmlp", ResMlp(5), LossKind.CrossEntropy);
        // The join folded into BwdData: not when the body's one layer reads the output gradient as its dZ, nor into an output
        // gradient an enclosing block's skip path still needs.
        yield return new TestCaseData("one identity layer, same width", new Sequential(5).Dense(5, "tanh").Residual(b => b.Dense(5)).Dense(3), LossKind.CrossEntropy);
        yield return new TestCaseData("a block ending in a block that ends in an activation", new Sequential(5).Dense(6, "tanh")
            .Residual(b => b.Dense(6, "tanh").Residual(c => c.Dense(6, "tanh").Dense(6, "sigmoid"))).Dense(3), LossKind.CrossEntropy);
        yield return new TestCaseData("a block ending in a projected block", new Sequential(5).Dense(6, "tanh")
            .Residual(b => b.Dense(6, "tanh").Residual(c => c.Dense(4, "silu")).Dense(6)).Dense(3), LossKind.CrossEntropy);
        yield return new TestCaseData("network ends in a residual block", new Sequential(4).Dense(3, "tanh").Residual(b => b.Dense(3, "tanh").LayerNorm()), LossKind.Mse);
        yield return new TestCaseData("large eps", new Sequential(4).Dense(5, "tanh").LayerNorm(eps: 1.0).Dense(2), LossKind.Huber);
        yield return new TestCaseData("batchnorm on the input", new Sequential(5).BatchNorm().Dense(3), LossKind.CrossEntropy);
        yield return new TestCaseData("batchnorm before activation", new Sequential(5).Dense(6).BatchNorm().Dense(6, "tanh").Dense(3), LossKind.CrossEntropy);
        yield return new TestCaseData("batchnorm after activation, in a block", new Sequential(5).Dense(6, "gelu")
            .Residual(b => b.Dense(6, "silu").BatchNorm(momentum: 0.3)).LayerNorm().Dense(2), LossKind.Mse);
    }

    private static GradcheckReport Check(Sequential net, LossKind loss, Backend backend, Isa? isa, int threads = 1)
    {
        var spec = net.ToSpec(loss);
        var options = new TrainingOptions { Loss = loss, Seed = 3, Threads = threads, Backend = backend, Isa = isa, Init = InitScheme.XavierUniform };
        int batch = 4;
        var x = TestData.Doubles(batch * spec.InputWidth, 11, -2, 2);
        var b = loss == LossKind.CrossEntropy
            ? new GradcheckBatch(x, Labels: Enumerable.Range(0, batch).Select(i => i % spec.OutputWidth).ToArray())
            : new GradcheckBatch(x, Targets: TestData.Doubles(batch * spec.OutputWidth, 12, -1, 1));
        return Gradchecker.Check(spec, options, b);
    }

    [TestCaseSource(nameof(Trees))]
    public void Gradcheck_Passes_OnEveryIsaAndTheBlasBackend(string name, Sequential net, LossKind loss)
    {
        foreach (var isa in Enum.GetValues<Isa>().Where(i => i <= CpuIsa.Supported))
        {
            var r = Check(net, loss, Backend.Cpu, isa);
            Assert.That(r.Passed, Is.True, $"{name} on {isa}: {Describe(r)}");
        }
        var blas = Check(net, loss, Backend.Blas, null, threads: 2);
        Assert.That(blas.Passed, Is.True, $"{name} on Blas: {Describe(blas)}");
    }

    [Test]
    public void Gradcheck_WithDropoutAroundBlocks_Passes()
    {
        // Dropout on the Dense layer feeding a block (its mask applied at the block's join) and on the last layer of a
        // body (applied before the body runs backward).
        var net = new Sequential(5).Dense(6, "tanh").Dropout(0.3).Residual(b => b.Dense(6, "gelu").Dropout(0.25)).LayerNorm().Dense(3);
        var r = Check(net, LossKind.CrossEntropy, Backend.Cpu, null);
        Assert.That(r.Passed, Is.True, Describe(r));
        Assert.That(r.Tensors.Select(t => t.Name), Is.EqualTo(new[]
        {
            "x", "0.weight", "0.bias", "3.body.0.weight", "3.body.0.bias", "4.weight", "4.bias", "5.weight", "5.bias",
        }));
    }

    [Test]
    public void Gradcheck_ConstantFeatures_AndTinyEps_Pass([Values(1e-5, 1e-3)] double eps)
    {
        // A sample whose features are all equal (variance 0: rstd = 1/sqrt(eps)) and, for BatchNorm, a feature equal in every sample.
        var x = TestData.Doubles(4 * 5, 21, -2, 2);
        for (int i = 0; i < 5; i++) x[5 + i] = 0.75;
        for (int r = 0; r < 4; r++) x[r * 5 + 3] = -1.25;
        foreach (var (name, net) in new[]
        {
            ("layernorm", new Sequential(5).LayerNorm(eps).Dense(3)),
            ("batchnorm", new Sequential(5).BatchNorm(eps).Dense(3)),
            ("both in a block", new Sequential(5).Residual(b => b.LayerNorm(eps).BatchNorm(eps).Dense(5, "tanh")).Dense(3)),
        })
        {
            var spec = net.ToSpec(LossKind.CrossEntropy);
            var r = Gradchecker.Check(spec, new TrainingOptions { Loss = LossKind.CrossEntropy, Seed = 3, Threads = 1, Init = InitScheme.XavierUniform },
                new GradcheckBatch(x, Labels: [0, 1, 2, 0]));
            Assert.That(r.Passed, Is.True, $"{name}, eps {eps}: {Describe(r)}");
        }
    }

    [Test]
    public void Gradcheck_CatchesAWrongNormGradient()
    {
        // The checker is not blind here: a model whose LayerNorm weight gradient is scaled by 1.01 must fail.
        var spec = new Sequential(5).Dense(6, "tanh").LayerNorm().Dense(3).ToSpec(LossKind.CrossEntropy);
        var options = new TrainingOptions { Loss = LossKind.CrossEntropy, Seed = 3, Threads = 1, Init = InitScheme.XavierUniform };
        using var f = new ModelGradcheck(spec, options, new GradcheckBatch(TestData.Doubles(4 * 5, 11, -2, 2), Labels: [0, 1, 2, 0]));
        var wrong = new ScaledGradient(f, "2.weight", 1.01);
        var r = Gradchecker.Run(wrong);
        Assert.That(r.Passed, Is.False, Describe(r));
        Assert.That(r.Tensors.Single(t => t.Name == "2.weight").Passed, Is.False);
    }

    private sealed class ScaledGradient(IGradcheckFunction inner, string name, double scale) : IGradcheckFunction
    {
        public IReadOnlyList<GradTensor> Tensors => inner.Tensors;
        public double Loss() => inner.Loss();
        public void ComputeGradients()
        {
            inner.ComputeGradients();
            var t = inner.Tensors.Single(t => t.Name == name);
            for (int i = 0; i < t.Gradient.Length; i++) t.Gradient[i] *= scale;
        }
        public IReadOnlyList<string> AvoidKinks(double margin, Random rng) => inner.AvoidKinks(margin, rng);
    }

    // --- BatchNorm: running statistics, batch of one, inference ---------------------------------------------------------

    [Test]
    public void BatchNorm_Names_Buffers_AndRules()
    {
        using var m = new Sequential(4).Dense(6, "relu").BatchNorm().Residual(b => b.Dense(6).BatchNorm(1e-3, 0.2)).Dense(3)
            .Compile(new TrainingOptions { MaxBatch = 8, Threads = 1 });
        Assert.That(m.Parameters.Select(p => p.Name), Is.EqualTo(new[]
        {
            "0.weight", "0.bias", "2.weight", "2.bias", "3.body.0.weight", "3.body.0.bias", "3.body.1.weight", "3.body.1.bias", "4.weight", "4.bias",
        }));
        Assert.That(m.Buffers.Select(p => p.Name), Is.EqualTo(new[]
        {
            "2.running_mean", "2.running_var", "2.num_batches_tracked", "3.body.1.running_mean", "3.body.1.running_var", "3.body.1.num_batches_tracked",
        }), "torch.nn.BatchNorm1d's buffers");
        Assert.That(m.Buffers.Single(b => b.Name == "2.num_batches_tracked").Shape, Is.Empty, "a scalar");
        Assert.That(m.Buffer("2.running_var").ToArray(), Is.All.EqualTo(1f));
        Assert.That(m.Buffer("2.running_mean").ToArray(), Is.All.EqualTo(0f));
        Assert.That(m.Parameter("2.weight").ToArray(), Is.All.EqualTo(1f));
        Assert.That(m.Spec.Describe(), Is.EqualTo("4-6-BN-[6-BN]-3"));
        Assert.That(Assert.Throws<KeyNotFoundException>(() => m.Buffer("2.running_std").ToArray())!.Message, Does.Contain("no buffer '2.running_std'"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new Sequential(4).BatchNorm(momentum: 1.5))!.Message,
            Does.Contain("module 0 (BatchNorm): momentum must be in [0, 1]; got 1.5"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new Sequential(4).Dense(3, "tanh").BatchNorm(eps: -1))!.Message,
            Does.Contain("module 2 (BatchNorm): eps must be a positive finite number; got -1"));

        // One sample has no batch statistics: refused in training (as torch), before anything changes; inference takes it.
        var before = m.Buffer("2.running_mean").ToArray();
        var e = Assert.Throws<ArgumentException>(() => m.Step(TestData.Floats(4, 1), [0]));
        Assert.That(e!.Message, Does.Contain("module 2 (BatchNorm) needs more than 1 sample per batch in training, as torch; got 1"));
        Assert.Throws<ArgumentException>(() => m.Loss(TestData.Floats(4, 1), [0]));
        Assert.That(m.Buffer("2.running_mean").ToArray(), Is.EqualTo(before));
        Assert.That(m.StepCount, Is.EqualTo(0));
        var one = new float[3];
        m.Predict(TestData.Floats(4, 1), one);
        Assert.That(one.All(float.IsFinite), Is.True);
        using var acc = new Sequential(4).BatchNorm().Dense(3).Compile(new TrainingOptions { MaxBatch = 8, Threads = 1, Accumulate = 4 });
        Assert.That(Assert.Throws<ArgumentException>(() => acc.Step(TestData.Floats(4 * 5, 2), [0, 1, 2, 0, 1]))!.Message,
            Does.Contain("a batch of 5 in 4 micro-batches has one of 1"));
    }

    [Test]
    public void BatchNorm_RunningStatistics_FollowTorchsUpdate_AndPredictUsesThem()
    {
        const double momentum = 0.25;
        using var m = new Sequential(3).BatchNorm(momentum: momentum).Dense(2).Compile(new TrainingOptions { Loss = LossKind.Mse, MaxBatch = 6, Threads = 1, Seed = 2 });
        var mean = new double[3];
        var var = new double[] { 1, 1, 1 };
        for (int t = 0; t < 5; t++)
        {
            int n = 3 + t % 3;
            var x = TestData.Floats(n * 3, 40 + t, -2, 3);
            for (int c = 0; c < 3; c++)
            {
                double mu = 0, sq = 0;
                for (int r = 0; r < n; r++) mu += x[r * 3 + c];
                mu /= n;
                for (int r = 0; r < n; r++) sq += (x[r * 3 + c] - mu) * (x[r * 3 + c] - mu);
                mean[c] = (1 - momentum) * mean[c] + momentum * mu;
                var[c] = (1 - momentum) * var[c] + momentum * sq / (n - 1); // the unbiased variance, as torch
            }
            m.Step(x, TestData.Floats(n * 2, 60 + t));
            m.Loss(x, TestData.Floats(n * 2, 60 + t));      // Loss and Gradients evaluate; they do not move the statistics
            m.Gradients(x, TestData.Floats(n * 2, 60 + t));
        }
        Assert.That(m.Buffer("0.running_mean").ToArray(), Is.EqualTo(mean).Within(1e-6));
        Assert.That(m.Buffer("0.running_var").ToArray(), Is.EqualTo(var).Within(1e-6));
        Assert.That(m.Buffer("0.num_batches_tracked").ToArray(), Is.EqualTo(new[] { 5f }));
        var xi = TestData.Floats(7 * 3, 9, -3, 3);
        var ours = new float[7 * 2];
        m.Predict(xi, ours);
        var want = Reference(m, TestData.ToDouble(xi), 7);
        for (int i = 0; i < ours.Length; i++) Assert.That(ours[i], Is.EqualTo(want[i]).Within(1e-5 + 1e-5 * Math.Abs(want[i])), $"output {i}");
    }

    // --- training: determinism and allocation --------------------------------------------------------------------------

    private static float[] Train(int threads, Backend backend = Backend.Cpu, int steps = 12, OptimizerSettings? optimizer = null)
    {
        // Wide enough (64 x 384 values) that the norms split their work over the threads.
        using var m = new Sequential(20).Dense(384, "relu").Dropout(0.1)
            .Residual(b => b.Dense(384, "gelu").LayerNorm()).Residual(b => b.Dense(272, "relu").Dropout(0.2)).BatchNorm().LayerNorm().Dense(5)
            .Compile(new TrainingOptions { MaxBatch = 64, Threads = threads, Seed = 9, Backend = backend, Optimizer = optimizer ?? new Adam { LearningRate = 1e-3 } });
        for (int t = 0; t < steps; t++)
            m.Step(TestData.Floats(64 * 20, 50 + t, -2, 2), Enumerable.Range(0, 64).Select(i => (i * 7 + t) % 5).ToArray());
        return m.Parameters.SelectMany(p => m.Parameter(p.Name).ToArray()).Concat(m.Buffers.SelectMany(b => m.Buffer(b.Name).ToArray())).ToArray();
    }

    [Test]
    public unsafe void NormKernels_OnAContext_AreBitIdenticalToOneThread([Values(1, 2, 3)] int threads)
    {
        // 37 rows of 1000 features: rows and features split unevenly, feature ranges not ending on a vector.
        const int rows = 37, cols = 1000;
        var x = TestData.Floats(rows * cols, 1, -3, 5);
        var dy = TestData.Floats(rows * cols, 2);
        var w = TestData.Floats(cols, 3, 0.5f, 1.5f);
        var b = TestData.Floats(cols, 4);
        float[] Run(Action<nint, nint, nint, nint, nint> body)
        {
            var outs = new float[5][];
            outs[0] = new float[rows * cols]; outs[1] = new float[2 * Math.Max(rows, cols)]; outs[2] = new float[cols]; outs[3] = new float[cols]; outs[4] = new float[rows * cols];
            fixed (float* o0 = outs[0], o1 = outs[1], o2 = outs[2], o3 = outs[3], o4 = outs[4]) body((nint)o0, (nint)o1, (nint)o2, (nint)o3, (nint)o4);
            return outs.SelectMany(o => o).ToArray();
        }
        using var ctx = new CpuContext(threads);
        fixed (float* px = x, pdy = dy, pw = w, pb = b)
        {
            float* X = px, Dy = pdy, W = pw, B = pb;
            var one = Run((y, st, dw, db, dx) =>
            {
                Backprop.Kernels.Cpu.Ops.LayerNorm.Forward(CpuIsa.Supported, rows, cols, 1e-5, X, W, B, (float*)y, (float*)st);
                Backprop.Kernels.Cpu.Ops.LayerNorm.Backward(CpuIsa.Supported, rows, cols, Dy, X, W, (float*)st, (float*)dw, (float*)db, (float*)dx);
            });
            var many = Run((y, st, dw, db, dx) =>
            {
                Backprop.Kernels.Cpu.Ops.LayerNorm.Forward(ctx, rows, cols, 1e-5, X, W, B, (float*)y, (float*)st);
                Backprop.Kernels.Cpu.Ops.LayerNorm.Backward(ctx, rows, cols, Dy, X, W, (float*)st, (float*)dw, (float*)db, (float*)dx);
            });
            Assert.That(many, Is.EqualTo(one), $"LayerNorm on {threads} thread(s)");
            var rm1 = new float[cols]; var rv1 = Enumerable.Repeat(1f, cols).ToArray(); var t1 = new float[1];
            var rm2 = new float[cols]; var rv2 = Enumerable.Repeat(1f, cols).ToArray(); var t2 = new float[1];
            fixed (float* prm1 = rm1, prv1 = rv1, pt1 = t1, prm2 = rm2, prv2 = rv2, pt2 = t2)
            {
                float* RM1 = prm1, RV1 = prv1, T1 = pt1, RM2 = prm2, RV2 = prv2, T2 = pt2;
                var bn1 = Run((y, st, dw, db, dx) =>
                {
                    Backprop.Kernels.Cpu.Ops.BatchNorm.ForwardTraining(CpuIsa.Supported, rows, cols, 1e-5, 0.1, X, W, B, (float*)y, (float*)st, RM1, RV1, T1);
                    Backprop.Kernels.Cpu.Ops.BatchNorm.Backward(CpuIsa.Supported, rows, cols, Dy, X, W, (float*)st, (float*)dw, (float*)db, (float*)dx);
                });
                var bn2 = Run((y, st, dw, db, dx) =>
                {
                    Backprop.Kernels.Cpu.Ops.BatchNorm.Forward(ctx, true, rows, cols, 1e-5, 0.1, X, W, B, (float*)y, (float*)st, RM2, RV2, T2);
                    Backprop.Kernels.Cpu.Ops.BatchNorm.Backward(ctx, rows, cols, Dy, X, W, (float*)st, (float*)dw, (float*)db, (float*)dx);
                });
                Assert.That(bn2, Is.EqualTo(bn1), $"BatchNorm on {threads} thread(s)");
            }
            Assert.That(rm2, Is.EqualTo(rm1));
            Assert.That(rv2, Is.EqualTo(rv1));
            Assert.That(t2, Is.EqualTo(new[] { 1f }), "the count moves once, not once per part");
        }
    }

    [Test]
    public void Training_IsBitIdentical_On1And2Threads()
    {
        var one = Train(1);
        var two = Train(2);
        Assert.That(two, Is.EqualTo(one), "every parameter and running statistic after 12 steps");
    }

    [Test]
    public void Training_LearnsOnBothCpuBackends_AndTheyAgree()
    {
        // SGD: Adam would turn the rounding noise of a gradient that is zero in exact arithmetic (the projection's bias before a
        // BatchNorm, which removes any per-feature constant) into steps of ±lr, different on each backend.
        var sgd = new Sgd(0.05, 0.9);
        var cpu = Train(2, Backend.Cpu, optimizer: sgd);
        var blas = Train(2, Backend.Blas, optimizer: sgd);
        int at = Enumerable.Range(0, cpu.Length).MaxBy(i => Math.Abs(cpu[i] - blas[i]) / (1 + Math.Abs(cpu[i])));
        double worst = Math.Abs(cpu[at] - blas[at]) / (1 + Math.Abs(cpu[at]));
        Assert.That(worst, Is.LessThan(1e-3), $"Cpu and Blas parameters after 12 SGD steps: value {at} of {cpu.Length}, {cpu[at]} against {blas[at]}");
    }

    [Test]
    public void DataParallel_Tree_EqualsOneProcessAccumulating_BitForBit_AndBatchNormIsRefused()
    {
        float[] Run(TrainingOptions o)
        {
            using var m = new Sequential(10).Dense(16, "relu").Dropout(0.2).Residual(b => b.Dense(16, "gelu").LayerNorm()).Residual(b => b.Dense(8, "tanh")).Dense(3)
                .Compile(o with { MaxBatch = 20, Threads = 1, Seed = 6, Optimizer = new Adam { LearningRate = 1e-2 } });
            for (int t = 0; t < 4; t++) m.Step(TestData.Floats(20 * 10, 80 + t), Enumerable.Range(0, 20).Select(i => (i + t) % 3).ToArray());
            return m.Parameters.SelectMany(p => m.Parameter(p.Name).ToArray()).ToArray();
        }
        var single = Run(new TrainingOptions { Accumulate = 2 });
        var ranks = Backprop.Tests.Distributed.ThreadCollectives.Run(2, (r, c) => Run(new TrainingOptions { Distributed = new Backprop.Engine.Training.DistributedOptions(c) }));
        Assert.That(ranks[0], Is.EqualTo(single).AsCollection, "rank 0");
        Assert.That(ranks[1], Is.EqualTo(single).AsCollection, "rank 1");

        var errors = Backprop.Tests.Distributed.ThreadCollectives.Run(2, (r, c) =>
            Assert.Throws<ArgumentException>(() => new Sequential(10).Dense(8).BatchNorm().Dense(3)
                .Compile(new TrainingOptions { MaxBatch = 8, Distributed = new Backprop.Engine.Training.DistributedOptions(c) }))!.Message);
        Assert.That(errors[0], Does.Contain("module 1 (BatchNorm): data-parallel training keeps one set of running statistics per process"));
    }

    [Test]
    public void Step_AllocatesNothing_OnTheCallingThread()
    {
        using var m = ResMlp(20).Compile(new TrainingOptions { MaxBatch = 32, Threads = 2, Seed = 1 });
        var x = TestData.Floats(32 * 20, 1);
        var y = Enumerable.Range(0, 32).Select(i => i % 3).ToArray();
        var output = new float[32 * 3];
        for (int i = 0; i < 20; i++) { m.Step(x, y); m.Predict(x, output); }
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 200; i++)
        {
            m.Step(x, y);
            if (i % 10 == 0) m.Predict(x, output);
        }
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.EqualTo(0), "bytes allocated by the calling thread");
    }

    [Test]
    public void Plan_ReusesGradientSlots_AndListsTheNewOps()
    {
        var plain = new Sequential(8).Dense(16, "relu").Dense(16, "relu").Dense(4).Compile(new TrainingOptions { MaxBatch = 8 });
        Assert.That(plain.Plan.GradientSlots, Has.Count.EqualTo(2), "a plain stack alternates between two gradient slots");
        plain.Dispose();
        using var m = new Sequential(8).Residual(b => b.Dense(8, "relu").Residual(c => c.Dense(8, "relu").LayerNorm())).Dense(4)
            .Compile(new TrainingOptions { MaxBatch = 8 });
        // The outer block's output gradient waits while its body runs; the inner one's too: 4 at the deepest point, not one per value.
        Assert.That(m.Plan.GradientSlots.Count, Is.InRange(3, 4));
        var listing = string.Join(" ", m.Plan.TrainingOps);
        Assert.That(listing, Does.Contain("LayerNormFwd(0)").And.Contain("ResidualAdd(1)").And.Contain("ResidualAdd(0)")
            .And.Contain("LayerNormBwd(0)").And.Contain("ResidualBwd(1)"));
        Assert.That(listing, Does.Not.Contain("ResidualBwd(0)"), "a step needs no gradient of the network input, so the outer block does not join its paths");
        // The gradient pass does, in its body's first layer: the inner block's output gradient is also the outer skip path's,
        // so the inner one joins in a pass of its own.
        var grads = m.Plan.GradientOps;
        Assert.That(grads.OfType<ResidualBwdOp>().Select(r => r.Layer), Is.EqualTo(new[] { 1 }));
        Assert.That(grads.OfType<DenseBwdDataOp>().Single(d => d.Layer == 0).Accumulate, Is.True);
        Assert.That(m.Plan.ToString(), Does.Contain("layer norm 0: weight[8]").And.Contain("residual 0: out@"));

        // Blocks whose bodies start with a Dense layer join in that layer's BwdData (the skip gradient made first, the GEMM adding to it):
        // with a projection, and without one when the output gradient is the block's alone (the body ends in an activation).
        using var res = ResMlp(20).Compile(new TrainingOptions { MaxBatch = 8 });
        var ops = res.Plan.GradientOps;
        Assert.That(ops.OfType<ResidualBwdOp>(), Is.Empty, string.Join(" ", ops));
        var joined = ops.OfType<DenseBwdDataOp>().Where(d => d.Accumulate).Select(d => d.Layer).ToArray();
        Assert.That(joined, Is.EqualTo(new[] { 2, 1 }), "block 1 (projection 3) joins in layer 2's BwdData, block 0 in layer 1's");
        int proj = ops.ToList().FindIndex(o => o is DenseBwdDataOp { Layer: 3 });
        int body = ops.ToList().FindIndex(o => o is DenseBwdDataOp { Layer: 2 });
        Assert.That(proj, Is.LessThan(body), "the projection's dX is there before the body's first layer adds to it");
        Assert.That(((DenseBwdDataOp)ops[body]).DiffSrc.Offset, Is.EqualTo(((DenseBwdDataOp)ops[proj]).DiffSrc.Offset));

        // Forward, a body ending in a Dense layer adds the skip in that layer's store; one ending in a LayerNorm keeps its add.
        var fwd = res.Plan.InferenceOps;
        Assert.That(fwd.OfType<DenseResidualFwdOp>().Select(f => f.Layer), Is.EqualTo(new[] { 2 }));
        Assert.That(fwd.OfType<ResidualAddOp>().Select(a => a.Layer), Is.EqualTo(new[] { 0 }));
        var fused = fwd.OfType<DenseResidualFwdOp>().Single();
        Assert.That(fused.Skip, Is.EqualTo(res.Plan.Layers[3].Output), "the projection's output is the skip");
        Assert.That(fused.KeepHidden, Is.False, "SiLU's derivative reads the pre-activation, so its output is not stored");
        Assert.That(fused.PreActivation.Exists, Is.True);
    }
}
