// Epoch training: each epoch visits the training set in a seeded random order (Fisher–Yates on a
// permutation driven by Philox(seed, epoch), so it does not depend on anything but the seed), in
// batches of the model's maximum batch (the last one smaller; left out when a BatchNorm could not take
// it: one sample, as torch's DataLoader(drop_last) avoids), then evaluates. Optional early
// stopping watches the loss on a validation split held out from the training set and restores the
// best parameters when it stops.
using System.Diagnostics;
using Backprop.Engine.Checkpoints;
using Backprop.Engine.Data;
using Backprop.Kernels;

namespace Backprop.Engine.Training;

/// <summary>What one epoch measured.</summary>
public sealed record EpochMetrics(int Epoch, double TrainLoss, double? TestLoss, double? TestAccuracy, double? ValidationLoss,
    double? ValidationAccuracy, double Seconds, double SamplesPerSecond, double LearningRate);

/// <summary>How to fit.</summary>
public sealed record FitOptions
{
    /// <summary>Epochs (passes over the training set).</summary>
    public int Epochs { get; init; } = 10;
    /// <summary>Fraction of the training set held out for validation (0 = none).</summary>
    public double ValidationFraction { get; init; }
    /// <summary>Stop after this many epochs without a better validation loss (0 = never; needs a validation split or set).</summary>
    public int Patience { get; init; }
    /// <summary>A validation set of its own, scored after every epoch as the held-out split is (null: none; not with <see cref="ValidationFraction"/>).</summary>
    public Dataset? Validation { get; init; }
    /// <summary>Called after every batch with (epoch, batches done, batches in the epoch).</summary>
    public Action<int, int, int>? OnBatch { get; init; }
    /// <summary>Called after every epoch.</summary>
    public Action<EpochMetrics>? OnEpoch { get; init; }
    /// <summary>Where to start (a resumed run): the epoch and the next batch in it.</summary>
    public TrainingPosition Start { get; init; } = new(1, 0);
    /// <summary>Stop after the model has taken this many optimizer steps in all (0 = run every epoch).</summary>
    public long StopAfterSteps { get; init; }
    /// <summary>Call <see cref="OnCheckpoint"/> every this many steps (0 = never), and when stopping after steps.</summary>
    public long CheckpointEvery { get; init; }
    /// <summary>Receives the position to save (the batch to run next) at checkpoint time.</summary>
    public Action<TrainingPosition>? OnCheckpoint { get; init; }
    /// <summary>Stops at the next step boundary when cancelled (checkpointing first when <see cref="OnCheckpoint"/> is set); the result says so.</summary>
    public CancellationToken Cancellation { get; init; }

    /// <summary>Throws with the offending value when a setting is out of range.</summary>
    public void Validate()
    {
        if (Epochs < 1) throw new ArgumentOutOfRangeException(nameof(Epochs), Epochs, $"epochs must be at least 1; got {Epochs}.");
        if (!(ValidationFraction >= 0 && ValidationFraction < 1)) throw new ArgumentOutOfRangeException(nameof(ValidationFraction), ValidationFraction, $"validation fraction must be in [0, 1); got {ValidationFraction}.");
        if (Patience < 0) throw new ArgumentOutOfRangeException(nameof(Patience), Patience, $"patience must be >= 0; got {Patience}.");
        if (Validation is not null && ValidationFraction > 0)
            throw new ArgumentException($"a validation set was given and a validation fraction of {ValidationFraction}: take one or the other.");
        if (Patience > 0 && ValidationFraction == 0 && Validation is null)
            throw new ArgumentException("early stopping (patience > 0) needs a validation split (validation fraction > 0) or a validation set.");
        if (StopAfterSteps < 0) throw new ArgumentOutOfRangeException(nameof(StopAfterSteps), StopAfterSteps, $"stop-after-steps must be >= 0; got {StopAfterSteps}.");
        if (CheckpointEvery < 0) throw new ArgumentOutOfRangeException(nameof(CheckpointEvery), CheckpointEvery, $"checkpoint interval must be >= 0; got {CheckpointEvery}.");
        if (Start.Epoch < 1 || Start.NextBatch < 0) throw new ArgumentOutOfRangeException(nameof(Start), Start, $"start position must have epoch >= 1 and batch >= 0; got {Start}.");
    }
}

