// Regression and binary classification in ML.NET pipelines on made-up tables: ML.NET's Evaluate (R², accuracy,
// log-loss, AUC), the model zip round trip, and the columns its evaluators read.
using Backprop.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;
using NUnit.Framework;

namespace Backprop.Tests.MLNet;

[TestFixture, NonParallelizable]
public class TabularPipelineTests
{
    private static (IDataView Train, IDataView Test) Load(MLContext ml, string name)
    {
        var all = ml.Data.LoadFromTextFile<TabularRow>(MLNetData.Tabular(5000, 11, name), separatorChar: ',', hasHeader: true);
        var split = ml.Data.TrainTestSplit(all, testFraction: 0.2, seed: 1);
        return (split.TrainSet, split.TestSet);
    }

    private static IEstimator<ITransformer> Features(MLContext ml) =>
        ml.Transforms.Concatenate("Features", nameof(TabularRow.X0), nameof(TabularRow.X1), nameof(TabularRow.X2))
            .Append(ml.Transforms.NormalizeMinMax("Features"));

    private sealed class RegressionScore
    {
        public float Score { get; set; }
    }

    private sealed class BinaryScore
    {
        public float Score { get; set; }
        public float Probability { get; set; }
        public bool PredictedLabel { get; set; }
    }

    [Test]
    public void Regression_FitsALabelFarFromUnitScale_AndRoundTripsThroughTheModelZip()
    {
        var ml = new MLContext(seed: 2);
        var (train, test) = Load(ml, "regression");
        var pipeline = Features(ml).Append(ml.Transforms.CopyColumns("Label", nameof(TabularRow.Target)))
            .Append(ml.Regression.Trainers.Backprop(new BackpropRegressionTrainer.Options { HiddenLayers = [64, 64], Activation = "tanh", NumberOfEpochs = 60, BatchSize = 64, LearningRate = 3e-3 }));
        var model = pipeline.Fit(train);
        var metrics = ml.Regression.Evaluate(model.Transform(test));
        TestContext.Out.WriteLine($"regression: R² {metrics.RSquared:F4}, RMSE {metrics.RootMeanSquaredError:F2} (label spread ~400)");
        Assert.That(metrics.RSquared, Is.GreaterThan(0.98));

        var net = MLNetData.Find<RegressionPredictionTransformer<BackpropRegressionModelParameters>>(model).Model;
        Assert.That(net.LabelMean, Is.EqualTo(1000 + 400.0 / 3).Within(30));
        Assert.That(net.LabelScale, Is.GreaterThan(100));

        string zip = MLNetData.Scratch("regression.zip");
        ml.Model.Save(model, train.Schema, zip);
        var fresh = new MLContext();
        var loaded = fresh.Model.Load(zip, out _);
        var a = ml.Data.CreateEnumerable<RegressionScore>(model.Transform(test), false).Select(r => r.Score).ToArray();
        var b = fresh.Data.CreateEnumerable<RegressionScore>(loaded.Transform(test), false).Select(r => r.Score).ToArray();
        Assert.That(b, Is.EqualTo(a));
    }

    [Test]
    public void Binary_ProducesScoreProbabilityAndPredictedLabel_ForTheCalibratedEvaluator()
    {
        var ml = new MLContext(seed: 3);
        var (train, test) = Load(ml, "binary");
        var pipeline = Features(ml).Append(ml.Transforms.CopyColumns("Label", nameof(TabularRow.Inside)))
            .Append(ml.BinaryClassification.Trainers.Backprop(new BackpropBinaryTrainer.Options { HiddenLayers = [32, 32], NumberOfEpochs = 40, BatchSize = 64, LearningRate = 3e-3, Dropout = 0 }));
        var model = pipeline.Fit(train);
        var scored = model.Transform(test);
        var metrics = ml.BinaryClassification.Evaluate(scored);
        TestContext.Out.WriteLine($"binary: accuracy {metrics.Accuracy:F4}, AUC {metrics.AreaUnderRocCurve:F4}, log-loss {metrics.LogLoss:F4}");
        Assert.That(metrics.Accuracy, Is.GreaterThan(0.95));
        Assert.That(metrics.AreaUnderRocCurve, Is.GreaterThan(0.98));
        Assert.That(metrics.LogLoss, Is.LessThan(0.2));
        var rows = ml.Data.CreateEnumerable<BinaryScore>(scored, false).ToList();
        foreach (var r in rows)
        {
            Assert.That(r.Probability, Is.EqualTo(1 / (1 + Math.Exp(-r.Score))).Within(1e-6));
            Assert.That(r.PredictedLabel, Is.EqualTo(r.Score > 0));
        }

        string zip = MLNetData.Scratch("binary.zip");
        ml.Model.Save(model, train.Schema, zip);
        var fresh = new MLContext();
        var loaded = fresh.Model.Load(zip, out _);
        var again = fresh.Data.CreateEnumerable<BinaryScore>(loaded.Transform(test), false).ToList();
        Assert.That(again.Select(r => (r.Score, r.Probability, r.PredictedLabel)), Is.EqualTo(rows.Select(r => (r.Score, r.Probability, r.PredictedLabel))));
    }
}
