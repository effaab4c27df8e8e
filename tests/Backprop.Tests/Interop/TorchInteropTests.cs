// Interop proven against real PyTorch 1.13 and ONNX 1.12 (tests/python/interop.py, run as a PyTorch user
// would, with the README's snippet): our weights files load into torch strictly and give our predictions
// for every activation, with and without dropout, a one-unit regression head, standardized inputs and BF16
// weights; every ONNX export passes onnx.checker (full check) and strict shape inference and ONNX Runtime
// gives torch's outputs on raw inputs; a torch-made nn.Sequential goes through predict, evaluate, export
// and train --init-from; a checkpoint continued one step in torch.optim equals one step here; torch
// reproduces `evaluate`'s accuracy and confusion matrix on Fashion-MNIST exactly.
using System.Text.Json;
using Backprop.Cli;
using Backprop.Engine;
using Backprop.Engine.Checkpoints;
using Backprop.Engine.Data;
using Backprop.Engine.Export;
using Backprop.Engine.Training;
using Backprop.Kernels;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using NUnit.Framework;
using static Backprop.Tests.Cli.InProcessCli;

namespace Backprop.Tests.Interop;

[TestFixture]
[NonParallelizable]
public class TorchInteropTests
{
    private const int Width = 12, Samples = 37;
    private string _dir = "";

