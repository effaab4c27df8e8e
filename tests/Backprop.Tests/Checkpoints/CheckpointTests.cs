// Checkpoints: round trips, validation before touching the model, exact resume in a fresh process,
// and atomic writes that survive a killed writer.
using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Backprop.Engine;
using Backprop.Engine.Checkpoints;
using Backprop.Kernels;
using Backprop.Kernels.Cpu.Optim;
using NUnit.Framework;

namespace Backprop.Tests.Checkpoints;

[TestFixture]
[NonParallelizable]
public class CheckpointTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "backprop-ckpt-" + Guid.NewGuid().ToString("N")));

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, true);

    private static Model Net(ulong seed = 1) =>
        new Sequential(6).Dense(10, "tanh").Dropout(0.2).Dense(4).Compile(new TrainingOptions
        {
            MaxBatch = 8, Threads = 1, Seed = seed, Optimizer = new Adam() { LearningRate = 1e-2, Amsgrad = true },
        });

    private static void Train(Model m, int steps, int offset = 0)
    {
        for (int t = 0; t < steps; t++)
        {
            var x = TestData.Floats(8 * 6, 100 + offset + t);
            m.Step(x, [0, 1, 2, 3, 0, 1, 2, 3]);
        }
    }

    [Test]
    public void Weights_RoundTrip_WithStateDictNames()
    {
        using var a = Net(1);
        Train(a, 5);
        string path = Path.Combine(_dir, "w.safetensors");
        Checkpoint.SaveWeights(a, path);
        var f = SafeTensorsFile.Read(path);
        Assert.That(f.Tensors.Keys, Is.EquivalentTo(new[] { "0.weight", "0.bias", "3.weight", "3.bias" }));
        Assert.That(f.Tensors["0.weight"].Shape, Is.EqualTo(new[] { 10, 6 }));
        Assert.That(f.Metadata["format"], Is.EqualTo("backprop-weights"));
        using var b = Net(2);
        Checkpoint.LoadWeights(b, path);
        for (int l = 0; l < 2; l++)
        {
            Assert.That(b.GetWeights(l), Is.EqualTo(a.GetWeights(l)));
            Assert.That(b.GetBias(l), Is.EqualTo(a.GetBias(l)));
        }
    }

    [Test]
    public void Weights_WrittenToAStream_AreTheFilesBytes_AndLoadFromMemory()
    {
        using var a = Net(1);
        Train(a, 5);
        string path = Path.Combine(_dir, "w.safetensors");
        Checkpoint.SaveWeights(a, path);
        using var ms = new MemoryStream();
        Checkpoint.SaveWeights(a, ms);
        Assert.That(ms.ToArray(), Is.EqualTo(File.ReadAllBytes(path)));

        var f = SafeTensorsFile.Parse(ms.ToArray(), "model.zip/Network.safetensors");
        Assert.That(f.Metadata, Is.EqualTo(SafeTensorsFile.Read(path).Metadata));
        var spec = Checkpoint.ReadSpec(f);
        Assert.That((spec.InputWidth, spec.Layers.Count, spec.Loss), Is.EqualTo((a.Spec.InputWidth, a.Spec.Layers.Count, a.Spec.Loss)));
        using var b = Net(2);
        Checkpoint.LoadWeights(b, f);
        for (int l = 0; l < 2; l++)
            Assert.That(b.GetWeights(l), Is.EqualTo(a.GetWeights(l)));

        // Damaged bytes are named by their source, as a file is by its path.
        var cut = ms.ToArray()[..^3];
        Assert.That(Assert.Throws<InvalidDataException>(() => SafeTensorsFile.Parse(cut, "model.zip/Network.safetensors"))!.Message,
            Does.StartWith("safetensors file 'model.zip/Network.safetensors'"));
    }

    [Test]
    public void TrainingCheckpoint_ResumesBitForBit_InProcess()
    {
        using var full = Net();
        Train(full, 12);
        using var first = Net();
        Train(first, 5);
        string path = Path.Combine(_dir, "c.safetensors");
        Checkpoint.SaveTraining(first, path, new TrainingPosition(1, 5));
        var info = Checkpoint.ReadInfo(path);
        Assert.That(info.Step, Is.EqualTo(5));
        Assert.That(info.Spec, Is.EqualTo(first.Spec).Using<ModelSpec>((x, y) => x.Layers.SequenceEqual(y.Layers) && x.InputWidth == y.InputWidth));
        using var resumed = new Model(info.Spec, info.Options);
        Checkpoint.LoadTraining(resumed, path);
        Assert.That(resumed.StepCount, Is.EqualTo(5));
        Train(resumed, 7, offset: 5);
        for (int l = 0; l < 2; l++)
            Assert.That(resumed.GetWeights(l).Select(BitConverter.SingleToInt32Bits), Is.EqualTo(full.GetWeights(l).Select(BitConverter.SingleToInt32Bits)), $"layer {l}");
    }

    private string Corrupt(string name, Func<byte[], byte[]> edit)
    {
        using var m = Net();
        string path = Path.Combine(_dir, name);
        Checkpoint.SaveWeights(m, path);
        File.WriteAllBytes(path, edit(File.ReadAllBytes(path)));
        return path;
    }

    private static byte[] WithHeader(byte[] file, Func<string, string> edit)
    {
        int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(file);
        string header = edit(Encoding.UTF8.GetString(file, 8, n));
        var hb = Encoding.UTF8.GetBytes(header);
        var r = new byte[8 + hb.Length + file.Length - 8 - n];
        BinaryPrimitives.WriteUInt64LittleEndian(r, (ulong)hb.Length);
        hb.CopyTo(r, 8);
        Array.Copy(file, 8 + n, r, 8 + hb.Length, file.Length - 8 - n);
        return r;
    }

    [Test]
    public void BadFiles_AreRejected_NamingTheTensor_AndLeaveTheModelUnchanged()
    {
        using var m = Net(7);
        var before = m.GetWeights(0);
        void Rejects(string path, string expected)
        {
            var e = Assert.Throws<InvalidDataException>(() => Checkpoint.LoadWeights(m, path))!;
            Assert.That(e.Message, Does.Contain(expected));
            Assert.That(m.GetWeights(0), Is.EqualTo(before), "a failed load must not touch the model");
        }
        Rejects(Corrupt("len", b => { BinaryPrimitives.WriteUInt64LittleEndian(b, (ulong)b.Length); return b; }), "exceeds the");
        Rejects(Corrupt("json", b => WithHeader(b, h => h.Replace("}", "]"))), "not valid JSON");
        Rejects(Corrupt("dtype", b => WithHeader(b, h => h.Replace("\"F32\"", "\"I8\""))), "dtype I8 is not supported");
        Rejects(Corrupt("trunc", b => b[..^4]), "outside the");
        Rejects(Corrupt("shape", b => WithHeader(b, h => h.Replace("[10,6]", "[6,10]"))), "tensor '0.weight' has shape [6, 10]; the model expects [10, 6]");
        Rejects(Corrupt("span", b => WithHeader(b, h => h.Replace("[4,10]", "[4,9]"))), "tensor '3.weight': data_offsets span");
        Rejects(Corrupt("missing", b => WithHeader(b, h => h.Replace("\"0.bias\"", "\"0.bias_renamed\""))), "tensor '0.bias' is missing (expected shape [10])");
        string extra = Path.Combine(_dir, "extra.safetensors");
        SafeTensorsWriter.Write(extra, [("0.weight", [10, 6], new float[60]), ("0.bias", [10], new float[10]), ("3.weight", [4, 10], new float[40]),
            ("3.bias", [4], new float[4]), ("5.weight", [2, 2], new float[4])]);
        Rejects(extra, "unexpected tensor '5.weight'");
        Rejects(Corrupt("overlap", b => WithHeader(b, h =>
        {
            // point 0.bias at the start of 0.weight's bytes
            int i = h.IndexOf("\"0.bias\"", StringComparison.Ordinal);
            int o = h.IndexOf("data_offsets", i, StringComparison.Ordinal);
            int close = h.IndexOf(']', o);
            return h[..(o + 15)] + "0,40" + h[close..];
        })), "overlap");
        Assert.Throws<FileNotFoundException>(() => Checkpoint.LoadWeights(m, Path.Combine(_dir, "nope")));
        using var other = new Sequential(6).Dense(11, "tanh").Dense(4).Compile(new TrainingOptions { Threads = 1 });
        string ok = Path.Combine(_dir, "ok.safetensors");
        Checkpoint.SaveTraining(other, ok, new TrainingPosition(1, 0));
        Assert.That(Assert.Throws<InvalidDataException>(() => Checkpoint.LoadTraining(m, ok))!.Message, Does.Contain("describes another model (6-11-4)"));
    }

    [Test]
    public void ACheckpointClaimingAHugeModel_IsRefusedBeforeAnythingIsAllocated()
    {
        var spec = new ModelSpec(784, [new LayerSpec(1 << 30, new Activation(ActivationKind.ReLU)), new LayerSpec(10, new Activation(ActivationKind.Identity))], LossKind.CrossEntropy);
        string path = Path.Combine(_dir, "huge.safetensors");
        SafeTensorsWriter.Write(path, [("0.weight", [1, 1], [0f])], new Dictionary<string, string>
        {
            ["format"] = "backprop-checkpoint", ["spec"] = JsonSerializer.Serialize(spec, Checkpoint.Json),
            ["options"] = JsonSerializer.Serialize(new TrainingOptions(), Checkpoint.Json), ["step"] = "1", ["epoch"] = "1", ["next_batch"] = "0",
        });
        long before = GC.GetTotalAllocatedBytes(true);
        Assert.That(Assert.Throws<InvalidDataException>(() => Checkpoint.ReadInfo(path))!.Message,
            Does.Contain("the checkpoint describes a run the engine refuses").And.Contain("more than a block holds"));
        Assert.That(GC.GetTotalAllocatedBytes(true) - before, Is.LessThan(1 << 24));
        // misspelled and unknown keys are errors, not defaults
        var good = new Dictionary<string, string>
        {
            ["format"] = "backprop-checkpoint", ["spec"] = JsonSerializer.Serialize(new Sequential(3).Dense(2).ToSpec(LossKind.CrossEntropy), Checkpoint.Json),
            ["options"] = JsonSerializer.Serialize(new TrainingOptions(), Checkpoint.Json).Replace("\"MaxBatch\"", "\"MaxBtch\""), ["step"] = "1", ["epoch"] = "1", ["next_batch"] = "0",
        };
        SafeTensorsWriter.Write(path, [("0.weight", [2, 3], new float[6]), ("0.bias", [2], new float[2])], good);
        Assert.That(Assert.Throws<InvalidDataException>(() => Checkpoint.ReadInfo(path))!.Message, Does.Contain("__metadata__ 'options' is damaged").And.Contain("MaxBtch"));
        good["options"] = JsonSerializer.Serialize(new TrainingOptions(), Checkpoint.Json);
        good["colour"] = "blue";
        SafeTensorsWriter.Write(path, [("0.weight", [2, 3], new float[6]), ("0.bias", [2], new float[2])], good);
        Assert.That(Assert.Throws<InvalidDataException>(() => Checkpoint.ReadInfo(path))!.Message, Does.Contain("unknown __metadata__ key 'colour'"));
        good.Remove("colour");
        good["step"] = "-3";
        SafeTensorsWriter.Write(path, [("0.weight", [2, 3], new float[6]), ("0.bias", [2], new float[2])], good);
        Assert.That(Assert.Throws<InvalidDataException>(() => Checkpoint.ReadInfo(path))!.Message, Does.Contain("'step' is '-3'; expected a whole number >= 0"));
    }

    [Test]
    public void OptimizerSettings_RoundTripThroughTheMetadata_AndTheUntypedFormStillLoads()
    {
        foreach (var s in new OptimizerSettings[]
                 {
                     new Sgd(0.1, 0.9, 0, nesterov: true, weightDecay: 1e-4) { ClipNorm = 1 }, new Adam(amsgrad: true) { L1 = 1e-3 },
                     new AdamW(weightDecay: 0.05, eps: 1e-7), new RmsProp(centered: true, momentum: 0.5), new Adagrad(lrDecay: 0.01, initialAccumulatorValue: 0.1) { ClipValue = 0.5 },
                 })
        {
            var json = JsonSerializer.Serialize(new TrainingOptions { Optimizer = s }, Checkpoint.Json);
            Assert.That(JsonSerializer.Deserialize<TrainingOptions>(json, Checkpoint.Json)!.Optimizer, Is.EqualTo(s), json);
        }
        // What checkpoints held before the settings were typed: every algorithm's field in one object.
        const string untyped = """
            {"Kind":"RMSprop","LearningRate":0.002,"Momentum":0.5,"Dampening":0,"Nesterov":false,"Beta1":0.9,"Beta2":0.999,"Eps":1E-08,"WeightDecay":0,
             "Amsgrad":false,"Alpha":0.95,"Centered":true,"LrDecay":0,"InitialAccumulatorValue":0,"L1":0,"ClipValue":0,"ClipNorm":1}
            """;
        Assert.That(JsonSerializer.Deserialize<OptimizerSettings>(untyped, Checkpoint.Json),
            Is.EqualTo(new RmsProp(lr: 0.002, alpha: 0.95, momentum: 0.5, centered: true) { ClipNorm = 1 }));
        Assert.That(Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<OptimizerSettings>("""{"Kind":"Lion"}""", Checkpoint.Json))!.Message,
            Does.Contain("need a Kind of Sgd, Adam, AdamW, RMSprop, Adagrad; got \"Lion\""));
        Assert.That(Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<OptimizerSettings>("""{"Kind":"Adam","Beta1":"high"}""", Checkpoint.Json))!.Message,
            Does.Contain("Beta1 must be a number"));
    }

    private static (int Code, string Output) Cli(string args, int timeoutMs = 120_000, (string Name, string Value)? env = null)
    {
        var psi = new ProcessStartInfo("dotnet", $"\"{Path.Combine(AppContext.BaseDirectory, "backprop.dll")}\" {args}")
        { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (env is { } e0) psi.Environment[e0.Name] = e0.Value;
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeoutMs)) { p.Kill(true); Assert.Fail($"backprop {args} timed out"); }
        return (p.ExitCode, o.Result + e.Result);
    }

    private string SyntheticIdx()
    {
        string data = Path.Combine(_dir, "data");
        Directory.CreateDirectory(data);
        var r = new Random(1);
        foreach (var (prefix, n) in new[] { ("train", 300), ("t10k", 60) })
        {
            var px = new byte[n * 16];
            var lab = new byte[n];
            for (int i = 0; i < n; i++) { lab[i] = (byte)(i % 3); for (int j = 0; j < 16; j++) px[i * 16 + j] = (byte)(j / 4 == i % 3 ? 200 : r.Next(80)); }
            File.WriteAllBytes(Path.Combine(data, $"{prefix}-images-idx3-ubyte"), Data.IdxTests.Encode([n, 4, 4], px));
            File.WriteAllBytes(Path.Combine(data, $"{prefix}-labels-idx1-ubyte"), Data.IdxTests.Encode([n], lab));
        }
        return data;
    }

    [Test]
    public void Resume_InAFreshProcess_EqualsAnUninterruptedRun_BitForBit()
    {
        string data = SyntheticIdx();
        string common = $"train --data \"{data}\" --layers 12 --epochs 3 --batch 16 --dropout 0.25 --optimizer adamw --lr 0.01 --threads 2 --seed 9";
        string a = Path.Combine(_dir, "a"), b = Path.Combine(_dir, "b");
        var full = Cli($"{common} --output \"{a}\"");
        Assert.That(full.Code, Is.EqualTo(0), full.Output);
        // 300 samples / 16 = 19 steps per epoch; stop in the middle of epoch 2.
        var part1 = Cli($"{common} --stop-after-steps 27 --output \"{b}\"");
        Assert.That(part1.Code, Is.EqualTo(0), part1.Output);
        Assert.That(part1.Output, Does.Contain("stopped at step 27"));
        var part2 = Cli($"train --threads 1 --resume \"{b}\""); // data, epochs, everything else from the checkpoint
        Assert.That(part2.Code, Is.EqualTo(0), part2.Output);
        Assert.That(part2.Output, Does.Contain("resuming").And.Contain("at step 27 (epoch 2, batch 8)"));
        var fa = SafeTensorsFile.Read(Path.Combine(a, "model.safetensors"));
        var fb = SafeTensorsFile.Read(Path.Combine(b, "model.safetensors"));
        Assert.That(fb.Tensors.Keys, Is.EquivalentTo(fa.Tensors.Keys));
        foreach (var name in fa.Tensors.Keys)
            Assert.That(fb.ReadFloat(name).Select(BitConverter.SingleToInt32Bits), Is.EqualTo(fa.ReadFloat(name).Select(BitConverter.SingleToInt32Bits)), name);
        Assert.That(part2.Output.TrimEnd().Split('\n')[^1], Is.EqualTo(full.Output.TrimEnd().Split('\n')[^1]), "same final test accuracy");
    }

    [Test]
    public void AKilledWriter_LeavesThePreviousCheckpointLoadable()
    {
        string data = SyntheticIdx();
        string run = Path.Combine(_dir, "run");
        var first = Cli($"train --data \"{data}\" --layers 64 --epochs 1 --batch 64 --threads 1 --stop-after-steps 1 --output \"{run}\"");
        Assert.That(first.Code, Is.EqualTo(0), first.Output);
        string ckpt = Path.Combine(run, "checkpoint.safetensors");
        var before = File.ReadAllBytes(ckpt);
        // The resumed run writes a checkpoint of the same size after its first step; the seam kills the process
        // (SIGKILL) after that many bytes of it: none, inside the header length, inside the JSON, mid-data, all but one.
        foreach (long at in new long[] { 0, 5, 40, before.Length / 2, before.Length - 1 })
        {
            var killed = Cli($"train --threads 1 --checkpoint-every 1 --epochs 2 --resume \"{run}\"",
                env: (SafeTensorsWriter.KillAfterBytesVariable, at.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            Assert.That(killed.Code, Is.EqualTo(137), $"killed after {at} bytes: the process must have died by SIGKILL\n{killed.Output}");
            Assert.That(File.ReadAllBytes(ckpt), Is.EqualTo(before), $"killed after {at} of {before.Length} bytes: the previous checkpoint must be untouched");
            var info = Checkpoint.ReadInfo(ckpt);
            using var m = new Model(info.Spec, info.Options with { Threads = 1 });
            Checkpoint.LoadTraining(m, ckpt);
            Assert.That(m.StepCount, Is.EqualTo(1));
        }
        foreach (var tmp in Directory.GetFiles(run, ".checkpoint.safetensors.*.tmp")) File.Delete(tmp); // what the kills left
        var resumed = Cli($"train --threads 1 --resume \"{run}\"");
        Assert.That(resumed.Code, Is.EqualTo(0), "the run resumes from the surviving checkpoint: " + resumed.Output);
    }
}
