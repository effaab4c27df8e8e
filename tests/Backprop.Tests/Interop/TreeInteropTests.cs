// Module trees proven against real PyTorch 1.13 (tests/python/tree_interop.py, Debian's /usr/bin/python3): residual
// blocks (with and without a projection, nested), LayerNorm, BatchNorm and dropout, each trained here a few steps in
// float and saved with Checkpoint.SaveWeights; the script parses the safetensors file itself, rebuilds the torch
// module tree from the spec in its __metadata__, load_state_dict(strict=True) takes every tensor (BatchNorm's
// running statistics and its F32 num_batches_tracked, which torch copies into its int64 buffer), and torch's
// eval-mode outputs are Predict's. When torch or numpy is missing the test is skipped with the reason, never passed.
using System.Diagnostics;
using System.Text.Json;
using Backprop.Engine;
using Backprop.Engine.Checkpoints;
using Backprop.Engine.Data;
using Backprop.Tests.Ops;
using NUnit.Framework;

namespace Backprop.Tests.Interop;

[TestFixture]
[NonParallelizable]
public class TreeInteropTests
{
    private const int Width = 10, Samples = 37, Batch = 16, Steps = 6;
    private string _dir = "";

    [OneTimeSetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), $"backprop-tree-{Environment.ProcessId}");
        Directory.CreateDirectory(_dir);
    }

    [OneTimeTearDown]
    public void TearDown()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private string P(string name) => Path.Combine(_dir, name);

    private sealed record Case(string Name, ModelSpec Spec);

    private static IEnumerable<Case> Cases()
    {
        // nn.Sequential(Linear(10,16), ReLU, Residual(body=Sequential(Linear(16,16), GELU, LayerNorm(16))),
        //               Residual(body=Sequential(Linear(16,8), SiLU, Dropout(0.2)), proj=Linear(16,8)), LayerNorm(8), Linear(8,4))
        yield return new Case("residual-layernorm", new Sequential(Width)
            .Dense(16, "relu")
            .Residual(b => b.Dense(16, "gelu").LayerNorm())
            .Residual(b => b.Dense(8, "silu").Dropout(0.2))
            .LayerNorm(1e-4)
            .Dense(4).ToSpec(LossKind.CrossEntropy));
        // nn.Sequential(BatchNorm1d(10), Linear(10,16), Tanh, BatchNorm1d(16, eps=1e-3, momentum=0.3),
        //               Residual(body=Sequential(Linear(16,16), ELU(0.7), BatchNorm1d(16))), Linear(16,4))
        yield return new Case("batchnorm", new Sequential(Width)
            .BatchNorm()
            .Dense(16, "tanh")
            .BatchNorm(eps: 1e-3, momentum: 0.3)
            .Residual(b => b.Dense(16, "elu:0.7").BatchNorm())
            .Dense(4).ToSpec(LossKind.CrossEntropy));
        // nn.Sequential(Residual(body=Sequential(Linear(10,12), LeakyReLU(0.2), BatchNorm1d(12),
        //                                          Residual(body=Sequential(Linear(12,12), GELU(tanh), LayerNorm(12)))),
        //                        proj=Linear(10,12)), BatchNorm1d(12, momentum=0.05), Linear(12,3)), regression
        yield return new Case("nested-mixed", new Sequential(Width)
            .Residual(b => b.Dense(12, "leaky_relu:0.2").BatchNorm().Residual(c => c.Dense(12, "gelu_tanh").LayerNorm()))
            .BatchNorm(momentum: 0.05)
            .Dense(3).ToSpec(LossKind.Mse));
    }

    // Off-centre inputs of unequal spread per feature, so that the running statistics are far from 0 and 1.
    private static float[] Inputs(int rows, int seed)
    {
        var x = TestData.Floats(rows * Width, seed, -2, 2);
        for (int i = 0; i < x.Length; i++)
        {
            int c = i % Width;
            x[i] = x[i] * (0.5f + 0.4f * (c % 4)) + 1.5f * (c % 3 - 1);
        }
        return x;
    }

    // A model of the case's spec trained a few steps (parameters and running statistics away from their initial values),
    // its weights file, and Predict's outputs on the inputs the script gets.
    private float[] Prepare(Case c, int seed, out Model model)
    {
        model = new Model(c.Spec, new TrainingOptions { Loss = c.Spec.Loss, MaxBatch = Batch, Threads = 1, Seed = (ulong)seed });
        int outs = c.Spec.OutputWidth;
        for (int t = 0; t < Steps; t++)
        {
            var x = Inputs(Batch, seed * 10 + t);
            if (c.Spec.Loss == LossKind.CrossEntropy) model.Step(x, Enumerable.Range(0, Batch).Select(i => (i + t) % outs).ToArray());
            else model.Step(x, TestData.Floats(Batch * outs, seed * 20 + t));
        }
        Checkpoint.SaveWeights(model, P($"{c.Name}.safetensors"));
        var inputs = Inputs(Samples, seed);
        Npy.WriteFloat32(P($"{c.Name}.x.npy"), inputs, Samples, Width);
        var ours = new float[Samples * outs];
        model.Predict(inputs, ours);
        return ours;
    }

    [Test]
    public void TrainedTrees_LoadStrictlyIntoTorch_AndGivePredictsOutputs()
    {
        TreePython.Require();
        var cases = Cases().ToList();
        var models = new List<Model>();
        try
        {
            var ours = new Dictionary<string, float[]>();
            var jobs = new List<string>();
            for (int i = 0; i < cases.Count; i++)
            {
                ours[cases[i].Name] = Prepare(cases[i], 300 + i, out var m);
                models.Add(m);
                jobs.AddRange([P($"{cases[i].Name}.safetensors"), P($"{cases[i].Name}.x.npy"), P($"{cases[i].Name}.torch.npy")]);
            }
            TreePython.Run(["run", .. jobs]);
            for (int i = 0; i < cases.Count; i++)
            {
                var (c, m) = (cases[i], models[i]);
                using var report = JsonDocument.Parse(File.ReadAllText(P($"{c.Name}.torch.npy.json")));
                var r = report.RootElement;
                TestContext.Out.WriteLine($"{c.Name}:\n{r.GetProperty("module").GetString()}");
                // load_state_dict(strict=True) took the file; the torch tree's state_dict is ours, in torch's order.
                Assert.That(r.GetProperty("state_dict_keys").EnumerateArray().Select(k => k.GetString()),
                    Is.EqualTo(ResidualGoldenTests.StateDictOrder(m.Parameters, m.Buffers)), $"{c.Name}: state_dict keys");
                // The F32 count went into torch's int64 buffer with its value.
                var counts = r.GetProperty("num_batches_tracked");
                var ourCounts = m.Buffers.Where(b => b.Name.EndsWith(".num_batches_tracked", StringComparison.Ordinal)).ToArray();
                Assert.That(counts.EnumerateObject().Select(o => o.Name), Is.EqualTo(ourCounts.Select(b => b.Name)), $"{c.Name}: counts");
                foreach (var b in ourCounts)
                {
                    var t = counts.GetProperty(b.Name);
                    Assert.That(t.GetProperty("dtype").GetString(), Is.EqualTo("torch.int64"), $"{c.Name}: {b.Name}'s dtype in torch");
                    Assert.That(t.GetProperty("value").GetInt64(), Is.EqualTo(Steps).And.EqualTo((long)m.Buffer(b.Name)[0]), $"{c.Name}: {b.Name}");
                }
                var torch = Array.ConvertAll(Npy.Read(P($"{c.Name}.torch.npy")).Data, v => (float)v);
                AssertClose(ours[c.Name], torch, 1e-5, $"{c.Name}: Predict vs torch's eval-mode outputs");
            }
            Assert.That(models.Sum(m => m.Buffers.Count), Is.GreaterThan(0), "some case has BatchNorm buffers");
        }
        finally
        {
            foreach (var m in models) m.Dispose();
        }
    }

    private static void AssertClose(float[] ours, float[] torch, double tol, string what)
    {
        Assert.That(ours, Has.Length.EqualTo(torch.Length), what);
        double worst = 0;
        for (int i = 0; i < ours.Length; i++)
        {
            double excess = Math.Abs(ours[i] - torch[i]) / (tol * Math.Max(1, Math.Abs(torch[i])));
            worst = Math.Max(worst, excess);
            Assert.That(excess, Is.LessThanOrEqualTo(1), $"{what}: element {i}: ours {ours[i]:R}, torch {torch[i]:R}");
        }
        TestContext.Out.WriteLine($"{what}: worst {worst:G3} x the tolerance");
    }

    // tests/python/tree_interop.py under Debian's interpreter, as interop.py runs; it needs torch and numpy only.
    private static readonly PythonScript TreePython = new("tree_interop.py", "python3-torch or python3-numpy");
}
