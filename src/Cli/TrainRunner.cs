// Runs a fit for `backprop train`: a progress bar per epoch (Spectre.Console on a terminal, plain
// lines otherwise), a table of the epochs, the output folder, and the closing "test accuracy" line.
// Results go to stdout, errors and warnings to stderr. SIGINT and SIGTERM stop at the next step
// boundary (saving a checkpoint when the run has a folder) and exit 130 / 143. A write that fails
// (a checkpoint, the final files) ends the run with one line and exit 1; the writer leaves the previous
// file and no temporary behind.
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Backprop.Engine;
using Backprop.Engine.Checkpoints;
using Backprop.Engine.Data;
using Backprop.Engine.Training;
using Spectre.Console;

namespace Backprop.Cli;

internal static class TrainRunner
{
    /// <summary>Exit codes of `backprop train` beyond 0 (success) and 2 (bad input).</summary>
    public const int ExitFailed = 1, ExitInterrupted = 130, ExitTerminated = 143;

    // A checkpoint that could not be written: the run stops with it.
    private sealed class WriteFailedException(string path, Exception inner) : Exception($"could not write {path}: {inner.Message}", inner);

    public static int Run(Model model, Dataset train, Dataset test, FitOptions fit, DirectoryInfo? output, TrainingRun run, TensorDtype dtype, TextWriter stdout, TextWriter stderr,
        DistributedLaunch? launch = null)
    {
        var spec = model.Spec;
        if (model.Rank != 0) output = null; // rank 0 alone writes the run's files and checkpoints
        string tree = spec.Describe();
        string layers = spec.IsTree ? tree[(tree.IndexOf('-') + 1)..] + TreeActivations(spec) : string.Join("-", spec.Layers.Select(l =>
            I($"{l.Units}") + (l.Activation.Kind == Kernels.ActivationKind.Identity ? "" : " " + l.Activation) + (l.Dropout > 0 ? I($" dropout {l.Dropout}") : "")));
        stdout.WriteLine(I($"model: {spec.InputWidth}-{layers}, {model.Plan.ParameterCount:N0} parameters, {model.Options.Optimizer.Kind} lr {model.Options.Optimizer.LearningRate:G3}, ") +
                         I($"batch {model.Options.MaxBatch}{(model.Options.Accumulate > 1 ? $" in {model.Options.Accumulate} micro-batches" : "")}{(model.WorldSize > 1 ? $" over {model.WorldSize} processes" : "")}, {model.Options.Threads} thread(s), backend {model.Options.Backend}{(model.DeviceDescription is { } d ? $" on {d}" : "")}{(model.Options.Precision == Kernels.Cpu.GemmPrecision.Bf16 ? ", bf16 GEMMs" : "")}"));
        stdout.WriteLine($"data: {train.Count:N0} training and {test.Count:N0} test samples of {train.Width} features, {spec.OutputWidth} classes");

        using var cancel = new CancellationTokenSource();
        int signal = 0;
        void Stop(PosixSignalContext c, int code)
        {
            c.Cancel = true; // finish the step, then stop
            signal = code;
            cancel.Cancel();
        }
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => Stop(c, ExitInterrupted));
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => Stop(c, ExitTerminated));
        string? checkpoint = output is null ? null : Path.Combine(output.FullName, "checkpoint.safetensors");
        fit = fit with { Cancellation = cancel.Token };
        if (checkpoint is not null)
            fit = fit with
            {
                OnCheckpoint = pos =>
                {
                    try { Checkpoint.SaveTraining(model, checkpoint, pos, run with { MicroBatches = model.Plan.MicroBatches }); }
                    catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new WriteFailedException(checkpoint, e); }
                },
            };
        double? firstLoss = null;
        void Watch(EpochMetrics m)
        {
            firstLoss ??= m.TrainLoss;
            if (LossWarning(firstLoss.Value, m) is { } w) stderr.WriteLine(w);
        }

        bool interactive = launch is null && ReferenceEquals(stdout, Console.Out) && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;
        FitResult result;
        try
        {
            if (interactive)
            {
                result = null!;
                AnsiConsole.Progress().AutoClear(false).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                    .Start(ctx =>
                    {
                        ProgressTask? task = null;
                        result = new Trainer(model).Fit(train, test, fit with
                        {
                            OnBatch = (epoch, done, total) =>
                            {
                                if (task is null || done == 1) task = ctx.AddTask($"epoch {epoch}/{fit.Epochs}", maxValue: total);
                                task.Value = done;
                            },
                            OnEpoch = m =>
                            {
                                task!.Description = EpochLine(m, fit.Epochs);
                                Watch(m);
                            },
                        });
                    });
            }
            else
            {
                result = new Trainer(model).Fit(train, test, fit with
                {
                    OnEpoch = m =>
                    {
                        stdout.WriteLine(EpochLine(m, fit.Epochs));
                        Watch(m);
                    },
                });
            }
        }
        catch (TrainingDivergedException e)
        {
            stderr.WriteLine($"backprop: {e.Message}");
            return ExitFailed;
        }
        catch (WriteFailedException e) when (launch is not null)
        {
            launch.Abort($"{e.Message}; the previous checkpoint is kept"); // the other ranks would wait for this one's next step
            throw;
        }
        catch (WriteFailedException e)
        {
            stderr.WriteLine($"backprop: {e.Message}; the previous checkpoint is kept.");
            return ExitFailed;
        }
        if (result.Interrupted)
        {
            if (output is not null) RunFolder.RemoveTemporaries(output.FullName);
            string why = signal == ExitTerminated ? "SIGTERM" : signal == ExitInterrupted ? "SIGINT" : "a signal to another rank of the job";
            stderr.WriteLine($"backprop: {why}: stopped after step {model.StepCount}" +
                (checkpoint is not null ? $"; the checkpoint is saved, continue with --resume '{output!.FullName}'." : " (no --output, so no checkpoint)."));
            return signal == 0 ? ExitInterrupted : signal;
        }
        PrintTable(result.Epochs, stdout, interactive);
        var final = model.Evaluate(test.Features, test.Labels!);
        if (result.StoppedAtStepLimit) stdout.WriteLine($"stopped at step {model.StepCount} (--stop-after-steps); continue with --resume");
        if (result.StoppedEarly) stdout.WriteLine($"stopped early after epoch {result.Epochs.Count}; kept the parameters of epoch {result.BestEpoch}");
        if (output is not null)
        {
            try { WriteOutputs(output, model, result, final, run.Preprocessing, dtype); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
            {
                stderr.WriteLine($"backprop: could not write the run's files to '{output.FullName}': {Flags.Message(e)}" +
                    (checkpoint is not null && File.Exists(checkpoint) ? "; the checkpoint is kept." : "."));
                return ExitFailed;
            }
            stdout.WriteLine($"wrote {output.FullName}: metrics.csv, metrics.json, curves.png, confusion.csv, model.safetensors");
        }
        stdout.WriteLine(FormattableString.Invariant($"test accuracy {final.Accuracy:F4}"));
        return 0;
    }

    private static string I(FormattableString f) => FormattableString.Invariant(f);

    /// <summary>A warning when an epoch's training loss is two orders of magnitude above the first epoch's (and above 1).</summary>
    internal static string? LossWarning(double first, EpochMetrics m) =>
        m.TrainLoss > 100 * first && m.TrainLoss > 1
            ? I($"warning: the training loss grew from {first:G4} (first epoch) to {m.TrainLoss:G4} (epoch {m.Epoch}): the run is diverging; try a lower --lr or --clip-norm.")
            : null;

    private static string EpochLine(EpochMetrics m, int epochs) =>
        I($"epoch {m.Epoch}/{epochs}: train loss {m.TrainLoss:F4}, test loss {m.TestLoss:F4}, test accuracy {m.TestAccuracy:F4}") +
        (m.ValidationLoss is double v ? I($", validation loss {v:F4}") : "") + I($", {m.Seconds:F2} s, {m.SamplesPerSecond:N0} samples/s");

    private static void PrintTable(IReadOnlyList<EpochMetrics> epochs, TextWriter stdout, bool interactive)
    {
        if (interactive)
        {
            var t = new Table().AddColumns("epoch", "train loss", "test loss", "test accuracy", "seconds", "samples/s");
            foreach (var m in epochs)
                t.AddRow(m.Epoch.ToString(CultureInfo.InvariantCulture), F(m.TrainLoss), F(m.TestLoss), F(m.TestAccuracy),
                    m.Seconds.ToString("F2", CultureInfo.InvariantCulture), m.SamplesPerSecond.ToString("N0", CultureInfo.InvariantCulture));
            AnsiConsole.Write(t);
            return;
        }
        stdout.WriteLine("| epoch | train loss | test loss | test accuracy | seconds | samples/s |");
        stdout.WriteLine("|---:|---:|---:|---:|---:|---:|");
        foreach (var m in epochs)
            stdout.WriteLine(FormattableString.Invariant($"| {m.Epoch} | {F(m.TrainLoss)} | {F(m.TestLoss)} | {F(m.TestAccuracy)} | {m.Seconds:F2} | {m.SamplesPerSecond:N0} |"));
    }

    private static string F(double? v) => v is double d ? d.ToString("F4", CultureInfo.InvariantCulture) : "";

    private static void WriteOutputs(DirectoryInfo dir, Model model, FitResult result, EvaluationResult final, Preprocessing preprocessing, TensorDtype dtype)
    {
        Directory.CreateDirectory(dir.FullName);
        var csv = new StringBuilder("epoch,train_loss,test_loss,test_accuracy,validation_loss,validation_accuracy,seconds,samples_per_second,learning_rate\n");
        foreach (var m in result.Epochs)
            csv.AppendLine(FormattableString.Invariant($"{m.Epoch},{m.TrainLoss:R},{m.TestLoss:R},{m.TestAccuracy:R},{m.ValidationLoss:R},{m.ValidationAccuracy:R},{m.Seconds:R},{m.SamplesPerSecond:R},{m.LearningRate:R}"));
        AtomicFile.WriteAllText(Path.Combine(dir.FullName, "metrics.csv"), csv.ToString());
        var json = result.Epochs.Select(m => new Dictionary<string, object?>
        {
            ["epoch"] = m.Epoch, ["train_loss"] = m.TrainLoss, ["test_loss"] = m.TestLoss, ["test_accuracy"] = m.TestAccuracy,
            ["validation_loss"] = m.ValidationLoss, ["validation_accuracy"] = m.ValidationAccuracy,
            ["seconds"] = m.Seconds, ["samples_per_second"] = m.SamplesPerSecond, ["learning_rate"] = m.LearningRate,
        }).ToList();
        AtomicFile.WriteAllText(Path.Combine(dir.FullName, "metrics.json"), JsonSerializer.Serialize(json, JsonOutput.Indented));
        var conf = new StringBuilder();
        int C = final.Confusion!.GetLength(0);
        conf.AppendLine("true\\predicted," + string.Join(",", Enumerable.Range(0, C)));
        for (int i = 0; i < C; i++) conf.AppendLine(i + "," + string.Join(",", Enumerable.Range(0, C).Select(j => final.Confusion[i, j])));
        AtomicFile.WriteAllText(Path.Combine(dir.FullName, "confusion.csv"), conf.ToString());
        Curves.Write(Path.Combine(dir.FullName, "curves.png"), result.Epochs);
        Checkpoint.SaveWeights(model, Path.Combine(dir.FullName, "model.safetensors"), preprocessing, dtype);
    }

    // A tree's activations and dropout, in brief: " (relu, dropout 0.2)" when its hidden layers share them.
    private static string TreeActivations(ModelSpec spec)
    {
        var hidden = spec.Layers.Where(l => l.Activation.Kind != Kernels.ActivationKind.Identity || l.Dropout > 0).ToList();
        var acts = hidden.Select(l => l.Activation.ToString()).Distinct().ToList();
        var drops = hidden.Select(l => l.Dropout).Where(d => d > 0).Distinct().ToList();
        var parts = new List<string>();
        if (acts.Count > 0) parts.Add(string.Join("/", acts));
        if (drops.Count > 0) parts.Add("dropout " + string.Join("/", drops.Select(d => d.ToString(CultureInfo.InvariantCulture))));
        return parts.Count == 0 ? "" : $" ({string.Join(", ", parts)})";
    }
}
