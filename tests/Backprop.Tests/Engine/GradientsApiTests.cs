// The correctness API of the model: the loss and every gradient of a batch without an update
// (Gradients, Loss, InputGradient), parameters and gradients read and written by state_dict name, the
// lowered gradient and loss passes, and the same plan in double precision.
using Backprop.Engine;
using Backprop.Engine.Gradcheck;
using Backprop.Kernels;
using Backprop.Kernels.Cpu;
using NUnit.Framework;

namespace Backprop.Tests.Engine;

[TestFixture]
public class GradientsApiTests
{
    private static ModelSpec Spec() =>
        new Sequential(10).Dense(16, "relu").Dropout(0.3).Dense(12, "gelu").Dense(5).ToSpec(LossKind.CrossEntropy, labelSmoothing: 0.1);

    private static TrainingOptions Options(int threads = 2) => new() { MaxBatch = 16, Threads = threads, Seed = 5, LabelSmoothing = 0.1, Optimizer = new Sgd(lr: 0.1, momentum: 0.9) };

    private static (float[] X, int[] Y) Batch(int n, int seed)
    {
        var x = TestData.Floats(n * 10, seed);
        return (x, Enumerable.Range(0, n).Select(i => (i * 3 + seed) % 5).ToArray());
    }

    [Test]
    public void Gradients_AreTheReferenceExecutorsBitForBit_AndChangeNothing()
    {
        using var m = new Model(Spec(), Options());
        var (x, y) = Batch(13, 1);
        var before = new float[m.ParameterSectionLength];
        m.CopyParametersTo(before);
        double loss = m.Gradients(x, y);

        using var ctx = new CpuContext(2);
        var p = new ModelParameters<float>(Enumerable.Range(0, 3).Select(m.GetWeights).ToArray(), Enumerable.Range(0, 3).Select(m.GetBias).ToArray());
        var r = ReferenceNetwork.Run(m.Spec, p, x, 13, new Targets<float>(y, null), ctx, backward: true, training: true, seed: 5, step: 1);
        Assert.That(loss, Is.EqualTo(r.Loss), "the loss with the next step's dropout masks");
        for (int l = 0; l < 3; l++)
        {
            var (w, b) = m.Spec.ParameterNames(l);
            Assert.That(m.Gradient(w).ToArray(), Is.EqualTo(r.WeightGradients![l]), w);
            Assert.That(m.Gradient(b).ToArray(), Is.EqualTo(r.BiasGradients![l]), b);
        }
        Assert.That(m.InputGradient.ToArray(), Is.EqualTo(r.InputGradient), "d(loss)/d(x)");

        var after = new float[m.ParameterSectionLength];
        m.CopyParametersTo(after);
        Assert.That(after, Is.EqualTo(before), "no update");
        Assert.That(m.StepCount, Is.Zero);
        Assert.That(m.Loss(x, y), Is.EqualTo(loss), "Loss is the same forward");
        Assert.That(m.Step(x, y), Is.EqualTo(loss), "the next step sees the same batch the same way");
        Assert.That(m.StepCount, Is.EqualTo(1));
    }

    [Test]
    public void Gradients_OnARegressionBatch_AndOnTheBlasBackend_AgreeWithTheFusedKernels()
    {
        var spec = new Sequential(6).Dense(9, "tanh").Dense(3).ToSpec(LossKind.Huber, huberDelta: 0.4);
        var opts = new TrainingOptions { Loss = LossKind.Huber, HuberDelta = 0.4, MaxBatch = 8, Threads = 1, Seed = 3 };
        using var fused = new Model(spec, opts);
        using var blas = new Model(spec, opts with { Backend = Backend.Blas });
        var x = TestData.Floats(8 * 6, 4);
        var t = TestData.Floats(8 * 3, 5);
        Assert.That(blas.Gradients(x, t), Is.EqualTo(fused.Gradients(x, t)).Within(1e-6));
        foreach (var p in fused.Parameters)
        {
            var (a, b) = (fused.Gradient(p.Name).ToArray(), blas.Gradient(p.Name).ToArray());
            for (int i = 0; i < a.Length; i++) Assert.That(b[i], Is.EqualTo(a[i]).Within(1e-6 + 1e-5 * Math.Abs(a[i])), $"{p.Name}[{i}]");
        }
        var (ga, gb) = (fused.InputGradient.ToArray(), blas.InputGradient.ToArray());
        for (int i = 0; i < ga.Length; i++) Assert.That(gb[i], Is.EqualTo(ga[i]).Within(1e-6 + 1e-5 * Math.Abs(ga[i])), $"x[{i}]");
    }

