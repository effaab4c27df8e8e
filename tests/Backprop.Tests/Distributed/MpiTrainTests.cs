// `backprop train` under `mpirun -np 2` on this machine (ranks over shared memory, or TCP on loopback):
// deterministic mode equals one process with --accumulate 2 bit for bit (the tensors of model.safetensors)
// for every optimizer, with dropout; fast mode learns as well; a job stopped with 2 ranks resumes with 2 or
// with 1 (accumulating 2) to the very weights of an uninterrupted run; rank 0 alone prints and writes; a
// rank killed mid-run stops the whole job and leaves the last checkpoint whole; a lone process never loads MPI.
using System.Diagnostics;
using Backprop.Cli;
using Backprop.Engine.Checkpoints;
using Backprop.Tests.Data;
using Backprop.Tests.Mpi;
using NUnit.Framework;
using static Backprop.Tests.Cli.InProcessCli;

namespace Backprop.Tests.Distributed;

[TestFixture]
[NonParallelizable]
[Category("Mpi")]
public class MpiTrainTests
{
    private string _dir = "", _data = "";

    [SetUp]
    public void MakeData()
    {
        MpiRun.RequireMpirun();
        _dir = Path.Combine(Path.GetTempPath(), "backprop-mpi-" + Guid.NewGuid().ToString("N"));
        _data = Path.Combine(_dir, "data");
        Directory.CreateDirectory(_data);
        IdxTests.WriteThreeClassSet(_data);
    }

    [TearDown]
    public void Clean()
    {
        Commands.TestCommands.Clear();
        if (Directory.Exists(_dir)) Directory.Delete(_dir, true);
    }

    private string Args(string output, string more) =>
        $"train --data \"{_data}\" --layers 12,8 --batch 18 --threads 1 --dropout 0.25 --output \"{output}\"{(more.Contains("--epochs") ? "" : " --epochs 2")} {more}";

    private static string[] Split(string args) => System.CommandLine.Parsing.CommandLineParser.SplitCommandLine(args).ToArray();

    // Every tensor of a safetensors file, by name, as its raw bytes.
    private static Dictionary<string, byte[]> Tensors(string path)
    {
        var f = SafeTensorsFile.Read(path);
        var all = File.ReadAllBytes(path);
        long data = 8 + BitConverter.ToInt64(all, 0);
        return f.Tensors.Values.ToDictionary(t => t.Name, t => all[(int)(data + t.Begin)..(int)(data + t.End)]);
    }

    private static void AssertSameTensors(string expected, string actual, string what)
    {
        var a = Tensors(expected);
        var b = Tensors(actual);
        Assert.That(b.Keys, Is.EquivalentTo(a.Keys), what);
        foreach (var (name, bytes) in a) Assert.That(b[name], Is.EqualTo(bytes), $"{what}: tensor {name}");
    }

    private static (int ExitCode, string StdOut, string StdErr) Mpi(int ranks, string args, bool tcp = false)
    {
        var r = MpiRun.Launch(ranks, args, tcp, timeoutSeconds: 120);
        Assert.That(r.ExitCode, Is.EqualTo(0), r.StdOut + r.StdErr);
        return r;
    }

    [TestCase("adam --lr 0.01")]
    [TestCase("sgd --lr 0.1 --momentum 0.9 --nesterov --weight-decay 0.001")]
    [TestCase("adamw --lr 0.01 --clip-norm 0.5")]
    [TestCase("rmsprop --lr 0.002 --momentum 0.5")]
    [TestCase("adagrad --lr 0.05")]
    public void TwoRanks_Deterministic_EqualOneProcessAccumulating2_BitForBit(string optimizer)
    {
        string single = Path.Combine(_dir, "single"), job = Path.Combine(_dir, "job");
        var (code, o, e) = Run(Split(Args(single, $"--optimizer {optimizer} --accumulate 2")));
        Assert.That(code, Is.EqualTo(0), o + e);
        var r = Mpi(2, Args(job, $"--optimizer {optimizer}"));
        AssertSameTensors(Path.Combine(single, "model.safetensors"), Path.Combine(job, "model.safetensors"), "2 ranks against --accumulate 2");
        Assert.That(r.StdOut, Does.Contain("distributed: 2 processes (MPI"));
        Assert.That(r.StdOut.Split('\n').Count(l => l.StartsWith("test accuracy")), Is.EqualTo(1), "rank 0 alone prints: " + r.StdOut);
        Assert.That(o.Split('\n').Last(l => l.StartsWith("test accuracy")), Is.EqualTo(r.StdOut.Split('\n').Last(l => l.StartsWith("test accuracy"))));
    }

