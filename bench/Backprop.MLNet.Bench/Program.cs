// The ML.NET side-by-side benchmark: one Fashion-MNIST pipeline (LoadFromTextFile, Concatenate, NormalizeMinMax,
// MapValueToKey), then Backprop's multiclass trainer, ML.NET's SdcaMaximumEntropy and LightGbm fitted one after another
// in this process on the same featurized, cached rows; each evaluated by ML.NET's Evaluate on the test split, and its
// whole pipeline timed one row at a time through a PredictionEngine.
//   dotnet run -c Release --project bench/Backprop.MLNet.Bench -- [--train-rows 60000] [--test-rows 10000] [--epochs 15]
//     [--trainers backprop,sdca,lightgbm] [--lightgbm-iterations 100] [--latency-rows 2000] [--rounds 5]
//     [--data /usr/share/datasets/fashion-mnist] [--out artifacts/bench/mlnet]
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Backprop.MLNet;
using Backprop.MLNet.Bench;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Trainers.LightGbm;

BenchOptions o;
try { o = BenchOptions.Parse(args); }
catch (ArgumentException e)
{
    Console.Error.WriteLine($"Backprop.MLNet.Bench: {e.Message}");
    Console.Error.WriteLine(BenchOptions.Usage);
    return 2;
}

string trainCsv, testCsv;
try
{
    Directory.CreateDirectory(o.Out);
    (trainCsv, testCsv) = FashionCsv.Write(o.Data, Path.Combine(o.Out, $"csv-{o.TrainRows}-{o.TestRows}"), o.TrainRows, o.TestRows);
}
catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
{
    Console.Error.WriteLine($"Backprop.MLNet.Bench: {e.Message}");
    return 2;
}

string cpu = Cpu();
Console.WriteLine($"{cpu}, {Environment.ProcessorCount} logical cores; {o.TrainRows} training rows, {o.TestRows} test rows; every trainer uses all cores.");

var ml = new MLContext(seed: 1);
var train = ml.Data.LoadFromTextFile<FashionRow>(trainCsv, separatorChar: ',', hasHeader: true);
var test = ml.Data.LoadFromTextFile<FashionRow>(testCsv, separatorChar: ',', hasHeader: true);
var featurize = ml.Transforms.Concatenate("Features", nameof(FashionRow.Pixels))
    .Append(ml.Transforms.NormalizeMinMax("Features"))
    .Append(ml.Transforms.Conversion.MapValueToKey("Label"));

// The shared part is fitted and its output cached once, outside every trainer's time: each trainer is timed on the same rows in memory.
var clock = Stopwatch.StartNew();
var features = featurize.Fit(train);
var trainRows = ml.Data.Cache(features.Transform(train));
var testRows = ml.Data.Cache(features.Transform(test));
long cached = Count(trainRows) + Count(testRows);
Console.WriteLine($"Read, featurized and cached {cached} rows in {clock.Elapsed.TotalSeconds:F1} s.");

var candidates = new Dictionary<string, (string Options, Func<IEstimator<ITransformer>> Make)>
{
    ["backprop"] = ($"defaults: 784-512-256-10 relu, dropout 0.2, Adam 1e-3 cosine, batch 128, {o.Epochs} epochs",
        () => ml.MulticlassClassification.Trainers.Backprop(new BackpropMulticlassTrainer.Options { NumberOfEpochs = o.Epochs })),
    ["sdca"] = ("SdcaMaximumEntropy, defaults", () => ml.MulticlassClassification.Trainers.SdcaMaximumEntropy()),
    ["lightgbm"] = ($"LightGbm, defaults ({o.LightGbmIterations} boosting rounds)",
        () => ml.MulticlassClassification.Trainers.LightGbm(new LightGbmMulticlassTrainer.Options { NumberOfIterations = o.LightGbmIterations })),
};

// The rows the latencies are timed on, read once: as the CSV gives them (the PredictionEngine's input) and featurized (the network's).
var rows = ml.Data.CreateEnumerable<FashionRow>(test, reuseRowObject: false).Take(o.LatencyRows).ToArray();
var featurized = ml.Data.CreateEnumerable<FeatureRow>(testRows, reuseRowObject: false).Take(o.LatencyRows).Select(r => r.Features).ToArray();