    [OneTimeSetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), $"backprop-torch-{Environment.ProcessId}");
        Directory.CreateDirectory(_dir);
    }

    [OneTimeTearDown]
    public void TearDown()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private string P(string name) => Path.Combine(_dir, name);


    private static float[] ReadNpy(string path) => Array.ConvertAll(Npy.Read(path).Data, v => (float)v);

    private static void AssertClose(float[] ours, float[] torch, double tol, string what)
    {
        Assert.That(ours, Has.Length.EqualTo(torch.Length), what);
        for (int i = 0; i < ours.Length; i++)
            Assert.That(Math.Abs(ours[i] - torch[i]), Is.LessThanOrEqualTo(tol * Math.Max(1, Math.Abs(torch[i]))),
                $"{what}: element {i}: ours {ours[i]:R}, torch {torch[i]:R}");
    }

    private static int[] Argmax(float[] rows, int width) =>
        Enumerable.Range(0, rows.Length / width).Select(r =>
        {
            int best = 0;
            for (int c = 1; c < width; c++) if (rows[r * width + c] > rows[r * width + best]) best = c;
            return best;
        }).ToArray();

    // One case of "our weights into torch": a trained model, how its inputs are scaled, the dtype of its file.
    private sealed record Case(string Name, ModelSpec Spec, Preprocessing Pre, TensorDtype Dtype = TensorDtype.F32);

    private static IEnumerable<Case> Cases()
    {
        string[] acts = ["relu", "leaky_relu:0.2", "elu:0.7", "tanh", "sigmoid", "gelu", "gelu_tanh", "silu"];
        foreach (var a in acts)
            foreach (double drop in new[] { 0.0, 0.3 })
            {
                var net = new Sequential(Width).Dense(16, a);
                if (drop > 0) net.Dropout(drop);
                net.Dense(9, a);
                if (drop > 0) net.Dropout(drop);
                yield return new Case($"{a}{(drop > 0 ? "+dropout" : "")}", net.Dense(5).ToSpec(LossKind.CrossEntropy), new Preprocessing(Normalization.Scale01));
            }
        yield return new Case("regression-head", new Sequential(Width).Dense(16, "tanh").Dense(1).ToSpec(LossKind.Mse), new Preprocessing(Normalization.None));
        var mean = TestData.Floats(Width, 7, -3, 3);
        var std = TestData.Floats(Width, 8, 0.5f, 4f);
        yield return new Case("standardized", new Sequential(Width).Dense(16, "relu").Dropout(0.2).Dense(5).ToSpec(LossKind.CrossEntropy),
            new Preprocessing(Normalization.Standardize, mean, std));
        yield return new Case("bf16", new Sequential(Width).Dense(16, "silu").Dense(5).ToSpec(LossKind.CrossEntropy), new Preprocessing(Normalization.Scale01), TensorDtype.BF16);
    }

    private static float[] RawInputs(Preprocessing pre, int seed) => pre.Kind switch
    {
        Normalization.Scale01 => TestData.Floats(Samples * Width, seed, 0, 255).Select(v => MathF.Round(v)).ToArray(),
        Normalization.Standardize => TestData.Floats(Samples * Width, seed, -8, 8),
        _ => TestData.Floats(Samples * Width, seed, -2, 2),
    };

    // A model of the case's spec, a few steps trained (so biases and weights are not the initialization), written to its file;
    // returns our outputs on the raw inputs (scaled as the file says) from a model that loaded the file.
    private float[] Prepare(Case c, int seed, out float[] raw)
    {
        var options = new TrainingOptions { Loss = c.Spec.Loss, MaxBatch = 16, Threads = 1, Seed = (ulong)seed };
        using (var model = new Model(c.Spec, options))
        {
            for (int t = 0; t < 4; t++)
            {
                var x = TestData.Floats(16 * Width, seed * 10 + t, -2, 2);
                if (c.Spec.Loss == LossKind.CrossEntropy) model.Step(x, Enumerable.Range(0, 16).Select(i => (i + t) % 5).ToArray());
                else model.Step(x, TestData.Floats(16, seed * 20 + t));
            }
            Checkpoint.SaveWeights(model, P($"{c.Name}.safetensors"), c.Pre, c.Dtype);
        }
        raw = RawInputs(c.Pre, seed);
        var scaled = new Dataset(raw.ToArray(), null, null, Width, 0);
        scaled.Normalize(c.Pre.Kind, c.Pre.Mean, c.Pre.Std);
        var info = ModelFile.Read(P($"{c.Name}.safetensors"));
        Assert.That(info.Preprocessing, Is.EqualTo(c.Pre));
        using var loaded = new Model(info.Spec, new TrainingOptions { Loss = info.Spec.Loss, MaxBatch = 64, Threads = 1 });
        Checkpoint.LoadWeights(loaded, info);
        var ours = new float[Samples * c.Spec.OutputWidth];
        loaded.Predict(scaled.Features, ours);
        return ours;
    }

    [Test]
    public void OurWeightsFiles_LoadStrictlyIntoTorch_AndOnnxExportsMatchTorch()
    {
        TorchPython.Require();
        var cases = Cases().ToList();
        var jobs = new List<string> { TorchPython.Readme };
        var ours = new Dictionary<string, float[]>();
        var raws = new Dictionary<string, float[]>();
        var onnx = new List<string>();
        for (int i = 0; i < cases.Count; i++)
        {
            var c = cases[i];
            ours[c.Name] = Prepare(c, 100 + i, out var raw);
            raws[c.Name] = raw;
            Npy.WriteFloat32(P($"{c.Name}.x.npy"), raw, Samples, Width);
            jobs.AddRange([P($"{c.Name}.safetensors"), P($"{c.Name}.x.npy"), P($"{c.Name}.torch.npy")]);
            // The export through the CLI: the recorded preprocessing in the graph; one with softmax, one without preprocessing.
            var (code, _, err) = Run("export", "--from", P($"{c.Name}.safetensors"), "--onnx", P($"{c.Name}.onnx"));
            Assert.That(code, Is.EqualTo(0), err);
            onnx.Add(P($"{c.Name}.onnx"));
        }
        TorchPython.Run(["to-torch", .. jobs]);
        foreach (var c in cases)
        {
            var torch = ReadNpy(P($"{c.Name}.torch.npy"));
            AssertClose(ours[c.Name], torch, 1e-5, $"{c.Name}: our predictions vs torch's");
            if (c.Spec.OutputWidth > 1)
                Assert.That(Argmax(ours[c.Name], c.Spec.OutputWidth), Is.EqualTo(Argmax(torch, c.Spec.OutputWidth)), $"{c.Name}: argmax");
            // ONNX Runtime on the raw inputs: the graph scales them as the trainer did.
            using var session = new InferenceSession(P($"{c.Name}.onnx"));
            using var results = session.Run([NamedOnnxValue.CreateFromTensor("input", new DenseTensor<float>(raws[c.Name], [Samples, Width]))]);
            AssertClose(results.First().AsTensor<float>().ToArray(), torch, 1e-5, $"{c.Name}: ONNX Runtime on the export vs torch");
        }
        // Exports with softmax and without the preprocessing pass the checker too.
        var first = cases[0];
        Assert.That(Run("export", "--from", P($"{first.Name}.safetensors"), "--onnx", P("softmax.onnx"), "--softmax").Code, Is.EqualTo(0));
        Assert.That(Run("export", "--from", P("standardized.safetensors"), "--onnx", P("raw.onnx"), "--no-preprocessing").Code, Is.EqualTo(0));
        string report = TorchPython.Run(["onnx-check", .. onnx, P("softmax.onnx"), P("raw.onnx")]);
        Assert.That(report.Split('\n', StringSplitOptions.RemoveEmptyEntries), Has.Length.EqualTo(onnx.Count + 2), report);
        Assert.That(report, Does.Contain("outputs {'output': ['batch', 5]}").And.Contain("outputs {'output': ['batch', 1]}"));
    }

    // A torch nn.Sequential written as a plain state_dict: its predictions and the data folder it is used on.
    private (float[] Torch, string Data) TorchModel(string arch, string file, int seed, bool regression = false, params string[] extra)
    {
        string data = P($"data-{seed}");
        Directory.CreateDirectory(data);
        int n = 60, outs = int.Parse(arch.Split(',')[^1]);
        var x = TestData.Floats(n * 20, seed, -2, 2);
        foreach (var split in new[] { "train", "test" })
        {
            Npy.WriteFloat32(Path.Combine(data, $"{split}_x.npy"), x, n, 20);
            var y = regression ? TestData.Floats(n, seed + 1) : Enumerable.Range(0, n).Select(i => (float)((i * 7 + seed) % outs)).ToArray();
            Npy.WriteFloat32(Path.Combine(data, $"{split}_y.npy"), y, regression ? new[] { n, 1 } : new[] { n });
        }
        TorchPython.Run(["make-model", arch, seed.ToString(System.Globalization.CultureInfo.InvariantCulture), P(file), Path.Combine(data, "test_x.npy"), P(file + ".torch.npy"), .. extra]);
        return (ReadNpy(P(file + ".torch.npy")), data);
    }

    private static double[] Softmax(ReadOnlySpan<float> z)
    {
        double max = z[0];
        foreach (var v in z) max = Math.Max(max, v);
        var e = new double[z.Length];
        double sum = 0;
        for (int i = 0; i < z.Length; i++) sum += e[i] = Math.Exp(z[i] - max);
        for (int i = 0; i < z.Length; i++) e[i] /= sum;
        return e;
    }

    [Test]
    public void TorchMadeModel_ThroughPredictEvaluateExportAndInitFrom()
    {
        TorchPython.Require();
        var (torch, data) = TorchModel("20,16,relu,dropout:0.3,9,tanh,5", "torch.safetensors", 3);
        string[] model = ["--model", P("torch.safetensors"), "--activation", "relu,tanh", "--data", data, "--format", "npy", "--normalize", "none"];

        // predict: the class and torch's softmax probabilities.
        var (code, _, err) = Run(["predict", .. model, "--output", P("p.npy")]);
        Assert.That(code, Is.EqualTo(0), err);
        var p = Npy.Read(P("p.npy"));
        Assert.That(p.Shape, Is.EqualTo(new[] { 60, 6 }));
        var classes = Argmax(torch, 5);
        for (int i = 0; i < 60; i++)
        {
            Assert.That(p.Data[i * 6], Is.EqualTo(classes[i]), $"sample {i}: class");
            var probs = Softmax(torch.AsSpan(i * 5, 5));
            for (int c = 0; c < 5; c++) Assert.That(p.Data[i * 6 + 1 + c], Is.EqualTo(probs[c]).Within(1e-5), $"sample {i}: p{c}");
        }

        // evaluate: accuracy and confusion from torch's outputs exactly, loss within 1e-5.
        (code, _, err) = Run(["evaluate", .. model, "--output", P("r.json")]);
        Assert.That(code, Is.EqualTo(0), err);
        using var json = JsonDocument.Parse(File.ReadAllText(P("r.json")));
        var labels = ReadNpy(Path.Combine(data, "test_y.npy")).Select(v => (int)v).ToArray();
        var confusion = new long[5, 5];
        double loss = 0;
        for (int i = 0; i < 60; i++)
        {
            confusion[labels[i], classes[i]]++;
            loss -= Math.Log(Softmax(torch.AsSpan(i * 5, 5))[labels[i]]) / 60;
        }
        Assert.That(json.RootElement.GetProperty("accuracy").GetDouble(), Is.EqualTo(Enumerable.Range(0, 60).Count(i => classes[i] == labels[i]) / 60.0));
        Assert.That(json.RootElement.GetProperty("loss").GetDouble(), Is.EqualTo(loss).Within(1e-5));
        var rows = json.RootElement.GetProperty("confusion").EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetInt64()).ToArray()).ToArray();
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 5; j++) Assert.That(rows[i][j], Is.EqualTo(confusion[i, j]), $"confusion [{i}, {j}]");

        // export: ONNX Runtime gives torch's outputs; the checker accepts the file.
        (code, _, err) = Run("export", "--from", P("torch.safetensors"), "--activation", "relu,tanh", "--onnx", P("torch.onnx"));
        Assert.That(code, Is.EqualTo(0), err);
        using (var session = new InferenceSession(P("torch.onnx")))
        {
            var x = ReadNpy(Path.Combine(data, "test_x.npy"));
            using var results = session.Run([NamedOnnxValue.CreateFromTensor("input", new DenseTensor<float>(x, [60, 20]))]);
            AssertClose(results.First().AsTensor<float>().ToArray(), torch, 1e-5, "ONNX Runtime on the export of a torch state_dict vs torch");
        }
        TorchPython.Run("onnx-check", P("torch.onnx"));

        // train --init-from with a learning rate of 0: the run's model is torch's, under the same state_dict names.
        string run = P("init-run");
        (code, _, err) = Run("train", "--init-from", P("torch.safetensors"), "--activation", "relu,tanh", "--dropout", "0.3", "--data", data, "--format", "npy",
            "--normalize", "none", "--optimizer", "sgd", "--lr", "0", "--epochs", "1", "--batch", "16", "--threads", "1", "--output", run);
        Assert.That(code, Is.EqualTo(0), err);
        var theirs = SafeTensorsFile.Read(P("torch.safetensors"));
        var mine = SafeTensorsFile.Read(Path.Combine(run, "model.safetensors"));
        Assert.That(mine.Tensors.Keys.Order(), Is.EqualTo(theirs.Tensors.Keys.Order()), "the same nn.Sequential indices");
        foreach (var name in theirs.Tensors.Keys) Assert.That(mine.ReadFloat(name), Is.EqualTo(theirs.ReadFloat(name)), name);
        // and fine-tuning with a real learning rate moves the weights, from a fresh optimizer (step 0 at the start).
        (code, var output, err) = Run("train", "--init-from", P("torch.safetensors"), "--activation", "relu,tanh", "--dropout", "0.3", "--data", data, "--format", "npy",
            "--normalize", "none", "--lr", "0.01", "--epochs", "2", "--batch", "16", "--threads", "1", "--output", P("tuned"));
        Assert.That(code, Is.EqualTo(0), err);
        Assert.That(output, Does.Contain("initialized from").And.Contain("a fresh Adam optimizer"));
        Assert.That(SafeTensorsFile.Read(Path.Combine(P("tuned"), "model.safetensors")).ReadFloat("0.weight"), Is.Not.EqualTo(theirs.ReadFloat("0.weight")));
    }

    [Test]
    public void TorchStateDicts_InBf16_UnderAPrefix_AndRegression_Predict()
    {
        TorchPython.Require();
        var (torch, data) = TorchModel("20,16,gelu,12,silu,dropout:0.2,5", "bf16.safetensors", 5, false, "--dtype", "bf16", "--prefix", "net.");
        Assert.That(SafeTensorsFile.Read(P("bf16.safetensors")).Tensors["net.0.weight"].Dtype, Is.EqualTo("BF16"));
        var (code, _, err) = Run("predict", "--model", P("bf16.safetensors"), "--activation", "gelu,silu", "--data", data, "--format", "npy", "--output", P("b.csv"));
        Assert.That(code, Is.EqualTo(0), err);
        var lines = File.ReadAllLines(P("b.csv"));
        Assert.That(lines[0], Is.EqualTo("class,p0,p1,p2,p3,p4"));
        var classes = Argmax(torch, 5);
        for (int i = 0; i < 60; i++)
        {
            var f = lines[i + 1].Split(',');
            Assert.That(int.Parse(f[0]), Is.EqualTo(classes[i]), $"sample {i}");
            var probs = Softmax(torch.AsSpan(i * 5, 5));
            for (int c = 0; c < 5; c++) Assert.That(double.Parse(f[1 + c], System.Globalization.CultureInfo.InvariantCulture), Is.EqualTo(probs[c]).Within(1e-5));
        }

        var (reg, rdata) = TorchModel("20,8,elu,1", "reg.safetensors", 9, regression: true);
        (code, _, err) = Run("predict", "--model", P("reg.safetensors"), "--activation", "elu", "--data", rdata, "--format", "npy", "--output", P("r.npy"));
        Assert.That(code, Is.EqualTo(2));
        Assert.That(err, Does.Contain("the model has one output, so the loss cannot be cross-entropy; name it"));
        (code, _, err) = Run("predict", "--model", P("reg.safetensors"), "--activation", "elu", "--loss", "mse", "--data", rdata, "--format", "npy", "--output", P("r.npy"));
        Assert.That(code, Is.EqualTo(0), err);
        AssertClose(ReadNpy(P("r.npy")), reg, 1e-5, "regression outputs vs torch");
        (code, var text, err) = Run("evaluate", "--model", P("reg.safetensors"), "--activation", "elu", "--loss", "mse", "--data", rdata, "--format", "npy");
        Assert.That(code, Is.EqualTo(0), err);
        var targets = ReadNpy(Path.Combine(rdata, "test_y.npy"));
        double mse = Enumerable.Range(0, 60).Average(i => Math.Pow(reg[i] - targets[i], 2));
        var line = text.Split('\n').Single(l => l.StartsWith("loss ", StringComparison.Ordinal));
        // MSE as torch's nn.MSELoss (mean over elements), printed to 6 decimals.
        Assert.That(double.Parse(line[5..], System.Globalization.CultureInfo.InvariantCulture), Is.EqualTo(mse).Within(2e-6));
    }

    public static IEnumerable<TestCaseData> Optimizers()
    {
        yield return new TestCaseData(new Adam(3e-3, weightDecay: 0.01)).SetArgDisplayNames("Adam");
        yield return new TestCaseData(new Adam(3e-3, amsgrad: true)).SetArgDisplayNames("Adam-amsgrad");
        yield return new TestCaseData(new AdamW(3e-3, weightDecay: 0.05)).SetArgDisplayNames("AdamW");
        yield return new TestCaseData(new Sgd(0.05, momentum: 0.9, nesterov: true, weightDecay: 1e-3)).SetArgDisplayNames("SGD-nesterov");
        yield return new TestCaseData(new RmsProp(1e-3, momentum: 0.5, centered: true)).SetArgDisplayNames("RMSprop-centered");
        yield return new TestCaseData(new Adagrad(0.05, lrDecay: 0.01, initialAccumulatorValue: 0.1)).SetArgDisplayNames("Adagrad");
    }

    [TestCaseSource(nameof(Optimizers))]
    public void Checkpoint_ContinuedOneStepInTorchOptim_EqualsOneStepHere(OptimizerSettings optimizer)
    {
        TorchPython.Require();
        var spec = new Sequential(Width).Dense(16, "tanh").Dense(9, "relu").Dense(5).ToSpec(LossKind.CrossEntropy);
        var options = new TrainingOptions
        {
            Optimizer = optimizer, MaxBatch = 16, Threads = 1, Seed = 11,
            Schedule = new LrSchedule { Kind = ScheduleKind.Cosine, TMax = 10 },
        };
        string name = optimizer.Kind + (optimizer is Adam { Amsgrad: true } ? "-ams" : "");
        string ckpt = P($"{name}.ckpt.safetensors");
        int[] Labels(int t) => Enumerable.Range(0, 16).Select(i => (i * 3 + t) % 5).ToArray();
        using (var model = new Model(spec, options))
        {
            for (int t = 0; t < 3; t++) model.Step(TestData.Floats(16 * Width, t, -2, 2), Labels(t));
            Checkpoint.SaveTraining(model, ckpt, new TrainingPosition(1, 3));
        }
        var x = TestData.Floats(16 * Width, 99, -2, 2);
        Npy.WriteFloat32(P($"{name}.x.npy"), x, 16, Width);
        Npy.WriteFloat32(P($"{name}.y.npy"), Array.ConvertAll(Labels(3), v => (float)v), 16);
        TorchPython.Run("optim-step", TorchPython.Readme, ckpt, P($"{name}.x.npy"), P($"{name}.y.npy"), P($"{name}.torch.safetensors"));

        var info = Checkpoint.ReadInfo(ckpt);
        using var resumed = new Model(info.Spec, info.Options);
        Checkpoint.LoadTraining(resumed, ckpt);
        resumed.Step(x, Labels(3));
        Checkpoint.SaveTraining(resumed, P($"{name}.ours.safetensors"), new TrainingPosition(1, 4));
        var ours = SafeTensorsFile.Read(P($"{name}.ours.safetensors"));
        var theirs = SafeTensorsFile.Read(P($"{name}.torch.safetensors"));
        Assert.That(theirs.Tensors.Keys.Order(), Is.EqualTo(ours.Tensors.Keys.Order()), "torch's state has what the checkpoint has");
        // Parameters and every state tensor, each within 1e-6 of its largest value (float32 rounding of the gradients and the
        // update; measured: at most 1.2e-7 for a parameter and 4e-7 for a state tensor).
        foreach (var t in ours.Tensors.Keys.Order(StringComparer.Ordinal))
        {
            var a = ours.ReadFloat(t);
            var b = theirs.ReadFloat(t);
            double scale = b.Max(v => Math.Abs((double)v));
            double worst = a.Zip(b).Max(p => Math.Abs((double)p.First - p.Second));
            TestContext.Out.WriteLine($"{t}: max |ours − torch| / max |torch| = {worst / Math.Max(scale, 1e-30):G3}");
            Assert.That(worst, Is.LessThanOrEqualTo(1e-6 * Math.Max(scale, 1e-30)), $"{optimizer.Kind} {t}: max |ours − torch| relative to max |torch| ({scale:G4})");
        }
    }

    [Test]
    public void Torch_ReproducesEvaluatesAccuracyAndConfusionMatrix_OnFashionMnist()
    {
        TorchPython.Require();
        const string data = TrainData.DefaultFolder;
        if (!File.Exists(Path.Combine(data, "t10k-images-idx3-ubyte.gz")) && !File.Exists(Path.Combine(data, "t10k-images-idx3-ubyte")))
            Assert.Ignore($"Fashion-MNIST is not installed in {data} (./build.sh Deps installs dataset-fashion-mnist).");
        string run = P("fmnist");
        var (code, _, err) = Run("train", "--layers", "48", "--epochs", "1", "--stop-after-steps", "120", "--threads", "2", "--normalize", "standardize", "--output", run);
        Assert.That(code, Is.EqualTo(0), err);
        (code, _, err) = Run("evaluate", "--model", Path.Combine(run, "model.safetensors"), "--output", P("fm.json"));
        Assert.That(code, Is.EqualTo(0), err);
        string images = File.Exists(Path.Combine(data, "t10k-images-idx3-ubyte.gz")) ? "t10k-images-idx3-ubyte.gz" : "t10k-images-idx3-ubyte";
        string labelsFile = File.Exists(Path.Combine(data, "t10k-labels-idx1-ubyte.gz")) ? "t10k-labels-idx1-ubyte.gz" : "t10k-labels-idx1-ubyte";
        var test = Idx.ReadPair(Path.Combine(data, images), Path.Combine(data, labelsFile));
        Npy.WriteFloat32(P("fm.x.npy"), test.Features, test.Count, test.Width);
        Npy.WriteFloat32(P("fm.y.npy"), Array.ConvertAll(test.Labels!, v => (float)v), test.Count);
        foreach (var file in new[] { "model.safetensors", "checkpoint.safetensors" })
        {
            TorchPython.Run("evaluate", TorchPython.Readme, Path.Combine(run, file), P("fm.x.npy"), P("fm.y.npy"), P("fm.torch.json"));
            using var ours = JsonDocument.Parse(File.ReadAllText(P("fm.json")));
            using var torch = JsonDocument.Parse(File.ReadAllText(P("fm.torch.json")));
            Assert.That(torch.RootElement.GetProperty("samples").GetInt32(), Is.EqualTo(10_000));
            Assert.That(ours.RootElement.GetProperty("accuracy").GetDouble(), Is.EqualTo(torch.RootElement.GetProperty("accuracy").GetDouble()), $"{file}: accuracy");
            Assert.That(ours.RootElement.GetProperty("confusion").GetRawText().Replace(" ", "").Replace("\n", "").Replace("\r", ""),
                Is.EqualTo(torch.RootElement.GetProperty("confusion").GetRawText().Replace(" ", "")), $"{file}: confusion matrix");
            Assert.That(ours.RootElement.GetProperty("loss").GetDouble(), Is.EqualTo(torch.RootElement.GetProperty("loss").GetDouble()).Within(1e-5), $"{file}: loss");
        }
    }
}
