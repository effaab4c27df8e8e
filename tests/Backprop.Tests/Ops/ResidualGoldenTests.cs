// Residual blocks and LayerNorm against PyTorch itself (tests/golden/residual.json, written by torch 1.13 through
// tests/golden/residual.py): each network built here with Sequential must have exactly the torch module tree's
// state_dict names (what load_state_dict(strict=True) needs); from torch's parameters the engine's output, loss,
// every parameter gradient, the input gradient and five Adam steps (losses and final parameters) must match torch's,
// in double on every ISA rung and the Blas backend, and in float on the Cpu and Blas backends. The BatchNorm record adds
// the buffers: the state_dict (parameters and buffers, as torch orders them), the train-mode output, the running
// statistics and count after the five steps (only a step moves them), and the eval-mode outputs before and after.
using System.Numerics;
using System.Text.Json;
using Backprop.Engine;
using Backprop.Kernels;
using Backprop.Kernels.Cpu;
using NUnit.Framework;

namespace Backprop.Tests.Ops;

[TestFixture]
[Parallelizable(ParallelScope.Children)]
public class ResidualGoldenTests
{
    private const string GoldenFile = "residual";

    // The torch module trees of residual.py, written with the builder.
    private static (Sequential Net, LossKind Loss) Network(string record) => record switch
    {
        // nn.Sequential(Linear(6,8), Tanh(), Residual(body=Sequential(Linear(8,8), GELU(), LayerNorm(8))),
        //               Residual(body=Sequential(Linear(8,5), SiLU()), proj=Linear(8,5)), LayerNorm(5), Linear(5,3))
        "resmlp" => (new Sequential(6)
            .Dense(8, "tanh")
            .Residual(b => b.Dense(8, "gelu").LayerNorm(1e-5))
            .Residual(b => b.Dense(5, "silu"))
            .LayerNorm(1e-5)
            .Dense(3), LossKind.CrossEntropy),
        // nn.Sequential(Residual(body=Sequential(Linear(4,6), Tanh(), Residual(body=Sequential(Linear(6,6), ReLU())), LayerNorm(6)),
        //                        proj=Linear(4,6)), Linear(6,2))
        "nested" => (new Sequential(4)
            .Residual(b => b.Dense(6, "tanh").Residual(c => c.Dense(6, "relu")).LayerNorm(1e-5))
            .Dense(2), LossKind.Mse),
        // nn.Sequential(LayerNorm(6), Linear(6,3))
        "layernorm_edge" => (new Sequential(6).LayerNorm(1e-5).Dense(3), LossKind.Mse),
        // nn.Sequential(BatchNorm1d(5), Linear(5,8), Tanh(), BatchNorm1d(8, eps=1e-3),
        //               Residual(body=Sequential(Linear(8,6), GELU(), BatchNorm1d(6, momentum=0.3)), proj=Linear(8,6)), Linear(6,3))
        "batchnorm" => (new Sequential(5)
            .BatchNorm(eps: 1e-5, momentum: 0.1)
            .Dense(8, "tanh")
            .BatchNorm(eps: 1e-3, momentum: 0.1)
            .Residual(b => b.Dense(6, "gelu").BatchNorm(eps: 1e-5, momentum: 0.3))
            .Dense(3), LossKind.CrossEntropy),
        _ => throw new ArgumentOutOfRangeException(nameof(record), record, "no such record"),
    };

    private static readonly string[] Records = ["resmlp", "nested", "layernorm_edge"];

    // The record with buffers (its state_dict is more than the parameters), checked by BatchNorm_MatchesTorch.
    private const string BatchNormRecord = "batchnorm";

    public static IEnumerable<TestCaseData> Cases() => CasesOf(Records);

    public static IEnumerable<TestCaseData> BatchNormCases() => CasesOf([BatchNormRecord]);

    private static IEnumerable<TestCaseData> CasesOf(string[] records)
    {
        foreach (var r in records)
        {
            foreach (var isa in Enum.GetValues<Isa>().Where(i => i <= CpuIsa.Supported))
                yield return new TestCaseData(r, false, Backend.Cpu, isa).SetName($"{{m}}({r}, double, Cpu, {isa})");
            yield return new TestCaseData(r, false, Backend.Blas, null).SetName($"{{m}}({r}, double, Blas)");
            yield return new TestCaseData(r, true, Backend.Cpu, null).SetName($"{{m}}({r}, float, Cpu)");
            yield return new TestCaseData(r, true, Backend.Blas, null).SetName($"{{m}}({r}, float, Blas)");
        }
    }

