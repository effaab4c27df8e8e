// `backprop predict --model FILE --data …`: the model's predictions for every sample, as CSV (stdout or
// --output FILE.csv) or NPY (--output FILE.npy, float32), one row per sample in the data's order:
//   cross-entropy classifiers: class, then the softmax probabilities p0..p{C-1} (class = the first largest);
//   bce_with_logits: the sigmoid probabilities (one output: class, then p);
//   regression (mse, l1, huber): the output values.
// The CSV has a header (class,p0,… / y0,…); the NPY array has the same columns, shape [n, columns].
// The inputs are preprocessed as the model file records (or as --normalize says for a state_dict).
using System.CommandLine;
using System.Globalization;
using System.Text;
using Backprop.Engine;
using Backprop.Engine.Data;

namespace Backprop.Cli;

internal static class PredictCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var flags = new InferenceData.CommandFlags();
        var output = new Option<FileInfo?>("--output") { Description = "FILE.csv or FILE.npy (default: CSV on stdout). An existing file is replaced." };
        var cmd = new Command("predict", "Predictions of a trained model (ours or a PyTorch state_dict): class and probabilities, or regression values.");
        flags.AddTo(cmd);
        cmd.Options.Add(output);
        cmd.SetAction(p =>
        {
            string? dst = p.GetValue(output)?.FullName;
            bool npy = dst is not null && dst.EndsWith(".npy", StringComparison.OrdinalIgnoreCase);
            if (dst is not null)
            {
                if (!npy && !dst.EndsWith(".csv", StringComparison.OrdinalIgnoreCase))
                    throw new UsageException($"--output '{dst}' must end in .csv or .npy (the format).");
                if (Directory.Exists(dst)) throw new UsageException($"--output '{dst}' is a folder; expected a .csv or .npy file to write.");
                string? folder = Path.GetDirectoryName(dst);
                if (folder is not null && !Directory.Exists(folder)) throw new UsageException($"--output '{dst}': the folder '{folder}' does not exist.");
                // Every file read, as resolved (a --data folder's files too), compared by where it really lies (links followed).
                var (_, features, labels) = InferenceData.Resolve(flags.RequestOf(p));
                foreach (var input in new[] { p.GetValue(flags.Model)!.FullName, features, labels })
                    if (input is not null && Paths.Same(input, dst))
                        throw new UsageException($"--output '{dst}' is the input '{input}'; writing there would destroy it.");
            }
            var (model, _, data, _) = flags.Open(p, stderr, needLabels: false);
            using (model)
            {
                var (columns, values) = Predictions(model, data);
                int n = data.Count;
                try
                {
                    if (npy) Npy.WriteFloat32(dst!, values, n, columns.Length);
                    else if (dst is not null) AtomicFile.WriteAllText(dst, Csv(columns, values, n));
                    else stdout.Write(Csv(columns, values, n));
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    stderr.WriteLine($"backprop: could not write {dst}: {e.Message}");
                    return TrainRunner.ExitFailed;
                }
                if (dst is not null) stderr.WriteLine($"wrote {dst}: {n:N0} predictions ({string.Join(",", columns.Take(4))}{(columns.Length > 4 ? ",…" : "")})");
            }
            return 0;
        });
        return cmd;
    }

    /// <summary>The column names and the rows [n, columns] of predictions, as described in the file header.</summary>
    internal static (string[] Columns, float[] Values) Predictions(Model model, Dataset data)
    {
        var spec = model.Spec;
        int n = data.Count, outs = spec.OutputWidth;
        var raw = new float[(long)n * outs];
        model.Predict(data.Features, raw);
        switch (spec.Loss)
        {
            case LossKind.CrossEntropy:
            {
                var values = new float[(long)n * (outs + 1)];
                for (int i = 0; i < n; i++)
                {
                    var z = raw.AsSpan(i * outs, outs);
                    int best = 0;
                    double max = z[0];
                    for (int c = 1; c < outs; c++) if (z[c] > max) { max = z[c]; best = c; }
                    double sum = 0;
                    for (int c = 0; c < outs; c++) sum += Math.Exp(z[c] - max);
                    var row = values.AsSpan(i * (outs + 1), outs + 1);
                    row[0] = best;
                    for (int c = 0; c < outs; c++) row[1 + c] = (float)(Math.Exp(z[c] - max) / sum);
                }
                return (["class", .. Enumerable.Range(0, outs).Select(c => $"p{c}")], values);
            }
            case LossKind.BceWithLogits when outs == 1:
            {
                var values = new float[2L * n];
                for (int i = 0; i < n; i++)
                {
                    double prob = 1 / (1 + Math.Exp(-raw[i]));
                    values[2 * i] = raw[i] > 0 ? 1 : 0; // p > 0.5
                    values[2 * i + 1] = (float)prob;
                }
                return (["class", "p"], values);
            }
            case LossKind.BceWithLogits:
                for (int i = 0; i < raw.Length; i++) raw[i] = (float)(1 / (1 + Math.Exp(-raw[i])));
                return (Enumerable.Range(0, outs).Select(c => $"p{c}").ToArray(), raw);
            default:
                return (Enumerable.Range(0, outs).Select(c => $"y{c}").ToArray(), raw);
        }
    }

    private static string Csv(string[] columns, float[] values, int n)
    {
        var sb = new StringBuilder(string.Join(",", columns)).Append('\n');
        int w = columns.Length;
        for (int i = 0; i < n; i++)
        {
            for (int c = 0; c < w; c++)
            {
                if (c > 0) sb.Append(',');
                float v = values[(long)i * w + c];
                sb.Append(c == 0 && columns[0] == "class" ? ((int)v).ToString(CultureInfo.InvariantCulture) : v.ToString("R", CultureInfo.InvariantCulture));
            }
            sb.Append('\n');
        }
        return sb.ToString();
    }
}
