// `predict`, `evaluate`, `export` and `train --init-from` on a small IDX dataset trained here: results equal
// the engine's own on the inputs scaled as the file records, every data format and layout reads, the
// preprocessing and dtype travel with the files, and every bad input exits 2 with one line naming it.
using System.Globalization;
using System.Text.Json;
using Backprop.Cli;
using Backprop.Engine;
using Backprop.Engine.Checkpoints;
using Backprop.Engine.Data;
using Backprop.Kernels.Cpu;
using Backprop.Tests.Data;
using NUnit.Framework;
using static Backprop.Tests.Cli.InProcessCli;

namespace Backprop.Tests.Cli;

[TestFixture]
[NonParallelizable]
public class PredictEvaluateTests
{
    private string _dir = "", _run = "", _model = "", _npy = "", _csv = "";

    [OneTimeSetUp]
    public void TrainOnce()
    {
        _dir = Path.Combine(Path.GetTempPath(), "backprop-predict-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
        // 3 classes of 4x4 byte images: class c lights up row c.
        void Make(string prefix, int n, int seed)
        {
            var r = new Random(seed);
            var px = new byte[n * 16];
            var lab = new byte[n];
            for (int i = 0; i < n; i++)
            {
                lab[i] = (byte)(i % 3);
                for (int j = 0; j < 16; j++) px[i * 16 + j] = (byte)(j / 4 == i % 3 ? 150 + r.Next(100) : r.Next(120));
            }
            File.WriteAllBytes(Path.Combine(_dir, $"{prefix}-images-idx3-ubyte"), IdxTests.Encode([n, 4, 4], px));
            File.WriteAllBytes(Path.Combine(_dir, $"{prefix}-labels-idx1-ubyte"), IdxTests.Encode([n], lab));
        }
        Make("train", 300, 1);
        Make("t10k", 90, 2);
        _run = Path.Combine(_dir, "run");
        var (code, o, e) = Run("train", "--data", _dir, "--layers", "12", "--epochs", "2", "--batch", "32", "--threads", "1", "--output", _run, "--checkpoint-every", "5");
        Assert.That(code, Is.EqualTo(0), o + e);
        _model = Path.Combine(_run, "model.safetensors");
        // The same test images as .npy (raw bytes as float32) and CSV.
        var test = Idx.ReadPair(Path.Combine(_dir, "t10k-images-idx3-ubyte"), Path.Combine(_dir, "t10k-labels-idx1-ubyte"));
        _npy = Path.Combine(_dir, "npy");
        Directory.CreateDirectory(_npy);
        Npy.WriteFloat32(Path.Combine(_npy, "test_x.npy"), test.Features, test.Count, 16);
        Npy.WriteFloat32(Path.Combine(_npy, "test_y.npy"), Array.ConvertAll(test.Labels!, v => (float)v), test.Count);
        _csv = Path.Combine(_dir, "csv");
        Directory.CreateDirectory(_csv);
        File.WriteAllLines(Path.Combine(_csv, "test.csv"), Enumerable.Range(0, test.Count).Select(i =>
            string.Join(",", test.Features.AsSpan(i * 16, 16).ToArray().Select(v => v.ToString(CultureInfo.InvariantCulture))) + "," + test.Labels![i]));
        File.WriteAllLines(Path.Combine(_csv, "unlabelled.csv"), Enumerable.Range(0, test.Count).Select(i =>
            string.Join(",", test.Features.AsSpan(i * 16, 16).ToArray().Select(v => v.ToString(CultureInfo.InvariantCulture)))));
    }

    [OneTimeTearDown]
    public void Clean() => Directory.Delete(_dir, true);


    // The engine's outputs for the test images scaled x/255, and their softmax, as the predict rows are.
    private float[] Expected(string model)
    {
        var info = ModelFile.Read(model);
        using var m = new Model(info.Spec, new TrainingOptions { MaxBatch = 256, Threads = 1 }); // as the commands build it
        Checkpoint.LoadWeights(m, info);
        var test = Idx.ReadPair(Path.Combine(_dir, "t10k-images-idx3-ubyte"), Path.Combine(_dir, "t10k-labels-idx1-ubyte"));
        test.Normalize(Normalization.Scale01);
        var z = new float[test.Count * 3];
        m.Predict(test.Features, z);
        return z;
    }

    [Test]
    public void Predict_EveryLayoutAndFormat_GivesTheEnginesPredictions()
    {
        Assert.That(ModelFile.Read(_model).Preprocessing, Is.EqualTo(new Preprocessing(Normalization.Scale01)), "train records the scaling in model.safetensors");
        var z = Expected(_model);
        string[][] inputs =
        [
            ["--data", _dir],                                                      // the IDX folder's test split
            ["--data", Path.Combine(_dir, "t10k-images-idx3-ubyte")],              // one IDX file, no labels
            ["--data", _npy, "--format", "npy"],                                   // the .npy folder
            ["--data", Path.Combine(_npy, "test_x.npy")],                          // one .npy file
            ["--data", Path.Combine(_csv, "test.csv")],                            // a CSV with its label column
            ["--data", Path.Combine(_csv, "unlabelled.csv")],                      // a CSV of features alone
        ];
        foreach (var data in inputs)
        {
            var (code, csv, err) = Run(["predict", "--model", _model, "--threads", "1", .. data]);
            Assert.That(code, Is.EqualTo(0), err);
            var lines = csv.TrimEnd().Split('\n');
            Assert.That(lines[0], Is.EqualTo("class,p0,p1,p2"), string.Join(" ", data));
            Assert.That(lines, Has.Length.EqualTo(91));
            for (int i = 0; i < 90; i++)
            {
                var row = lines[i + 1].Split(',').Select(s => double.Parse(s, CultureInfo.InvariantCulture)).ToArray();
                var zi = z.AsSpan(i * 3, 3).ToArray();
                int best = Array.IndexOf(zi, zi.Max());
                Assert.That(row[0], Is.EqualTo(best), $"{string.Join(" ", data)}: sample {i} class");
                double sum = zi.Sum(v => Math.Exp(v - zi.Max()));
                for (int c = 0; c < 3; c++) Assert.That(row[1 + c], Is.EqualTo(Math.Exp(zi[c] - zi.Max()) / sum).Within(1e-6), $"sample {i} p{c}"); // float32 rounding of the logits
            }
        }
        // --output .npy: float32 [n, 1 + classes]; the checkpoint predicts what the final weights of the run do.
        var (code2, _, err2) = Run("predict", "--model", Path.Combine(_run, "checkpoint.safetensors"), "--output", Path.Combine(_dir, "p.npy"), "--data", _dir);
        Assert.That(code2, Is.EqualTo(0), err2);
        var p = Npy.Read(Path.Combine(_dir, "p.npy"));
        Assert.That((p.Descr, p.Shape), Is.EqualTo(("<f4", new[] { 90, 4 })));
    }

    [Test]
    public void Evaluate_PrintsLossAccuracyAndConfusion_AsTheEngineComputesThem()
    {
        var info = ModelFile.Read(_model);
        using var m = new Model(info.Spec, new TrainingOptions { MaxBatch = 256, Threads = 1 });
        Checkpoint.LoadWeights(m, info);
        var test = Idx.ReadPair(Path.Combine(_dir, "t10k-images-idx3-ubyte"), Path.Combine(_dir, "t10k-labels-idx1-ubyte"));
        test.Normalize(Normalization.Scale01);
        var expected = m.Evaluate(test.Features, test.Labels!);
        string json = Path.Combine(_dir, "r.json");
        var (code, output, err) = Run("evaluate", "--model", _model, "--data", _npy, "--format", "npy", "--output", json, "--threads", "1");
        Assert.That(code, Is.EqualTo(0), err);
        Assert.That(output, Does.Contain(FormattableString.Invariant($"accuracy {expected.Accuracy:F4}")).And.Contain("confusion (rows: true class, columns: predicted):")
            .And.Contain("inputs: scale (x/255)"));
        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        Assert.That(doc.RootElement.GetProperty("accuracy").GetDouble(), Is.EqualTo(expected.Accuracy));
        Assert.That(doc.RootElement.GetProperty("loss").GetDouble(), Is.EqualTo(expected.Loss));
        Assert.That(doc.RootElement.GetProperty("samples").GetInt32(), Is.EqualTo(90));
        var rows = doc.RootElement.GetProperty("confusion").EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetInt64()).ToArray()).ToArray();
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) Assert.That(rows[i][j], Is.EqualTo(expected.Confusion![i, j]));
        // The training split of the folder, and the CSV with its labels, evaluate too.
        Assert.That(Run("evaluate", "--model", _model, "--data", _dir, "--split", "train").Out, Does.Contain("samples 300"));
        Assert.That(Run("evaluate", "--model", _model, "--data", Path.Combine(_csv, "test.csv")).Out, Does.Contain(FormattableString.Invariant($"accuracy {expected.Accuracy:F4}")));
    }

    [Test]
    public void ExportToSafetensors_InBf16_KeepsTheModelAndItsPreprocessing()
    {
        string bf16 = Path.Combine(_dir, "m-bf16.safetensors");
        var (code, output, err) = Run("export", "--from", _model, "--safetensors", bf16, "--dtype", "bf16");
        Assert.That(code, Is.EqualTo(0), err);
        Assert.That(output, Does.Contain("BF16, inputs: scale (x/255)"));
        var f = SafeTensorsFile.Read(bf16);
        Assert.That(f.Tensors.Values.Select(t => t.Dtype).Distinct(), Is.EqualTo(new[] { "BF16" }));
        var info = ModelFile.Read(bf16);
        Assert.That(info.Preprocessing, Is.EqualTo(new Preprocessing(Normalization.Scale01)));
        Assert.That(Checkpoints.ModelFileTests.Same(info.Spec, ModelFile.Read(_model).Spec), Is.True);
        (code, output, err) = Run("evaluate", "--model", bf16, "--data", _dir);
        Assert.That(code, Is.EqualTo(0), err);
        Assert.That(output, Does.Contain("samples 90"));
    }

    private static IEnumerable<TestCaseData> BadInput()
    {
        TestCaseData C(string why, string[] args, string message) => new TestCaseData(args, message).SetArgDisplayNames(why);
        yield return C("no model file", ["predict", "--model", "/no/such.safetensors"], "--model '/no/such.safetensors' does not exist");
        yield return C("model is a folder", ["predict", "--model", "{dir}"], "is a folder; expected a .safetensors file");
        yield return C("not safetensors", ["evaluate", "--model", "{dir}/t10k-labels-idx1-ubyte"], "safetensors file '");
        yield return C("activation for our file", ["predict", "--model", "{model}", "--activation", "relu"], "--activation is for plain PyTorch state_dict files");
        yield return C("loss for our file", ["predict", "--model", "{model}", "--loss", "mse"], "--loss is for plain PyTorch state_dict files");
        yield return C("normalize contradicts", ["predict", "--model", "{model}", "--data", "{dir}", "--normalize", "none"],
            "--normalize none contradicts --model '{model}', whose model was trained with scale (x/255)");
        yield return C("wrong width", ["predict", "--model", "{model}"], "the data has 784 features per sample; the model takes 16");
        yield return C("evaluate without labels", ["evaluate", "--model", "{model}", "--data", "{dir}/t10k-images-idx3-ubyte"], "has no labels to evaluate against; give them with --labels FILE");
        yield return C("labels with a folder", ["predict", "--model", "{model}", "--data", "{dir}", "--labels", "{dir}/t10k-labels-idx1-ubyte"], "--labels is for a --data file");
        yield return C("no such data", ["predict", "--model", "{model}", "--data", "/no/data"], "--data '/no/data' does not exist");
        yield return C("bad split", ["predict", "--model", "{model}", "--data", "{dir}", "--split", "dev"], "--split must be test or train; got 'dev'");
        yield return C("output extension", ["predict", "--model", "{model}", "--data", "{dir}", "--output", "{dir}/p.txt"], "must end in .csv or .npy");
        yield return C("output over the data", ["predict", "--model", "{model}", "--data", "{dir}/csv/test.csv", "--output", "{dir}/csv/test.csv"], "is the input '{dir}/csv/test.csv'; writing there would destroy it");
        yield return C("output not json", ["evaluate", "--model", "{model}", "--data", "{dir}", "--output", "{model}"], "must end in .json");
        yield return C("output folder missing", ["predict", "--model", "{model}", "--data", "{dir}", "--output", "/no/folder/p.csv"], "the folder '/no/folder' does not exist");
        yield return C("export to both", ["export", "--from", "{model}", "--onnx", "{dir}/a.onnx", "--safetensors", "{dir}/a.safetensors"], "give one of --onnx FILE and --safetensors FILE");
        yield return C("export to neither", ["export", "--from", "{model}"], "give one of --onnx FILE and --safetensors FILE");
        yield return C("dtype for onnx", ["export", "--from", "{model}", "--onnx", "{dir}/a.onnx", "--dtype", "bf16"], "--dtype applies to --safetensors");
        yield return C("softmax for weights", ["export", "--from", "{model}", "--safetensors", "{dir}/a.safetensors", "--softmax"], "--softmax applies to --onnx");
        yield return C("bad dtype", ["export", "--from", "{model}", "--safetensors", "{dir}/a.safetensors", "--dtype", "f8"], "--dtype must be f32, bf16 or f16; got 'f8'");
        yield return C("export over a data file", ["export", "--from", "{model}", "--safetensors", "{dir}/t10k-labels-idx1-ubyte"], "exists and is not a safetensors file; refusing to replace it");
        yield return C("init-from with layers", ["train", "--init-from", "{model}", "--layers", "8", "--data", "{dir}"], "--layers cannot be given with --init-from");
        yield return C("init-from our file with dropout", ["train", "--init-from", "{model}", "--dropout", "0.1", "--data", "{dir}"], "--dropout cannot be given with --init-from");
        yield return C("init-from our file with activation", ["train", "--init-from", "{model}", "--activation", "tanh", "--data", "{dir}"], "--activation cannot be given with --init-from");
        yield return C("init-from with init", ["train", "--init-from", "{model}", "--init", "he_normal", "--data", "{dir}"], "--init cannot be given with --init-from");
        yield return C("init-from on other data", ["train", "--init-from", "{model}"], "takes 16 features per sample but the data has 784");
        yield return C("init-from normalize contradicts", ["train", "--init-from", "{model}", "--data", "{dir}", "--normalize", "standardize"], "contradicts --init-from");
        yield return C("dtype", ["train", "--data", "{dir}", "--dtype", "f64"], "--dtype must be f32, bf16 or f16; got 'f64'");
    }

    [TestCaseSource(nameof(BadInput))]
    public void BadInput_ExitsWith2_AndOneLineNamingIt(string[] args, string message)
    {
        string Sub(string s) => s.Replace("{dir}", _dir).Replace("{model}", _model);
        var (code, _, err) = Run(args.Select(Sub).ToArray());
        Assert.That(code, Is.EqualTo(2), err);
        Assert.That(err, Does.Contain(Sub(message)));
        Assert.That(err.Trim().Split('\n'), Has.Length.EqualTo(1), err);
    }

    [Test]
    public void PredictOutput_OverAFileTheDataFolderHolds_IsRefused_AndTheFileKept()
    {
        // The CSV folder's test.csv, the .npy folder's test_x.npy, and the same reached through a link to the folder.
        string link = Path.Combine(_dir, "csv-link");
        Directory.CreateSymbolicLink(link, _csv);
        foreach (var (data, format, victim) in new[]
        {
            (_csv, "csv", Path.Combine(_csv, "test.csv")),
            (_npy, "npy", Path.Combine(_npy, "test_x.npy")),
            (link, "csv", Path.Combine(_csv, "test.csv")),
            (_csv, "csv", Path.Combine(link, "test.csv")),
        })
        {
            var before = File.ReadAllBytes(victim);
            var (code, _, err) = Run("predict", "--model", _model, "--data", data, "--format", format, "--output", victim);
            Assert.That(code, Is.EqualTo(2), $"{data} -> {victim}: {err}");
            Assert.That(err, Does.Contain("writing there would destroy it"));
            Assert.That(File.ReadAllBytes(victim), Is.EqualTo(before), victim);
        }
        // Next to the data is fine.
        var (ok, _, e2) = Run("predict", "--model", _model, "--data", _csv, "--format", "csv", "--output", Path.Combine(_csv, "predictions.csv"));
        Assert.That(ok, Is.EqualTo(0), e2);
    }

    [Test]
    [NonParallelizable] // sets an environment variable of the process
    public void MalformedBlockOverride_ExitsWith2_AndOneLine()
    {
        string? old = Environment.GetEnvironmentVariable(GemmBlocking.OverrideVariable);
        try
        {
            foreach (var bad in new[] { "abc", "0,5000,0" })
            {
                Environment.SetEnvironmentVariable(GemmBlocking.OverrideVariable, bad);
                var (code, _, err) = Run("info");
                Assert.That(code, Is.EqualTo(2), err);
                Assert.That(err, Does.Contain($"BACKPROP_GEMM_BLOCKS='{bad}'").And.Contain("MC,KC,NC"));
                Assert.That(err.Trim().Split('\n'), Has.Length.EqualTo(1), err);
            }
        }
        finally
        {
            Environment.SetEnvironmentVariable(GemmBlocking.OverrideVariable, old);
        }
    }

    [Test]
    public void StateDictWithoutItsActivation_OrWithDropoutWhereItHasNone_IsRefused()
    {
        // The run's weights without backprop's metadata: a plain state_dict; train's default dropout (0.2) put a Dropout module
        // after the ReLU, so the second Linear is module 3.
        var f = SafeTensorsFile.Read(_model);
        string sd = Path.Combine(_dir, "sd.safetensors");
        SafeTensorsWriter.Write(sd, f.Tensors.Keys.Select(k => (k, f.Tensors[k].Shape, f.ReadFloat(k))).ToList());
        Assert.That(f.Tensors.Keys, Does.Contain("3.weight"));
        var (code, _, err) = Run("predict", "--model", sd, "--data", _dir);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(err, Does.Contain("modules 1 and 2 between Linear 0 and Linear 3 hold no parameters (an activation, then a Dropout), but layer 0's activation is given as identity"));
        (code, var csv, err) = Run("predict", "--model", sd, "--data", _dir, "--activation", "relu", "--normalize", "scale");
        Assert.That(code, Is.EqualTo(0), err);
        Assert.That(csv, Is.EqualTo(Run("predict", "--model", _model, "--data", _dir).Out), "the state_dict predicts as the weights file");
        (code, _, err) = Run("predict", "--model", sd, "--data", _dir, "--activation", "relu", "--normalize", "standardize");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(err, Does.Contain("--normalize standardize needs the training set's statistics"));
        // Fine-tuning it: the Dropout module gets --dropout; the model keeps its state_dict names.
        string tuned = Path.Combine(_dir, "tuned");
        (code, var output, err) = Run("train", "--init-from", sd, "--activation", "relu", "--dropout", "0.1", "--data", _dir, "--epochs", "1", "--batch", "32",
            "--threads", "1", "--output", tuned, "--dtype", "f16");
        Assert.That(code, Is.EqualTo(0), err);
        Assert.That(output, Does.Contain("model: 16-12 ReLU dropout 0.1-3"));
        var t = SafeTensorsFile.Read(Path.Combine(tuned, "model.safetensors"));
        Assert.That(t.Tensors.Keys.Order(), Is.EqualTo(f.Tensors.Keys.Order()));
        Assert.That(t.Tensors["0.weight"].Dtype, Is.EqualTo("F16"));
        Assert.That(ModelFile.Read(Path.Combine(tuned, "model.safetensors")).Preprocessing, Is.EqualTo(new Preprocessing(Normalization.Scale01)), "train's --normalize default");
        // A state_dict of consecutive Linears has no Dropout module for --dropout.
        string plain = Path.Combine(_dir, "plain.safetensors");
        SafeTensorsWriter.Write(plain, [("0.weight", [12, 16], TestData.Floats(12 * 16, 1)), ("0.bias", [12], new float[12]), ("1.weight", [3, 12], TestData.Floats(36, 2)), ("1.bias", [3], new float[3])]);
        (code, _, err) = Run("train", "--init-from", plain, "--dropout", "0.3", "--data", _dir, "--epochs", "1");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(err, Does.Contain("has no Dropout modules"));
        // Its init-from file inside the run's own output folder would be overwritten by the run.
        (code, _, err) = Run("train", "--init-from", _model, "--data", _dir, "--output", _run, "--overwrite");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(err, Does.Contain("is in the --output folder"));
    }
}
