// `bench dense --versus onednn`: the oneDNN binding and its oracle. oneDNN's three primitives (forward with
// bias + ReLU post-op, backward data + ReLU mask, backward weights with diff_bias) agree with our dense
// kernels on small odd shapes (and with a double-precision reference, so that a bug shared by both sides
// of the oracle would still show); the oracle refuses a perturbed result; the CLI refuses an unknown
// --versus and runs a small benchmark end to end. Skipped, with the reason, where libdnnl.so.2 does not load.
using System.Text.Json;
using Backprop.Cli;
using Backprop.Cli.Bench;
using Backprop.Kernels.Cpu;
using NUnit.Framework;
using static Backprop.Tests.Cli.InProcessCli;

namespace Backprop.Tests.Bench;

[TestFixture]
[NonParallelizable] // omp_set_num_threads and the in-process CLI
public unsafe class OneDnnDenseTests
{
    private static void RequireOneDnn()
    {
        if (!OneDnn.IsAvailable) Assert.Ignore($"oneDNN not available: {OneDnn.UnavailableReason}");
    }


    [Test]
    public void Binding_ReportsA2xLibrary_ItsIsa_AndOpenMpThreads()
    {
        RequireOneDnn();
        Assert.That(OneDnn.Version, Does.StartWith("2."));
        Assert.That(OneDnn.EffectiveIsa, Is.Not.Empty);
        int before = OneDnn.MaxThreads;
        OneDnn.SetThreads(1);
        Assert.That(OneDnn.MaxThreads, Is.EqualTo(1));
        OneDnn.SetThreads(before);
    }

    [TestCase(7, 13, 5, 0f, 1)]
    [TestCase(7, 13, 5, -2.5f, 2)] // negative-heavy: most pre-activations below zero
    [TestCase(64, 784, 10, 0.5f, 1)]
    [TestCase(64, 784, 10, -3f, 2)]
    public void ThreePrimitives_AgreeWithOurKernels_AndWithADoubleReference(int batch, int inF, int outF, float biasShift, int threads)
    {
        RequireOneDnn();
        int before = OneDnn.MaxThreads;
        nint engine = OneDnn.EngineCreate();
        nint stream = OneDnn.StreamCreate(engine);
        try
        {
            OneDnn.SetThreads(threads);
            using var ctx = new CpuContext(threads);
            using var d = DenseLayerBuffers.Random(batch, inF, outF, seed: 5 + batch, biasShift);
            using var dnnl = new OneDnnDense(engine, stream, batch, inF, outF, d.X, d.W, d.B, d.YOneDnn, d.Dy, d.Saved, d.DxOneDnn, d.DwOneDnn, d.DbOneDnn);
            var r = DenseOracle.Check(ctx, d, dnnl, "test");
            Assert.That(r.Worst, Is.LessThanOrEqualTo(1.0));

            int zeros = 0;
            for (int i = 0; i < batch * outF; i++) zeros += d.YOneDnn[i] == 0f ? 1 : 0;
            if (biasShift < -2) Assert.That(zeros, Is.GreaterThan(batch * outF * 9 / 10), "the negative-heavy case clips most outputs");
            else Assert.That(zeros, Is.LessThan(batch * outF), "some outputs pass the ReLU");

            AssertMatchesDouble(d, batch, inF, outF);
        }
        finally
        {
            OneDnn.StreamDestroy(stream);
            OneDnn.EngineDestroy(engine);
            OneDnn.SetThreads(before);
        }
    }

    /// <summary>oneDNN's results against a double reference with the oracle's tolerance (ours are checked against oneDNN by the oracle).</summary>
    private static void AssertMatchesDouble(DenseLayerBuffers d, int batch, int inF, int outF)
    {
        for (int i = 0; i < batch; i++)
            for (int o = 0; o < outF; o++)
            {
                double s = d.B[o], scale = Math.Abs(d.B[o]);
                for (int k = 0; k < inF; k++) { s += (double)d.X[i * inF + k] * d.W[o * inF + k]; scale += Math.Abs((double)d.X[i * inF + k] * d.W[o * inF + k]); }
                Assert.That(d.YOneDnn[i * outF + o], Is.EqualTo(Math.Max(s, 0)).Within(DenseOracle.Tolerance(inF, scale)), $"Y[{i}, {o}]");
            }
        for (int i = 0; i < batch; i++)
            for (int k = 0; k < inF; k++)
            {
                double s = 0, scale = 0;
                for (int o = 0; o < outF; o++) { s += (double)d.Dy[i * outF + o] * d.W[o * inF + k]; scale += Math.Abs((double)d.Dy[i * outF + o] * d.W[o * inF + k]); }
                double expected = d.Saved[i * inF + k] > 0 ? s : 0;
                Assert.That(d.DxOneDnn[i * inF + k], Is.EqualTo(expected).Within(DenseOracle.Tolerance(outF, scale)), $"dX[{i}, {k}]");
            }
        for (int o = 0; o < outF; o++)
        {
            double sb = 0, scaleB = 0;
            for (int i = 0; i < batch; i++) { sb += d.Dy[i * outF + o]; scaleB += Math.Abs(d.Dy[i * outF + o]); }
            Assert.That(d.DbOneDnn[o], Is.EqualTo(sb).Within(DenseOracle.Tolerance(batch, scaleB)), $"db[{o}]");
            for (int k = 0; k < inF; k++)
            {
                double s = 0, scale = 0;
                for (int i = 0; i < batch; i++) { s += (double)d.Dy[i * outF + o] * d.X[i * inF + k]; scale += Math.Abs((double)d.Dy[i * outF + o] * d.X[i * inF + k]); }
                Assert.That(d.DwOneDnn[o * inF + k], Is.EqualTo(s).Within(DenseOracle.Tolerance(batch, scale)), $"dW[{o}, {k}]");
            }
        }
    }

