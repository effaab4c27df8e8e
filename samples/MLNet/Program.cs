// Sample: a Backprop network at the end of an ML.NET pipeline. Usage: MLNet <train.csv> <test.csv> [epochs]
// (CSV in Kaggle's Fashion-MNIST layout: label,pixel1..pixel784, with a header row).
using Backprop.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;

if (args.Length is < 2 or > 3) { Console.Error.WriteLine("usage: MLNet <train.csv> <test.csv> [epochs]"); return 2; }
var ml = new MLContext(seed: 1);
var train = ml.Data.LoadFromTextFile<Row>(args[0], separatorChar: ',', hasHeader: true);
var test = ml.Data.LoadFromTextFile<Row>(args[1], separatorChar: ',', hasHeader: true);

var pipeline = ml.Transforms.Concatenate("Features", nameof(Row.Pixels))
    .Append(ml.Transforms.NormalizeMinMax("Features"))
    .Append(ml.Transforms.Conversion.MapValueToKey("Label"))
    .Append(ml.MulticlassClassification.Trainers.Backprop(new BackpropMulticlassTrainer.Options
    {
        HiddenLayers = [512, 256], NumberOfEpochs = args.Length > 2 ? int.Parse(args[2]) : 15,
    }))
    .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"));
var model = pipeline.Fit(train);
var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
Console.WriteLine($"test accuracy {metrics.MicroAccuracy:F4}, log-loss {metrics.LogLoss:F4}");

ml.Model.Save(model, train.Schema, "fashion-model.zip");
var loaded = new MLContext().Model.Load("fashion-model.zip", out _);
var engine = ml.Model.CreatePredictionEngine<Row, Prediction>(loaded);
var first = ml.Data.CreateEnumerable<Row>(test, reuseRowObject: false).First();
Console.WriteLine($"first test image: label {first.Label}, predicted {engine.Predict(first).PredictedLabel}");
return 0;

public sealed class Row
{
    [LoadColumn(0)] public float Label { get; set; }
    [LoadColumn(1, 784), VectorType(784)] public float[] Pixels { get; set; } = [];
}
public sealed class Prediction { public float PredictedLabel { get; set; } }
