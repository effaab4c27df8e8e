// What the three trainers share: reading a data view into the engine's dataset in one pass, and the run itself
// (the engine's Trainer, with ML.NET's progress channel, its cancellation and the options' token).
using Backprop.Engine;
using Backprop.Engine.Data;
using Backprop.Engine.Training;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;

namespace Backprop.MLNet;

/// <summary>The label column's type a trainer reads.</summary>
internal enum LabelKind
{
    /// <summary>A key (multiclass): 1..K are the classes, 0 is a missing label.</summary>
    Key,
    /// <summary>A Boolean (binary): the target 1 or 0.</summary>
    Boolean,
    /// <summary>A float (regression); NaN is a missing label.</summary>
    Float,
}

internal static class NetworkTraining
{
    /// <summary>The training view and, when <c>Fit</c> was given one, the validation view, each read once (<see cref="Read(IChannel, RoleMappedData, LabelKind, int, string)"/>).</summary>
    public static (Dataset Train, Dataset? Validation) Read(IHost host, TrainContext context, LabelKind kind, int classes)
    {
        using var ch = host.Start("Reading");
        return (Read(ch, context.TrainingSet, kind, classes, "training"),
            context.ValidationSet is null ? null : Read(ch, context.ValidationSet, kind, classes, "validation"));
    }

    /// <summary>
    /// The rows of <paramref name="data"/> as the engine's dataset, read in one pass straight into its arrays (sized from the
    /// view's row count when it has one). Rows with a missing label or a non-finite feature are left out, with a warning.
    /// </summary>
    public static Dataset Read(IChannel ch, RoleMappedData data, LabelKind kind, int classes, string what)
    {
        var featureCol = data.Schema.Feature ?? throw ch.Except($"the {what} data has no feature column.");
        var labelCol = data.Schema.Label ?? throw ch.Except($"the {what} data has no label column.");
        if (featureCol.Type is not VectorDataViewType { ItemType: NumberDataViewType nt, Size: > 0 } vt || nt != NumberDataViewType.Single)
            throw ch.ExceptParam(nameof(data), $"the {what} data's feature column '{featureCol.Name}' is {featureCol.Type}; expected a vector of Single of known size (Concatenate the feature columns).");
        int width = vt.Size;
        long? count = data.Data.GetRowCount();
        int capacity = count is long c && c > 0 && c <= Array.MaxLength / width ? (int)c : 1024;
        var x = new float[(long)capacity * width];
        var labels = kind == LabelKind.Key ? new int[capacity] : null;
        var targets = kind == LabelKind.Key ? null : new float[capacity];
        int n = 0;
        long missingLabel = 0, badFeature = 0;
        VBuffer<float> features = default;
        using (var cursor = data.Data.GetRowCursor([featureCol, labelCol]))
        {
            var getFeatures = cursor.GetGetter<VBuffer<float>>(featureCol);
            var getKey = kind == LabelKind.Key ? cursor.GetGetter<uint>(labelCol) : null;
            var getBool = kind == LabelKind.Boolean ? cursor.GetGetter<bool>(labelCol) : null;
            var getFloat = kind == LabelKind.Float ? cursor.GetGetter<float>(labelCol) : null;
            uint key = 0;
            bool flag = false;
            float value = 0;
            while (cursor.MoveNext())
            {
                if (getKey is not null)
                {
                    getKey(ref key);
                    if (key == 0) { missingLabel++; continue; }
                    if (key > classes) throw ch.Except($"the {what} data has the label key {key}; the label column's key type has {classes} values.");
                }
                else if (getBool is not null) getBool(ref flag);
                else
                {
                    getFloat!(ref value);
                    if (!float.IsFinite(value)) { missingLabel++; continue; }
                }
                getFeatures(ref features);
                if (features.Length != width) throw ch.Except($"row {cursor.Position} of the {what} data has {features.Length} features; the column's type says {width}.");
                if (n == capacity)
                {
                    if (capacity >= Array.MaxLength / width) throw ch.Except($"the {what} data has more than {capacity} rows of {width} features: more than one array holds.");
                    capacity = (int)Math.Min((long)capacity * 2, Array.MaxLength / width);
                    Array.Resize(ref x, capacity * width);
                    if (labels is not null) Array.Resize(ref labels, capacity);
                    if (targets is not null) Array.Resize(ref targets, capacity);
                }
                var row = x.AsSpan(n * width, width);
                if (features.IsDense) features.GetValues().CopyTo(row);
                else
                {
                    row.Clear();
                    var idx = features.GetIndices();
                    var val = features.GetValues();
                    for (int i = 0; i < idx.Length; i++) row[idx[i]] = val[i];
                }
                if (!AllFinite(row)) { badFeature++; continue; }
                if (labels is not null) labels[n] = (int)key - 1;
                else targets![n] = getBool is not null ? (flag ? 1f : 0f) : value;
                n++;
            }
        }
        if (missingLabel + badFeature > 0)
            ch.Warning($"Backprop: left out {missingLabel} {what} rows with a missing label and {badFeature} with a NaN or infinite feature.");
        if (n == 0) throw ch.Except($"the {what} data has no rows with a label and finite features.");
        if (n < capacity) // only when the view had no row count or rows were left out
        {
            Array.Resize(ref x, n * width);
            if (labels is not null) Array.Resize(ref labels, n);
            if (targets is not null) Array.Resize(ref targets, n);
        }
        return new Dataset(x, labels, targets, width, kind == LabelKind.Key ? classes : 1);
    }

