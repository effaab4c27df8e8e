// The `backprop` command in-process: bad input exits with 2 and one line; bench gemm writes its report.
using System.Text.Json;
using Backprop.Cli;
using NUnit.Framework;
using static Backprop.Tests.Cli.InProcessCli;

namespace Backprop.Tests.Cli;

[TestFixture]
[NonParallelizable]
public class CliTests
{

    [TestCase(new[] { "bench", "gemm", "--no-such-flag" }, "--no-such-flag")]
    [TestCase(new[] { "bench", "gemm", "--threads", "0" }, "--threads must be whole numbers in [1, 256]; got '0'")]
    [TestCase(new[] { "bench", "gemm", "--threads", "x" }, "x")]
    [TestCase(new[] { "bench", "gemm", "--rounds", "-1" }, "--rounds must be at least 1; got -1")]
    [TestCase(new[] { "bench", "gemm", "--min-seconds", "0" }, "--min-seconds must be positive; got 0")]
    [TestCase(new[] { "bench", "gemm", "--shape", "999^3" }, "matches no shape")]
    [TestCase(new[] { "frobnicate" }, "frobnicate")]
    [TestCase(new[] { "bench", "step", "--backend", "tpu" }, "--backend must be cpu or cuda; got 'tpu'")]
    [TestCase(new[] { "gradcheck", "--layers", "4,x" }, "--layers must be comma-separated positive sizes of the hidden layers")]
    [TestCase(new[] { "gradcheck", "--activation", "softsign" }, "Unknown activation 'softsign'")]
    [TestCase(new[] { "gradcheck", "--loss", "hinge" }, "--loss must be cross_entropy, mse, l1, huber or bce_with_logits; got 'hinge'")]
    [TestCase(new[] { "gradcheck", "--layers", "8", "--outputs", "1" }, "cross-entropy needs at least 2 output units; the last layer has 1.")]
    [TestCase(new[] { "gradcheck", "--backend", "cuda" }, "--backend must be cpu or blas; got 'cuda'")]
    [TestCase(new[] { "gradcheck", "--batch", "0" }, "--batch must be at least 1; got 0")]
    [TestCase(new[] { "gradcheck", "--mode", "slow" }, "--mode must be full or fast; got 'slow'")]
    [TestCase(new[] { "gradcheck", "--arch", "resmlp:width=8,blocks=2", "--layers", "4" }, "--layers cannot be given with --arch resmlp:width=8,blocks=2")]
    [TestCase(new[] { "gradcheck", "--arch", "resmlp:width=8,blocks=2,norm=batch", "--batch", "1" }, "module 3 (BatchNorm) needs more than 1 sample per batch in training, as torch; got 1")]
    [TestCase(new[] { "gradcheck", "--arch", "resmlp:blocks=2" }, "--arch resmlp needs width and blocks")]
    [TestCase(new[] { "bench", "gemm", "--size", "12x0x4" }, "--size must look like MxKxN or MxKxN:OP")]
    [TestCase(new[] { "bench", "gemm", "--size", "12x3x4:NX" }, "got '12x3x4:NX'")]
    [TestCase(new[] { "bench", "gemm", "--precision", "int8" }, "--precision must be fp32 or bf16; got 'int8'")]
    [TestCase(new[] { "bench", "step", "--precision", "bf16", "--backend", "cuda" }, "bench step --precision bf16 measures the cpu backend")]
    public void BadInput_ExitsWith2_AndOneMessage(string[] args, string expected)
    {
        var (code, _, err) = Run(args);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(err, Does.Contain(expected));
        Assert.That(err.Trim().Split('\n'), Has.Length.EqualTo(1), "one line, no stack trace");
    }

    [Test]
    public void Info_SaysWhetherBf16Runs_AndWhyNot()
    {
        var (code, output, err) = Run("info");
        Assert.That(code, Is.EqualTo(0), err);
        if (Kernels.Cpu.Bf16Gemm.Unavailable is { } why)
            Assert.That(output, Does.Contain($"bf16 (--precision bf16): not available: {why}"));
        else
            Assert.That(output, Does.Contain("bf16 (--precision bf16): AVX512_BF16").And.Contain("Avx512Bf16/bf16 12x32")
                .And.Contain("VDPBF16PS peak").And.Contain("against float32 FMA"));
    }

