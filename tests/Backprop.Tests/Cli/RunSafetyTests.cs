// `backprop train` and `export` as a careless or hostile user drives them: output folders that cannot
// work are refused before training (exit 2, one line, nothing on disk changed), earlier runs are not
// overwritten unless asked, failed writes keep the previous checkpoint and leave no temporary, SIGINT
// and SIGTERM stop at a step boundary with a checkpoint (exit 130 / 143), a resumed run is the same run
// (its data, scaling, epochs and split from the checkpoint; overrides that are documented work, others
// are refused), the number of classes is taken with sense, and an unexpected error is one line (exit 70).
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Backprop.Cli;
using Backprop.Engine;
using Backprop.Engine.Checkpoints;
using Backprop.Engine.Training;
using Backprop.Kernels;
using Backprop.Tests.Data;
using NUnit.Framework;
using static Backprop.Tests.Cli.InProcessCli;

namespace Backprop.Tests.Cli;

[TestFixture]
[NonParallelizable]
public class RunSafetyTests
{
    private string _dir = "", _data = "";

    [SetUp]
    public void MakeData()
    {
        _dir = Path.Combine(Path.GetTempPath(), "backprop-safety-" + Guid.NewGuid().ToString("N"));
        _data = Path.Combine(_dir, "data");
        Directory.CreateDirectory(_data);
        IdxTests.WriteThreeClassSet(_data);
    }

    [TearDown]
    public void Clean()
    {
        Commands.TestCommands.Clear();
        Directory.Delete(_dir, true);
    }


    private string[] Train(params string[] more) =>
        ["train", "--data", _data, "--layers", "12", "--batch", "16", "--threads", "1", .. more.Contains("--epochs") ? [] : new[] { "--epochs", "2" }, .. more];

    private static void OneLine(string err) => Assert.That(err.Trim().Split('\n'), Has.Length.EqualTo(1), "one line, no stack trace: " + err);