/// <summary>The result of <see cref="Trainer.Fit"/>: the epochs run, whether early stopping ended it, the best epoch, and whether the step limit did.</summary>
public sealed record FitResult(IReadOnlyList<EpochMetrics> Epochs, bool StoppedEarly, int BestEpoch, bool StoppedAtStepLimit = false, bool Interrupted = false);

/// <summary>Trains a classification or regression model epoch by epoch.</summary>
public sealed class Trainer(Model model)
{
    /// <summary>The model trained.</summary>
    public Model Model { get; } = model;

    /// <summary>
    /// The batches (optimizer steps) of an epoch over <paramref name="samples"/> in batches of <paramref name="maxBatch"/>: the last one
    /// smaller, and left out when a BatchNorm has no statistics for it (one sample, or a micro-batch of one of
    /// <paramref name="microBatches"/>).
    /// </summary>
    public static int BatchesPerEpoch(int samples, int maxBatch, int microBatches, bool batchNorm)
    {
        int batches = (samples + maxBatch - 1) / maxBatch;
        if (batchNorm && batches > 1 && Model<float>.SmallestMicroBatch(samples - (batches - 1) * maxBatch, microBatches) < 2) batches--;
        return batches;
    }

    /// <summary>Trains on <paramref name="train"/>, evaluating on <paramref name="test"/> after each epoch when given.</summary>
    public FitResult Fit(Dataset train, Dataset? test, FitOptions options)
    {
        options.Validate();
        var spec = Model.Spec;
        bool classification = spec.Loss == LossKind.CrossEntropy;
        if (train.Width != spec.InputWidth)
            throw new ArgumentException($"the training data has {train.Width} features per sample; the first layer expects {spec.InputWidth}.");
        if (test is not null && test.Width != spec.InputWidth)
            throw new ArgumentException($"the test data has {test.Width} features per sample; the first layer expects {spec.InputWidth}.");
        if (options.Validation is { } given && given.Width != spec.InputWidth)
            throw new ArgumentException($"the validation data has {given.Width} features per sample; the first layer expects {spec.InputWidth}.");
        if (classification && train.Labels is null) throw new ArgumentException("cross-entropy needs class labels in the training data.");
        if (!classification && train.Targets is null) throw new ArgumentException($"{spec.Loss} needs target values in the training data.");

        // Hold out a validation split from a seeded shuffle of the training set.
        Dataset fitSet = train, validation = options.Validation!;
        if (options.ValidationFraction > 0)
        {
            var order = Permutation(train.Count, Model.Options.Seed, ulong.MaxValue);
            var shuffled = Gather(train, order);
            int nVal = Math.Max(1, (int)Math.Round(train.Count * options.ValidationFraction));
            validation = shuffled.Slice(shuffled.Count - nVal, nVal);
            fitSet = shuffled.Slice(0, shuffled.Count - nVal);
        }

        int n = fitSet.Count, width = fitSet.Width, outW = spec.OutputWidth, maxBatch = Model.Options.MaxBatch;
        var batchX = new float[maxBatch * width];
        var batchL = classification ? new int[maxBatch] : [];
        var batchT = classification ? [] : new float[maxBatch * outW];
        var perm = new int[n];
        var epochs = new List<EpochMetrics>();
        double bestVal = double.PositiveInfinity;
        int bestEpoch = 0, sinceBest = 0;
        float[]? best = null, bestBuffers = null;
        bool stopped = false;
        int batches = BatchesPerEpoch(n, maxBatch, Model.Plan.MicroBatches, Model.Plan.BatchNorms.Count > 0);
        bool stepLimit = false, interrupted = false;
        for (int epoch = options.Start.Epoch; epoch <= options.Epochs && !stepLimit && !interrupted; epoch++)
        {
            PermutationInto(perm, Model.Options.Seed, (ulong)epoch);
            double lr = Model.CurrentLearningRate;
            var sw = Stopwatch.StartNew();
            double lossSum = 0;
            int firstBatch = epoch == options.Start.Epoch ? options.Start.NextBatch : 0, samples = 0;
            for (int bi = firstBatch; bi < batches; bi++)
            {
                int start = bi * maxBatch, b = Math.Min(maxBatch, n - start);
                for (int r = 0; r < b; r++)
                {
                    int src = perm[start + r];
                    Array.Copy(fitSet.Features, (long)src * width, batchX, (long)r * width, width);
                    if (classification) batchL[r] = fitSet.Labels![src];
                    else Array.Copy(fitSet.Targets!, (long)src * outW, batchT, (long)r * outW, outW);
                }
                // Across processes a stop is agreed inside the step, so every process stops after the same one.
                Model.StopRequested = options.Cancellation.IsCancellationRequested;
                double loss = classification
                    ? Model.Step(batchX.AsSpan(0, b * width), batchL.AsSpan(0, b))
                    : Model.Step(batchX.AsSpan(0, b * width), batchT.AsSpan(0, b * outW));
                lossSum += loss * b;
                samples += b;
                options.OnBatch?.Invoke(epoch, bi + 1, batches);
                var next = bi + 1 < batches ? new TrainingPosition(epoch, bi + 1) : new TrainingPosition(epoch + 1, 0);
                stepLimit = options.StopAfterSteps > 0 && Model.StepCount >= options.StopAfterSteps;
                if (Model.WorldSize == 1) Model.StopRequested = options.Cancellation.IsCancellationRequested;
                interrupted = Model.StopAgreed;
                if (options.OnCheckpoint is not null && (stepLimit || interrupted || options.CheckpointEvery > 0 && Model.StepCount % options.CheckpointEvery == 0))
                    options.OnCheckpoint(next);
                if (stepLimit || interrupted) break;
            }
            sw.Stop();
            if (samples == 0 || interrupted) continue;
            double seconds = sw.Elapsed.TotalSeconds;
            (double? testLoss, double? testAcc) = Score(test);
            (double? valLoss, double? valAcc) = validation is not null ? Score(validation) : (null, null);
            var m = new EpochMetrics(epoch, lossSum / samples, testLoss, testAcc, valLoss, valAcc, seconds, samples / seconds, lr);
            epochs.Add(m);
            options.OnEpoch?.Invoke(m);
            if (valLoss is double v)
            {
                if (v < bestVal)
                {
                    bestVal = v;
                    bestEpoch = epoch;
                    sinceBest = 0;
                    best ??= new float[Model.ParameterSectionLength];
                    bestBuffers ??= new float[Model.BufferSectionLength];
                    Model.CopyParametersTo(best);
                    Model.CopyBuffersTo(bestBuffers); // the running statistics that go with these weights
                }
                else if (options.Patience > 0 && ++sinceBest >= options.Patience)
                {
                    Model.CopyParametersFrom(best);
                    Model.CopyBuffersFrom(bestBuffers);
                    stopped = true;
                    break;
                }
            }
        }
        return new FitResult(epochs, stopped, bestEpoch == 0 ? epochs.Count : bestEpoch, stepLimit, interrupted);
    }