    [Test]
    public void FastModeOverlapped_GivesTheWeightsOfFastMode_BitForBit([Values(false, true)] bool tcp)
    {
        string fast = Path.Combine(_dir, "fast"), overlapped = Path.Combine(_dir, "overlap");
        Mpi(2, Args(fast, "--epochs 1 --reduction fast"), tcp);
        var r = Mpi(2, Args(overlapped, "--epochs 1 --reduction fast --overlap"), tcp);
        Assert.That(r.StdOut, Does.Contain("fast reduction overlapped with the backward pass"));
        AssertSameTensors(Path.Combine(fast, "model.safetensors"), Path.Combine(overlapped, "model.safetensors"), "overlapped against not");
        var (code, _, e) = Run(Split(Args(Path.Combine(_dir, "x"), "--overlap")));
        Assert.That(code, Is.EqualTo(2));
        Assert.That(e, Does.Contain("--overlap applies to --reduction fast"));
    }

    [Test]
    public void OverTcpOnLoopback_TheSameWeights()
    {
        string shm = Path.Combine(_dir, "shm"), tcp = Path.Combine(_dir, "tcp");
        Mpi(2, Args(shm, "--epochs 1"));
        Mpi(2, Args(tcp, "--epochs 1"), tcp: true);
        AssertSameTensors(Path.Combine(shm, "model.safetensors"), Path.Combine(tcp, "model.safetensors"), "tcp against shared memory");
    }

    [Test]
    public void FastMode_LearnsAsWell()
    {
        string single = Path.Combine(_dir, "single"), job = Path.Combine(_dir, "fast");
        var (code, o, e) = Run(Split(Args(single, "--epochs 3 --lr 0.01")));
        Assert.That(code, Is.EqualTo(0), o + e);
        var r = Mpi(2, Args(job, "--epochs 3 --lr 0.01 --reduction fast --accumulate 2"));
        Assert.That(r.StdOut, Does.Contain("fast reduction"));
        double Acc(string s) => double.Parse(s.Split('\n').Last(l => l.StartsWith("test accuracy"))["test accuracy ".Length..], System.Globalization.CultureInfo.InvariantCulture);
        Assert.That(Acc(r.StdOut), Is.EqualTo(Acc(o)).Within(0.1));
        Assert.That(Acc(r.StdOut), Is.GreaterThan(0.8));
    }

    [Test]
    public void AStoppedJob_ResumesWith2Ranks_AndWith1_ToTheWeightsOfAnUninterruptedRun()
    {
        string whole = Path.Combine(_dir, "whole"), two = Path.Combine(_dir, "two"), one = Path.Combine(_dir, "one");
        Mpi(2, Args(whole, ""));
        Mpi(2, Args(two, "--stop-after-steps 7"));
        Mpi(2, $"train --resume \"{two}\" --threads 1");
        AssertSameTensors(Path.Combine(whole, "model.safetensors"), Path.Combine(two, "model.safetensors"), "2 ranks, stopped and resumed with 2");

        Mpi(2, Args(one, "--stop-after-steps 7"));
        var (code, o, e) = Run("train", "--resume", one, "--threads", "1"); // the checkpoint's split of 2 micro-batches: accumulate 2
        Assert.That(code, Is.EqualTo(0), o + e);
        Assert.That(o, Does.Contain("each batch in 2 micro-batches: --accumulate 2 x 1 process(es)"));
        AssertSameTensors(Path.Combine(whole, "model.safetensors"), Path.Combine(one, "model.safetensors"), "2 ranks, resumed by 1 accumulating 2");
    }

    [Test]
    public void AKilledRank_StopsTheJob_AndTheLastCheckpointStaysWhole()
    {
        string job = Path.Combine(_dir, "killed"), ckpt = Path.Combine(job, "checkpoint.safetensors");
        var psi = MpiRun.StartInfo(2, Args(job, "--epochs 100000 --checkpoint-every 3"), tcp: false);
        using var mpirun = Process.Start(psi)!;
        var stdout = mpirun.StandardOutput.ReadToEndAsync();
        var stderr = mpirun.StandardError.ReadToEndAsync();
        var until = DateTime.UtcNow.AddSeconds(60);
        while (!File.Exists(ckpt) && DateTime.UtcNow < until && !mpirun.HasExited) Thread.Sleep(100);
        Assert.That(File.Exists(ckpt), Is.True, "a checkpoint was written: " + (mpirun.HasExited ? stdout.Result + stderr.Result : ""));
        var ranks = Children(mpirun.Id).Where(p => Cmdline(p).Contains("backprop.dll")).ToArray();
        Assert.That(ranks, Has.Length.EqualTo(2), "the two ranks are mpirun's children");
        Process.GetProcessById(ranks[1]).Kill();
        Assert.That(mpirun.WaitForExit(60_000), Is.True, "the job stops when a rank dies");
        Assert.That(mpirun.ExitCode, Is.Not.EqualTo(0), stdout.Result + stderr.Result);
        var info = Checkpoint.ReadInfo(ckpt);
        Assert.That(info.Step % 3, Is.EqualTo(0), "a checkpoint of a step the run saved");
        Assert.That(Directory.GetFiles(job).Select(Path.GetFileName), Does.Not.Contain("model.safetensors"));
    }

