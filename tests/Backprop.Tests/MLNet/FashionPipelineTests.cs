// The Backprop trainer inside real ML.NET pipelines on Fashion-MNIST: LoadFromTextFile, Concatenate + NormalizeMinMax,
// MapValueToKey, train, ML.NET's own Evaluate; the model zip saved and loaded in a fresh MLContext; the same seed twice;
// the ONNX export scored back by ML.NET's ApplyOnnxModel.
using Backprop.Engine.Export;
using Backprop.MLNet;
using Backprop.MLNet.Bench;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms;
using NUnit.Framework;

namespace Backprop.Tests.MLNet;

[TestFixture, NonParallelizable]
public class FashionPipelineTests
{
    internal static IEstimator<ITransformer> Featurize(MLContext ml) =>
        ml.Transforms.Concatenate("Features", nameof(FashionRow.Pixels))
            .Append(ml.Transforms.NormalizeMinMax("Features"))
            .Append(ml.Transforms.Conversion.MapValueToKey("Label", keyOrdinality: ValueToKeyMappingEstimator.KeyOrdinality.ByValue));

    private static float[][] Scores(MLContext ml, ITransformer model, IDataView data) =>
        ml.Data.CreateEnumerable<ScoreRow>(model.Transform(data), reuseRowObject: false).Select(r => r.Score).ToArray();

    private sealed class ScoreRow
    {
        public float[] Score { get; set; } = [];
    }

    private sealed class Prediction
    {
        public float PredictedLabel { get; set; }
        public float[] Score { get; set; } = [];
    }

    [Test]
    public void Defaults_Reach088_AndTheModelZipLoadsInAFreshContextWithIdenticalPredictions()
    {
        var (trainCsv, testCsv) = MLNetData.Fashion();
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromTextFile<FashionRow>(trainCsv, separatorChar: ',', hasHeader: true);
        var test = ml.Data.LoadFromTextFile<FashionRow>(testCsv, separatorChar: ',', hasHeader: true);
        var log = new List<string>();
        ml.Log += (_, e) => { if (e.Message.Contains("Backprop", StringComparison.Ordinal)) lock (log) log.Add(e.Message); };
        var pipeline = Featurize(ml).Append(ml.MulticlassClassification.Trainers.Backprop())
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"));
        var model = pipeline.Fit(train);

        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
        TestContext.Out.WriteLine($"Fashion-MNIST, Backprop defaults: micro accuracy {metrics.MicroAccuracy:F4}, macro {metrics.MacroAccuracy:F4}, log-loss {metrics.LogLoss:F4}");
        Assert.That(metrics.MicroAccuracy, Is.GreaterThanOrEqualTo(0.88));
        Assert.That(metrics.LogLoss, Is.LessThan(0.4));
        // Progress reached ML.NET's log: one line per epoch, 15 by default.
        Assert.That(log.Count(m => m.Contains("Backprop epoch ", StringComparison.Ordinal)), Is.EqualTo(15), string.Join("\n", log));

        // The fitted transformer exposes the engine's network.
        var scorer = MLNetData.Find<MulticlassPredictionTransformer<BackpropMulticlassModelParameters>>(model);
        Assert.That(scorer.Model.Network.Spec.Describe(), Does.Contain("784"));
        Assert.That(scorer.Model.NumberOfClasses, Is.EqualTo(10));

        string zip = MLNetData.Scratch("fashion.zip");
        ml.Model.Save(model, train.Schema, zip);
        using (var archive = System.IO.Compression.ZipFile.OpenRead(zip))
            Assert.That(archive.Entries.Select(e => e.FullName), Has.Some.EndsWith("/Network.safetensors"));

        var fresh = new MLContext(seed: 99);
        var loaded = fresh.Model.Load(zip, out var inputSchema);
        Assert.That(inputSchema.GetColumnOrNull(nameof(FashionRow.Pixels)), Is.Not.Null);
        var before = Scores(ml, model, test);
        var after = Scores(fresh, loaded, fresh.Data.LoadFromTextFile<FashionRow>(testCsv, separatorChar: ',', hasHeader: true));
        Assert.That(after.Length, Is.EqualTo(10000));
        for (int i = 0; i < before.Length; i++)
            Assert.That(after[i], Is.EqualTo(before[i]), $"row {i}: the loaded model scores otherwise");
        var reloaded = fresh.MulticlassClassification.Evaluate(loaded.Transform(fresh.Data.LoadFromTextFile<FashionRow>(testCsv, separatorChar: ',', hasHeader: true)));
        Assert.That(reloaded.MicroAccuracy, Is.EqualTo(metrics.MicroAccuracy));

        // One row at a time through ML.NET's PredictionEngine: the same scores and label as the bulk transform.
        var engine = fresh.Model.CreatePredictionEngine<FashionRow, Prediction>(loaded);
        var rows = fresh.Data.CreateEnumerable<FashionRow>(test, reuseRowObject: false).Take(50).ToList();
        for (int i = 0; i < rows.Count; i++)
        {
            var p = engine.Predict(rows[i]);
            Assert.That(p.Score, Is.EqualTo(before[i]));
            Assert.That(p.PredictedLabel, Is.EqualTo((float)Array.IndexOf(before[i], before[i].Max())));
        }
    }