    [Test]
    public void Bf16Rates_WarnWhereVdpbf16psIsSlowerThanTheFma_AndOnlyThere()
    {
        // An Intel Xeon of the Sapphire Rapids class measured 69 against 134 GFLOP/s; an AMD Zen 4 about 220 against 112.
        var intel = (Bf16: 69.2, Fp32: 134.0);
        var zen4 = (Bf16: 220.0, Fp32: 112.0);
        Assert.That(Bf16Rates.Describe(intel), Does.Contain("VDPBF16PS peak 69.2 GFLOP/s against float32 FMA 134.0 GFLOP/s on one thread, 0.52x")
            .And.Contain("bf16 GEMMs run slower than float32 here"));
        Assert.That(Bf16Rates.SlowerWarning(intel), Does.StartWith("warning: --precision bf16 will likely train slower than fp32").And.Contain("0.52x"));
        Assert.That(Bf16Rates.Describe(zen4), Does.Contain("1.96x: bf16 GEMMs can outrun float32 here"));
        Assert.That(Bf16Rates.SlowerWarning(zen4), Is.Null);
    }

    [Test]
    public void Gradcheck_PassesWithExit0_AndFailsWithExit1()
    {
        var (code, output, err) = Run("gradcheck", "--input-width", "5", "--layers", "9,7", "--outputs", "3", "--activation", "gelu", "--dropout", "0.2");
        Assert.That(code, Is.EqualTo(0), output + err);
        Assert.That(output, Does.Contain("| 0.weight | [9, 5] |").And.Contain("| 6.bias | [3] |").And.Contain("gradcheck passed"));
        (code, output, _) = Run("gradcheck", "--input-width", "4", "--layers", "6", "--outputs", "2", "--loss", "mse", "--activation", "tanh", "--mode", "fast", "--directions", "4", "--backend", "blas");
        Assert.That(code, Is.EqualTo(0), output);
        // A residual network with BatchNorm (or LayerNorm) after each block, dropout inside the blocks.
        (code, output, err) = Run("gradcheck", "--input-width", "6", "--outputs", "3", "--arch", "resmlp:width=8,blocks=2,norm=batch", "--activation", "gelu", "--dropout", "0.2", "--batch", "5");
        Assert.That(code, Is.EqualTo(0), output + err);
        Assert.That(output, Does.Contain("gradcheck: 6-8-[8]-BN-[8]-BN-3").And.Contain("| 3.body.0.weight | [8, 8] |")
            .And.Contain("| 4.weight | [8] |").And.Contain("| 7.bias | [3] |").And.Contain("gradcheck passed"));
        Assert.That(output, Does.Not.Contain("running_mean"), "buffers are no function inputs");
        // A step of 0.1 makes the central difference too coarse for rtol 1e-3: the check must fail.
        (code, output, _) = Run("gradcheck", "--input-width", "4", "--layers", "5", "--outputs", "3", "--activation", "tanh", "--eps", "0.1");
        Assert.That(code, Is.EqualTo(1), output);
        Assert.That(output, Does.Contain("FAIL"));
    }

