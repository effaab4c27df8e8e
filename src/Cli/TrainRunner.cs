// Runs a fit for `backprop train`: a progress bar per epoch (Spectre.Console on a terminal, plain
// lines otherwise), a table of the epochs, the output folder, and the closing "test accuracy" line.
using System.Globalization;
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
    public static int Run(Model model, Dataset train, Dataset test, FitOptions fit, DirectoryInfo? output, TextWriter stdout)
    {
        var spec = model.Spec;
        string layers = string.Join("-", spec.Layers.Select(l =>
            I($"{l.Units}") + (l.Activation.Kind == Kernels.ActivationKind.Identity ? "" : " " + l.Activation) + (l.Dropout > 0 ? I($" dropout {l.Dropout}") : "")));
        stdout.WriteLine(I($"model: {spec.InputWidth}-{layers}, {model.Plan.ParameterCount:N0} parameters, {model.Options.Optimizer.Kind} lr {model.Options.Optimizer.LearningRate:G3}, ") +
                         I($"batch {model.Options.MaxBatch}, {model.Options.Threads} thread(s), backend {model.Options.Backend}{(model.DeviceDescription is { } d ? $" on {d}" : "")}"));
        stdout.WriteLine($"data: {train.Count:N0} training and {test.Count:N0} test samples of {train.Width} features, {train.Outputs} classes");
        bool interactive = ReferenceEquals(stdout, Console.Out) && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;
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
                            OnEpoch = m => task!.Description = EpochLine(m, fit.Epochs),
                        });
                    });
            }
            else
            {
                result = new Trainer(model).Fit(train, test, fit with { OnEpoch = m => stdout.WriteLine(EpochLine(m, fit.Epochs)) });
            }
        }
        catch (TrainingDivergedException e)
        {
            stdout.WriteLine($"error: {e.Message}");
            return 1;
        }
        PrintTable(result.Epochs, stdout, interactive);
        var final = model.Evaluate(test.Features, test.Labels!);
        if (result.StoppedAtStepLimit) stdout.WriteLine($"stopped at step {model.StepCount} (--stop-after-steps); continue with --resume");
        if (result.StoppedEarly) stdout.WriteLine($"stopped early after epoch {result.Epochs.Count}; kept the parameters of epoch {result.BestEpoch}");
        if (output is not null)
        {
            WriteOutputs(output, model, result, final);
            stdout.WriteLine($"wrote {output.FullName}: metrics.csv, metrics.json, curves.png, confusion.csv, model.safetensors");
        }
        stdout.WriteLine(FormattableString.Invariant($"test accuracy {final.Accuracy:F4}"));
        return 0;
    }

    private static string I(FormattableString f) => FormattableString.Invariant(f);

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

    private static void WriteOutputs(DirectoryInfo dir, Model model, FitResult result, EvaluationResult final)
    {
        Directory.CreateDirectory(dir.FullName);
        var csv = new StringBuilder("epoch,train_loss,test_loss,test_accuracy,validation_loss,validation_accuracy,seconds,samples_per_second,learning_rate\n");
        foreach (var m in result.Epochs)
            csv.AppendLine(FormattableString.Invariant($"{m.Epoch},{m.TrainLoss:R},{m.TestLoss:R},{m.TestAccuracy:R},{m.ValidationLoss:R},{m.ValidationAccuracy:R},{m.Seconds:R},{m.SamplesPerSecond:R},{m.LearningRate:R}"));
        File.WriteAllText(Path.Combine(dir.FullName, "metrics.csv"), csv.ToString());
        var json = result.Epochs.Select(m => new Dictionary<string, object?>
        {
            ["epoch"] = m.Epoch, ["train_loss"] = m.TrainLoss, ["test_loss"] = m.TestLoss, ["test_accuracy"] = m.TestAccuracy,
            ["validation_loss"] = m.ValidationLoss, ["validation_accuracy"] = m.ValidationAccuracy,
            ["seconds"] = m.Seconds, ["samples_per_second"] = m.SamplesPerSecond, ["learning_rate"] = m.LearningRate,
        }).ToList();
        File.WriteAllText(Path.Combine(dir.FullName, "metrics.json"), JsonSerializer.Serialize(json, JsonOutput.Indented));
        var conf = new StringBuilder();
        int C = final.Confusion!.GetLength(0);
        conf.AppendLine("true\\predicted," + string.Join(",", Enumerable.Range(0, C)));
        for (int i = 0; i < C; i++) conf.AppendLine(i + "," + string.Join(",", Enumerable.Range(0, C).Select(j => final.Confusion[i, j])));
        File.WriteAllText(Path.Combine(dir.FullName, "confusion.csv"), conf.ToString());
        Curves.Write(Path.Combine(dir.FullName, "curves.png"), result.Epochs);
        Checkpoint.SaveWeights(model, Path.Combine(dir.FullName, "model.safetensors"));
    }
}