var results = new List<Result>();
foreach (string name in o.Trainers)
{
    var (description, make) = candidates[name];
    Console.WriteLine($"Fitting {name} ({description}) ...");
    var trainer = make();
    clock.Restart();
    var model = trainer.Fit(trainRows);
    double seconds = clock.Elapsed.TotalSeconds;
    var m = ml.MulticlassClassification.Evaluate(model.Transform(testRows));

    // One row at a time through the whole pipeline, CSV row in, label out, as an application serves it.
    var pipeline = features.Append(model);
    using var engine = ml.Model.CreatePredictionEngine<FashionRow, Prediction>(pipeline);
    var output = new Prediction();
    for (int i = 0; i < Math.Min(rows.Length, 200); i++) engine.Predict(rows[i], ref output); // warm-up
    var perRow = new double[o.Rounds];
    long allocated = 0;
    for (int r = 0; r < o.Rounds; r++)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        long start = Stopwatch.GetTimestamp();
        foreach (var row in rows) engine.Predict(row, ref output);
        perRow[r] = Stopwatch.GetElapsedTime(start).TotalMicroseconds / rows.Length;
        allocated = (GC.GetAllocatedBytesForCurrentThread() - before) / rows.Length;
    }
    Array.Sort(perRow);
    // Backprop's network alone on the same rows, featurized: what of the PredictionEngine's time is the network's.
    double? network = model is MulticlassPredictionTransformer<BackpropMulticlassModelParameters> backprop
        ? NetworkMicroseconds(backprop.Model.Network, featurized, o.Rounds)
        : null;
    var result = new Result(name, description, seconds, m.MicroAccuracy, m.MacroAccuracy, m.LogLoss,
        perRow[perRow.Length / 2], perRow[0], perRow[^1], allocated, network);
    results.Add(result);
    Console.WriteLine(FormattableString.Invariant(
        $"  {seconds:F1} s, accuracy {m.MicroAccuracy:F4}, log-loss {m.LogLoss:F4}, predict {result.PredictMicroseconds:F1} us/row ({allocated} B/row)") +
        (network is { } n ? FormattableString.Invariant($"; the network alone {n:F1} us/row") : ""));
}

double? reference = results.FirstOrDefault(r => r.Trainer == "backprop")?.TrainSeconds;
var table = new StringBuilder();
table.AppendLine(CultureInfo.InvariantCulture, $"Fashion-MNIST through one ML.NET pipeline, {o.TrainRows} training / {o.TestRows} test rows; {cpu}, {Environment.ProcessorCount} cores");
table.AppendLine();
table.AppendLine("| trainer | options | train s | train time / Backprop's | accuracy | macro accuracy | log-loss | PredictionEngine us/row (median, min..max) | B/row | the network alone, us/row |");
table.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
foreach (var r in results)
    table.AppendLine(CultureInfo.InvariantCulture,
        $"| {r.Trainer} | {r.Options} | {r.TrainSeconds:F1} | {(reference is { } b ? (r.TrainSeconds / b).ToString("F2", CultureInfo.InvariantCulture) : "-")} | {r.MicroAccuracy:F4} | {r.MacroAccuracy:F4} | {r.LogLoss:F4} | {r.PredictMicroseconds:F1} ({r.PredictMin:F1}..{r.PredictMax:F1}) | {r.AllocatedBytesPerRow} | {(r.NetworkMicroseconds is { } n ? n.ToString("F1", CultureInfo.InvariantCulture) : "-")} |");
Console.WriteLine();
Console.Write(table);
File.WriteAllText(Path.Combine(o.Out, "mlnet.md"), table.ToString());
File.WriteAllText(Path.Combine(o.Out, "mlnet.json"), JsonSerializer.Serialize(
    new { cpu, cores = Environment.ProcessorCount, trainRows = o.TrainRows, testRows = o.TestRows, results },
    new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase }));
Console.WriteLine($"Wrote {Path.Combine(o.Out, "mlnet.md")} and mlnet.json.");
return 0;