    [Test]
    public void Oracle_RefusesAPerturbedResult_NamingItAndTheElement()
    {
        RequireOneDnn();
        nint engine = OneDnn.EngineCreate();
        nint stream = OneDnn.StreamCreate(engine);
        try
        {
            using var ctx = new CpuContext(1);
            using var d = DenseLayerBuffers.Random(7, 13, 5, seed: 3);
            using var dnnl = new OneDnnDense(engine, stream, 7, 13, 5, d.X, d.W, d.B, d.YOneDnn, d.Dy, d.Saved, d.DxOneDnn, d.DwOneDnn, d.DbOneDnn);
            DenseOracle.Check(ctx, d, dnnl, "t");
            d.DwOneDnn[2 * 13 + 4] += 1e-3f; // far above the tolerance of a 7-term sum
            var e = Assert.Throws<OracleMismatchException>(() => DenseOracle.Compare(ctx, d, "b7-13x5"))!;
            Assert.That(e.Message, Does.Contain("b7-13x5 BwdWeights dW").And.Contain("[2, 4]"));
        }
        finally
        {
            OneDnn.StreamDestroy(stream);
            OneDnn.EngineDestroy(engine);
        }
    }

    [TestCase("mkl", "--versus must be openblas, onednn or all; got 'mkl'")]
    [TestCase("", "--versus must be openblas, onednn or all; got ''")]
    public void UnknownVersus_ExitsWith2_NamingTheValueAndTheChoices(string value, string expected)
    {
        var (code, _, err) = Run("bench", "dense", "--versus", value);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(err, Does.Contain(expected));
        Assert.That(err.Trim().Split('\n'), Has.Length.EqualTo(1), "one line, no stack trace");
    }

    [Test]
    public void UnknownShape_ExitsWith2_ListingTheShapes()
    {
        var (code, _, err) = Run("bench", "dense", "--versus", "onednn", "--shape", "b3-3x3");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(err, Does.Contain("matches no shape").And.Contain("b512-4096x4096"));
    }

    [Test]
    public void BenchDenseVersusOneDnn_WritesMarkdownAndJsonRows()
    {
        RequireOneDnn();
        var dir = Path.Combine(Path.GetTempPath(), "backprop-dense-onednn-" + Guid.NewGuid().ToString("N"));
        try
        {
            var (code, output, err) = Run("bench", "dense", "--versus", "onednn", "--shape", "b64-256x10", "--rounds", "1", "--min-seconds", "0.01",
                "--threads", "1", "--output", dir);
            Assert.That(code, Is.EqualTo(0), output + err);
            Assert.That(output, Does.Contain("oneDNN 2.").And.Contain("dispatching to").And.Contain("| Fwd bias+ReLU | 64 | 256 | 10 | 1 |"));
            Assert.That(File.ReadAllText(Path.Combine(dir, "dense-onednn.md")), Does.Contain("oneDNN % peak"));
            using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "dense-onednn.json")));
            var root = json.RootElement;
            Assert.That(root.GetProperty("onednn_version").GetString(), Does.StartWith("2."));
            Assert.That(root.GetProperty("onednn_isa").GetString(), Is.Not.Empty);
            var rows = root.GetProperty("rows");
            Assert.That(rows.GetArrayLength(), Is.EqualTo(4));
            var kernels = rows.EnumerateArray().Select(r => r.GetProperty("kernel").GetString()).ToArray();
            Assert.That(kernels, Is.EqualTo(new[] { "Fwd bias+ReLU", "Fwd, W in panels", "BwdData ReLU mask", "BwdWeights dW+db" }));
            foreach (var row in rows.EnumerateArray())
            {
                Assert.That(row.GetProperty("shape").GetString(), Is.EqualTo("b64-256x10"));
                Assert.That(row.GetProperty("threads").GetInt32(), Is.EqualTo(1));
                foreach (var key in new[] { "ours_ms", "onednn_ms", "ratio" })
                    Assert.That(row.GetProperty(key).GetDouble(), Is.GreaterThan(0), key);
                foreach (var key in new[] { "ours_gflops", "onednn_gflops", "ours_pct_peak", "onednn_pct_peak" }) // rounded: 0.0 on a busy machine
                    Assert.That(row.GetProperty(key).GetDouble(), Is.GreaterThanOrEqualTo(0), key);
                Assert.That(row.GetProperty("oracle_worst_over_tolerance").GetDouble(), Is.LessThanOrEqualTo(1.0));
            }
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }
}
