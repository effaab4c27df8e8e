// `backprop evaluate --model FILE --data …`: the model's mean loss over labelled data and, for a
// classifier, its accuracy and confusion matrix (rows: true class, columns: predicted; a prediction is the
// first largest output), printed as text; --output FILE.json writes the same as JSON. No dropout.
using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Backprop.Engine;

namespace Backprop.Cli;

internal static class EvaluateCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var flags = new InferenceData.CommandFlags();
        var output = new Option<FileInfo?>("--output") { Description = "Also write the results to FILE.json (replaced if it exists)." };
        var cmd = new Command("evaluate", "Loss, accuracy and confusion matrix of a trained model (ours or a PyTorch state_dict) on labelled data.");
        flags.AddTo(cmd);
        cmd.Options.Add(output);
        cmd.SetAction(p =>
        {
            string? dst = p.GetValue(output)?.FullName;
            if (dst is not null)
            {
                if (!dst.EndsWith(".json", StringComparison.OrdinalIgnoreCase)) throw new UsageException($"--output '{dst}' must end in .json.");
                if (Directory.Exists(dst)) throw new UsageException($"--output '{dst}' is a folder; expected a .json file to write.");
                string? folder = Path.GetDirectoryName(dst);
                if (folder is not null && !Directory.Exists(folder)) throw new UsageException($"--output '{dst}': the folder '{folder}' does not exist.");
                if (string.Equals(dst, p.GetValue(flags.Model)!.FullName, StringComparison.Ordinal))
                    throw new UsageException($"--output '{dst}' is the --model file; writing there would destroy it.");
            }
            var (model, info, data, pre) = flags.Open(p, stderr, needLabels: true);
            using (model)
            {
                var result = new Dictionary<string, object?>
                {
                    ["model"] = info.Path, ["kind"] = info.Kind.ToString(), ["samples"] = data.Count, ["preprocessing"] = pre.Kind.ToString(),
                };
                stdout.WriteLine($"model: {info.Path} ({info.Kind}), {info.Spec.Describe()}, loss {info.Spec.Loss}, " +
                    $"inputs: {ModelSource.Describe(pre.Kind)}");
                stdout.WriteLine($"samples {data.Count}");
                if (data.Labels is { } labels)
                {
                    var r = model.Evaluate(data.Features, labels);
                    int C = r.Confusion!.GetLength(0);
                    var rows = Enumerable.Range(0, C).Select(i => Enumerable.Range(0, C).Select(j => r.Confusion[i, j]).ToArray()).ToArray();
                    result["loss"] = r.Loss;
                    result["accuracy"] = r.Accuracy;
                    result["confusion"] = rows;
                    stdout.WriteLine(FormattableString.Invariant($"loss {r.Loss:F6}"));
                    stdout.WriteLine(FormattableString.Invariant($"accuracy {r.Accuracy:F4}"));
                    stdout.WriteLine("confusion (rows: true class, columns: predicted):");
                    int width = Math.Max(C.ToString(CultureInfo.InvariantCulture).Length, rows.SelectMany(x => x).Max().ToString(CultureInfo.InvariantCulture).Length) + 1;
                    stdout.WriteLine(new string(' ', width) + string.Concat(Enumerable.Range(0, C).Select(j => j.ToString(CultureInfo.InvariantCulture).PadLeft(width))));
                    for (int i = 0; i < C; i++)
                        stdout.WriteLine(i.ToString(CultureInfo.InvariantCulture).PadLeft(width) + string.Concat(rows[i].Select(v => v.ToString(CultureInfo.InvariantCulture).PadLeft(width))));
                }
                else
                {
                    double loss = model.EvaluateLoss(data.Features, data.Targets!);
                    result["loss"] = loss;
                    stdout.WriteLine(FormattableString.Invariant($"loss {loss:F6}"));
                }
                if (dst is not null)
                {
                    try { AtomicFile.WriteAllText(dst, JsonSerializer.Serialize(result, JsonOutput.Indented)); }
                    catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                    {
                        stderr.WriteLine($"backprop: could not write {dst}: {e.Message}");
                        return TrainRunner.ExitFailed;
                    }
                }
            }
            return 0;
        });
        return cmd;
    }
}
