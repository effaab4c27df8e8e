// `bench step`: the GEMMs-alone comparison does the step's products (the FLOPs the step is credited
// with), and a small run writes the rows with the GEMM fraction and percent of peak.
using System.Text.Json;
using Backprop.Cli;
using Backprop.Cli.Bench;
using Backprop.Engine;
using Backprop.Kernels.Blas;
using Backprop.Kernels.Cpu;
using NUnit.Framework;
using static Backprop.Tests.Cli.InProcessCli;

namespace Backprop.Tests.Bench;

[TestFixture]
[NonParallelizable] // the in-process CLI and OpenBLAS's thread count
public class StepBenchTests
{
    [TestCase(new[] { 784, 256, 10 }, 64, 5)]
    [TestCase(new[] { 784, 1024, 1024, 10 }, 8, 8)]
    public void StepGemms_AreTheStepsProducts(int[] widths, int batch, int calls)
    {
        using var ctx = new CpuContext(1);
        var g = new StepGemms(widths, batch, ctx);
        Assert.That(g.Calls, Is.EqualTo(calls), "forward and dW per layer, dX past the first");
        Assert.That(g.Flops, Is.EqualTo(StepBench.FlopsPerStep(widths, batch)));
        g.Run();
        using var m = new Model(StepBench.Spec(widths), new TrainingOptions { MaxBatch = 1 });
        using var u = new StepUpdate(new Backprop.Kernels.Adam(), m.Plan.ParameterCount, ctx);
        Assert.That(u.Count, Is.EqualTo(Enumerable.Range(1, widths.Length - 1).Sum(l => ((long)widths[l - 1] + 1) * widths[l])), "weights and biases");
        u.Run();
        u.Run();
        var blas = new StepGemms(StepBench.Chain(widths), batch, ctx, blas: true);
        Assert.That(blas.Calls, Is.EqualTo(calls));
        Assert.That(blas.Flops, Is.EqualTo(g.Flops));
    }

    [Test]
    public void ResidualShape_CountsTheProductsThePlanRuns()
    {
        var (name, make, batch) = StepBench.TreeShapes.Single();
        var spec = make();
        Assert.That(name, Is.EqualTo("784-512-4x[512 res, LN]-10"));
        Assert.That(spec.Describe(), Is.EqualTo("784-512-[512]-LN-[512]-LN-[512]-LN-[512]-LN-10"));
        Assert.That(batch, Is.EqualTo(256));
        var layers = StepBench.DenseLayers(spec);
        Assert.That(layers.Select(l => l.First), Is.EqualTo(new[] { true, false, false, false, false, false }), "only the stem reads the input");
        double want = 2.0 * 256 * (784 * 512 * 2 + 4 * 512 * 512 * 3 + 512 * 10 * 3);
        Assert.That(StepBench.FlopsPerStep(layers, batch), Is.EqualTo(want));
        // A network that starts with a residual block: its body's first layer and its projection read the input.
        var lead = new Sequential(8).Residual(b => b.Dense(6, "relu").Dense(4)).Dense(3).ToSpec(LossKind.CrossEntropy);
        Assert.That(StepBench.DenseLayers(lead).Select(l => (l.In, l.Out, l.First)), Is.EqualTo(new[] { (8, 6, true), (6, 4, false), (8, 4, true), (4, 3, false) }));
    }

    [Test]
    public void BenchStep_WritesTheGemmFractionAndPercentOfPeak()
    {
        if (!OpenBlas.IsAvailable) Assert.Ignore($"OpenBLAS not available (bench step compares the Blas backend): {OpenBlas.UnavailableReason}");
        var dir = Path.Combine(Path.GetTempPath(), "backprop-step-" + Guid.NewGuid().ToString("N"));
        try
        {
            var (code, output, err) = Run("bench", "step", "--model", "784-256-10", "--threads", "1", "--rounds", "1", "--min-seconds", "0.01", "--output", dir);
            Assert.That(code, Is.EqualTo(0), output + err);
            Assert.That(File.ReadAllText(Path.Combine(dir, "step.md")), Does.Contain("GEMM fraction").And.Contain("Cpu % peak").And.Contain("update fraction")
                .And.Contain($"{OpenBlasSpin.SettleMs} ms after OpenBLAS's (its threads spun {OpenBlasSpin.SpinMs} ms after a call here)"));
            using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "step.json")));
            var rows = json.RootElement.EnumerateArray().ToArray();
            Assert.That(rows.Select(r => r.GetProperty("batch").GetInt32()), Is.EqualTo(new[] { 64, 128, 256 }));
            foreach (var r in rows)
            {
                Assert.That(r.GetProperty("gemm_ms").GetDouble(), Is.GreaterThan(0));
                Assert.That(r.GetProperty("gemm_fraction").GetDouble(), Is.GreaterThan(0));
                Assert.That(r.GetProperty("gemm_fraction_min").GetDouble(), Is.LessThanOrEqualTo(r.GetProperty("gemm_fraction_max").GetDouble()));
                Assert.That(r.GetProperty("pct_peak").GetDouble(), Is.GreaterThanOrEqualTo(0)); // rounded: 0.0 on a busy machine
                Assert.That(r.GetProperty("update_ms").GetDouble(), Is.GreaterThan(0));
                Assert.That(r.GetProperty("update_fraction").GetDouble(), Is.GreaterThan(0));
            }
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }

    [Test]
    public void BenchStepBf16_WritesTheSpeedupAndTheBf16GemmFraction_OrSaysWhyNot()
    {
        var dir = Path.Combine(Path.GetTempPath(), "backprop-step-bf16-" + Guid.NewGuid().ToString("N"));
        try
        {
            var (code, output, err) = Run("bench", "step", "--precision", "bf16", "--model", "784-256-10", "--threads", "1", "--rounds", "1", "--min-seconds", "0.01", "--output", dir);
            if (Backprop.Kernels.Cpu.Bf16Gemm.Unavailable is { } why)
            {
                Assert.That(code, Is.EqualTo(2), output + err);
                Assert.That(err, Does.Contain("--precision bf16 cannot run here").And.Contain(why));
                return;
            }
            Assert.That(code, Is.EqualTo(0), output + err);
            Assert.That(File.ReadAllText(Path.Combine(dir, "step-bf16.md")), Does.Contain("speedup").And.Contain("bf16 % bf16 peak").And.Contain("bf16 GEMM fraction"));
            using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "step-bf16.json")));
            var rows = json.RootElement.EnumerateArray().ToArray();
            Assert.That(rows.Select(r => r.GetProperty("batch").GetInt32()), Is.EqualTo(new[] { 64, 128, 256 }));
            foreach (var r in rows)
            {
                Assert.That(r.GetProperty("bf16_ms_per_step").GetDouble(), Is.GreaterThan(0));
                Assert.That(r.GetProperty("fp32_ms_per_step").GetDouble(), Is.GreaterThan(0));
                Assert.That(r.GetProperty("speedup_min").GetDouble(), Is.LessThanOrEqualTo(r.GetProperty("speedup_max").GetDouble()));
                Assert.That(r.GetProperty("bf16_gemm_ms").GetDouble(), Is.GreaterThan(0));
                Assert.That(r.GetProperty("bf16_gemm_fraction").GetDouble(), Is.GreaterThan(0));
            }
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }
}
