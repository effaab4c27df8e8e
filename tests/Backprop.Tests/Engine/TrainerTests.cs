// Trainer: seeded shuffling, early stopping on a validation split restoring the best epoch.
using Backprop.Engine;
using Backprop.Engine.Data;
using Backprop.Engine.Training;
using Backprop.Kernels;
using Backprop.Kernels.Cpu.Optim;
using NUnit.Framework;

namespace Backprop.Tests.Engine;

[TestFixture]
public class TrainerTests
{
    private static Dataset Noise(int n, int seed)
    {
        // Labels unrelated to features: a network can only memorize, so validation loss rises.
        var x = TestData.Floats(n * 8, seed);
        var y = Enumerable.Range(0, n).Select(i => (i * 7 + seed) % 3).ToArray();
        return new Dataset(x, y, null, 8, 3);
    }

    [Test]
    public void Permutation_DependsOnlyOnSeedAndStream()
    {
        var a = Trainer.Permutation(1000, 5, 1);
        Assert.That(a.OrderBy(v => v), Is.EqualTo(Enumerable.Range(0, 1000)));
        Assert.That(Trainer.Permutation(1000, 5, 1), Is.EqualTo(a));
        Assert.That(Trainer.Permutation(1000, 5, 2), Is.Not.EqualTo(a));
        Assert.That(Trainer.Permutation(1000, 6, 1), Is.Not.EqualTo(a));
    }

    [Test]
    public void EarlyStopping_StopsAndRestoresTheBestEpoch()
    {
        using var m = new Sequential(8).Dense(128, "relu").Dense(3).Compile(new TrainingOptions
        {
            MaxBatch = 16, Threads = 1, Seed = 2, Optimizer = new Adam() { LearningRate = 1e-2 },
        });
        var data = Noise(400, 1);
        var seen = new List<EpochMetrics>();
        var fit = new Trainer(m).Fit(data, null, new FitOptions { Epochs = 60, ValidationFraction = 0.25, Patience = 3, OnEpoch = seen.Add });
        Assert.That(fit.StoppedEarly, Is.True, string.Join(", ", fit.Epochs.Select(e => e.ValidationLoss)));
        Assert.That(fit.Epochs.Count, Is.EqualTo(fit.BestEpoch + 3));
        Assert.That(seen, Has.Count.EqualTo(fit.Epochs.Count));
        double best = fit.Epochs.Min(e => e.ValidationLoss!.Value);
        Assert.That(fit.Epochs[fit.BestEpoch - 1].ValidationLoss, Is.EqualTo(best));

        // The model now holds the best epoch's parameters: its validation loss is the best one.
        var order = Trainer.Permutation(400, 2, ulong.MaxValue);
        var valX = order.Skip(300).SelectMany(i => data.Features.Skip(i * 8).Take(8)).ToArray();
        var valY = order.Skip(300).Select(i => data.Labels![i]).ToArray();
        Assert.That(m.Evaluate(valX, valY).Loss, Is.EqualTo(best).Within(1e-6));
    }

    [Test]
    public void AValidationSetOfItsOwn_IsScoredEveryEpoch_AndDrivesEarlyStopping()
    {
        TrainingOptions Options() => new() { MaxBatch = 16, Threads = 1, Seed = 2, Optimizer = new Adam() { LearningRate = 1e-2 } };
        using var m = new Sequential(8).Dense(128, "relu").Dense(3).Compile(Options());
        var data = Noise(300, 1);
        var validation = Noise(100, 2);
        var fit = new Trainer(m).Fit(data, null, new FitOptions { Epochs = 60, Validation = validation, Patience = 3 });
        Assert.That(fit.StoppedEarly, Is.True, string.Join(", ", fit.Epochs.Select(e => e.ValidationLoss)));
        Assert.That(fit.Epochs.Count, Is.EqualTo(fit.BestEpoch + 3));
        double best = fit.Epochs.Min(e => e.ValidationLoss!.Value);
        Assert.That(m.Evaluate(validation.Features, validation.Labels!).Loss, Is.EqualTo(best).Within(1e-6));

        // Without patience every epoch runs on the whole training set and still reports the validation scores.
        using var n = new Sequential(8).Dense(16, "relu").Dense(3).Compile(Options());
        var all = new Trainer(n).Fit(data, null, new FitOptions { Epochs = 2, Validation = validation });
        Assert.That(all.Epochs.Select(e => e.ValidationAccuracy.HasValue), Is.EqualTo(new[] { true, true }));
        Assert.That(all.StoppedEarly, Is.False);
    }

