// `backprop train` end to end on a small synthetic IDX dataset: the output folder, the closing line,
// and bad input exiting with 2 and one message.
using System.Text.Json;
using Backprop.Cli;
using Backprop.Tests.Data;
using NUnit.Framework;
using static Backprop.Tests.Cli.InProcessCli;

namespace Backprop.Tests.Cli;

[TestFixture]
[NonParallelizable]
public class TrainCommandTests
{
    private string _dir = "";

    [OneTimeSetUp]
    public void MakeData()
    {
        _dir = Path.Combine(Path.GetTempPath(), "backprop-train-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
        // 3 classes of 4x4 "images": class c lights up row c; noise elsewhere.
        void Make(string prefix, int n, int seed)
        {
            var r = new Random(seed);
            var px = new byte[n * 16];
            var lab = new byte[n];
            for (int i = 0; i < n; i++)
            {
                int c = i % 3;
                lab[i] = (byte)c;
                for (int j = 0; j < 16; j++) px[i * 16 + j] = (byte)(j / 4 == c ? 200 + r.Next(50) : r.Next(60));
            }
            File.WriteAllBytes(Path.Combine(_dir, $"{prefix}-images-idx3-ubyte"), IdxTests.Encode([n, 4, 4], px));
            File.WriteAllBytes(Path.Combine(_dir, $"{prefix}-labels-idx1-ubyte"), IdxTests.Encode([n], lab));
        }
        Make("train", 600, 1);
        Make("t10k", 150, 2);
    }

    [OneTimeTearDown]
    public void Clean() => Directory.Delete(_dir, true);


    [Test]
    public void DataThatIsAFile_OrAnEmptyTestSet_IsRefused()
    {
        string file = Path.Combine(_dir, "train-images-idx3-ubyte");
        var (code, _, err) = Run("train", "--data", file);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(err, Does.Contain($"--data '{file}' is a file; expected a folder holding the idx files"));
        string csv = Path.Combine(_dir, "empty-test");
        Directory.CreateDirectory(csv);
        File.WriteAllLines(Path.Combine(csv, "train.csv"), ["a,label", "1,0", "2,1"]);
        File.WriteAllLines(Path.Combine(csv, "test.csv"), ["a,label"]);
        var (code2, _, err2) = Run("train", "--data", csv, "--format", "csv", "--epochs", "1");
        Assert.That(code2, Is.EqualTo(2), "an empty test set is no run to report an accuracy of");
        Assert.That(err2, Does.Contain("test.csv").And.Contain("holds no samples"));
    }

    [Test]
    public void Train_WritesTheRunFolder_AndEndsWithTestAccuracy()
    {
        string outDir = Path.Combine(_dir, "run");
        var (code, output, err) = Run("train", "--data", _dir, "--layers", "16", "--epochs", "3", "--batch", "32", "--threads", "1", "--lr", "0.01", "--output", outDir);
        Assert.That(code, Is.EqualTo(0), output + err);
        var lines = output.TrimEnd().Split('\n');
        Assert.That(lines[^1], Does.Match(@"^test accuracy [01]\.\d{4}$"));
        Assert.That(double.Parse(lines[^1].Split(' ')[^1], System.Globalization.CultureInfo.InvariantCulture), Is.GreaterThan(0.9));
        Assert.That(output, Does.Contain("epoch 3/3: train loss").And.Contain("| epoch | train loss | test loss | test accuracy | seconds | samples/s |"));
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "metrics.json")));
        Assert.That(json.RootElement.GetArrayLength(), Is.EqualTo(3));
        foreach (var key in new[] { "train_loss", "test_loss", "test_accuracy", "seconds", "samples_per_second" })
            Assert.That(json.RootElement[0].TryGetProperty(key, out _), Is.True, key);
        Assert.That(File.ReadAllLines(Path.Combine(outDir, "metrics.csv")), Has.Length.EqualTo(4));
        var png = File.ReadAllBytes(Path.Combine(outDir, "curves.png"));
        Assert.That(png[..4], Is.EqualTo(new byte[] { 0x89, 0x50, 0x4E, 0x47 }), "a PNG file");
        var conf = File.ReadAllLines(Path.Combine(outDir, "confusion.csv"));
        Assert.That(conf, Has.Length.EqualTo(4));
        Assert.That(conf[1..].Sum(l => l.Split(',').Skip(1).Sum(int.Parse)), Is.EqualTo(150));
        var st = File.ReadAllBytes(Path.Combine(outDir, "model.safetensors"));
        long headerLen = BitConverter.ToInt64(st, 0);
        using var header = JsonDocument.Parse(st.AsMemory(8, (int)headerLen));
        Assert.That(header.RootElement.GetProperty("0.weight").GetProperty("shape").EnumerateArray().Select(v => v.GetInt32()), Is.EqualTo(new[] { 16, 16 }));
        Assert.That(header.RootElement.GetProperty("3.bias").GetProperty("dtype").GetString(), Is.EqualTo("F32"));
        Assert.That(st.Length, Is.EqualTo(8 + headerLen + 4 * (16 * 16 + 16 + 3 * 16 + 3)));
        Assert.That(Directory.GetFiles(outDir, "*.tmp"), Is.Empty, "no temporary files left");
    }

    [Test]
    public void Train_InBf16_SaysSo_AndLearns_OrIsRefusedNamingWhy()
    {
        var args = new[] { "train", "--data", _dir, "--layers", "32", "--epochs", "3", "--batch", "32", "--threads", "2", "--lr", "0.01", "--precision", "bf16" };
        var (code, output, err) = Run(args);
        if (!Kernels.Cpu.Bf16Gemm.IsAvailable)
        {
            Assert.That(code, Is.EqualTo(2), output + err);
            Assert.That(err, Does.Contain("--precision bf16 cannot run here").And.Contain(Kernels.Cpu.Bf16Gemm.Unavailable!).And.Contain("--bf16-fallback"));
            var (fcode, fout, ferr) = Run([.. args, "--bf16-fallback"]);
            Assert.That(fcode, Is.EqualTo(0), fout + ferr);
            Assert.That(ferr, Does.Contain("warning: bf16 precision cannot run here").And.Contain("training in fp32"));
            return;
        }
        Assert.That(code, Is.EqualTo(0), output + err);
        Assert.That(output, Does.Contain("bf16 GEMMs"), "the run's header names the precision");
        Assert.That(double.Parse(output.TrimEnd().Split('\n')[^1].Split(' ')[^1], System.Globalization.CultureInfo.InvariantCulture), Is.GreaterThan(0.9));
        var (ocode, oout, oerr) = Run([.. args, "--bf16-fallback"]);
        Assert.That(ocode, Is.EqualTo(0), oout + oerr);
        Assert.That(oerr, Does.Not.Contain("cannot run here"), "no fallback where bf16 runs");
        // Where VDPBF16PS is slower than the float32 FMA (measured in the run) a warning says so; it is the only one.
        foreach (var line in (err + oerr).Split('\n', StringSplitOptions.RemoveEmptyEntries))
            Assert.That(line, Does.StartWith("warning: --precision bf16 will likely train slower than fp32"), "the only warning where bf16 runs");
        Assert.That(oout.TrimEnd().Split('\n')[^1], Is.EqualTo(output.TrimEnd().Split('\n')[^1]), "--bf16-fallback changes nothing where bf16 runs");
    }

    [Test]
    public void Train_ResMlp_Learns_SavesTheTree_AndResumesAsTheSameRun()
    {
        string[] common = ["train", "--data", _dir, "--arch", "resmlp:width=16,blocks=2", "--epochs", "3", "--batch", "32", "--threads", "2", "--lr", "0.01"];
        string full = Path.Combine(_dir, "full"), part = Path.Combine(_dir, "part");
        var (code, output, err) = Run([.. common, "--output", full]);
        Assert.That(code, Is.EqualTo(0), output + err);
        Assert.That(output, Does.Contain("model: 16-16-[16]-LN-[16]-LN-3 (ReLU, dropout 0.2)"));
        string last = output.TrimEnd().Split('\n')[^1];
        Assert.That(double.Parse(last.Split(' ')[^1], System.Globalization.CultureInfo.InvariantCulture), Is.GreaterThan(0.8), output);
        var st = File.ReadAllBytes(Path.Combine(full, "model.safetensors"));
        using var header = JsonDocument.Parse(st.AsMemory(8, (int)BitConverter.ToInt64(st, 0)));
        foreach (var name in new[] { "0.weight", "3.body.0.weight", "4.weight", "4.bias", "5.body.0.bias", "6.weight", "7.weight" })
            Assert.That(header.RootElement.TryGetProperty(name, out _), Is.True, name);

        var (c1, o1, e1) = Run([.. common, "--output", part, "--stop-after-steps", "7"]);
        Assert.That(c1, Is.EqualTo(0), o1 + e1);
        var (c2, o2, e2) = Run("train", "--resume", part);
        Assert.That(c2, Is.EqualTo(0), o2 + e2);
        Assert.That(o2.TrimEnd().Split('\n')[^1], Is.EqualTo(last), "a resumed run is the same run, bit for bit");
    }

    [Test]
    public void Train_IsReproducibleForASeed()
    {
        string Last(string output) => output.TrimEnd().Split('\n')[^1];
        var a = Run("train", "--data", _dir, "--layers", "8", "--epochs", "2", "--batch", "16", "--threads", "2", "--dropout", "0.3", "--seed", "4");
        var b = Run("train", "--data", _dir, "--layers", "8", "--epochs", "2", "--batch", "16", "--threads", "1", "--dropout", "0.3", "--seed", "4");
        Assert.That(a.Out.Split('\n').Where(l => l.StartsWith("epoch")).Select(l => l.Split(", ")[..3]),
            Is.EqualTo(b.Out.Split('\n').Where(l => l.StartsWith("epoch")).Select(l => l.Split(", ")[..3])));
        Assert.That(Last(a.Out), Is.EqualTo(Last(b.Out)));
    }

    [TestCase(new[] { "train", "--no-such-flag" }, "--no-such-flag")]
    [TestCase(new[] { "train", "--layers", "-5" }, "--layers must be comma-separated positive sizes")]
    [TestCase(new[] { "train", "--batch", "-1" }, "--batch must be at least 1; got -1")]
    [TestCase(new[] { "train", "--epochs", "0" }, "--epochs must be at least 1; got 0")]
    [TestCase(new[] { "train", "--data", "/no/such/folder" }, "--data folder '/no/such/folder' does not exist")]
    [TestCase(new[] { "train", "--optimizer", "lion" }, "--optimizer must be sgd, adam, adamw, rmsprop or adagrad; got 'lion'")]
    [TestCase(new[] { "train", "--lr", "-0.1" }, "LearningRate must be a finite number >= 0; got -0.1")]
    [TestCase(new[] { "train", "--optimizer", "adam", "--momentum", "0.9" }, "--momentum applies to sgd and rmsprop; the optimizer is adam")]
    [TestCase(new[] { "train", "--optimizer", "sgd", "--beta2", "0.99" }, "--beta2 applies to adam and adamw; the optimizer is sgd")]
    [TestCase(new[] { "train", "--optimizer", "rmsprop", "--nesterov" }, "--nesterov applies to sgd; the optimizer is rmsprop")]
    [TestCase(new[] { "train", "--optimizer", "sgd", "--eps", "1e-6" }, "--eps applies to adam, adamw, rmsprop and adagrad; the optimizer is sgd")]
    [TestCase(new[] { "train", "--optimizer", "sgd", "--nesterov" }, "Nesterov momentum requires momentum > 0 and dampening = 0")]
    [TestCase(new[] { "train", "--backend", "gpu" }, "--backend must be cpu, blas or cuda; got 'gpu'")]
    [TestCase(new[] { "train", "--tf32" }, "--tf32 applies to --backend cuda; the backend is cpu")]
    [TestCase(new[] { "train", "--schedule", "cyclic" }, "--schedule must be constant, step, exponential, cosine or linear; got 'cyclic'")]
    [TestCase(new[] { "train", "--patience", "2" }, "early stopping (patience > 0) needs a validation split")]
    [TestCase(new[] { "train", "--input-width", "784" }, "the data has 16 features per sample but the first layer expects 784")]
    [TestCase(new[] { "train", "--label-smoothing", "1.5" }, "label smoothing must be in [0, 1]; got 1.5")]
    [TestCase(new[] { "train", "--layers", "1000000,1000000" }, "more than a block holds (2,147,483,647): use narrower layers")]
    [TestCase(new[] { "train", "--batch", "100000000", "--layers", "64" }, "more than a block holds (2,147,483,647): use a smaller batch or narrower layers")]
    [TestCase(new[] { "train", "--classes", "1" }, "--classes must be at least 2; got 1")]
    [TestCase(new[] { "train", "--precision", "fp8" }, "--precision must be fp32 or bf16; got 'fp8'")]
    [TestCase(new[] { "train", "--bf16-fallback" }, "--bf16-fallback applies to --precision bf16; the precision is fp32")]
    [TestCase(new[] { "train", "--precision", "bf16", "--backend", "blas" }, "bf16 precision runs on the Cpu and Cuda backends; the Blas backend is the float32 OpenBLAS reference")]
    [TestCase(new[] { "train", "--arch", "resnet" }, "--arch must be mlp or resmlp:width=W,blocks=K[,norm=layer|batch|none] (e.g. resmlp:width=512,blocks=4,norm=layer); got 'resnet'")]
    [TestCase(new[] { "train", "--arch", "resmlp:width=0,blocks=2" }, "--arch: width must be a whole number in [1, 1048576]; got '0' in 'resmlp:width=0,blocks=2'")]
    [TestCase(new[] { "train", "--arch", "resmlp:width=8" }, "--arch resmlp needs width and blocks (e.g. resmlp:width=512,blocks=4); got 'resmlp:width=8'")]
    [TestCase(new[] { "train", "--arch", "resmlp:width=8,blocks=2,norm=group" }, "--arch norm must be layer, batch or none; got 'group'")]
    [TestCase(new[] { "train", "--arch", "resmlp:width=8,blocks=2,depth=3" }, "--arch resmlp takes width, blocks and norm; got 'depth'")]
    [TestCase(new[] { "train", "--arch", "resmlp:width=8,blocks=2,width=9" }, "--arch: 'width' is given twice")]
    [TestCase(new[] { "train", "--arch", "resmlp:width=8,blocks=1", "--layers", "16" }, "--layers cannot be given with --arch resmlp:width=8,blocks=1")]
    public void BadInput_ExitsWith2_AndOneMessage(string[] args, string expected)
    {
        var withData = args.Contains("--data") ? args : args.Concat(new[] { "--data", _dir }).ToArray();
        var (code, _, err) = Run(withData);
        Assert.That(code, Is.EqualTo(2), err);
        Assert.That(err, Does.Contain(expected));
        Assert.That(err.Trim().Split('\n'), Has.Length.EqualTo(1), "one line, no stack trace");
    }

    [Test]
    public void Train_OnCuda_WithoutADevice_SaysWhy()
    {
        var info = Backprop.Kernels.Cuda.CudaDriver.Probe();
        if (info.Available) Assert.Ignore($"this machine has a CUDA device ({info.DeviceName}); the no-device message cannot be shown here");
        var (code, _, err) = Run("train", "--data", _dir, "--layers", "16", "--epochs", "1", "--backend", "cuda");
        Assert.That(code, Is.EqualTo(2), err);
        Assert.That(err, Does.Contain("CUDA is not available: ").And.Contain(info.Reason!));
        Assert.That(err.Trim().Split('\n'), Has.Length.EqualTo(1), "one line, no stack trace");
    }

    [Test]
    public void Train_ReadsCsv()
    {
        string csvDir = Path.Combine(_dir, "csv");
        Directory.CreateDirectory(csvDir);
        var train = Backprop.Engine.Data.Idx.ReadPair(Path.Combine(_dir, "train-images-idx3-ubyte"), Path.Combine(_dir, "train-labels-idx1-ubyte"));
        var test = Backprop.Engine.Data.Idx.ReadPair(Path.Combine(_dir, "t10k-images-idx3-ubyte"), Path.Combine(_dir, "t10k-labels-idx1-ubyte"));
        void Csv(string name, Backprop.Engine.Data.Dataset d)
        {
            var lines = new List<string> { "label," + string.Join(",", Enumerable.Range(0, 16).Select(i => $"p{i}")) };
            for (int i = 0; i < d.Count; i++) lines.Add(d.Labels![i] + "," + string.Join(",", d.Features.Skip(i * 16).Take(16)));
            File.WriteAllLines(Path.Combine(csvDir, name), lines);
        }
        Csv("train.csv", train);
        Csv("test.csv", test);
        var (code, output, err) = Run("train", "--data", csvDir, "--format", "csv", "--layers", "16", "--epochs", "2", "--batch", "32", "--lr", "0.01");
        Assert.That(code, Is.EqualTo(0), output + err);
        Assert.That(output, Does.Contain("data: 600 training and 150 test samples of 16 features, 3 classes"));
        var (code2, _, err2) = Run("train", "--data", csvDir, "--format", "npy");
        Assert.That(code2, Is.EqualTo(2));
        Assert.That(err2, Does.Contain("has no train_x.npy (--format npy)"));
    }

    [Test]
    public void MissingFiles_ExitWith2()
    {
        string empty = Path.Combine(_dir, "empty");
        Directory.CreateDirectory(empty);
        var (code, _, err) = Run("train", "--data", empty);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(err, Does.Contain("has no train-images-idx3-ubyte[.gz]"));
    }
}