    [Test]
    public void TheSameSeedTwice_GivesTheSameModelBitForBit_AndAnotherSeedDoesNot()
    {
        var (trainCsv, testCsv) = MLNetData.FashionSubset(3000, 500);
        byte[] Fit(int seed, out float[][] scores)
        {
            var ml = new MLContext(seed);
            var train = ml.Data.LoadFromTextFile<FashionRow>(trainCsv, separatorChar: ',', hasHeader: true);
            var test = ml.Data.LoadFromTextFile<FashionRow>(testCsv, separatorChar: ',', hasHeader: true);
            var model = Featurize(ml).Append(ml.MulticlassClassification.Trainers.Backprop(hiddenLayers: [64], numberOfEpochs: 2)).Fit(train);
            scores = Scores(ml, model, test);
            var net = MLNetData.Find<MulticlassPredictionTransformer<BackpropMulticlassModelParameters>>(model).Model.Network;
            using var weights = new MemoryStream();
            Backprop.Engine.Checkpoints.Checkpoint.SaveWeights(net, weights);
            return weights.ToArray();
        }
        var a = Fit(5, out var sa);
        var b = Fit(5, out var sb);
        var c = Fit(6, out _);
        Assert.That(b, Is.EqualTo(a), "two fits with MLContext(seed: 5) differ");
        Assert.That(sb, Is.EqualTo(sa));
        Assert.That(c, Is.Not.EqualTo(a), "MLContext(seed: 6) gave the model of seed 5");
    }

    [Test]
    public void TheOnnxExport_ScoredBackByApplyOnnxModel_MatchesTheTrainersScores()
    {
        var (trainCsv, testCsv) = MLNetData.FashionSubset(3000, 500);
        var ml = new MLContext(seed: 3);
        var train = ml.Data.LoadFromTextFile<FashionRow>(trainCsv, separatorChar: ',', hasHeader: true);
        var test = ml.Data.LoadFromTextFile<FashionRow>(testCsv, separatorChar: ',', hasHeader: true);
        var featurizer = Featurize(ml).Fit(train);
        var features = featurizer.Transform(train);
        var scorer = ml.MulticlassClassification.Trainers.Backprop(hiddenLayers: [64], numberOfEpochs: 2).Fit(features);
        string onnx = MLNetData.Scratch("model.onnx");
        OnnxExporter.Export(scorer.Model.Network, onnx, softmax: true);

        var testFeatures = featurizer.Transform(test);
        var ours = Scores(ml, scorer, testFeatures);
        var onnxPipeline = ml.Transforms.CopyColumns("input", "Features")
            .Append(ml.Transforms.ApplyOnnxModel(outputColumnNames: ["output"], inputColumnNames: ["input"], modelFile: onnx));
        var theirs = ml.Data.CreateEnumerable<OnnxRow>(onnxPipeline.Fit(testFeatures).Transform(testFeatures), reuseRowObject: false).Select(r => r.Output).ToArray();
        Assert.That(theirs.Length, Is.EqualTo(ours.Length));
        for (int i = 0; i < ours.Length; i++)
            Assert.That(theirs[i], Is.EqualTo(ours[i]).Within(2e-5f), $"row {i}");
    }

    private sealed class OnnxRow
    {
        [ColumnName("output")] public float[] Output { get; set; } = [];
    }

    [Test]
    public void FitWithAValidationView_StopsEarlyAndReportsValidationLoss()
    {
        var (trainCsv, testCsv) = MLNetData.FashionSubset(3000, 500);
        var ml = new MLContext(seed: 4);
        var log = new List<string>();
        ml.Log += (_, e) => { if (e.Message.Contains("Backprop", StringComparison.Ordinal)) lock (log) log.Add(e.Message); };
        var featurizer = Featurize(ml).Fit(ml.Data.LoadFromTextFile<FashionRow>(trainCsv, separatorChar: ',', hasHeader: true));
        var train = featurizer.Transform(ml.Data.LoadFromTextFile<FashionRow>(trainCsv, separatorChar: ',', hasHeader: true));
        var valid = featurizer.Transform(ml.Data.LoadFromTextFile<FashionRow>(testCsv, separatorChar: ',', hasHeader: true));
        // A learning rate far too high makes the validation loss climb: patience 1 stops after the second epoch without a better one.
        var trainer = ml.MulticlassClassification.Trainers.Backprop(new BackpropMulticlassTrainer.Options
        {
            HiddenLayers = [32], NumberOfEpochs = 30, EarlyStoppingPatience = 1, LearningRate = 0.05, LearningRateSchedule = BackpropLearningRateSchedule.Constant,
        });
        trainer.Fit(train, valid);
        var epochs = log.Where(m => m.Contains("Backprop epoch", StringComparison.Ordinal)).ToList();
        Assert.That(epochs, Is.Not.Empty);
        Assert.That(epochs, Has.All.Contains("validation loss"));
        Assert.That(epochs.Count, Is.LessThan(30), string.Join("\n", log));
        Assert.That(log, Has.Some.Contains("stopped early"));
    }

    [Test]
    public void Cancellation_StopsTheFitWithOperationCanceled()
    {
        var (trainCsv, _) = MLNetData.FashionSubset(3000, 500);
        var ml = new MLContext(seed: 4);
        using var cts = new CancellationTokenSource();
        int epochs = 0;
        ml.Log += (_, e) =>
        {
            if (e.Message.Contains("Backprop epoch", StringComparison.Ordinal)) { Interlocked.Increment(ref epochs); cts.Cancel(); }
        };
        var pipeline = Featurize(ml).Append(ml.MulticlassClassification.Trainers.Backprop(new BackpropMulticlassTrainer.Options
        {
            HiddenLayers = [32], NumberOfEpochs = 50, Cancellation = cts.Token,
        }));
        Assert.Throws<OperationCanceledException>(() => pipeline.Fit(ml.Data.LoadFromTextFile<FashionRow>(trainCsv, separatorChar: ',', hasHeader: true)));
        Assert.That(epochs, Is.EqualTo(1), "the fit went on after the cancellation");
    }
}
