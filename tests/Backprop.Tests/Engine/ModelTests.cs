// The compiled model: plan checks, zero allocation per step, backends agreeing, determinism across
// thread counts, agreement with the reference executor, divergence, disposal, small batches.
using Backprop.Engine;
using Backprop.Engine.Planning;
using Backprop.Kernels;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cpu.Ops;
using Backprop.Kernels.Cpu.Optim;
using NUnit.Framework;

namespace Backprop.Tests.Engine;

[TestFixture]
[NonParallelizable]
public class ModelTests
{
    private static Model Mlp(int threads = 2, Backend backend = Backend.Cpu, double dropout = 0.1, OptimizerSettings? opt = null, int maxBatch = 32, ulong seed = 5) =>
        new Sequential(20).Dense(48, "relu").Dropout(dropout).Dense(24, "gelu").Dense(5)
            .Compile(new TrainingOptions
            {
                MaxBatch = maxBatch, Threads = threads, Backend = backend, Seed = seed,
                Optimizer = opt ?? new Adam() { LearningRate = 1e-2 },
            });

    private static (float[] X, int[] Y) Batch(int n, int seed)
    {
        var x = TestData.Floats(n * 20, seed);
        var y = new int[n];
        for (int i = 0; i < n; i++) y[i] = (int)(Math.Abs(x[i * 20] * 5)) % 5;
        return (x, y);
    }