    /// <summary>Relative and absolute tolerances: one pass (output, loss, gradients) and after the Adam steps.</summary>
    private sealed record Tolerance(double Rtol, double Atol, double TrainRtol, double TrainAtol);

    // Double: the engine sums in another order than torch (vector lanes, fused kernels), nothing more. Float: the inputs and
    // parameters are rounded to float first; five Adam steps amplify where a gradient is small against its running scale.
    // (The absolute part covers torch's own rounding on layernorm_edge's large-mean row, ~4e-12: see LayerNormAlone_… below.)
    private static readonly Tolerance DoubleTol = new(1e-10, 1e-11, 1e-9, 1e-11);
    private static readonly Tolerance FloatTol = new(1e-5, 1e-6, 1e-4, 1e-5);

    [Test]
    public void StateDictKeys_AreThoseOfTheTorchModuleTree([ValueSource(nameof(Records))] string record)
    {
        var g = Golden.Load(GoldenFile).GetProperty(record);
        var (net, loss) = Network(record);
        using var m = new Model<double>(net.ToSpec(loss), new TrainingOptions { Loss = loss, MaxBatch = 1, Threads = 1 });
        var keys = g.GetProperty("state_dict_keys").EnumerateArray().Select(k => k.GetString()).ToArray();
        Assert.That(m.Parameters.Select(p => p.Name), Is.EqualTo(keys), "names, in state_dict order");
        var p = g.GetProperty("params");
        Assert.That(m.Parameters.Select(q => q.Shape), Is.EqualTo(keys.Select(k => p.Tensor(k!).Shape)), "shapes");
        Assert.That(p.EnumerateObject().Select(o => o.Name), Is.EqualTo(keys), "the golden file's params cover exactly the keys");
    }

    [TestCaseSource(nameof(Cases))]
    public void MatchesTorch(string record, bool useFloat, Backend backend, Isa? isa)
    {
        if (useFloat) Check<float>(record, backend, isa, FloatTol);
        else Check<double>(record, backend, isa, DoubleTol);
    }

    // The record, its loss and its batch.
    private static (System.Text.Json.JsonElement G, LossKind Loss, GoldenTensor X, int Batch) Record(string record)
    {
        var g = Golden.Load(GoldenFile).GetProperty(record);
        var x = g.Tensor("x");
        return (g, Network(record).Loss, x, x.Shape[0]);
    }