    [Test]
    public void BenchDense_WritesMarkdownAndJson()
    {
        var dir = Path.Combine(Path.GetTempPath(), "backprop-dense-" + Guid.NewGuid().ToString("N"));
        try
        {
            var (code, output, err) = Run("bench", "dense", "--threads", "1", "--rounds", "1", "--min-seconds", "0.001", "--output", dir);
            Assert.That(code, Is.EqualTo(0), err);
            Assert.That(output, Does.Contain("| Fwd bias+ReLU | 128 | 784 | 256 | 1 |"));
            using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "dense.json")));
            Assert.That(json.RootElement.GetArrayLength(), Is.EqualTo(9));
            foreach (var row in json.RootElement.EnumerateArray())
                Assert.That(row.GetProperty("speedup").GetDouble(), Is.GreaterThan(0));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }

    [Test]
    public void BenchGemm_WritesMarkdownAndJson()
    {
        var dir = Path.Combine(Path.GetTempPath(), "backprop-bench-" + Guid.NewGuid().ToString("N"));
        try
        {
            var (code, output, err) = Run("bench", "gemm", "--shape", "128^3", "--threads", "1", "2", "--rounds", "2", "--min-seconds", "0.001", "--output", dir);
            Assert.That(code, Is.EqualTo(0), err);
            Assert.That(output, Does.Contain("| 128^3 |"));
            Assert.That(File.ReadAllText(Path.Combine(dir, "gemm.md")), Does.Contain("ours GFLOP/s"));
            using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "gemm.json")));
            var rows = json.RootElement.GetProperty("rows");
            Assert.That(rows.GetArrayLength(), Is.EqualTo(2));
            foreach (var row in rows.EnumerateArray())
            {
                foreach (var key in new[] { "shape", "transposes", "threads", "ours_gflops", "openblas_gflops", "ratio", "pct_peak" })
                    Assert.That(row.TryGetProperty(key, out _), Is.True, key);
                double ours = row.GetProperty("ours_gflops").GetDouble(), blas = row.GetProperty("openblas_gflops").GetDouble();
                Assert.That(ours, Is.GreaterThan(0));
                Assert.That(blas, Is.GreaterThan(0));
            }
            Assert.That(rows[0].GetProperty("threads").GetInt32(), Is.EqualTo(1));
            Assert.That(rows[1].GetProperty("threads").GetInt32(), Is.EqualTo(2));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }

    [Test]
    public void BenchStep_OnCuda_WithoutADevice_SaysWhy()
    {
        var info = Backprop.Kernels.Cuda.CudaDriver.Probe();
        if (info.Available) Assert.Ignore($"this machine has a CUDA device ({info.DeviceName}); the no-device message cannot be shown here");
        var (code, _, err) = Run("bench", "step", "--backend", "cuda", "--rounds", "1");
        Assert.That(code, Is.EqualTo(2), err);
        Assert.That(err, Does.Contain("CUDA is not available: ").And.Contain(info.Reason!));
    }

    // The Cuda step benchmark's own logic (model, GEMM-only set, timing, report) on the emulated device;
    // what its numbers mean on a GPU is for `backprop bench step --backend cuda` there.
    [Test]
    public void CudaStepBench_RunsItsShapes_AndReportsTheGemmFraction()
    {
        var rows = Backprop.Cli.Bench.CudaStepBench.Run(() => new Backprop.Tests.Cuda.EmulatedGpu(), [("8-16-4", [8, 16, 4], 6), ("8-16-12-4", [8, 16, 12, 4], 5)],
            rounds: 2, minSeconds: 0.001, filter: null, tf32: false, TextWriter.Null);
        Assert.That(rows.Select(r => (r.ModelName, r.Batch)), Is.EqualTo(new[] { ("8-16-4", 6), ("8-16-12-4", 5) }));
        Assert.That(rows.All(r => r.StepMs > 0 && r.GemmMs > 0 && r.Fraction > 0 && r.Samples > 0), Is.True);
        var md = Backprop.Cli.Bench.CudaStepBench.ToMarkdown(rows, "host emulation", tf32: false);
        Assert.That(md, Does.Contain("| 8-16-12-4 | 5 |").And.Contain("FP32 GEMMs (no TF32)"));
        Assert.That(JsonDocument.Parse(Backprop.Cli.Bench.CudaStepBench.ToJson(rows)).RootElement[0].GetProperty("gemm_fraction").GetDouble(), Is.GreaterThan(0));
    }

    [Test]
    public void CheckCuda_WithoutADevice_SaysWhy()
    {
        var info = Backprop.Kernels.Cuda.CudaDriver.Probe();
        if (info.Available) Assert.Ignore($"this machine has a CUDA device ({info.DeviceName}); the no-device message cannot be shown here");
        var (code, _, err) = Run("check", "cuda");
        Assert.That(code, Is.EqualTo(2), err);
        Assert.That(err, Does.Contain("CUDA is not available: ").And.Contain(info.Reason!));
    }
}
