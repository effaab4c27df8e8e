// `backprop bench predict`: inference latency of Model.Predict at batch 1, 16 and 256 for the default
// Fashion-MNIST model shape (784-512-256-10): median and 99th percentile per call, and samples/s.
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Backprop.Engine;

namespace Backprop.Cli.Bench;

internal static class PredictBench
{
    public static string Run(int threads, double seconds, TextWriter log)
    {
        var sb = new StringBuilder();
        sb.AppendLine("# Predict latency: 784-512-256-10 (ReLU), float32");
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"{threads} thread(s); each batch size timed for {seconds:F1} s after a warm-up.");
        sb.AppendLine();
        sb.AppendLine("| batch | median µs/call | p99 µs/call | samples/s |");
        sb.AppendLine("|---:|---:|---:|---:|");
        foreach (int batch in new[] { 1, 16, 256 })
        {
            using var m = new Sequential(784).Dense(512, "relu").Dense(256, "relu").Dense(10)
                .Compile(new TrainingOptions { MaxBatch = batch, Threads = threads, Seed = 1 });
            var x = Measure.Random(batch * 784, 2);
            var y = new float[batch * 10];
            for (int i = 0; i < 200; i++) m.Predict(x, y);
            var times = new List<double>(100_000);
            var total = Stopwatch.StartNew();
            while (total.Elapsed.TotalSeconds < seconds || times.Count < 20)
            {
                long t0 = Stopwatch.GetTimestamp();
                m.Predict(x, y);
                times.Add(Stopwatch.GetElapsedTime(t0).TotalSeconds * 1e6);
            }
            times.Sort();
            double med = times[times.Count / 2], p99 = times[Math.Min(times.Count - 1, (int)(times.Count * 0.99))];
            string row = FormattableString.Invariant($"| {batch} | {med:F1} | {p99:F1} | {batch / med * 1e6:N0} |");
            sb.AppendLine(row);
            log.WriteLine(FormattableString.Invariant($"  batch {batch}: median {med:F1} µs, p99 {p99:F1} µs"));
        }
        return sb.ToString();
    }
}