    [Test]
    public void ParametersByName_ReadWriteAndRefuseBadInput()
    {
        using var m = new Model(Spec(), Options());
        Assert.That(m.Parameters.Select(p => $"{p.Name}[{string.Join(",", p.Shape)}]"),
            Is.EqualTo(new[] { "0.weight[16,10]", "0.bias[16]", "3.weight[12,16]", "3.bias[12]", "5.weight[5,12]", "5.bias[5]" }));
        Assert.That(m.Parameter("3.bias").ToArray(), Is.EqualTo(m.GetBias(1)));
        var w = Enumerable.Range(0, 60).Select(i => i * 0.01f).ToArray();
        m.SetParameter("5.weight", w);
        Assert.That(m.GetWeights(2), Is.EqualTo(w));
        Assert.That(Assert.Throws<KeyNotFoundException>(() => m.Parameter("1.weight"))!.Message,
            Does.Contain("no parameter '1.weight'; it has 0.weight, 0.bias, 3.weight"));
        Assert.That(Assert.Throws<ArgumentException>(() => m.SetParameter("0.bias", new float[3]))!.Message, Does.Contain("0.bias: got 3 values; its shape needs 16"));
        Assert.That(Assert.Throws<InvalidOperationException>(() => _ = m.InputGradient.Length)!.Message, Does.Contain("only after Gradients"));
        var (x, y) = Batch(4, 2);
        m.Gradients(x, y);
        Assert.That(m.InputGradient.Length, Is.EqualTo(4 * 10));
        m.Predict(x, new float[4 * 5]);
        Assert.Throws<InvalidOperationException>(() => _ = m.InputGradient.Length, "another call ends what Gradients left");
    }

    [Test]
    public void TheLoweredPasses_ListTheirOps()
    {
        using var m = new Model(Spec(), Options());
        Assert.That(m.Plan.LossOps.Select(o => o.ToString()), Is.EqualTo(new[] { "DenseFwd(0)", "DropoutFwd(0)", "DenseFwd(1)", "DenseFwd(2)", "Loss" }));
        Assert.That(m.Plan.GradientOps.Select(o => o.ToString()), Is.EqualTo(new[]
        {
            "DenseFwd(0)", "DropoutFwd(0)", "DenseFwd(1)", "DenseFwd(2)", "Loss", "OutputBwd(2)",
            "DenseBwdWeights(2)", "DenseBwdData(2)", "DenseBwdWeights(1)", "DenseBwdData(1)", "DenseBwdWeights(0)", "DenseBwdData(0)",
        }));
        Assert.That(m.Plan.InferenceOps.Select(o => o.ToString()), Is.EqualTo(new[] { "DenseFwd(0)", "DenseFwd(1)", "DenseFwd(2)" }));
        Assert.That(m.StepListing(8), Has.Count.EqualTo(m.Plan.TrainingOps.Count));
    }

    [Test]
    public void ADoubleModel_TrainsTheSamePlan_AndNoGpuRunsIt()
    {
        using var f = new Model(Spec(), Options());
        using var d = new Sequential(10).Dense(16, "relu").Dropout(0.3).Dense(12, "gelu").Dense(5).Compile<double>(Options());
        for (int t = 0; t < 10; t++)
        {
            var (x, y) = Batch(16, 10 + t);
            double lf = f.Step(x, y), ld = d.Step(x.Select(v => (double)v).ToArray(), y);
            Assert.That(ld, Is.EqualTo(lf).Within(1e-4 * (1 + Math.Abs(lf))), $"step {t + 1}");
        }
        var (wf, wd) = (f.GetWeights(1), d.GetWeights(1));
        for (int i = 0; i < wf.Length; i++) Assert.That(wd[i], Is.EqualTo(wf[i]).Within(1e-4), $"weight {i}");
        Assert.That(Assert.Throws<NotSupportedException>(() => new Model<double>(Spec(), Options() with { Backend = Backend.Cuda }))!.Message,
            Does.Contain("the Cuda backend computes in float"));
    }

    [Test]
    public unsafe void Gradients_AllocateNothingPerCall()
    {
        using var m = new Model(Spec(), Options(threads: 1));
        var (x, y) = Batch(16, 3);
        for (int i = 0; i < 200; i++) m.Gradients(x, y);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 200; i++)
        {
            m.Gradients(x, y);
            _ = m.Gradient("0.weight")[0] + m.InputGradient[0];
        }
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero);
    }

    [Test]
    public void GradcheckThroughTheEngine_RefusesABatchThatDoesNotFit()
    {
        var spec = Spec();
        Assert.That(Assert.Throws<ArgumentException>(() => Gradchecker.Check(spec, Options(), new GradcheckBatch(new double[25], Labels: [0, 1])))!.Message,
            Does.Contain("x has 25 values; a batch needs a positive multiple of the input width 10"));
        Assert.That(Assert.Throws<ArgumentException>(() => Gradchecker.Check(spec, Options(), new GradcheckBatch(new double[20], Labels: [0])))!.Message,
            Does.Contain("cross-entropy needs 2 labels (one per sample); got 1"));
        Assert.That(Assert.Throws<ArgumentException>(() => Gradchecker.Check(spec, Options(), new GradcheckBatch(new double[20], Targets: new double[10])))!.Message,
            Does.Contain("got none"));
    }
}
