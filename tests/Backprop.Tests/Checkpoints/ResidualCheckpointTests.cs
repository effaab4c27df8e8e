// Residual / LayerNorm models through the file formats: weights files and training checkpoints carry the
// torch module-tree names and the tree itself (the spec's "modules"), resume bit for bit, and refuse a file
// of another tree; ONNX export (LayerNormalization, Add) runs in ONNX Runtime and gives Predict's outputs.
using Backprop.Engine;
using Backprop.Engine.Checkpoints;
using Backprop.Engine.Export;
using Backprop.Kernels;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using NUnit.Framework;

namespace Backprop.Tests.Checkpoints;

[TestFixture]
public class ResidualCheckpointTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "backprop-res-" + Guid.NewGuid().ToString("N")));

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, true);

    private static Sequential Tree() => new Sequential(6).Dense(10, "relu").Dropout(0.1)
        .Residual(b => b.Dense(10, "gelu").LayerNorm().Residual(c => c.Dense(10, "tanh")))
        .Residual(b => b.Dense(7, "silu").Dropout(0.2).BatchNorm()).LayerNorm(1e-3).Dense(4);

    private static Model Net(ulong seed = 1) => Tree().Compile(new TrainingOptions
    {
        MaxBatch = 8, Threads = 1, Seed = seed, Optimizer = new Adam { LearningRate = 1e-2 },
    });

    private static void Train(Model m, int steps, int offset = 0)
    {
        for (int t = 0; t < steps; t++) m.Step(TestData.Floats(8 * 6, 100 + offset + t), [0, 1, 2, 3, 0, 1, 2, 3]);
    }

    private static int[] Bits(Model m) => m.Parameters.SelectMany(p => m.Parameter(p.Name).ToArray())
        .Concat(m.Buffers.SelectMany(b => m.Buffer(b.Name).ToArray())).Select(BitConverter.SingleToInt32Bits).ToArray();

    [Test]
    public void Weights_RoundTrip_WithTheTreesNamesAndShapes()
    {
        using var a = Net(1);
        Train(a, 3);
        string path = Path.Combine(_dir, "w.safetensors");
        Checkpoint.SaveWeights(a, path);
        var f = SafeTensorsFile.Read(path);
        Assert.That(f.Tensors.Keys, Is.EquivalentTo(a.Parameters.Concat(a.Buffers).Select(p => p.Name)));
        Assert.That(f.Tensors["4.body.3.num_batches_tracked"].Shape, Is.Empty);
        Assert.That(f.ReadFloat("4.body.3.num_batches_tracked"), Is.EqualTo(new[] { 3f }), "three steps");
        Assert.That(f.Tensors.Keys, Does.Contain("3.body.2.weight").And.Contain("3.body.3.body.0.weight").And.Contain("4.proj.weight").And.Contain("5.weight").And.Contain("6.weight"));
        Assert.That(f.Tensors["3.body.2.weight"].Shape, Is.EqualTo(new[] { 10 }), "a LayerNorm's weight is 1-D, as torch's");
        Assert.That(f.Tensors["4.proj.weight"].Shape, Is.EqualTo(new[] { 7, 10 }));
        var info = ModelFile.Read(path);
        Assert.That(info.Spec.IsTree, Is.True);
        Assert.That(info.Spec.Describe(), Is.EqualTo(a.Spec.Describe()));
        using var b = new Model(info.Spec, new TrainingOptions { MaxBatch = 8, Threads = 1, Seed = 2 });
        Checkpoint.LoadWeights(b, path);
        Assert.That(Bits(b), Is.EqualTo(Bits(a)));
        using var c = new Model(info.Spec, new TrainingOptions { MaxBatch = 8, Threads = 1, Seed = 3 });
        Checkpoint.LoadWeights(c, info);
        Assert.That(Bits(c), Is.EqualTo(Bits(a)));
    }

    [Test]
    public void NarrowWeights_KeepTheBatchNormCountExact([Values(TensorDtype.BF16, TensorDtype.F16)] TensorDtype dtype)
    {
        using var m = Net(1);
        Train(m, 3);
        string path = Path.Combine(_dir, "w16.safetensors");
        Checkpoint.SaveWeights(m, path, dtype: dtype);
        var f = SafeTensorsFile.Read(path);
        Assert.That(f.Tensors["4.body.3.num_batches_tracked"].Dtype, Is.EqualTo("F32"), "BF16 holds whole numbers exactly only to 256, F16 to 2048");
        Assert.That(f.Tensors["4.body.3.running_mean"].Dtype, Is.EqualTo(dtype.ToString()));
        Assert.That(f.ReadFloat("4.body.3.num_batches_tracked"), Is.EqualTo(new[] { 3f }));
    }

    [Test]
    public void TrainingCheckpoint_ResumesBitForBit()
    {
        using var full = Net();
        Train(full, 9);
        using var first = Net();
        Train(first, 4);
        string path = Path.Combine(_dir, "c.safetensors");
        Checkpoint.SaveTraining(first, path, new TrainingPosition(1, 4));
        var info = Checkpoint.ReadInfo(path);
        Assert.That(info.Spec.Tree, Is.EqualTo(first.Spec.Tree), "the tree comes back from the checkpoint's spec");
        using var resumed = new Model(info.Spec, info.Options);
        Checkpoint.LoadTraining(resumed, path);
        Train(resumed, 5, offset: 4);
        Assert.That(Bits(resumed), Is.EqualTo(Bits(full)));
    }

    [Test]
    public void AnotherTree_IsRefused_AndTheModelIsUnchanged()
    {
        using var a = Net();
        string path = Path.Combine(_dir, "w.safetensors");
        Checkpoint.SaveWeights(a, path);
        // Same Dense widths, but the LayerNorm sits elsewhere.
        using var other = new Sequential(6).Dense(10, "relu").LayerNorm()
            .Residual(b => b.Dense(10, "gelu").Residual(c => c.Dense(10, "tanh")))
            .Residual(b => b.Dense(7, "silu")).LayerNorm().Dense(4).Compile(new TrainingOptions { MaxBatch = 8, Threads = 1 });
        var before = Bits(other);
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.LoadWeights(other, ModelFile.Read(path)));
        Assert.That(e!.Message, Does.Contain("6-10-[10-LN-[10]]-[7-BN]-LN-4 model; this model is 6-10-LN-[10-[10]]-[7]-LN-4"));
        Assert.Throws<InvalidDataException>(() => Checkpoint.LoadWeights(other, path));
        Assert.That(Bits(other), Is.EqualTo(before));
        // The same widths and modules, other activations: the torch names move (activations are modules), and the message says so.
        using var renamed = new Sequential(6).Dense(10).Dropout(0.1)
            .Residual(b => b.Dense(10, "gelu").LayerNorm().Residual(c => c.Dense(10, "tanh")))
            .Residual(b => b.Dense(7, "silu").Dropout(0.2).BatchNorm()).LayerNorm(1e-3).Dense(4).Compile(new TrainingOptions { MaxBatch = 8, Threads = 1 });
        Assert.That(Assert.Throws<InvalidDataException>(() => Checkpoint.LoadWeights(renamed, ModelFile.Read(path)))!.Message,
            Does.Contain("the same widths, but the tensors are named otherwise: the file has '3.body.0.weight' where this model has '2.body.0.weight'"));
        // A plain stack cannot take a tree's file either.
        using var plain = new Sequential(6).Dense(10, "relu").Dense(10).Dense(4).Compile(new TrainingOptions { MaxBatch = 8 });
        Assert.Throws<InvalidDataException>(() => Checkpoint.LoadWeights(plain, path));

        string ckpt = Path.Combine(_dir, "c.safetensors");
        Checkpoint.SaveTraining(a, ckpt, new TrainingPosition(1, 0));
        Assert.That(Assert.Throws<InvalidDataException>(() => Checkpoint.LoadTraining(other, ckpt))!.Message, Does.Contain("describes another model"));
    }

    [Test]
    public void Onnx_MatchesPredict_InOnnxRuntime()
    {
        using var m = Net(4);
        Train(m, 5);
        var bytes = OnnxExporter.Build(m);
        using var session = new InferenceSession(bytes);
        foreach (int n in new[] { 1, 8, 29 })
        {
            var x = TestData.Floats(n * 6, 300 + n, -3, 3);
            var ours = new float[n * 4];
            m.Predict(x, ours);
            using var results = session.Run([NamedOnnxValue.CreateFromTensor("input", new DenseTensor<float>(x, [n, 6]))]);
            var theirs = results.First().AsTensor<float>().ToArray();
            Assert.That(theirs, Has.Length.EqualTo(ours.Length));
            for (int i = 0; i < ours.Length; i++) Assert.That(theirs[i], Is.EqualTo(ours[i]).Within(2e-5 + 1e-5 * Math.Abs(ours[i])), $"batch {n}, output {i}");
        }
        // Ending in a residual block: the Add is the graph's output.
        using var tail = new Sequential(3).Dense(5, "tanh").Residual(b => b.LayerNorm().Dense(5, "relu")).Compile(new TrainingOptions { Loss = LossKind.Mse, MaxBatch = 4 });
        using var s2 = new InferenceSession(OnnxExporter.Build(tail));
        var x2 = TestData.Floats(4 * 3, 9);
        var o2 = new float[4 * 5];
        tail.Predict(x2, o2);
        using var r2 = s2.Run([NamedOnnxValue.CreateFromTensor("input", new DenseTensor<float>(x2, [4, 3]))]);
        Assert.That(r2.First().AsTensor<float>().ToArray(), Is.EqualTo(o2).Within(1e-5));
    }
}