    private (double?, double?) Score(Dataset? d)
    {
        if (d is null || d.Count == 0) return (null, null);
        if (d.Labels is not null && Model.Spec.Loss == LossKind.CrossEntropy)
        {
            var r = Model.Evaluate(d.Features, d.Labels);
            return (r.Loss, r.Accuracy);
        }
        return (Model.EvaluateLoss(d.Features, d.Targets ?? throw new ArgumentException("the evaluation data has no targets.")), null);
    }

    private static Dataset Gather(Dataset d, int[] order)
    {
        var x = new float[d.Features.Length];
        var l = d.Labels is null ? null : new int[d.Count];
        var t = d.Targets is null ? null : new float[d.Targets.Length];
        for (int i = 0; i < order.Length; i++)
        {
            Array.Copy(d.Features, (long)order[i] * d.Width, x, (long)i * d.Width, d.Width);
            if (l is not null) l[i] = d.Labels![order[i]];
            if (t is not null) Array.Copy(d.Targets!, (long)order[i] * d.Outputs, t, (long)i * d.Outputs, d.Outputs);
        }
        return new Dataset(x, l, t, d.Width, d.Outputs);
    }

    /// <summary>A permutation of 0..n-1 that depends only on (seed, stream).</summary>
    public static int[] Permutation(int n, ulong seed, ulong stream)
    {
        var p = new int[n];
        PermutationInto(p, seed, stream);
        return p;
    }

    private static void PermutationInto(int[] p, ulong seed, ulong stream)
    {
        for (int i = 0; i < p.Length; i++) p[i] = i;
        for (int i = p.Length - 1; i > 0; i--)
        {
            uint word = Philox.Word(seed, 0x5eed, stream, i);
            int j = (int)((ulong)word * (ulong)(i + 1) >> 32);
            (p[i], p[j]) = (p[j], p[i]);
        }
    }
}