    // The record's network on a backend and rung, with the record's Adam (the batch is the whole record).
    private static Model<T> Compile<T>(string record, Backend backend, Isa? isa) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var (net, lossKind) = Network(record);
        var options = new TrainingOptions
        {
            Loss = lossKind,
            MaxBatch = Record(record).Batch,
            Threads = 1,
            Seed = 1,
            Backend = backend,
            Isa = isa,
            Optimizer = new Adam(lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8),
        };
        return new Model<T>(net.ToSpec(lossKind), options);
    }

    private static void Check<T>(string record, Backend backend, Isa? isa, Tolerance tol) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var (g, lossKind, x, batch) = Record(record);
        using var m = Compile<T>(record, backend, isa);
        string where = $"{record} {typeof(T).Name} {backend}{(isa is { } i ? " " + i : "")}";

        var keys = g.GetProperty("state_dict_keys").EnumerateArray().Select(k => k.GetString()!).ToArray();
        Assert.That(m.Parameters.Select(p => p.Name), Is.EqualTo(keys), $"{where}: state_dict names");
        var parameters = g.GetProperty("params");
        foreach (var k in keys) m.SetParameter(k, Conv<T>(parameters.Tensor(k).Data));

        var xs = Conv<T>(x.Data);
        bool ce = lossKind == LossKind.CrossEntropy;
        int[] labels = ce ? g.Labels("labels").Select(v => checked((int)v)).ToArray() : [];
        T[] targets = ce ? [] : Conv<T>(g.Tensor("targets").Data);
        double Loss() => ce ? m.Loss(xs, labels) : m.Loss(xs, targets);
        double Gradients() => ce ? m.Gradients(xs, labels) : m.Gradients(xs, targets);
        double Step() => ce ? m.Step(xs, labels) : m.Step(xs, targets);

        var want = g.Tensor("output");
        var output = new T[want.Data.Length];
        m.Predict(xs, output);
        Near(ToDouble(output), want.Data, tol.Rtol, tol.Atol, $"{where}: output");

        double lossRef = g.GetProperty("loss").GetDouble();
        Near([Loss()], [lossRef], tol.Rtol, tol.Atol, $"{where}: Loss");
        Near([Gradients()], [lossRef], tol.Rtol, tol.Atol, $"{where}: loss of Gradients");
        var grads = g.GetProperty("grads");
        foreach (var k in keys) Near(ToDouble(m.Gradient(k)), grads.Tensor(k).Data, tol.Rtol, tol.Atol, $"{where}: grad {k}");
        Near(ToDouble(m.InputGradient), g.Tensor("x_grad").Data, tol.Rtol, tol.Atol, $"{where}: x_grad");

        if (!g.TryGetProperty("train", out var train)) return;
        foreach (var k in keys) Assert.That(ToDouble(m.Parameter(k)), Is.EqualTo(ToDouble(Conv<T>(parameters.Tensor(k).Data))), $"{where}: {k} untouched before training");
        var losses = train.GetProperty("losses").EnumerateArray().Select(v => v.GetDouble()).ToArray();
        var ours = new double[losses.Length];
        for (int t = 0; t < losses.Length; t++) ours[t] = Step();
        Near(ours, losses, tol.TrainRtol, tol.TrainAtol, $"{where}: Adam step losses");
        Assert.That(m.StepCount, Is.EqualTo(losses.Length));
        var after = train.GetProperty("params_after_last_step");
        foreach (var k in keys) Near(ToDouble(m.Parameter(k)), after.Tensor(k).Data, tol.TrainRtol, tol.TrainAtol, $"{where}: {k} after {losses.Length} Adam steps");
    }

    // torch's state_dict order: module by module in tree order, each module's parameters, then its buffers. The engine lists
    // the parameters (tree order) and the buffers (block order) apart: merged here, each module's buffers right after its last
    // parameter (a BatchNorm has affine parameters, so every buffer has a module with parameters to follow).
    internal static string[] StateDictOrder(IReadOnlyList<ParameterInfo> parameters, IReadOnlyList<ParameterInfo> buffers)
    {
        static string Module(string name) => name[..name.LastIndexOf('.')];
        var keys = new List<string>();
        for (int i = 0; i < parameters.Count; i++)
        {
            keys.Add(parameters[i].Name);
            string module = Module(parameters[i].Name);
            if (i + 1 < parameters.Count && Module(parameters[i + 1].Name) == module) continue;
            keys.AddRange(buffers.Select(b => b.Name).Where(b => Module(b) == module));
        }
        Assert.That(keys, Has.Count.EqualTo(parameters.Count + buffers.Count), "every buffer follows a module's parameters");
        return keys.ToArray();
    }

    [Test]
    public void BatchNorm_StateDictKeys_AreThoseOfTheTorchModuleTree()
    {
        var g = Golden.Load(GoldenFile).GetProperty(BatchNormRecord);
        var (net, loss) = Network(BatchNormRecord);
        using var m = new Model<double>(net.ToSpec(loss), new TrainingOptions { Loss = loss, MaxBatch = 2, Threads = 1 });
        var keys = g.GetProperty("state_dict_keys").EnumerateArray().Select(k => k.GetString()!).ToArray();
        var p = g.GetProperty("params");
        var b = g.GetProperty("buffers");
        Assert.That(m.Parameters.Select(q => q.Name), Is.EqualTo(p.EnumerateObject().Select(o => o.Name)), "parameters, in named_parameters order");
        Assert.That(m.Buffers.Select(q => q.Name), Is.EqualTo(b.EnumerateObject().Select(o => o.Name)), "buffers, in named_buffers order");
        Assert.That(StateDictOrder(m.Parameters, m.Buffers), Is.EqualTo(keys), "parameters and buffers, in state_dict order");
        Assert.That(m.Parameters.Select(q => q.Shape), Is.EqualTo(m.Parameters.Select(q => p.Tensor(q.Name).Shape)), "parameter shapes");
        Assert.That(m.Buffers.Select(q => q.Shape), Is.EqualTo(m.Buffers.Select(q => b.Tensor(q.Name).Shape)), "buffer shapes (num_batches_tracked: [])");
    }

    [TestCaseSource(nameof(BatchNormCases))]
    public void BatchNorm_MatchesTorch(string record, bool useFloat, Backend backend, Isa? isa)
    {
        if (useFloat) CheckBatchNorm<float>(record, backend, isa, FloatTol);
        else CheckBatchNorm<double>(record, backend, isa, DoubleTol);
    }

    private static void CheckBatchNorm<T>(string record, Backend backend, Isa? isa, Tolerance tol) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var (g, lossKind, x, batch) = Record(record);
        using var m = Compile<T>(record, backend, isa);
        string where = $"{record} {typeof(T).Name} {backend}{(isa is { } i ? " " + i : "")}";

        var keys = g.GetProperty("state_dict_keys").EnumerateArray().Select(k => k.GetString()!).ToArray();
        Assert.That(StateDictOrder(m.Parameters, m.Buffers), Is.EqualTo(keys), $"{where}: state_dict names");
        var names = m.Parameters.Select(p => p.Name).ToArray();
        var bufferNames = m.Buffers.Select(b => b.Name).ToArray();
        var parameters = g.GetProperty("params");
        foreach (var k in names) m.SetParameter(k, Conv<T>(parameters.Tensor(k).Data));
        // A fresh model's buffers are torch's fresh ones (running_mean 0, running_var 1, count 0): the record starts there.
        var fresh = g.GetProperty("buffers");
        void BuffersAre(JsonElement want, string when)
        {
            foreach (var k in bufferNames) Assert.That(ToDouble(m.Buffer(k)), Is.EqualTo(want.Tensor(k).Data), $"{where}: buffer {k} {when}");
        }
        BuffersAre(fresh, "of a fresh model");

        var xs = Conv<T>(x.Data);
        int[] labels = g.Labels("labels").Select(v => checked((int)v)).ToArray();
        var outputs = new T[g.Tensor("output").Data.Length];

        // Inference with the fresh running statistics.
        m.Predict(xs, outputs);
        Near(ToDouble(outputs), g.Tensor("eval_output_fresh").Data, tol.Rtol, tol.Atol, $"{where}: eval-mode output (fresh buffers)");

        // One train-mode pass (batch statistics): Loss and Gradients evaluate and leave the buffers where they were.
        double lossRef = g.GetProperty("loss").GetDouble();
        Near([m.Loss(xs, labels)], [lossRef], tol.Rtol, tol.Atol, $"{where}: Loss");
        Near([m.Gradients(xs, labels)], [lossRef], tol.Rtol, tol.Atol, $"{where}: loss of Gradients");
        Near(ToDouble(m.TrainingOutput), g.Tensor("output").Data, tol.Rtol, tol.Atol, $"{where}: train-mode output");
        var grads = g.GetProperty("grads");
        foreach (var k in names) Near(ToDouble(m.Gradient(k)), grads.Tensor(k).Data, tol.Rtol, tol.Atol, $"{where}: grad {k}");
        Near(ToDouble(m.InputGradient), g.Tensor("x_grad").Data, tol.Rtol, tol.Atol, $"{where}: x_grad");
        BuffersAre(fresh, "after Loss and Gradients");

        // Five Adam steps from the fresh buffers: each moves the running statistics and the count.
        var train = g.GetProperty("train");
        var losses = train.GetProperty("losses").EnumerateArray().Select(v => v.GetDouble()).ToArray();
        var ours = new double[losses.Length];
        for (int t = 0; t < losses.Length; t++) ours[t] = m.Step(xs, labels);
        Near(ours, losses, tol.TrainRtol, tol.TrainAtol, $"{where}: Adam step losses");
        Assert.That(m.StepCount, Is.EqualTo(losses.Length));
        var after = train.GetProperty("params_after_last_step");
        foreach (var k in names) Near(ToDouble(m.Parameter(k)), after.Tensor(k).Data, tol.TrainRtol, tol.TrainAtol, $"{where}: {k} after {losses.Length} Adam steps");
        var buffersAfter = train.GetProperty("buffers_after_last_step");
        foreach (var k in bufferNames)
        {
            if (k.EndsWith(".num_batches_tracked", StringComparison.Ordinal))
                Assert.That(ToDouble(m.Buffer(k)), Is.EqualTo(buffersAfter.Tensor(k).Data), $"{where}: {k} after {losses.Length} steps");
            else
                Near(ToDouble(m.Buffer(k)), buffersAfter.Tensor(k).Data, tol.TrainRtol, tol.TrainAtol, $"{where}: {k} after {losses.Length} Adam steps");
        }

        // Inference after training: the running statistics.
        m.Predict(xs, outputs);
        Near(ToDouble(outputs), train.Tensor("eval_output").Data, tol.TrainRtol, tol.TrainAtol, $"{where}: eval-mode output after training");
    }

    [Test]
    public void LayerNormAlone_IsWithinAnUlpOfTheExactValues([Values(Backend.Cpu, Backend.Blas)] Backend backend)
    {
        // The edge record's LayerNorm by itself, in double: against the 50-digit decimal values of the golden file the
        // engine's (x - mean) * rstd form is within an ulp or two on every row, the constant and the large-mean rows
        // included; torch 1.13's own output is ~4e-12 off on the large-mean row (the file records by how much), so against
        // torch that row needs the absolute tolerance. A model needs a Dense layer: an identity one before the LayerNorm
        // passes x through exactly (every other product is an exact 0).
        var g = Golden.Load(GoldenFile).GetProperty("layernorm_edge");
        var x = g.Tensor("x");
        int batch = x.Shape[0], w = x.Shape[1];
        using var m = new Model<double>(new Sequential(w).Dense(w).LayerNorm(1e-5).ToSpec(LossKind.Mse),
            new TrainingOptions { Loss = LossKind.Mse, MaxBatch = batch, Threads = 1, Backend = backend });
        Assert.That(m.Parameters.Select(p => p.Name), Is.EqualTo(new[] { "0.weight", "0.bias", "1.weight", "1.bias" }));
        var eye = new double[w * w];
        for (int i = 0; i < w; i++) eye[i * w + i] = 1;
        m.SetParameter("0.weight", eye);
        m.SetParameter("0.bias", new double[w]);
        m.SetParameter("1.weight", g.GetProperty("params").Tensor("0.weight").Data);
        m.SetParameter("1.bias", g.GetProperty("params").Tensor("0.bias").Data);
        var y = new double[batch * w];
        m.Predict(x.Data, y);
        Near(y, g.Tensor("layernorm_output_exact").Data, 4.5e-16, 1e-16, $"{backend}: LayerNorm against the exact values");
        Near(y, g.Tensor("layernorm_output").Data, 1e-10, 1e-11, $"{backend}: LayerNorm against torch");
        var torchError = g.GetProperty("layernorm_output_torch_max_abs_error_per_row").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        Assert.That(torchError[2], Is.GreaterThan(1e-12), "the file's claim: torch's large-mean row is off by more than its ulps");
    }

    [Test]
    public void LayerNormEdgeRows_AreTheCasesTheyClaim()
    {
        // The record is only an edge case if its rows are: guard the file against a regenerated script that lost them.
        var x = Golden.Load(GoldenFile).GetProperty("layernorm_edge").Tensor("x");
        int w = x.Shape[1];
        var constant = x.Data.Skip(w).Take(w).ToArray();
        var large = x.Data.Skip(2 * w).Take(w).ToArray();
        Assert.That(constant, Is.All.EqualTo(constant[0]), "row 1 is constant");
        Assert.That(large.Average(), Is.EqualTo(1e4), "row 2's mean is 1e4");
        Assert.That(large.Max() - large.Min(), Is.GreaterThan(0.1).And.LessThan(2), "row 2 has a small spread");
        Assert.That(large.Select(v => (double)(float)v), Is.EqualTo(large), "row 2 is exact in float");
    }

    private static T[] Conv<T>(double[] d) where T : unmanaged, IFloatingPointIeee754<T> => d.Select(T.CreateTruncating).ToArray();

    private static double[] ToDouble<T>(ReadOnlySpan<T> s) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var r = new double[s.Length];
        for (int i = 0; i < s.Length; i++) r[i] = double.CreateTruncating(s[i]);
        return r;
    }

    private static void Near(double[] ours, double[] theirs, double rtol, double atol, string what)
    {
        Assert.That(ours, Has.Length.EqualTo(theirs.Length), what);
        double worst = 0;
        int at = -1;
        for (int i = 0; i < ours.Length; i++)
        {
            double excess = Math.Abs(ours[i] - theirs[i]) / (atol + rtol * Math.Abs(theirs[i]));
            if (!(excess <= worst)) (worst, at) = (excess, i); // NaN is the worst
        }
        if (at >= 0) TestContext.Out.WriteLine($"{what}: worst |diff| at [{at}] is {worst:G3} x the tolerance");
        Assert.That(worst, Is.LessThanOrEqualTo(1), () =>
            $"{what}[{at}]: {ours[at]:R} vs torch {theirs[at]:R} (|diff| {Math.Abs(ours[at] - theirs[at]):G3}, {worst:G3} x the tolerance {atol:G2} + {rtol:G2}|torch|)");
    }
}