    [Test]
    public void ACheckpointWriteFailingOnRank0_AbortsTheJob_NamingTheRank()
    {
        string job = Path.Combine(_dir, "unwritable");
        Directory.CreateDirectory(Path.Combine(job, "checkpoint.safetensors")); // a folder where the file goes: the rename fails
        var r = MpiRun.Launch(2, Args(job, "--epochs 50 --checkpoint-every 4"), timeoutSeconds: 120);
        Assert.That(r.ExitCode, Is.Not.EqualTo(0), r.StdOut + r.StdErr);
        Assert.That(r.StdErr, Does.Contain("backprop: rank 0 of 2: could not write"));
        Assert.That(r.StdErr, Does.Contain("stopping every rank of the job"));
        Assert.That(Directory.GetFiles(job), Is.Empty, "no temporary and no model left behind");
    }

    [Test]
    public void SigtermToTheRanks_StopsEveryRankAfterTheSameStep_WithACheckpoint_ThatResumes()
    {
        // The ranks, not mpirun: on a signal mpirun stops forwarding their output and kills them a second later
        // (odls_base_sigkill_timeout), so a clean stop is asked of the ranks themselves (README).
        string job = Path.Combine(_dir, "signal"), ckpt = Path.Combine(job, "checkpoint.safetensors");
        using var mpirun = Process.Start(MpiRun.StartInfo(2, Args(job, "--epochs 100000")))!;
        var stderr = mpirun.StandardError.ReadToEndAsync();
        string? line;
        while ((line = mpirun.StandardOutput.ReadLine()) is not null && !line.StartsWith("epoch 2/", StringComparison.Ordinal)) { }
        Assert.That(line, Is.Not.Null, "the job reached epoch 2");
        var ranks = Children(mpirun.Id).Where(p => Cmdline(p).Contains("backprop.dll")).ToArray();
        Assert.That(ranks, Has.Length.EqualTo(2));
        foreach (int r in ranks) Assert.That(Kill(r, 15), Is.EqualTo(0), "SIGTERM sent");
        var rest = mpirun.StandardOutput.ReadToEndAsync();
        Assert.That(mpirun.WaitForExit(60_000), Is.True);
        Assert.That(mpirun.ExitCode, Is.Not.EqualTo(0));
        Assert.That(stderr.Result, Does.Contain("SIGTERM: stopped after step").And.Contain("the checkpoint is saved"), rest.Result + stderr.Result);
        var info = Checkpoint.ReadInfo(ckpt);
        Assert.That(info.Step, Is.GreaterThan(0));
        var r2 = Mpi(2, $"train --resume \"{job}\" --threads 1 --epochs {info.Position.Epoch + 1}");
        Assert.That(r2.StdOut, Does.Contain($"resuming {ckpt} at step {info.Step}"));
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    [Test]
    public void DataParallelSteps_AllocateNothing_OnAnyThread_OfEitherRank()
    {
        var r = Mpi(2, "bench alloc --steps 1000 --threads 1 --accumulate 2");
        Assert.That(r.StdOut, Does.Contain("rank 0 of 2: 1000 steps on 1 thread(s), 2 micro-batches each: 0 bytes allocated on the calling thread, 0 on all threads"), r.StdOut);
        Assert.That(r.StdOut, Does.Contain("rank 1 of 2: 1000 steps on 1 thread(s), 2 micro-batches each: 0 bytes allocated on the calling thread, 0 on all threads"), r.StdOut);
    }

    [Test]
    public void BadDataOnOneRank_StopsTheJob_WithAMessageNamingTheRank()
    {
        // MPMD: rank 1 gets a data folder that does not exist (as on a machine without the data).
        string good = Args(Path.Combine(_dir, "bad-data"), "--epochs 3");
        string bad = good.Replace($"--data \"{_data}\"", $"--data \"{Path.Combine(_dir, "missing")}\"");
        string rank = $"\"{MpiRun.BackpropDll}\"";
        var r = MpiRun.Run(MpiRun.Mpirun!, $"--allow-run-as-root --oversubscribe --bind-to none -x TERM=dumb -np 1 dotnet {rank} {good} : -np 1 dotnet {rank} {bad}",
            120, null, null, removeLauncherVariables: false);
        Assert.That(r.ExitCode, Is.Not.EqualTo(0), r.StdOut + r.StdErr);
        Assert.That(r.StdErr, Does.Contain("backprop: rank 1 of 2: "), r.StdErr);
        Assert.That(r.StdErr, Does.Contain("missing"));
    }

    [Test]
    public void ABatchTooSmallForTheJob_IsAUsageErrorOnEachRank_BeforeMpiStarts()
    {
        var r = MpiRun.Launch(2, Args(Path.Combine(_dir, "tiny"), "").Replace("--batch 18", "--batch 1"));
        Assert.That(r.ExitCode, Is.Not.EqualTo(0));
        Assert.That(r.StdErr, Does.Contain("backprop: rank 0 of 2: a batch of 1 cannot be split into 2 micro-batches (--accumulate 1 x 2 processes); give --batch 2 or more."));
        Assert.That(r.StdErr, Does.Not.Contain("MPI_ABORT"));
    }

    [Test]
    public void ALoneProcess_NeverLoadsMpi()
    {
        string cli = Path.Combine(AppContext.BaseDirectory, "backprop.dll");
        var psi = new ProcessStartInfo("dotnet", $"\"{cli}\" {Args(Path.Combine(_dir, "lone"), "--epochs 1")}")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        psi.Environment["LD_DEBUG"] = "libs";
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        Assert.That(p.ExitCode, Is.EqualTo(0), output + err.Result);
        Assert.That(err.Result, Does.Contain("libopenblas").Or.Contain("libc.so"), "LD_DEBUG traced the library loads");
        Assert.That(err.Result, Does.Not.Contain("libmpi"));
    }

    [Test]
    public void DistributedMpi_OutsideALauncher_RunsAsAJobOfOne_AndBadChoicesAreRefused()
    {
        var (code, o, e) = Run(Split(Args(Path.Combine(_dir, "x"), "--distributed cluster")));
        Assert.That(code, Is.EqualTo(2));
        Assert.That(e, Does.Contain("--distributed must be auto, none or mpi; got 'cluster'"));
        (code, o, e) = Run(Split(Args(Path.Combine(_dir, "y"), "--reduction exact")));
        Assert.That(code, Is.EqualTo(2));
        Assert.That(e, Does.Contain("--reduction must be deterministic or fast; got 'exact'"));
        (code, o, e) = Run(Split(Args(Path.Combine(_dir, "z"), "--accumulate 0")));
        Assert.That(code, Is.EqualTo(2));
        Assert.That(e, Does.Contain("--accumulate must be in [1, 65536] micro-batches; got 0"));
        (code, o, e) = Run(Split(Args(Path.Combine(_dir, "w"), "--accumulate 19")));
        Assert.That(code, Is.EqualTo(2));
        Assert.That(e, Does.Contain("a batch of 18 cannot be split into 19 micro-batches"));
    }

    [Test]
    public void BenchDistributed_Reports1RankAnd2RankRows_AgainstARawAllreduce()
    {
        string dir = Path.Combine(_dir, "bench");
        var (code, o, e) = Run("bench", "distributed", "--model", "784-256-10", "--steps", "2", "--output", dir);
        Assert.That(code, Is.EqualTo(0), o + e);
        var rows = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "distributed.json"))).RootElement.EnumerateArray().ToArray();
        Assert.That(rows, Has.Length.EqualTo(15), "3 batch sizes x (1x1, 1x2, 2x1 deterministic, fast, fast overlapped)");
        var job = rows.Where(r => r.GetProperty("ranks").GetInt32() == 2).ToArray();
        Assert.That(job.Select(r => r.GetProperty("reduction").GetString()).Distinct(), Is.EquivalentTo(new[] { "deterministic", "fast", "overlap" }));
        foreach (var r in job)
        {
            Assert.That(r.GetProperty("reduce_ms").GetDouble(), Is.GreaterThan(0));
            Assert.That(r.GetProperty("reduce_fraction").GetDouble(), Is.InRange(0.0, 1.0));
            Assert.That(r.GetProperty("raw_allreduce_gb_per_s").GetDouble(), Is.GreaterThan(0));
            Assert.That(r.GetProperty("gradient_mb").GetDouble(), Is.EqualTo(4 * (784 * 256 + 256 + 256 * 10 + 16) / 1e6).Within(0.01));
        }
        Assert.That(File.ReadAllText(Path.Combine(dir, "distributed.md")), Does.Contain("| 784-256-10 | 128 | 2 x 1 | deterministic |"));
        (code, _, e) = Run("bench", "distributed", "--model", "nope", "--steps", "2");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(e, Does.Contain("--model 'nope' matches no model"));
    }

    private static int[] Children(int pid)
    {
        var found = new List<int>();
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int child)) continue;
            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                if (int.Parse(fields[1]) == pid) found.Add(child);
            }
            catch (IOException) { }
        }
        return found.ToArray();
    }

    private static string Cmdline(int pid)
    {
        try { return File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' '); }
        catch (IOException) { return ""; }
    }
}
