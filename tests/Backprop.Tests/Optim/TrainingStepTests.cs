// Kernels composed into training steps: libtorch's 10 Adam steps (golden/train_steps.json), and
// bit-identical weights after 100 steps on 1 and on 2 threads.
using Backprop.Engine;
using Backprop.Kernels;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cpu.Ops;
using Backprop.Kernels.Cpu.Optim;
using NUnit.Framework;

namespace Backprop.Tests.Optim;

[TestFixture]
public class TrainingStepTests
{
    private static void Step<T>(ModelSpec spec, ModelParameters<T> p, T[] x, int batch, Targets<T> t, CpuContext ctx,
        OptimizerSettings opt, long step, T[][][] state, out double loss, ulong seed = 0)
        where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        var r = ReferenceNetwork.Run(spec, p, x, batch, t, ctx, backward: true, training: true, seed, (ulong)step);
        loss = r.Loss;
        for (int l = 0; l < spec.Layers.Count; l++)
        {
            var os = new OptimizerStep(opt.LearningRate, step);
            Optimizer.Update<T>(opt, os, p.Weights[l], r.WeightGradients![l], state[2 * l][0], state[2 * l][1], state[2 * l][2]);
            Optimizer.Update<T>(opt, os, p.Biases[l], r.BiasGradients![l], state[2 * l + 1][0], state[2 * l + 1][1], state[2 * l + 1][2]);
        }
    }

    private static T[][][] NewState<T>(ModelParameters<T> p, OptimizerSettings opt) where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        var tensors = p.Weights.Zip(p.Biases).SelectMany(wb => new[] { wb.First, wb.Second }).ToArray();
        return tensors.Select(t => Enumerable.Range(0, 3).Select(k => k < opt.StateSlots ? new T[t.Length] : []).ToArray()).ToArray();
    }

    [Test]
    public void TenAdamSteps_MatchLibtorch([Values(false, true)] bool useFloat)
    {
        var g = Golden.Load("train_steps");
        var spec = new ModelSpec(5, [new LayerSpec(7, new Activation(ActivationKind.Tanh)), new LayerSpec(4, new Activation(ActivationKind.Identity))], LossKind.CrossEntropy);
        var (w, b) = Ops.DenseGoldenTests.Params(g.GetProperty("initial_params"), 2, 2);
        var x = g.Tensor("x").Data;
        var labels = g.Labels("target").Select(v => (int)v).ToArray();
        var losses = g.Tensor("losses").Data;
        var opt = new Adam() { LearningRate = 0.01 };
        using var ctx = new CpuContext(1);
        if (useFloat) Run<float>(); else Run<double>();

        void Run<T>() where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
        {
            T[] C(double[] d) => d.Select(T.CreateTruncating).ToArray();
            var p = new ModelParameters<T>(w.Select(C).ToArray(), b.Select(C).ToArray());
            var state = NewState(p, opt);
            double tol = useFloat ? 2e-5 : 1e-12;
            for (int t = 1; t <= 10; t++)
            {
                Step(spec, p, C(x), 6, new Targets<T>(labels, null), ctx, opt, t, state, out double loss);
                Assert.That(loss, Is.EqualTo(losses[t - 1]).Within(tol * (1 + losses[t - 1])), $"loss of step {t}");
                if (t == 1 || t == 10)
                {
                    var exp = g.GetProperty(t == 1 ? "params_after_step_1" : "params_after_last_step");
                    for (int l = 0; l < 2; l++)
                    {
                        var ew = exp.Tensor($"{2 * l}.weight").Data;
                        var eb = exp.Tensor($"{2 * l}.bias").Data;
                        for (int i = 0; i < ew.Length; i++) Assert.That(double.CreateTruncating(p.Weights[l][i]), Is.EqualTo(ew[i]).Within(tol * 10 * (1 + Math.Abs(ew[i]))), $"step {t} {2 * l}.weight[{i}]");
                        for (int i = 0; i < eb.Length; i++) Assert.That(double.CreateTruncating(p.Biases[l][i]), Is.EqualTo(eb[i]).Within(tol * 10 * (1 + Math.Abs(eb[i]))), $"step {t} {2 * l}.bias[{i}]");
                    }
                }
            }
            var final = ReferenceNetwork.Run(spec, p, C(x), 6, new Targets<T>(labels, null), ctx, backward: false);
            Assert.That(final.Loss, Is.EqualTo(g.GetProperty("final_loss").GetDouble()).Within(tol * 10));
        }
    }

    [Test]
    public void SameSeed_BitIdenticalWeights_After100Steps_On1And2Threads()
    {
        var spec = new ModelSpec(40, [
            new LayerSpec(96, new Activation(ActivationKind.ReLU), Dropout: 0.1),
            new LayerSpec(64, new Activation(ActivationKind.GELU)),
            new LayerSpec(10, new Activation(ActivationKind.Identity))], LossKind.CrossEntropy);
        var opt = new AdamW() { LearningRate = 1e-3, WeightDecay = 0.01, ClipNorm = 1.0 };
        int batch = 70;
        var x = TestData.Floats(batch * 40, 5);
        var labels = Enumerable.Range(0, batch).Select(i => (i * 7) % 10).ToArray();
        float[][] Train(int threads)
        {
            using var ctx = new CpuContext(threads);
            var p = ModelParameters<float>.Initialize(spec, InitScheme.HeUniform, 99);
            var state = NewState(p, opt);
            for (int t = 1; t <= 100; t++)
            {
                var r = ReferenceNetwork.Run(spec, p, x, batch, new Targets<float>(labels, null), ctx, backward: true, training: true, 99, (ulong)t);
                double ss = 0;
                for (int l = 0; l < 3; l++) ss += Optimizer.SumOfSquares<float>(r.WeightGradients![l], 0) + Optimizer.SumOfSquares<float>(r.BiasGradients![l], 0);
                var os = new OptimizerStep(opt.LearningRate, t, Optimizer.GlobalNormScale(ss, opt.ClipNorm));
                for (int l = 0; l < 3; l++)
                {
                    Optimizer.Update<float>(opt, os, p.Weights[l], r.WeightGradients![l], state[2 * l][0], state[2 * l][1], state[2 * l][2]);
                    Optimizer.Update<float>(opt, os, p.Biases[l], r.BiasGradients![l], state[2 * l + 1][0], state[2 * l + 1][1], state[2 * l + 1][2]);
                }
            }
            return p.Weights.Concat(p.Biases).ToArray();
        }
        var one = Train(1);
        var two = Train(2);
        for (int k = 0; k < one.Length; k++)
            for (int i = 0; i < one[k].Length; i++)
                Assert.That(BitConverter.SingleToInt32Bits(two[k][i]), Is.EqualTo(BitConverter.SingleToInt32Bits(one[k][i])), $"tensor {k} element {i}");
        Assert.That(one[0].Any(v => v != 0), Is.True);
    }
}