    private static Dictionary<string, byte[]> Snapshot(string dir) =>
        Directory.EnumerateFiles(dir).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes);

    [Test]
    public void AnOutputThatIsAFile_OrCannotBeCreated_IsRefusedBeforeTraining()
    {
        string file = Path.Combine(_dir, "not-a-folder");
        File.WriteAllText(file, "keep me");
        var (code, output, err) = Run(Train("--output", file));
        Assert.That(code, Is.EqualTo(2));
        Assert.That(err, Does.Contain($"--output '{file}' is a file; expected a folder"));
        OneLine(err);
        Assert.That(output, Does.Not.Contain("epoch"), "nothing trained");
        Assert.That(File.ReadAllText(file), Is.EqualTo("keep me"));
        // /proc is not writable even by root
        var (code2, _, err2) = Run(Train("--output", "/proc/backprop-cannot-exist/run"));
        Assert.That(code2, Is.EqualTo(2));
        Assert.That(err2, Does.Contain("cannot be written"));
        OneLine(err2);
    }

    [Test]
    public void AFolderWithAnEarlierRun_IsNotReplacedUnlessAsked_AndStaleTemporariesGo()
    {
        string run = Path.Combine(_dir, "run");
        Assert.That(Run(Train("--output", run, "--epochs", "1")).Code, Is.EqualTo(0));
        var before = Snapshot(run);
        var (code, _, err) = Run(Train("--output", run, "--lr", "0.5"));
        Assert.That(code, Is.EqualTo(2));
        Assert.That(err, Does.Contain("holds an earlier run (model.safetensors, metrics.json").And.Contain("--resume").And.Contain("--overwrite"));
        OneLine(err);
        Assert.That(Snapshot(run).Keys, Is.EquivalentTo(before.Keys));
        foreach (var (name, bytes) in before) Assert.That(File.ReadAllBytes(Path.Combine(run, name)), Is.EqualTo(bytes), name);

        string stale = Path.Combine(run, ".checkpoint.safetensors.999999.tmp"), mine = Path.Combine(run, "notes.txt.tmp");
        File.WriteAllBytes(stale, new byte[100]);
        File.WriteAllText(mine, "not ours");
        var (code2, output2, err2) = Run(Train("--output", run, "--epochs", "1", "--overwrite"));
        Assert.That(code2, Is.EqualTo(0), err2);
        Assert.That(output2, Does.Contain("test accuracy"));
        Assert.That(File.Exists(stale), Is.False, "a temporary a killed writer left is removed");
        Assert.That(File.ReadAllText(mine), Is.EqualTo("not ours"), "other files are left alone");
    }

    [Test]
    public void ACheckpointWriteThatFails_EndsTheRun_KeepsThePreviousCheckpoint_AndLeavesNoTemporary()
    {
        string run = Path.Combine(_dir, "run");
        Assert.That(Run(Train("--output", run, "--stop-after-steps", "3")).Code, Is.EqualTo(0));
        string ckpt = Path.Combine(run, "checkpoint.safetensors");
        var before = File.ReadAllBytes(ckpt);
        var r = Child($"train --threads 1 --checkpoint-every 2 --resume \"{run}\"", (SafeTensorsWriter.FailAfterBytesVariable, "100"));
        Assert.That(r.Code, Is.EqualTo(1), r.Out + r.Err);
        Assert.That(r.Err, Does.Contain("could not write").And.Contain("No space left on device").And.Contain("the previous checkpoint is kept"));
        OneLine(r.Err);
        Assert.That(File.ReadAllBytes(ckpt), Is.EqualTo(before));
        Assert.That(Directory.GetFiles(run, "*.tmp"), Is.Empty, "no temporary left");
    }

    [TestCase("INT", 130)]
    [TestCase("TERM", 143)]
    public void ASignal_StopsAtAStepBoundary_SavesACheckpoint_AndTheRunResumes(string signal, int exit)
    {
        // A background job of a non-interactive shell starts with SIGINT ignored, and a child inherits that (POSIX; .NET keeps
        // an inherited SIG_IGN): the CLI cannot see the signal there, which is not what this test is about.
        if (signal == "INT" && SignalIgnoredHere(2))
            Assert.Ignore("SIGINT is ignored by this test process (started as a background job), so the child inherits SIG_IGN; run the tests in the foreground.");
        string run = Path.Combine(_dir, "run");
        // Far more epochs than the signal needs to land in (an epoch of this data takes milliseconds): a missed signal
        // shows as a run that does not stop within the minute, not as a run that happened to finish first.
        var psi = new ProcessStartInfo("dotnet", $"\"{Path.Combine(AppContext.BaseDirectory, "backprop.dll")}\" train --data \"{_data}\" --layers 64 --epochs 100000 --batch 8 --threads 1 --output \"{run}\"")
        { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        using var p = Process.Start(psi)!;
        using var cleanup = new ProcessKiller(p);
        var err = p.StandardError.ReadToEndAsync();
        string? line;
        while ((line = p.StandardOutput.ReadLine()) is not null && !line.StartsWith("epoch 2/", StringComparison.Ordinal)) { }
        Assert.That(line, Is.Not.Null, "the run reached epoch 2");
        using (var kill = Process.Start("kill", $"-{signal} {p.Id}")) kill.WaitForExit();
        var rest = p.StandardOutput.ReadToEndAsync();
        Assert.That(p.WaitForExit(60_000), Is.True, "stopped within a minute");
        Assert.That(p.ExitCode, Is.EqualTo(exit), err.Result + rest.Result);
        Assert.That(err.Result, Does.Contain($"SIG{signal}: stopped after step").And.Contain("continue with --resume"));
        Assert.That(Directory.GetFiles(run, "*.tmp"), Is.Empty);
        var info = Checkpoint.ReadInfo(Path.Combine(run, "checkpoint.safetensors"));
        Assert.That(info.Step, Is.GreaterThan(2 * 38 - 1), "at least the first epoch was saved");
        var resumed = Child($"train --threads 1 --epochs {info.Position.Epoch} --resume \"{run}\"");
        Assert.That(resumed.Code, Is.EqualTo(0), resumed.Out + resumed.Err);
        Assert.That(resumed.Out, Does.Contain($"resuming").And.Contain("test accuracy"));
    }

    [Test]
    public void AResumedRun_IsTheSameRun_DataScalingEpochsAndSplitFromTheCheckpoint()
    {
        string a = Path.Combine(_dir, "a"), b = Path.Combine(_dir, "b");
        string[] same = ["--normalize", "standardize", "--validation", "0.2", "--epochs", "3", "--seed", "4", "--dropout", "0.1"];
        var full = Run(Train([.. same, "--output", a]));
        Assert.That(full.Code, Is.EqualTo(0), full.Err);
        Assert.That(Run(Train([.. same, "--output", b, "--stop-after-steps", "20"])).Code, Is.EqualTo(0));
        var info = Checkpoint.ReadInfo(Path.Combine(b, "checkpoint.safetensors"));
        Assert.That(info.Run, Is.Not.Null);
        Assert.That((info.Run!.Epochs, info.Run.ValidationFraction, info.Run.Preprocessing.Kind, info.Run.Format, info.Run.Data, info.Run.Classes),
            Is.EqualTo((3, 0.2, Backprop.Engine.Data.Normalization.Standardize, "idx", _data, 3)));
        Assert.That(info.Run.Preprocessing.Mean, Has.Length.EqualTo(16));
        var resumed = Run("train", "--threads", "1", "--resume", b);
        Assert.That(resumed.Code, Is.EqualTo(0), resumed.Err);
        Assert.That(resumed.Out, Does.Contain("epoch 3/3").And.Not.Contain("epoch 4/"), "the run's own length, not the default 15 epochs");
        var (fa, fb) = (SafeTensorsFile.Read(Path.Combine(a, "model.safetensors")), SafeTensorsFile.Read(Path.Combine(b, "model.safetensors")));
        foreach (var name in fa.Tensors.Keys) Assert.That(fb.ReadFloat(name), Is.EqualTo(fa.ReadFloat(name)), $"{name}: bit for bit as the uninterrupted run");
    }

    [Test]
    public void WithResume_FlagsThatWouldChangeTheRunAreRefused_AndTheDocumentedOverridesWork()
    {
        string run = Path.Combine(_dir, "run");
        Assert.That(Run(Train("--output", run, "--stop-after-steps", "25")).Code, Is.EqualTo(0)); // 19 steps an epoch: stops in epoch 2
        foreach (var flag in new[] { new[] { "--data", _data }, ["--normalize", "none"], ["--layers", "8"], ["--batch", "4"], ["--validation", "0.1"], ["--seed", "3"] })
        {
            var (code, _, err) = Run(["train", "--resume", run, .. flag]);
            Assert.That(code, Is.EqualTo(2), string.Join(" ", flag));
            Assert.That(err, Does.Contain($"{flag[0]} cannot change a resumed run"));
            OneLine(err);
        }
        Assert.That(Run("train", "--resume", run, "--epochs", "1").Err, Does.Contain("--epochs 1 ends before the checkpoint's position (epoch 2)"));
        var (c, output, e) = Run("train", "--resume", run, "--lr", "0.05", "--epochs", "3", "--threads", "1");
        Assert.That(c, Is.EqualTo(0), e);
        Assert.That(output, Does.Contain("lr 0.05").And.Contain("epoch 3/3"), "--lr and --epochs are overrides that work");
        Assert.That(Run("train", "--resume", Path.Combine(_dir, "nothing-here")).Err, Does.Contain("holds no checkpoint.safetensors"));
    }

    [Test]
    public void Classes_ComeFromTheLabelsWithSense_OrFromDashDashClasses()
    {
        string csv = Path.Combine(_dir, "csv");
        Directory.CreateDirectory(csv);
        void Write(string name, params int[] labels) =>
            File.WriteAllLines(Path.Combine(csv, name), ["a,b,label", .. labels.Select((y, i) => FormattableString.Invariant($"{i % 7},{i % 5},{y}"))]);
        Write("train.csv", [.. Enumerable.Range(0, 30).Select(i => i % 3 == 0 ? 0 : i % 3 == 1 ? 1 : 5)]);
        Write("test.csv", 0, 1, 5, 1);
        string[] csvRun = ["train", "--data", csv, "--format", "csv", "--layers", "4", "--epochs", "1", "--batch", "8", "--threads", "1", "--normalize", "none"];
        var (code, _, err) = Run(csvRun);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(err, Does.Contain("class 2 has no training sample").And.Contain("pass --classes 6"));
        OneLine(err);
        Assert.That(Run([.. csvRun, "--classes", "6"]).Code, Is.EqualTo(0), "told, it trains a 6-class model");
        Assert.That(Run([.. csvRun, "--classes", "4"]).Err, Does.Contain("training label 5 of sample 2 is not below --classes 4"));
        Write("train.csv", [.. Enumerable.Range(0, 30).Select(i => i % 2)]);
        Write("test.csv", 0, 1, 3);
        Assert.That(Run(csvRun).Err, Does.Contain("test label 3 (sample 2) is no training class (the training labels run 0..1)"));
        Write("test.csv", 0, 1, 1000000);
        Assert.That(Run(csvRun).Err, Does.Contain("the labels go up to 1000000").And.Contain("more than 10,000 are not inferred"));
    }

    [Test]
    public void TheExport_NeverReplacesItsInput_OrAFileThatIsNotAnOnnxModel()
    {
        string run = Path.Combine(_dir, "run");
        Assert.That(Run(Train("--output", run, "--epochs", "1")).Code, Is.EqualTo(0));
        string weights = Path.Combine(run, "model.safetensors");
        var before = File.ReadAllBytes(weights);
        var (code, _, err) = Run("export", "--onnx", weights, "--from", weights);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(err, Does.Contain("is the --from file itself"));
        Assert.That(File.ReadAllBytes(weights), Is.EqualTo(before));
        string notes = Path.Combine(_dir, "notes.txt");
        File.WriteAllText(notes, "precious");
        Assert.That(Run("export", "--onnx", notes, "--from", weights).Err, Does.Contain("exists and is not an ONNX model; refusing to replace it"));
        Assert.That(File.ReadAllText(notes), Is.EqualTo("precious"));
        Assert.That(Run("export", "--onnx", _dir, "--from", weights).Err, Does.Contain("is a folder"));
        Assert.That(Run("export", "--onnx", Path.Combine(_dir, "missing", "m.onnx"), "--from", weights).Err, Does.Contain("does not exist"));
        string onnx = Path.Combine(_dir, "m.onnx");
        Assert.That(Run("export", "--onnx", onnx, "--from", weights).Code, Is.EqualTo(0));
        Assert.That(Run("export", "--onnx", onnx, "--from", weights, "--softmax").Code, Is.EqualTo(0), "an ONNX model is replaced");
    }

    [Test]
    public void AnUnexpectedError_IsOneLineAskingForAReport_Exit70_AndTheStackWithVerbose()
    {
        Commands.TestCommands.Add(() =>
        {
            var c = new Command("explode", "test only");
            c.SetAction((Func<ParseResult, int>)(_ => throw new InvalidCastException("boom")));
            return c;
        });
        var (code, _, err) = Run("explode");
        Assert.That(code, Is.EqualTo(70));
        Assert.That(err, Does.Contain("internal error: InvalidCastException: boom").And.Contain("Please report it"));
        OneLine(err);
        var (code2, _, err2) = Run("explode", "--verbose");
        Assert.That(code2, Is.EqualTo(70));
        Assert.That(err2, Does.Contain("   at "), "the stack with --verbose");
        Assert.That(Run("--help").Out, Does.Contain("Exit codes: 0 success; 1 the run failed"));
    }

    [Test]
    public void AdamW_WithoutWeightDecay_HasTorchsDefault()
    {
        string run = Path.Combine(_dir, "run");
        Assert.That(Run(Train("--output", run, "--optimizer", "adamw", "--stop-after-steps", "2")).Code, Is.EqualTo(0));
        var info = Checkpoint.ReadInfo(Path.Combine(run, "checkpoint.safetensors"));
        Assert.That(info.Options.Optimizer, Is.TypeOf<AdamW>());
        Assert.That(info.Options.Optimizer.WeightDecay, Is.EqualTo(0.01));
    }

    [Test]
    public void ALossThatGrowsByOrdersOfMagnitude_IsWarnedAbout()
    {
        EpochMetrics M(int e, double loss) => new(e, loss, null, null, null, null, 1, 1, 1e-3);
        Assert.That(TrainRunner.LossWarning(0.5, M(3, 80)), Does.Contain("the training loss grew from 0.5 (first epoch) to 80 (epoch 3)"));
        Assert.That(TrainRunner.LossWarning(0.5, M(3, 40)), Is.Null);
        Assert.That(TrainRunner.LossWarning(0.001, M(3, 0.9)), Is.Null, "below 1 it is no divergence worth a warning");
    }

    [Test]
    public void AOneUnitLayer_IsSavedAsPyTorchHasIt_AndOldFilesStillLoad()
    {
        using var m = new Sequential(5).Dense(4, "tanh").Dense(1).Compile(new TrainingOptions { Loss = LossKind.Mse, Threads = 1 });
        string path = Path.Combine(_dir, "head.safetensors");
        Checkpoint.SaveWeights(m, path);
        var f = SafeTensorsFile.Read(path);
        Assert.That(f.Tensors["2.weight"].Shape, Is.EqualTo(new[] { 1, 4 }), "[out, in] as nn.Linear(4, 1)");
        Assert.That(f.Tensors["2.bias"].Shape, Is.EqualTo(new[] { 1 }));
        // what earlier versions wrote: the one-unit weight as [in]
        var legacy = Path.Combine(_dir, "legacy.safetensors");
        SafeTensorsWriter.Write(legacy,
            [("0.weight", [4, 5], m.GetWeights(0)), ("0.bias", [4], m.GetBias(0)), ("2.weight", [4], m.GetWeights(1)), ("2.bias", [1], m.GetBias(1))],
            new Dictionary<string, string> { ["format"] = "backprop-weights", ["spec"] = System.Text.Json.JsonSerializer.Serialize(m.Spec, Checkpoint.Json) });
        using var back = new Model(Checkpoint.ReadSpec(legacy), new TrainingOptions { Loss = LossKind.Mse, Threads = 1 });
        Checkpoint.LoadWeights(back, legacy);
        Assert.That(back.GetWeights(1), Is.EqualTo(m.GetWeights(1)));
    }

    private static (int Code, string Out, string Err) Child(string args, (string, string)? env = null)
    {
        var psi = new ProcessStartInfo("dotnet", $"\"{Path.Combine(AppContext.BaseDirectory, "backprop.dll")}\" {args}")
        { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (env is { } e) psi.Environment[e.Item1] = e.Item2;
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        var er = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(180_000)) { p.Kill(true); Assert.Fail($"backprop {args} timed out"); }
        return (p.ExitCode, o.Result, er.Result);
    }

    /// <summary>Whether signal <paramref name="number"/> is ignored in this process (Linux: the SigIgn mask of /proc/self/status).</summary>
    private static bool SignalIgnoredHere(int number)
    {
        const string status = "/proc/self/status";
        if (!File.Exists(status)) return false;
        var line = File.ReadLines(status).FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal));
        return line is not null && (Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16) & (1UL << (number - 1))) != 0;
    }

    /// <summary>Kills the process (and its children) when the test ends with it still running.</summary>
    private sealed class ProcessKiller(Process p) : IDisposable
    {
        public void Dispose()
        {
            try
            {
                if (!p.HasExited) p.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // already gone
            }
        }
    }
}
