// The fused dense kernels composed by hand into the two small networks of the golden files:
// forward values, loss, every parameter gradient and the input gradient against libtorch, in double
// and float, on every ISA path and on 1 and 2 threads.
using Backprop.Kernels;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cpu.Ops;
using NUnit.Framework;

namespace Backprop.Tests.Ops;

[TestFixture]
[Parallelizable(ParallelScope.Children)] // each case forces its ISA path on its own CpuContext, so the cases run side by side
public unsafe class DenseGoldenTests
{
    public static IEnumerable<Isa> AllIsas() => Enum.GetValues<Isa>().Where(i => i <= CpuIsa.Supported);

    /// <summary>Results of one forward/backward pass of a small MLP.</summary>
    internal sealed record NetResult(double Loss, double[][] Pre, double[][] GradW, double[][] GradB, double[] GradX, double[] Output);

    /// <summary>Runs Linear→act→…→Linear with the given loss, using Dense.* kernels in T.</summary>
    internal static NetResult RunNet<T>(CpuContext ctx, Activation hidden, double[][] ws, double[][] bs, int[] sizes, double[] x, int batch,
        Func<T[], T[], double> lossAndGrad) where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        int layers = ws.Length;
        T[] Conv(double[] d) => d.Select(T.CreateTruncating).ToArray();
        var W = ws.Select(Conv).ToArray();
        var B = bs.Select(Conv).ToArray();
        var acts = new T[layers + 1][];
        var pres = new T[layers][];
        acts[0] = Conv(x);
        for (int l = 0; l < layers; l++)
        {
            acts[l + 1] = new T[batch * sizes[l + 1]];
            pres[l] = new T[batch * sizes[l + 1]];
            var act = l < layers - 1 ? hidden : new Activation(ActivationKind.Identity);
            fixed (T* s = acts[l]) fixed (T* w = W[l]) fixed (T* b = B[l]) fixed (T* d = acts[l + 1]) fixed (T* p = pres[l])
                ActivationDispatch.DenseFwd(act, ctx, batch, sizes[l], sizes[l + 1], s, w, b, d, p);
        }
        var grad = new T[batch * sizes[layers]];
        double loss = lossAndGrad(acts[layers], grad);
        var gW = new double[layers][];
        var gB = new double[layers][];
        T[] diff = grad;
        T[] gx = [];
        for (int l = layers - 1; l >= 0; l--)
        {
            var dW = new T[W[l].Length];
            var dB = new T[B[l].Length];
            fixed (T* pd = diff) fixed (T* ps = acts[l]) fixed (T* pw = dW) fixed (T* pb = dB)
                Dense.BwdWeights(ctx, GradientMode.Overwrite, batch, sizes[l], sizes[l + 1], pd, ps, pw, pb);
            gW[l] = dW.Select(double.CreateTruncating).ToArray();
            gB[l] = dB.Select(double.CreateTruncating).ToArray();
            var prev = new T[batch * sizes[l]];
            var prevAct = l > 0 ? hidden : new Activation(ActivationKind.Identity);
            var saved = l > 0 ? (hidden.GradFromOutput ? acts[l] : pres[l - 1]) : acts[0];
            fixed (T* d = diff) fixed (T* w = W[l]) fixed (T* sv = saved) fixed (T* o = prev)
                ActivationDispatch.DenseBwdData(prevAct, ctx, batch, sizes[l], sizes[l + 1], d, w, sv, o);
            if (l == 0) gx = prev;
            diff = prev;
        }
        return new NetResult(loss, pres.Select(p => p.Select(double.CreateTruncating).ToArray()).ToArray(), gW, gB,
            gx.Select(double.CreateTruncating).ToArray(), acts[layers].Select(double.CreateTruncating).ToArray());
    }

    internal static (double[][] W, double[][] B) Params(System.Text.Json.JsonElement p, int layers, int stride)
    {
        var w = new double[layers][];
        var b = new double[layers][];
        for (int l = 0; l < layers; l++)
        {
            w[l] = p.Tensor($"{l * stride}.weight").Data;
            b[l] = p.Tensor($"{l * stride}.bias").Data;
        }
        return (w, b);
    }

    private static void CheckNet(string file, Activation hidden, int[] sizes, bool classification, Isa isa, int threads, bool useFloat)
    {
        var g = Golden.Load(file);
        int layers = sizes.Length - 1;
        var (ws, bs) = Params(g.GetProperty("params"), layers, 2);
        var x = g.Tensor("x");
        int batch = x.Shape[0];
        using var ctx = new CpuContext(threads, isa);
        NetResult r;
        if (classification)
        {
            var labels = g.Labels("target").Select(v => (int)v).ToArray();
            r = useFloat
                ? RunNet<float>(ctx, hidden, ws, bs, sizes, x.Data, batch, (o, gr) => SoftmaxCrossEntropy.ForwardBackward<float>(o, labels, sizes[^1], gr))
                : RunNet<double>(ctx, hidden, ws, bs, sizes, x.Data, batch, (o, gr) => SoftmaxCrossEntropy.ForwardBackward<double>(o, labels, sizes[^1], gr));
        }
        else
        {
            var t = g.Tensor("target").Data;
            r = useFloat
                ? RunNet<float>(ctx, hidden, ws, bs, sizes, x.Data, batch, (o, gr) => RegressionLosses.ForwardBackward<float>(RegressionLossKind.Mse, o, t.Select(v => (float)v).ToArray(), gr))
                : RunNet<double>(ctx, hidden, ws, bs, sizes, x.Data, batch, (o, gr) => RegressionLosses.ForwardBackward<double>(RegressionLossKind.Mse, o, t, gr));
        }
        double rtol = useFloat ? 2e-5 : 1e-11, atol = useFloat ? 2e-6 : 1e-13;
        void Near(double[] ours, double[] theirs, string what)
        {
            Assert.That(ours, Has.Length.EqualTo(theirs.Length), what);
            for (int i = 0; i < ours.Length; i++)
                Assert.That(ours[i], Is.EqualTo(theirs[i]).Within(atol + rtol * Math.Abs(theirs[i])), $"{what}[{i}] isa={isa} threads={threads} float={useFloat}");
        }
        double lossRef = g.GetProperty("loss").GetDouble();
        Assert.That(r.Loss, Is.EqualTo(lossRef).Within(atol + rtol * lossRef), "loss");
        var pre = g.GetProperty("pre_activations");
        for (int l = 0; l < layers - 1; l++) Near(r.Pre[l], pre.Tensor($"{2 * l}").Data, $"pre_activation {2 * l}");
        var grads = g.GetProperty("grads");
        for (int l = 0; l < layers; l++)
        {
            Near(r.GradW[l], grads.Tensor($"{2 * l}.weight").Data, $"{2 * l}.weight grad");
            Near(r.GradB[l], grads.Tensor($"{2 * l}.bias").Data, $"{2 * l}.bias grad");
        }
        Near(r.GradX, g.Tensor("x_grad").Data, "x_grad");
    }

    [Test]
    public void TanhCrossEntropyNet_MatchesLibtorch([ValueSource(nameof(AllIsas))] Isa isa, [Values(1, 2)] int threads, [Values(false, true)] bool useFloat)
        => CheckNet("mlp_tanh_ce", new Activation(ActivationKind.Tanh), [5, 7, 4], true, isa, threads, useFloat);

    [Test]
    public void ReluMseNet_MatchesLibtorch([ValueSource(nameof(AllIsas))] Isa isa, [Values(1, 2)] int threads, [Values(false, true)] bool useFloat)
        => CheckNet("mlp_relu_mse", new Activation(ActivationKind.ReLU), [3, 8, 8, 2], false, isa, threads, useFloat);
}
