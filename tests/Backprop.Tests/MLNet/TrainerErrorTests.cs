// Bad options, bad columns and damaged model zips: each refused with the value seen and what was expected.
using System.IO.Compression;
using Backprop.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;
using NUnit.Framework;

namespace Backprop.Tests.MLNet;

[TestFixture]
public class TrainerErrorTests
{
    private sealed class Row
    {
        [VectorType(3)] public float[] Features { get; set; } = [];
        public float Label { get; set; }
        public string Name { get; set; } = "";
    }

    private static IDataView Rows(MLContext ml, int n = 40) => ml.Data.LoadFromEnumerable(Enumerable.Range(0, n).Select(i => new Row
    {
        Features = [i % 3, i % 5 * 0.5f, i * 0.01f],
        Label = i % 2,
        Name = i % 2 == 0 ? "even" : "odd",
    }));

    private static void Refused<T>(Action act, params string[] parts) where T : Exception
    {
        var e = Assert.Throws<T>(act)!;
        foreach (var p in parts) Assert.That(e.Message, Does.Contain(p));
    }

    [Test]
    public void OutOfRangeOptions_AreRefusedWhenTheTrainerIsMade()
    {
        var t = new MLContext().MulticlassClassification.Trainers;
        Refused<ArgumentOutOfRangeException>(() => t.Backprop(new BackpropMulticlassTrainer.Options { HiddenLayers = [64, 0] }), "hidden layer 1 has 0 units");
        Refused<ArgumentOutOfRangeException>(() => t.Backprop(new BackpropMulticlassTrainer.Options { Dropout = 1 }), "dropout must be in [0, 1); got 1");
        Refused<ArgumentOutOfRangeException>(() => t.Backprop(new BackpropMulticlassTrainer.Options { Activation = "swish2" }), "unknown activation 'swish2'");
        Refused<ArgumentOutOfRangeException>(() => t.Backprop(new BackpropMulticlassTrainer.Options { NumberOfEpochs = 0 }), "got 0");
        Refused<ArgumentOutOfRangeException>(() => t.Backprop(new BackpropMulticlassTrainer.Options { BatchSize = -2 }), "got -2");
        Refused<ArgumentOutOfRangeException>(() => t.Backprop(new BackpropMulticlassTrainer.Options { NumberOfThreads = 0 }), "got 0");
        Refused<ArgumentOutOfRangeException>(() => t.Backprop(new BackpropMulticlassTrainer.Options { ValidationFraction = 1.5 }), "got 1.5");
        Refused<ArgumentOutOfRangeException>(() => t.Backprop(new BackpropMulticlassTrainer.Options { LearningRate = -1 }), "LearningRate must be a finite number >= 0; got -1");
        Refused<ArgumentException>(() => t.Backprop(new BackpropMulticlassTrainer.Options { FeatureColumnName = "" }), "feature column name is empty");
        Refused<ArgumentOutOfRangeException>(() => new MLContext().Regression.Trainers.Backprop(new BackpropRegressionTrainer.Options { Loss = (BackpropRegressionLoss)7 }), "unknown regression loss 7");
    }

    [Test]
    public void AFloatLabel_ForTheMulticlassTrainer_IsASchemaError()
    {
        var ml = new MLContext(1);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.Backprop(numberOfEpochs: 1).Fit(Rows(ml)))!;
        Assert.That(e.Message, Does.Contain("Label"));
    }

    [Test]
    public void EarlyStopping_WithNoValidationData_SaysWhatItNeeds()
    {
        var ml = new MLContext(1);
        var data = ml.Transforms.Conversion.MapValueToKey("Label", "Name").Fit(Rows(ml)).Transform(Rows(ml));
        var trainer = ml.MulticlassClassification.Trainers.Backprop(new BackpropMulticlassTrainer.Options { HiddenLayers = [4], NumberOfEpochs = 2, EarlyStoppingPatience = 2 });
        Refused<InvalidOperationException>(() => trainer.Fit(data), "early stopping (patience 2) needs a validation set");
    }

    [Test]
    public void RowsWithAMissingLabelOrANonFiniteFeature_AreLeftOutWithAWarning()
    {
        var ml = new MLContext(1);
        var warnings = new List<string>();
        ml.Log += (_, e) => { if (e.Message.Contains("left out", StringComparison.Ordinal)) lock (warnings) warnings.Add(e.Message); };
        var rows = Enumerable.Range(0, 40).Select(i => new Row { Features = [i % 3, i == 7 ? float.NaN : 1, 0], Label = i == 9 ? float.NaN : i % 2 }).ToList();
        var model = ml.Regression.Trainers.Backprop(new BackpropRegressionTrainer.Options { HiddenLayers = [4], NumberOfEpochs = 1 }).Fit(ml.Data.LoadFromEnumerable(rows));
        Assert.That(warnings, Has.Some.Contains("left out 1 training rows with a missing label and 1 with a NaN or infinite feature"));
        model.Model.Dispose();
    }

    [Test]
    public void ADamagedNetworkEntry_InTheModelZip_IsRefusedNamingTheEntry()
    {
        var ml = new MLContext(1);
        var data = Rows(ml);
        var model = ml.Regression.Trainers.Backprop(new BackpropRegressionTrainer.Options { HiddenLayers = [4], NumberOfEpochs = 1 }).Fit(data);
        string zip = MLNetData.Scratch("damaged.zip");
        ml.Model.Save(model, data.Schema, zip);
        using (var archive = ZipFile.Open(zip, ZipArchiveMode.Update))
        {
            var entry = archive.Entries.Single(e => e.FullName.EndsWith("Network.safetensors", StringComparison.Ordinal));
            string name = entry.FullName;
            entry.Delete();
            using var s = archive.CreateEntry(name).Open();
            s.Write([9, 0, 0, 0, 0, 0, 0, 0, (byte)'{']);
        }
        var e = Assert.Catch(() => new MLContext().Model.Load(zip, out _))!;
        var inner = e;
        while (inner.InnerException is not null && !inner.Message.Contains("Network.safetensors", StringComparison.Ordinal)) inner = inner.InnerException;
        Assert.That(inner.Message, Does.Contain("Network.safetensors in the model zip"));
        Assert.That(inner.Message, Does.Contain("header length 9 exceeds"));
    }
}