    private static bool AllFinite(ReadOnlySpan<float> row)
    {
        foreach (float v in row) if (!float.IsFinite(v)) return false;
        return true;
    }

    /// <summary>
    /// Trains a network of <paramref name="outputs"/> outputs with <paramref name="loss"/> on <paramref name="train"/>, early-stopping
    /// on <paramref name="validation"/> or on the options' held-out fraction; reports each epoch on ML.NET's channels.
    /// </summary>
    public static Model Train(IHost host, BackpropTrainerOptionsBase options, Dataset train, Dataset? validation, LossKind loss, int outputs, string task)
    {
        if (options.EarlyStoppingPatience > 0 && validation is null && options.ValidationFraction == 0)
            throw host.Except($"early stopping (patience {options.EarlyStoppingPatience}) needs a validation set: pass one to Fit or set ValidationFraction.");
        ulong seed = (uint)(options.Seed ?? host.Rand.Next());
        int fitRows = validation is null && options.ValidationFraction > 0
            ? train.Count - Math.Max(1, (int)Math.Round(train.Count * options.ValidationFraction)) : train.Count;
        if (fitRows < 1) throw host.Except($"holding out a validation fraction of {options.ValidationFraction} leaves no training rows of the {train.Count}.");
        int batches = Trainer.BatchesPerEpoch(fitRows, options.BatchSize, 1, batchNorm: false);
        var model = options.Network(train.Width, outputs).Compile(options.Training(loss, seed, batches));
        try
        {
            using var ch = host.Start("Training");
            using var progress = host.StartProgressChannel("Backprop training");
            int epochNow = 0, batchNow = 0;
            double lastLoss = double.NaN;
            progress.SetHeader(new ProgressHeader(["train loss"], ["epochs", "batches"]), e =>
            {
                e.SetProgress(0, epochNow, options.NumberOfEpochs);
                e.SetProgress(1, batchNow, batches);
                e.SetMetric(0, lastLoss);
            });
            ch.Info($"Backprop {task}: {model.Spec.Describe()}, {fitRows} training rows, {batches} batches of {options.BatchSize} per epoch, seed {seed}, {model.Options.Threads} threads.");
            var fit = new Trainer(model).Fit(train, null, new FitOptions
            {
                Epochs = options.NumberOfEpochs,
                ValidationFraction = validation is null ? options.ValidationFraction : 0,
                Validation = validation,
                Patience = options.EarlyStoppingPatience,
                Cancellation = options.Cancellation,
                OnBatch = (epoch, done, _) =>
                {
                    epochNow = epoch - 1;
                    batchNow = done;
                    host.CheckAlive(); // MLContext cancellation
                },
                OnEpoch = m =>
                {
                    epochNow = m.Epoch;
                    lastLoss = m.TrainLoss;
                    ch.Info($"Backprop epoch {m.Epoch}/{options.NumberOfEpochs}: train loss {m.TrainLoss:G6}" +
                        (m.ValidationLoss is double v ? $", validation loss {v:G6}" : "") +
                        (m.ValidationAccuracy is double a ? $", validation accuracy {a:F4}" : "") + $", {m.Seconds:F2} s, {m.SamplesPerSecond:F0} samples/s");
                },
            });
            if (fit.Interrupted) throw new OperationCanceledException("the Backprop fit was cancelled.", options.Cancellation);
            if (fit.StoppedEarly) ch.Info($"Backprop: stopped early after epoch {fit.Epochs[^1].Epoch}; kept the weights of epoch {fit.BestEpoch}.");
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}