    [Test]
    public void FitOptions_Errors()
    {
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new FitOptions { Epochs = 0 }.Validate())!.Message, Does.Contain("epochs must be at least 1; got 0"));
        Assert.That(Assert.Throws<ArgumentException>(() => new FitOptions { Patience = 2 }.Validate())!.Message, Does.Contain("needs a validation split"));
        Assert.That(Assert.Throws<ArgumentException>(() => new FitOptions { Validation = Noise(10, 1), ValidationFraction = 0.2 }.Validate())!.Message,
            Does.Contain("a validation set was given and a validation fraction of 0.2: take one or the other"));
        using var m = new Sequential(5).Dense(3).Compile(new TrainingOptions { Threads = 1 });
        Assert.That(Assert.Throws<ArgumentException>(() => new Trainer(m).Fit(Noise(10, 1), null, new FitOptions()))!.Message,
            Does.Contain("the training data has 8 features per sample; the first layer expects 5"));
        var five = new Dataset(TestData.Floats(50, 3), [0, 1, 2, 0, 1, 2, 0, 1, 2, 0], null, 5, 3);
        Assert.That(Assert.Throws<ArgumentException>(() => new Trainer(m).Fit(five, null, new FitOptions { Validation = Noise(10, 1) }))!.Message,
            Does.Contain("the validation data has 8 features per sample; the first layer expects 5"));
    }

    [Test]
    public void EarlyStopping_RestoresTheBestEpochsRunningStatistics_WithItsWeights()
    {
        using var m = new Sequential(8).Dense(32, "relu").BatchNorm().Dense(3).Compile(new TrainingOptions { MaxBatch = 16, Threads = 1, Seed = 3 });
        var buffers = new Dictionary<int, float[]>();
        var weights = new Dictionary<int, float[]>();
        var fit = new Trainer(m).Fit(Noise(200, 9), null, new FitOptions
        {
            Epochs = 60, ValidationFraction = 0.25, Patience = 3,
            OnEpoch = e => { buffers[e.Epoch] = m.Buffer("2.running_mean").ToArray(); weights[e.Epoch] = m.Parameter("0.weight").ToArray(); },
        });
        Assert.That(fit.StoppedEarly, Is.True);
        Assert.That(fit.BestEpoch, Is.LessThan(fit.Epochs.Count));
        Assert.That(m.Parameter("0.weight").ToArray(), Is.EqualTo(weights[fit.BestEpoch]));
        Assert.That(m.Buffer("2.running_mean").ToArray(), Is.EqualTo(buffers[fit.BestEpoch]), "the running statistics of the restored epoch, not of the last");
        Assert.That(m.Buffer("2.running_mean").ToArray(), Is.Not.EqualTo(buffers[fit.Epochs.Count]));
    }

    [Test]
    public void BatchesPerEpoch_LeavesOutWhatABatchNormCannotTake()
    {
        Assert.That(Trainer.BatchesPerEpoch(21, 10, 1, batchNorm: false), Is.EqualTo(3));
        Assert.That(Trainer.BatchesPerEpoch(21, 10, 1, batchNorm: true), Is.EqualTo(2));
        Assert.That(Trainer.BatchesPerEpoch(22, 10, 1, batchNorm: true), Is.EqualTo(3));
        Assert.That(Trainer.BatchesPerEpoch(23, 10, 2, batchNorm: true), Is.EqualTo(2), "the last 3 in 2 micro-batches: 2 and 1");
        Assert.That(Trainer.BatchesPerEpoch(24, 10, 2, batchNorm: true), Is.EqualTo(3));
        Assert.That(Trainer.BatchesPerEpoch(1, 10, 1, batchNorm: true), Is.EqualTo(1), "a one-batch epoch is not emptied (its step says why it cannot run)");
    }

    [Test]
    public void WithBatchNorm_ALastBatchOfOneSample_IsLeftOut_OtherwiseKept()
    {
        // 21 samples in batches of 10: the last batch holds one sample, which BatchNorm cannot normalize in training.
        var data = Noise(21, 4);
        using var bn = new Sequential(8).Dense(6, "relu").BatchNorm().Dense(3).Compile(new TrainingOptions { MaxBatch = 10, Threads = 1 });
        var fit = new Trainer(bn).Fit(data, null, new FitOptions { Epochs = 2 });
        Assert.That(bn.StepCount, Is.EqualTo(4), "two batches per epoch");
        Assert.That(bn.Buffer("2.num_batches_tracked").ToArray(), Is.EqualTo(new[] { 4f }));
        Assert.That(fit.Epochs, Has.Count.EqualTo(2));
        using var plain = new Sequential(8).Dense(6, "relu").Dense(3).Compile(new TrainingOptions { MaxBatch = 10, Threads = 1 });
        new Trainer(plain).Fit(data, null, new FitOptions { Epochs = 2 });
        Assert.That(plain.StepCount, Is.EqualTo(6), "without BatchNorm the one-sample batch trains");
        // With accumulation a micro-batch of one is what counts: 23 samples in batches of 10 in 2 micro-batches leave 3 (2 + 1).
        using var acc = new Sequential(8).BatchNorm().Dense(3).Compile(new TrainingOptions { MaxBatch = 10, Threads = 1, Accumulate = 2 });
        new Trainer(acc).Fit(Noise(23, 5), null, new FitOptions { Epochs = 1 });
        Assert.That(acc.StepCount, Is.EqualTo(2));
    }
}