    [Test]
    public void Plan_ListsSlotsAndOps_AndRejectsBadShapes()
    {
        using var m = Mlp();
        var plan = m.Plan;
        Assert.That(plan.Layers, Has.Count.EqualTo(3));
        Assert.That(plan.ParameterCount, Is.EqualTo(20 * 48 + 48 + 48 * 24 + 24 + 24 * 5 + 5));
        Assert.That(plan.Layers.All(l => l.Weight.Offset % 16 == 0 && l.Output.Offset % 16 == 0), Is.True, "64-byte aligned slots");
        Assert.That(plan.Layers[0].PreActivation.Exists, Is.False, "ReLU backward needs only its output");
        Assert.That(plan.Layers[1].PreActivation.Exists, Is.True, "GELU backward needs the pre-activation");
        Assert.That(plan.Layers[0].DropOutput.Exists, Is.True);
        Assert.That(plan.TrainingOps.Select(o => o.ToString()), Is.EqualTo(new[]
        {
            "DenseFwd(0)", "DropoutFwd(0)", "DenseFwd(1)", "DenseFwd(2)", "Loss", "OutputBwd(2)",
            "DenseBwdWeights(2)", "DenseBwdData(2)", "DenseBwdWeights(1)", "DenseBwdData(1)", "DenseBwdWeights(0)", "OptimizerUpdate",
        }));
        Assert.That(plan.ToString(), Does.Contain("layer 1: W[24x48]"));

        Assert.That(Assert.Throws<ArgumentException>(() => new Sequential(10).Dense(5, "relu").Compile(new TrainingOptions()))!.Message,
            Does.Contain("layer 0 (Dense 5): cross-entropy takes logits, so the last layer's activation must be identity; got ReLU"));
        Assert.That(Assert.Throws<ArgumentException>(() => new Sequential(10).Dense(1).Compile(new TrainingOptions()))!.Message,
            Does.Contain("cross-entropy needs at least 2 output units; the last layer has 1"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new Sequential(10).Dense(0))!.Message, Does.Contain("layer 0 (Dense): units must be at least 1; got 0"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new Sequential(0))!.Message, Does.Contain("input width must be at least 1; got 0"));
        Assert.That(Assert.Throws<InvalidOperationException>(() => new Sequential(3).Dropout(0.5))!.Message, Does.Contain("Dropout must follow a Dense layer"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new Sequential(3).Dense(4).Dropout(1.5))!.Message, Does.Contain("layer 0: dropout must be in [0, 1); got 1.5"));
        Assert.That(Assert.Throws<ArgumentException>(() => new Sequential(10).Dense(4).Dense(3).Dropout(0.2).Compile(new TrainingOptions()))!.Message,
            Does.Contain("layer 1 (Dense 3): dropout on the output layer"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new Sequential(10).Dense(4).Compile(new TrainingOptions { MaxBatch = 0 }))!.Message,
            Does.Contain("batch size must be at least 1; got 0"));

        var (x, y) = Batch(8, 1);
        Assert.That(Assert.Throws<ArgumentException>(() => m.Step(x.AsSpan(0, 8 * 20 - 1), y))!.Message, Does.Contain("x has 159 values; 8 samples x input width 20 needs 160"));
        Assert.That(Assert.Throws<ArgumentException>(() => m.Step(new float[33 * 20], new int[33]))!.Message, Does.Contain("1 to 32 samples (the compiled maximum); got 33"));
        y[3] = 9;
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => m.Step(x, y))!.Message, Does.Contain("Label 9 of sample 3 is outside [0, 5)"));
    }

    [Test]
    public void Step_AllocatesNothing_OnAnyThread_InItsOwnProcess()
    {
        // The test runner's own threads allocate now and then, so the all-threads count is taken in a
        // child process that does nothing but train (backprop bench alloc).
        string cli = Path.Combine(AppContext.BaseDirectory, "backprop.dll");
        var psi = new System.Diagnostics.ProcessStartInfo("dotnet", $"\"{cli}\" bench alloc --steps 1000 --threads 2")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        using var p = System.Diagnostics.Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.That(output, Does.Contain("1000 steps on 2 thread(s): 0 bytes allocated on the calling thread, 0 on all threads"), output);
        Assert.That(p.ExitCode, Is.EqualTo(0), output);
    }

    [Test]
    public unsafe void Step_AllocatesNothing_OnTheCallingThread_On1000Steps()
    {
        using var m = Mlp(threads: 2);
        var (x, y) = Batch(32, 2);
        var (x2, y2) = Batch(7, 3);
        var output = new float[7 * 5];
        for (int i = 0; i < 50; i++) { m.Step(x, y); m.Step(x2, y2); m.Predict(x2, output); }
        long mine = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            m.Step(x, y);
            if (i % 10 == 0) m.Step(x2, y2); // a smaller final batch, same plan
            if (i % 10 == 5) m.Predict(x2, output);
        }
        long mineAfter = GC.GetAllocatedBytesForCurrentThread();
        Assert.That(mineAfter - mine, Is.EqualTo(0), "bytes allocated by the calling thread");
    }

    [Test]
    public void Backends_AgreeStepByStep_For20Steps()
    {
        using var cpu = Mlp(backend: Backend.Cpu);
        using var blas = Mlp(backend: Backend.Blas);
        for (int t = 0; t < 20; t++)
        {
            var (x, y) = Batch(t % 3 == 2 ? 19 : 32, 10 + t);
            double a = cpu.Step(x, y), b = blas.Step(x, y);
            Assert.That(b, Is.EqualTo(a).Within(1e-4 * Math.Abs(a) + 1e-5), $"loss at step {t + 1}");
        }
        for (int l = 0; l < 3; l++)
        {
            var wa = cpu.GetWeights(l);
            var wb = blas.GetWeights(l);
            for (int i = 0; i < wa.Length; i++) Assert.That(wb[i], Is.EqualTo(wa[i]).Within(2e-4), $"layer {l} weight {i}");
        }
    }

    [Test]
    public void SameSeed_BitIdenticalWeights_On1And2Threads()
    {
        float[][] Train(int threads)
        {
            using var m = Mlp(threads: threads, dropout: 0.3, maxBatch: 64);
            for (int t = 0; t < 60; t++)
            {
                var (x, y) = Batch(64, t);
                m.Step(x, y);
            }
            return Enumerable.Range(0, 3).SelectMany(l => new[] { m.GetWeights(l), m.GetBias(l) }).ToArray();
        }
        var a = Train(1);
        var b = Train(2);
        for (int k = 0; k < a.Length; k++)
            Assert.That(b[k].Select(BitConverter.SingleToInt32Bits), Is.EqualTo(a[k].Select(BitConverter.SingleToInt32Bits)), $"tensor {k}");
    }

    [Test]
    public void Step_MatchesTheReferenceExecutor()
    {
        // The planned engine against ReferenceNetwork + the optimizer kernel, same initial weights and dropout masks.
        var opt = new Sgd() { LearningRate = 0.05, Momentum = 0.9 };
        using var m = Mlp(threads: 1, opt: opt, dropout: 0.2);
        var spec = m.Spec;
        var p = new ModelParameters<float>(Enumerable.Range(0, 3).Select(m.GetWeights).ToArray(), Enumerable.Range(0, 3).Select(m.GetBias).ToArray());
        var bufs = p.Weights.Concat(p.Biases).Select(t => new float[t.Length]).ToArray();
        using var ctx = new CpuContext(1);
        for (int t = 1; t <= 5; t++)
        {
            var (x, y) = Batch(32, 40 + t);
            double lossEngine = m.Step(x, y);
            var r = ReferenceNetwork.Run(spec, p, x, 32, new Targets<float>(y, null), ctx, backward: true, training: true, seed: 5, step: (ulong)t);
            Assert.That(lossEngine, Is.EqualTo(r.Loss).Within(1e-6), $"loss of step {t}");
            for (int l = 0; l < 3; l++)
            {
                Optimizer.Update<float>(opt, new OptimizerStep(0.05, t), p.Weights[l], r.WeightGradients![l], bufs[l], [], []);
                Optimizer.Update<float>(opt, new OptimizerStep(0.05, t), p.Biases[l], r.BiasGradients![l], bufs[3 + l], [], []);
            }
        }
        for (int l = 0; l < 3; l++)
        {
            var w = m.GetWeights(l);
            for (int i = 0; i < w.Length; i++) Assert.That(w[i], Is.EqualTo(p.Weights[l][i]).Within(1e-5), $"layer {l} weight {i}");
        }
    }

    [Test]
    public void Divergence_NamesTheStep_AndKeepsThePreviousParameters()
    {
        using var m = Mlp(opt: new Sgd() { LearningRate = 1e6 }, dropout: 0);
        var (x, y) = Batch(32, 7);
        var e = Assert.Throws<TrainingDivergedException>(() =>
        {
            for (int i = 0; i < 50; i++) m.Step(x, y);
        })!;
        Assert.That(e.Message, Does.Contain($"Training diverged at step {e.Step}").And.Contain("lower learning rate"));
        Assert.That(m.StepCount, Is.EqualTo(e.Step - 1), "the failed step did not count");
        var before = m.GetWeights(0);
        Assert.Throws<TrainingDivergedException>(() => m.Step(x, y));
        Assert.That(m.GetWeights(0), Is.EqualTo(before), "a diverged step leaves the parameters alone");
    }

    [Test]
    public void UseAfterDispose_Throws()
    {
        var m = Mlp();
        m.Dispose();
        var (x, y) = Batch(4, 1);
        Assert.Throws<ObjectDisposedException>(() => m.Step(x, y));
        Assert.Throws<ObjectDisposedException>(() => m.Predict(x, new float[20]));
        Assert.Throws<ObjectDisposedException>(() => m.Evaluate(x, y));
        Assert.Throws<ObjectDisposedException>(() => m.GetWeights(0));
        m.Dispose();
    }

    [Test]
    public void Evaluate_ComputesLossAccuracyAndConfusion()
    {
        using var m = Mlp(dropout: 0);
        var (x, y) = Batch(45, 9);
        var r = m.Evaluate(x, y);
        var outputs = new float[45 * 5];
        m.Predict(x, outputs);
        int correct = 0;
        for (int i = 0; i < 45; i++)
        {
            int best = 0;
            for (int c = 1; c < 5; c++) if (outputs[i * 5 + c] > outputs[i * 5 + best]) best = c;
            if (best == y[i]) correct++;
        }
        Assert.That(r.Accuracy, Is.EqualTo(correct / 45.0));
        long total = 0;
        foreach (var v in r.Confusion!) total += v;
        Assert.That(total, Is.EqualTo(45));
        var grad = new float[45 * 5];
        Assert.That(r.Loss, Is.EqualTo(SoftmaxCrossEntropy.ForwardBackward<float>(outputs, y, 5, grad)).Within(1e-5));
    }

    [TestCase(Backend.Cpu, 1)]
    [TestCase(Backend.Cpu, 2)]
    [TestCase(Backend.Blas, 1)]
    public void ANonFiniteGradient_WithAFiniteLoss_StopsTheStep_NamingTheTensor(Backend backend, int threads)
    {
        // A linear layer whose third input is 1e21 with zero weights: the outputs and the loss (about 1e36) stay finite,
        // but that column's weight gradient, Σ_batch dL/dy · 1e21, overflows float.
        using var m = new Sequential(3).Dense(2).Compile(new TrainingOptions
        {
            Loss = LossKind.Mse, MaxBatch = 8, Threads = threads, Backend = backend, Optimizer = new Sgd(lr: 1e-3),
        });
        m.SetParameters(0, [0.5f, -0.25f, 0, 0.125f, 0.75f, 0], [0.1f, -0.1f]);
        var x = new float[8 * 3];
        for (int b = 0; b < 8; b++) (x[3 * b], x[3 * b + 1], x[3 * b + 2]) = (0.1f * b, -0.2f * b, 1e21f);
        var t = Enumerable.Repeat(-1e18f, 16).ToArray();
        var before = new float[m.ParameterSectionLength];
        m.CopyParametersTo(before);
        var e = Assert.Throws<TrainingDivergedException>(() => m.Step(x, t))!;
        Assert.That(e.Message, Does.Contain("Training diverged at step 1: the gradient of 0.weight is ").And.Contain("Infinity at element 2"));
        Assert.That(e.Tensor, Is.EqualTo("0.weight"));
        Assert.That(double.IsFinite(e.Loss), Is.True, $"the loss was finite: {e.Loss}");
        Assert.That(m.StepCount, Is.Zero);
        var after = new float[m.ParameterSectionLength];
        m.CopyParametersTo(after);
        Assert.That(after, Is.EqualTo(before), "the parameters from before the step");
        Assert.That(double.IsFinite(m.Gradients(x, t)), Is.True, "Gradients reports what it computed and does not throw");
        Assert.That(float.IsInfinity(m.Gradient("0.weight")[2]), Is.True);
        for (int b = 0; b < 8; b++) x[3 * b + 2] = 1;
        Assert.That(double.IsFinite(m.Step(x, t.Select(_ => 0.5f).ToArray())), Is.True, "training goes on after the refused step");
    }

    [TestCase(Backend.Cpu)]
    [TestCase(Backend.Blas)]
    public void ANaNInTheInputs_StopsTheStep_AndKeepsTheParameters(Backend backend)
    {
        using var m = Mlp(threads: 2, backend: backend, opt: new Adam(lr: 1e-2));
        var (x, y) = Batch(32, 1);
        m.Step(x, y);
        var before = new float[m.ParameterSectionLength];
        m.CopyParametersTo(before);
        foreach (var at in new[] { 0, 3 * 20 + 5, 31 * 20 + 19 })
        {
            var bad = (float[])x.Clone();
            bad[at] = float.NaN;
            var e = Assert.Throws<TrainingDivergedException>(() => m.Step(bad, y))!;
            Assert.That(e.Step, Is.EqualTo(2));
            var after = new float[m.ParameterSectionLength];
            m.CopyParametersTo(after);
            Assert.That(after, Is.EqualTo(before), $"NaN at {at}: the parameters from before the step");
        }
        Assert.That(m.StepCount, Is.EqualTo(1));
    }

    [Test]
    public void AModelTooLargeForABlockOrForThisMachine_IsRefusedBeforeAnythingIsAllocated()
    {
        long before = GC.GetTotalAllocatedBytes(true);
        var wide = new Sequential(1 << 20).Dense(1 << 12).Dense(2);
        Assert.That(Assert.Throws<ArgumentException>(() => wide.Compile(new TrainingOptions { Threads = 1 }))!.Message,
            Does.Contain("more than a block holds (2,147,483,647): use narrower layers"));
        var tall = new Sequential(1 << 12).Dense(1 << 12).Dense(2);
        Assert.That(Assert.Throws<ArgumentException>(() => tall.Compile(new TrainingOptions { Threads = 1, MaxBatch = 1 << 20 }))!.Message,
            Does.Contain("activation elements, more than a block holds").And.Contain("use a smaller batch"));
        // Blocks that each fit, in double: 2.1e9 parameter-block elements (SGD keeps no state) and 2.1e9 activation elements,
        // about 34 GB together.
        long have = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        var big = new Sequential(32768).Dense(32000, "relu").Dense(2);
        var options = new TrainingOptions { Threads = 1, MaxBatch = 16000, Optimizer = new Sgd() };
        if (have > 30L << 30) Assert.Ignore($"this machine offers {have >> 20} MiB; the case is refused for memory only below about 30 GiB");
        Assert.That(Assert.Throws<InsufficientMemoryException>(() => big.Compile<double>(options))!.Message,
            Does.Contain("MiB of host memory").And.Contain("but this machine offers"));
        Assert.That(GC.GetTotalAllocatedBytes(true) - before, Is.LessThan(1 << 24), "refused before the blocks were allocated");
    }

    [Test]
    public void DisposingAModelWhileAnotherThreadIsInsideIt_IsRefused()
    {
        var m = Mlp(threads: 1);
        var (x, _) = Batch(8, 2);
        using var inside = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        m.OnEnter = () => { inside.Set(); release.Wait(); };
        var t = new Thread(() => m.Predict(x, new float[8 * 5]));
        t.Start();
        Assert.That(inside.Wait(TimeSpan.FromSeconds(30)), Is.True);
        Assert.That(Assert.Throws<InvalidOperationException>(m.Dispose)!.Message, Does.Contain("dispose it after that call returns"));
        Assert.That(Assert.Throws<InvalidOperationException>(() => m.GetWeights(0))!.Message, Does.Contain("in use by another thread"),
            "parameter reads take the model like calls do");
        release.Set();
        t.Join();
        m.OnEnter = null;
        m.Dispose();
        Assert.Throws<ObjectDisposedException>(() => m.GetWeights(0));
    }

    [Test]
    public void ConcurrentCalls_AreRefused_AndSerializedCallsAreCorrect()
    {
        // The rule: one thread at a time per model. While one thread is inside a call (held there by the
        // model's OnEnter seam, not by a race window), every call from another thread is refused; the held
        // call and the calls after it return correct outputs.
        using var m = new Sequential(256).Dense(512, "relu").Dense(10).Compile(new TrainingOptions { MaxBatch = 128, Threads = 1, Seed = 2 });
        var x = TestData.Floats(128 * 256, 3);
        var labels = new int[128];
        var expected = new float[128 * 10];
        m.Predict(x, expected);
        using var inside = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        int entries = 0;
        m.OnEnter = () =>
        {
            if (Interlocked.Increment(ref entries) != 1) return;
            inside.Set();
            release.Wait();
        };
        var held = new float[128 * 10];
        var t = new Thread(() => m.Predict(x, held));
        t.Start();
        Assert.That(inside.Wait(TimeSpan.FromSeconds(30)), Is.True, "the first call entered");
        var other = new float[128 * 10];
        foreach (var call in new Action[] { () => m.Predict(x, other), () => m.Step(x, labels), () => m.Evaluate(x, labels), () => m.Gradients(x, labels) })
            Assert.That(Assert.Throws<InvalidOperationException>(() => call())!.Message, Does.Contain("in use by another thread"));
        release.Set();
        t.Join();
        Assert.That(held, Is.EqualTo(expected), "the call that was let through returns the right outputs");
        m.Predict(x, other);
        Assert.That(other, Is.EqualTo(expected), "once it returned, the next call runs");
        Assert.That(entries, Is.EqualTo(2), "refused calls never entered");
    }

    [Test]
    public void Xor_LearnsToLossBelow001()
    {
        // 2-4-1, tanh hidden, sigmoid output with binary cross-entropy (as BCE on logits), plain SGD.
        using var m = new Sequential(2).Dense(4, "tanh").Dense(1).Compile(new TrainingOptions
        {
            Loss = LossKind.BceWithLogits, MaxBatch = 4, Threads = 1, Seed = 3, Init = InitScheme.XavierUniform,
            Optimizer = new Sgd() { LearningRate = 0.5 },
        });
        float[] x = [0, 0, 0, 1, 1, 0, 1, 1];
        float[] t = [0, 1, 1, 0];
        double loss = double.NaN;
        for (int i = 0; i < 5000 && !(loss < 0.01); i++) loss = m.Step(x, t);
        Assert.That(loss, Is.LessThan(0.01));
        var o = new float[4];
        m.Predict(x, o);
        Assert.That(o.Select(v => v > 0 ? 1f : 0f), Is.EqualTo(t));
    }
}
