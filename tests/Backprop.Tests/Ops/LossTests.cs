// Losses against libtorch (golden/losses.json) in double and float, and the label errors.
using Backprop.Kernels;
using Backprop.Kernels.Cpu.Ops;
using NUnit.Framework;

namespace Backprop.Tests.Ops;

[TestFixture]
public class LossTests
{
    [TestCase("cross_entropy", 0.0)]
    [TestCase("cross_entropy_label_smoothing", 0.1)]
    public void CrossEntropy_MatchesLibtorch(string name, double smoothing)
    {
        var g = Golden.Load("losses").GetProperty(name);
        var x = g.Tensor("input");
        var labels = g.Labels("target").Select(v => (int)v).ToArray();
        int classes = x.Shape[1];
        var grad = new double[x.Data.Length];
        double loss = SoftmaxCrossEntropy.ForwardBackward<double>(x.Data, labels, classes, grad, smoothing);
        double lossRef = g.GetProperty("loss").GetDouble();
        Assert.That(loss, Is.EqualTo(lossRef).Within(1e-12 * Math.Abs(lossRef)));
        var gRef = g.Tensor("grad_input").Data;
        for (int i = 0; i < grad.Length; i++) Assert.That(grad[i], Is.EqualTo(gRef[i]).Within(1e-14 + 1e-12 * Math.Abs(gRef[i])), $"grad[{i}]");

        // float: inputs rounded to float, compared with the double result on those inputs
        var xf = x.ToFloat();
        var gf = new float[xf.Length];
        double lf = SoftmaxCrossEntropy.ForwardBackward<float>(xf, labels, classes, gf, smoothing);
        var gd = new double[xf.Length];
        double ld = SoftmaxCrossEntropy.ForwardBackward<double>(Array.ConvertAll(xf, v => (double)v), labels, classes, gd, smoothing);
        Assert.That(lf, Is.EqualTo(ld).Within(1e-5 * Math.Abs(ld) + 1e-6));
        for (int i = 0; i < gf.Length; i++) Assert.That(gf[i], Is.EqualTo(gd[i]).Within(1e-6 + 1e-5 * Math.Abs(gd[i])), $"float grad[{i}]");
    }

    [TestCase("mse_loss", RegressionLossKind.Mse)]
    [TestCase("binary_cross_entropy_with_logits", RegressionLossKind.BceWithLogits)]
    [TestCase("l1_loss", RegressionLossKind.L1)]
    [TestCase("huber_loss", RegressionLossKind.Huber)]
    public void Regression_MatchesLibtorch(string name, RegressionLossKind kind)
    {
        var g = Golden.Load("losses").GetProperty(name);
        var x = g.Tensor("input").Data;
        var t = g.Tensor("target").Data;
        double delta = g.TryGetProperty("delta", out var d) ? d.GetDouble() : 1.0;
        var grad = new double[x.Length];
        double loss = RegressionLosses.ForwardBackward<double>(kind, x, t, grad, delta);
        double lossRef = g.GetProperty("loss").GetDouble();
        Assert.That(loss, Is.EqualTo(lossRef).Within(1e-12 * Math.Abs(lossRef)));
        var gRef = g.Tensor("grad_input").Data;
        for (int i = 0; i < grad.Length; i++) Assert.That(grad[i], Is.EqualTo(gRef[i]).Within(1e-15 + 1e-12 * Math.Abs(gRef[i])), $"grad[{i}]");

        var xf = Array.ConvertAll(x, v => (float)v);
        var tf = Array.ConvertAll(t, v => (float)v);
        var gf = new float[x.Length];
        double lf = RegressionLosses.ForwardBackward<float>(kind, xf, tf, gf, delta);
        Assert.That(lf, Is.EqualTo(lossRef).Within(1e-5 * Math.Abs(lossRef) + 1e-5));
        for (int i = 0; i < gf.Length; i++) Assert.That(gf[i], Is.EqualTo(gRef[i]).Within(1e-6 + 1e-5 * Math.Abs(gRef[i])), $"float grad[{i}]");
    }

    [Test]
    public void CrossEntropy_IsStableForHugeLogits()
    {
        var x = new float[] { 1e4f, -1e4f, 0f, 1e4f, -1e4f, -1e4f };
        var grad = new float[6];
        double loss = SoftmaxCrossEntropy.ForwardBackward<float>(x, [1, 0], 3, grad);
        Assert.That(double.IsFinite(loss), Is.True);
        Assert.That(loss, Is.EqualTo(1e4).Within(1)); // first row: label logit -1e4 vs max 1e4 → 2e4; second: 0 → mean 1e4
        Assert.That(grad.All(float.IsFinite), Is.True);
    }

    [Test]
    public void BadLabel_NamesSampleAndLabel_AndLeavesGradUntouched()
    {
        var x = new float[6];
        var grad = new float[] { 7, 7, 7, 7, 7, 7 };
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => SoftmaxCrossEntropy.ForwardBackward<float>(x, [0, 3], 3, grad))!;
        Assert.That(e.Message, Does.Contain("Label 3 of sample 1 is outside [0, 3)"));
        Assert.That(grad, Is.All.EqualTo(7f));
        e = Assert.Throws<ArgumentOutOfRangeException>(() => SoftmaxCrossEntropy.ForwardBackward<float>(x, [-1, 0], 3, grad))!;
        Assert.That(e.Message, Does.Contain("Label -1 of sample 0"));
        Assert.That(Assert.Throws<ArgumentException>(() => RegressionLosses.ForwardBackward<float>(RegressionLossKind.Mse, x, new float[5], grad))!.Message,
            Does.Contain("target has 5 elements; input has 6"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => RegressionLosses.ForwardBackward<float>(RegressionLossKind.Huber, x, x, grad, 0))!.Message,
            Does.Contain("Huber delta must be positive; got 0"));
    }
}