// The CPU as /proc/cpuinfo names it, with family and model (a virtual machine's name can be as bare as "AMD EPYC") and its widest vector ISA.
static string Cpu()
{
    if (!File.Exists("/proc/cpuinfo")) return "unknown CPU";
    var fields = File.ReadLines("/proc/cpuinfo").TakeWhile(l => l.Length > 0).Select(l => l.Split(':', 2)).Where(p => p.Length == 2)
        .GroupBy(p => p[0].Trim()).ToDictionary(g => g.Key, g => g.First()[1].Trim());
    string Field(string key) => fields.TryGetValue(key, out var v) ? v : "?";
    string isa = System.Runtime.Intrinsics.X86.Avx512F.IsSupported ? "AVX-512" : System.Runtime.Intrinsics.X86.Avx2.IsSupported ? "AVX2" : "no AVX2";
    return $"{Field("model name")} (family {Field("cpu family")}, model {Field("model")}, {isa})";
}

static double NetworkMicroseconds(Backprop.Engine.Model network, float[][] rows, int rounds)
{
    var y = new float[network.Spec.OutputWidth];
    foreach (var x in rows.Take(200)) network.Predict(x, y);
    var perRow = new double[rounds];
    for (int r = 0; r < rounds; r++)
    {
        long start = Stopwatch.GetTimestamp();
        foreach (var x in rows) network.Predict(x, y);
        perRow[r] = Stopwatch.GetElapsedTime(start).TotalMicroseconds / rows.Length;
    }
    Array.Sort(perRow);
    return perRow[rounds / 2];
}

static long Count(IDataView data)
{
    long n = 0;
    using var cursor = data.GetRowCursor(data.Schema);
    while (cursor.MoveNext()) n++;
    return n;
}

internal sealed record Result(string Trainer, string Options, double TrainSeconds, double MicroAccuracy, double MacroAccuracy, double LogLoss,
    double PredictMicroseconds, double PredictMin, double PredictMax, long AllocatedBytesPerRow, double? NetworkMicroseconds);

internal sealed class FeatureRow
{
    [VectorType(784)] public float[] Features { get; set; } = [];
}

internal sealed class Prediction
{
    public uint PredictedLabel { get; set; }
    public float[] Score { get; set; } = [];
}

internal sealed record BenchOptions(int TrainRows, int TestRows, int Epochs, string[] Trainers, int LightGbmIterations, int LatencyRows, int Rounds, string Data, string Out)
{
    public const string Usage = "usage: Backprop.MLNet.Bench [--train-rows N (60000)] [--test-rows N (10000)] [--epochs N (15)] [--trainers backprop,sdca,lightgbm] " +
        "[--lightgbm-iterations N (100)] [--latency-rows N (2000)] [--rounds N (5)] [--data FOLDER] [--out FOLDER (artifacts/bench/mlnet)]";

    private static readonly string[] Known = ["backprop", "sdca", "lightgbm"];

    public static BenchOptions Parse(string[] args)
    {
        var o = new BenchOptions(60000, 10000, 15, Known, 100, 2000, 5, FashionCsv.DefaultFolder, Path.Combine("artifacts", "bench", "mlnet"));
        for (int i = 0; i < args.Length; i++)
        {
            string flag = args[i];
            if (i + 1 >= args.Length) throw new ArgumentException($"{flag} needs a value.");
            string value = args[++i];
            int Positive(int max)
            {
                if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int n) || n < 1 || n > max)
                    throw new ArgumentException($"{flag} takes a whole number in [1, {max}]; got '{value}'.");
                return n;
            }
            o = flag switch
            {
                "--train-rows" => o with { TrainRows = Positive(60000) },
                "--test-rows" => o with { TestRows = Positive(10000) },
                "--epochs" => o with { Epochs = Positive(1000) },
                "--lightgbm-iterations" => o with { LightGbmIterations = Positive(100000) },
                "--latency-rows" => o with { LatencyRows = Positive(10000) },
                "--rounds" => o with { Rounds = Positive(100) },
                "--data" => o with { Data = value },
                "--out" => o with { Out = value },
                "--trainers" => o with { Trainers = ParseTrainers(value) },
                _ => throw new ArgumentException($"unknown option '{flag}'."),
            };
        }
        return o;
    }

    private static string[] ParseTrainers(string value)
    {
        var names = value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(s => s.ToLowerInvariant()).ToArray();
        foreach (string n in names)
            if (!Known.Contains(n)) throw new ArgumentException($"--trainers: unknown trainer '{n}'; expected some of {string.Join(", ", Known)}.");
        if (names.Length == 0) throw new ArgumentException($"--trainers: no trainer named in '{value}'; expected some of {string.Join(", ", Known)}.");
        return names.Distinct().ToArray();
    }
}
