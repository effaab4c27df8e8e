// ONNX export checked by running the file in ONNX Runtime (CPU) and comparing with Predict.
using Backprop.Engine;
using Backprop.Engine.Export;
using Backprop.Kernels;
using Backprop.Kernels.Cpu.Ops;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using NUnit.Framework;

namespace Backprop.Tests.Export;

[TestFixture]
public class OnnxExportTests
{
    public static IEnumerable<string> Activations() =>
        ["identity", "relu", "leaky_relu:0.2", "elu:0.7", "tanh", "sigmoid", "gelu", "gelu_tanh", "silu"];

    private static float[] RunOrt(byte[] onnx, float[] x, int n, int width)
    {
        using var session = new InferenceSession(onnx);
        Assert.That(session.InputMetadata.Keys, Is.EqualTo(new[] { "input" }));
        Assert.That(session.OutputMetadata.Keys, Is.EqualTo(new[] { "output" }));
        Assert.That(session.InputMetadata["input"].Dimensions[0], Is.EqualTo(-1), "dynamic batch dimension");
        var input = new DenseTensor<float>(x, [n, width]);
        using var results = session.Run([NamedOnnxValue.CreateFromTensor("input", input)]);
        return results.First().AsTensor<float>().ToArray();
    }

    [Test]
    public void MatchesPredict_ForEveryActivation([ValueSource(nameof(Activations))] string activation, [Values(false, true)] bool softmax)
    {
        using var model = new Sequential(7).Dense(9, activation).Dropout(0.3).Dense(6, activation).Dense(5)
            .Compile(new TrainingOptions { MaxBatch = 16, Threads = 1, Seed = 4 });
        // a few steps so the weights are not just the initialization
        for (int t = 0; t < 5; t++) model.Step(TestData.Floats(16 * 7, t, -2, 2), Enumerable.Range(0, 16).Select(i => i % 5).ToArray());
        foreach (int n in new[] { 1, 13, 40 })
        {
            var x = TestData.Floats(n * 7, 100 + n, -3, 3);
            var ours = new float[n * 5];
            model.Predict(x, ours);
            if (softmax)
            {
                for (int r = 0; r < n; r++)
                {
                    var row = ours.AsSpan(r * 5, 5);
                    float m = row.ToArray().Max();
                    float sum = 0;
                    for (int c = 0; c < 5; c++) { row[c] = MathF.Exp(row[c] - m); sum += row[c]; }
                    for (int c = 0; c < 5; c++) row[c] /= sum;
                }
            }
            var theirs = RunOrt(OnnxExporter.Build(model, softmax), x, n, 7);
            Assert.That(theirs, Has.Length.EqualTo(ours.Length));
            double worst = 0;
            for (int i = 0; i < ours.Length; i++) worst = Math.Max(worst, Math.Abs(ours[i] - theirs[i]));
            Assert.That(worst, Is.LessThanOrEqualTo(1e-5), $"{activation}, batch {n}: max |Predict − ONNX Runtime|");
        }
    }

    [Test]
    public void ExportCommand_WritesAFileOnnxRuntimeLoads()
    {
        string dir = Path.Combine(Path.GetTempPath(), "backprop-onnx-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            using var model = new Sequential(4).Dense(8, "gelu").Dense(3).Compile(new TrainingOptions { Threads = 1 });
            string weights = Path.Combine(dir, "model.safetensors");
            Backprop.Engine.Checkpoints.Checkpoint.SaveWeights(model, weights);
            string onnx = Path.Combine(dir, "model.onnx");
            var o = new StringWriter();
            var e = new StringWriter();
            int code = Backprop.Cli.Commands.Run(["export", "--onnx", onnx, "--from", weights, "--softmax"], o, e);
            Assert.That(code, Is.EqualTo(0), e.ToString());
            var x = TestData.Floats(2 * 4, 3);
            var probs = RunOrt(File.ReadAllBytes(onnx), x, 2, 4);
            Assert.That(probs.Take(3).Sum(), Is.EqualTo(1f).Within(1e-5));
            code = Backprop.Cli.Commands.Run(["export", "--onnx", onnx, "--from", Path.Combine(dir, "missing.safetensors")], o, e = new StringWriter());
            Assert.That(code, Is.EqualTo(2));
            Assert.That(e.ToString(), Does.Contain("missing.safetensors' does not exist"));
        }
        finally { Directory.Delete(dir, true); }
    }
}
