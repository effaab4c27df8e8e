// The ML.NET side-by-side benchmark (bench/Backprop.MLNet.Bench) is built with the solution; run it small so that it
// keeps working, and check its report holds every trainer with a model that learned. Nothing here is timed.
using System.Text.Json;
using NUnit.Framework;

namespace Backprop.Tests.MLNet;

[TestFixture, NonParallelizable]
public class MLNetBenchTests
{
    private static (int Code, string Output) Run(string arguments) =>
        BuiltProgram.Run(Path.Combine("bench", "Backprop.MLNet.Bench"), "Backprop.MLNet.Bench", arguments);

    [Test]
    public void TheBenchmark_RunsEveryTrainer_OnTheSamePipeline_AndWritesItsReport()
    {
        string outDir = MLNetData.Scratch("bench");
        var (code, output) = Run($"--train-rows 3000 --test-rows 500 --epochs 3 --lightgbm-iterations 10 --latency-rows 100 --rounds 2 --out \"{outDir}\"");
        Assert.That(code, Is.EqualTo(0), output);
        using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "mlnet.json")));
        var results = report.RootElement.GetProperty("results").EnumerateArray().ToList();
        Assert.That(results.Select(r => r.GetProperty("trainer").GetString()), Is.EqualTo(new[] { "backprop", "sdca", "lightgbm" }));
        foreach (var r in results)
        {
            // Ten classes, 3000 rows: every one of the three learns far past chance (0.1).
            Assert.That(r.GetProperty("microAccuracy").GetDouble(), Is.GreaterThan(0.6), r.ToString());
            Assert.That(r.GetProperty("trainSeconds").GetDouble(), Is.GreaterThan(0));
            Assert.That(r.GetProperty("predictMicroseconds").GetDouble(), Is.GreaterThan(0));
        }
        string table = File.ReadAllText(Path.Combine(outDir, "mlnet.md"));
        Assert.That(table, Does.Contain("| backprop |").And.Contain("| sdca |").And.Contain("| lightgbm |"));
    }

    [Test]
    public void BadArguments_AreNamed_WithTheUsage()
    {
        var (code, output) = Run("--trainers backprop,fasttree");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("--trainers: unknown trainer 'fasttree'; expected some of backprop, sdca, lightgbm").And.Contain("usage:"));
        (code, output) = Run("--train-rows 0");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(output, Does.Contain("--train-rows takes a whole number in [1, 60000]; got '0'"));
        (code, output) = Run($"--data /nonexistent/fashion --out \"{MLNetData.Scratch("bench-no-data")}\"");
        Assert.That(code, Is.EqualTo(2), output);
        Assert.That(output, Does.Contain("Fashion-MNIST folder '/nonexistent/fashion' does not exist: run ./build.sh Deps"));
    }
}
