// Model files of every kind: plain state_dicts read as models (each rule of StateDict, each refusal with its
// reason), weights files carrying their preprocessing, checkpoints carrying torch.optim's per-parameter steps
// and description (validated on load), and F16 / BF16 tensors read and written.
using System.Text.Json;
using Backprop.Engine;
using Backprop.Engine.Checkpoints;
using Backprop.Engine.Data;
using Backprop.Engine.Training;
using Backprop.Kernels;
using NUnit.Framework;

namespace Backprop.Tests.Checkpoints;

[TestFixture]
public class ModelFileTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), $"backprop-modelfile-{Guid.NewGuid():N}");
        Directory.CreateDirectory(_dir);
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    // A safetensors file of tensors named and shaped as given (values from a seed), no metadata unless given.
    private string File_(string name, (string Name, int[] Shape)[] tensors, Dictionary<string, string>? meta = null)
    {
        string path = Path.Combine(_dir, name);
        int seed = 0;
        SafeTensorsWriter.Write(path, tensors.Select(t => (t.Name, t.Shape, TestData.Floats(t.Shape.Aggregate(1, (a, b) => a * b), seed++))).ToList(), meta);
        return path;
    }

    private static (string, int[])[] Linears(string prefix, params (int Index, int Out, int In)[] layers) =>
        layers.SelectMany(l => new[] { ($"{prefix}{l.Index}.weight", new[] { l.Out, l.In }), ($"{prefix}{l.Index}.bias", new[] { l.Out }) }).ToArray();

    private static Activation A(string s) => Activation.Parse(s);

    private (ModelSpec Spec, IReadOnlyList<(string Weight, string Bias)> Tensors) Describe((string, int[])[] tensors, StateDictChoices choices) =>
        StateDict.Describe(SafeTensorsFile.Read(File_($"{Guid.NewGuid():N}.safetensors", tensors)), choices);

    [Test]
    public void StateDict_GapsBetweenLinears_AreActivationsAndDropouts()
    {
        // 0 Linear, 1 ReLU, 2 Linear, 3 Dropout (identity activation), 4 Linear
        var (spec, names) = Describe(Linears("", (0, 16, 12), (2, 9, 16), (4, 5, 9)), new StateDictChoices { Activations = [A("relu"), A("identity")], Dropout = 0.3 });
        Assert.That(spec.InputWidth, Is.EqualTo(12));
        Assert.That(spec.Layers, Is.EqualTo(new[] { new LayerSpec(16, A("relu")), new LayerSpec(9, A("identity"), 0.3), new LayerSpec(5, A("identity")) }));
        Assert.That(spec.Loss, Is.EqualTo(LossKind.CrossEntropy));
        Assert.That(names, Is.EqualTo(new[] { ("0.weight", "0.bias"), ("2.weight", "2.bias"), ("4.weight", "4.bias") }));
        // Our own naming of that model is the file's: saving it back gives the same state_dict names.
        Assert.That(Enumerable.Range(0, 3).Select(l => spec.ParameterNames(l)), Is.EqualTo(names));

        // Two modules: an activation, then a Dropout; one activation for every hidden layer; the last one's after the last Linear.
        (spec, _) = Describe(Linears("net.", (0, 8, 4), (3, 3, 8)), new StateDictChoices { Activations = [A("tanh")], Dropout = 0.25 });
        Assert.That(spec.Layers, Is.EqualTo(new[] { new LayerSpec(8, A("tanh"), 0.25), new LayerSpec(3, A("identity")) }));
        (spec, _) = Describe(Linears("", (0, 8, 4), (2, 1, 8)), new StateDictChoices { Activations = [A("elu:0.5"), A("sigmoid")], Loss = LossKind.Mse });
        Assert.That(spec.Layers[1].Activation, Is.EqualTo(A("sigmoid")));
        // Dropout at inference (probability 0): the layer is kept without dropout; the names still map.
        (spec, names) = Describe(Linears("", (0, 8, 4), (3, 3, 8)), new StateDictChoices { Activations = [A("relu")] });
        Assert.That(spec.Layers[0].Dropout, Is.EqualTo(0));
        Assert.That(names[1], Is.EqualTo(("3.weight", "3.bias")));
        // Linear layers one after the other need no activation.
        (spec, _) = Describe(Linears("", (0, 6, 4), (1, 3, 6)), new StateDictChoices());
        Assert.That(spec.Layers.All(l => l.Activation.Kind == ActivationKind.Identity));
    }

    private static IEnumerable<TestCaseData> BadChoices()
    {
        TestCaseData C(string why, (string, int[])[] t, StateDictChoices c, string message) => new TestCaseData(t, c, message).SetArgDisplayNames(why);
        yield return C("no activation named", Linears("", (0, 8, 4), (2, 3, 8)), new StateDictChoices(),
            "module 1 between Linear 0 and Linear 2 holds no parameters: an activation or a Dropout, which the file cannot say; name the hidden activations");
        yield return C("activation where none fits", Linears("", (0, 8, 4), (1, 3, 8)), new StateDictChoices { Activations = [A("relu")] },
            "the activation ReLU of layer 0 contradicts the file: Linear 1 follows Linear 0 directly, with no module between them");
        yield return C("two modules, identity", Linears("", (0, 8, 4), (3, 3, 8)), new StateDictChoices { Activations = [A("identity")] },
            "modules 1 and 2 between Linear 0 and Linear 3 hold no parameters (an activation, then a Dropout), but layer 0's activation is given as identity");
        yield return C("too many activations", Linears("", (0, 8, 4), (2, 3, 8)), new StateDictChoices { Activations = [A("relu"), A("relu"), A("relu")] },
            "3 activations given, but the file has 2 Linear layers: give one, 1 (one per hidden layer) or 2 (one per layer)");
        yield return C("one output, no loss", Linears("", (0, 8, 4), (2, 1, 8)), new StateDictChoices { Activations = [A("relu")] },
            "the model has one output, so the loss cannot be cross-entropy; name it (mse, l1, huber or bce_with_logits)");
        yield return C("dropout out of range", Linears("", (0, 8, 4), (2, 3, 8)), new StateDictChoices { Activations = [A("relu")], Dropout = 1 },
            "the dropout probability must be in [0, 1); got 1");
        yield return C("one Linear, one activation", Linears("", (0, 3, 8)), new StateDictChoices { Activations = [A("relu")], Loss = LossKind.Mse },
            "the file has a single Linear layer, so there is no hidden layer for the activation ReLU");
        yield return C("cross-entropy after an activation", Linears("", (0, 8, 4), (2, 3, 8)), new StateDictChoices { Activations = [A("relu"), A("sigmoid")] },
            "the model it describes is one the engine refuses");
    }

    [TestCaseSource(nameof(BadChoices))]
    public void StateDict_MissingOrContradictingChoices_AreArgumentExceptions((string, int[])[] tensors, StateDictChoices choices, string message)
    {
        var e = Assert.Throws<ArgumentException>(() => Describe(tensors, choices))!;
        Assert.That(e.Message, Does.Contain(message));
        Assert.That(e.Message, Does.StartWith("state_dict '"), "names the file");
    }

    private static IEnumerable<TestCaseData> BadFiles()
    {
        TestCaseData C(string why, (string, int[])[] t, string message) => new TestCaseData(t, message).SetArgDisplayNames(why);
        yield return C("no tensors", [], "the file holds no tensors");
        yield return C("a BatchNorm's buffers", [.. Linears("", (0, 8, 4), (3, 3, 8)), ("1.running_mean", [8])], "tensor '1.running_mean' is not a Linear layer's parameter");
        yield return C("two prefixes", [.. Linears("a.", (0, 8, 4)), .. Linears("b.", (2, 3, 8))], "has the prefix 'b.' but others have 'a.'");
        yield return C("no bias", [("0.weight", [8, 4]), ("2.weight", [3, 8]), ("2.bias", [3])], "Linear 0 ('0.weight') has no bias (nn.Linear(bias=False))");
        yield return C("no weight", [("0.bias", [8])], "module 0 has a bias '0.bias' but no weight");
        yield return C("widths do not chain", Linears("", (0, 8, 4), (2, 3, 7)), "'2.weight' takes 7 inputs but the layer before it ('0.weight') gives 8");
        yield return C("leading module", Linears("", (1, 8, 4), (3, 3, 8)), "the first Linear is module 1: modules 0..0 hold no parameters (e.g. nn.Flatten)");
        yield return C("three modules between", Linears("", (0, 8, 4), (4, 3, 8)), "3 modules without parameters sit between Linear 0 and Linear 4");
        yield return C("weight of rank 1", [("0.weight", [4]), ("0.bias", [4])], "'0.weight' has shape [4]; an nn.Linear weight is [out, in]");
        yield return C("bias of the wrong width", [("0.weight", [8, 4]), ("0.bias", [7])], "'0.bias' has shape [7]; the bias of '0.weight' [8, 4] is [8]");
        yield return C("leading zero in an index", [("00.weight", [8, 4]), ("00.bias", [8])], "tensor '00.bias' is not a Linear layer's parameter");
    }

    [TestCaseSource(nameof(BadFiles))]
    public void StateDict_FilesThatAreNotSequentialLinears_AreInvalidData((string, int[])[] tensors, string message)
    {
        var e = Assert.Throws<InvalidDataException>(() => Describe(tensors, new StateDictChoices { Activations = [A("relu")] }))!;
        Assert.That(e.Message, Does.Contain(message));
    }

    private static Model Trained(ModelSpec spec, TrainingOptions? options = null)
    {
        var model = new Model(spec, options ?? new TrainingOptions { Loss = spec.Loss, MaxBatch = 8, Threads = 1, Seed = 3 });
        for (int t = 0; t < 3; t++) model.Step(TestData.Floats(8 * spec.InputWidth, t), Enumerable.Range(0, 8).Select(i => i % spec.OutputWidth).ToArray());
        return model;
    }

    internal static bool Same(ModelSpec a, ModelSpec b) =>
        a.InputWidth == b.InputWidth && a.Loss == b.Loss && a.LabelSmoothing == b.LabelSmoothing && a.Layers.SequenceEqual(b.Layers);

    private static readonly ModelSpec Spec = new Sequential(6).Dense(8, "relu").Dropout(0.2).Dense(4).ToSpec(LossKind.CrossEntropy);

    [Test]
    public void WeightsFile_RecordsItsPreprocessing_AndModelFileReadsEveryKind()
    {
        using var model = Trained(Spec);
        var pre = new Preprocessing(Normalization.Standardize, TestData.Floats(6, 1), TestData.Floats(6, 2, 0.5f, 2f));
        string weights = Path.Combine(_dir, "w.safetensors"), ckpt = Path.Combine(_dir, "c.safetensors");
        Checkpoint.SaveWeights(model, weights, pre);
        Checkpoint.SaveTraining(model, ckpt, new TrainingPosition(1, 3),
            new TrainingRun(2, 0, 0, 0, new Preprocessing(Normalization.Scale01)));
        var w = ModelFile.Read(weights);
        Assert.That((w.Kind, w.Preprocessing), Is.EqualTo((ModelFileKind.Weights, pre)));
        Assert.That(Same(w.Spec, Spec), Is.True);
        var c = ModelFile.Read(ckpt);
        Assert.That((c.Kind, c.Preprocessing), Is.EqualTo((ModelFileKind.Checkpoint, new Preprocessing(Normalization.Scale01))));
        // A file without preprocessing (older, or saved without it) says so with null.
        Checkpoint.SaveWeights(model, weights);
        Assert.That(ModelFile.Read(weights).Preprocessing, Is.Null);
        // A plain state_dict: the same tensors without our metadata.
        var f = SafeTensorsFile.Read(weights);
        string sd = Path.Combine(_dir, "sd.safetensors");
        SafeTensorsWriter.Write(sd, f.Tensors.Keys.Select(k => (k, f.Tensors[k].Shape, f.ReadFloat(k))).ToList());
        var s = ModelFile.Read(sd, new StateDictChoices { Activations = [A("relu")] });
        Assert.That(s.Kind, Is.EqualTo(ModelFileKind.StateDict));
        using var loaded = new Model(s.Spec, new TrainingOptions { MaxBatch = 8, Threads = 1 });
        Checkpoint.LoadWeights(loaded, s);
        Assert.That(loaded.GetWeights(1), Is.EqualTo(model.GetWeights(1)));
        // Choices are for state_dicts only.
        var e = Assert.Throws<ArgumentException>(() => ModelFile.Read(weights, new StateDictChoices { Activations = [A("relu")] }))!;
        Assert.That(e.Message, Does.Contain("which states its model"));
    }

    private string Rewrite(string path, Func<string, float[], float[]>? tensor = null, Action<Dictionary<string, string>>? meta = null, Func<string, bool>? keep = null)
    {
        var f = SafeTensorsFile.Read(path);
        var m = f.Metadata.ToDictionary(p => p.Key, p => p.Value);
        meta?.Invoke(m);
        string dst = Path.Combine(_dir, $"edited-{Guid.NewGuid():N}.safetensors");
        SafeTensorsWriter.Write(dst, f.Tensors.Keys.Where(k => keep?.Invoke(k) ?? true)
            .Select(k => (k, f.Tensors[k].Shape, tensor?.Invoke(k, f.ReadFloat(k)) ?? f.ReadFloat(k))).ToList(), m);
        return dst;
    }

    [Test]
    public void WeightsFile_MetadataIsValidated()
    {
        using var model = Trained(Spec);
        string weights = Path.Combine(_dir, "w.safetensors");
        Checkpoint.SaveWeights(model, weights, new Preprocessing(Normalization.Scale01));
        void Refused(string path, string message) =>
            Assert.That(Assert.Throws<InvalidDataException>(() => ModelFile.Read(path))!.Message, Does.Contain(message));
        Refused(Rewrite(weights, meta: m => m["note"] = "x"), "unknown __metadata__ key 'note' (a weights file has format, spec, preprocessing)");
        Refused(Rewrite(weights, meta: m => m["preprocessing"] = "{\"Kind\":\"Scale01\",\"Extra\":1}"), "__metadata__ 'preprocessing' is damaged");
        Refused(Rewrite(weights, meta: m => m["preprocessing"] = "{\"Kind\":\"Standardize\",\"Mean\":[0],\"Std\":[1]}"),
            "standardization needs 6 means and 6 standard deviations; got 1 and 1");
        Refused(Rewrite(weights, meta: m => m["format"] = "backprop-something"), "format 'backprop-something' is no backprop file format");
        Assert.Throws<ArgumentException>(() => Checkpoint.SaveWeights(model, weights, new Preprocessing(Normalization.Standardize, [1f], [1f])));
    }

    [Test]
    public void Checkpoint_CarriesTorchOptimizersStepAndDescription_AndValidatesThem()
    {
        var options = new TrainingOptions
        {
            Loss = LossKind.CrossEntropy, MaxBatch = 8, Threads = 1, Optimizer = new AdamW(2e-3, weightDecay: 0.05),
            Schedule = new LrSchedule { Kind = ScheduleKind.Cosine, TMax = 10 },
        };
        using var model = Trained(Spec, options);
        string ckpt = Path.Combine(_dir, "c.safetensors");
        Checkpoint.SaveTraining(model, ckpt, new TrainingPosition(1, 3));
        var f = SafeTensorsFile.Read(ckpt);
        foreach (var name in new[] { "0.weight", "0.bias", "3.weight", "3.bias" })
        {
            Assert.That(f.Tensors[$"optimizer.step.{name}"].Shape, Is.Empty, "a scalar, as torch.optim keeps it");
            Assert.That(f.ReadFloat($"optimizer.step.{name}"), Is.EqualTo(new[] { 3f }));
        }
        using var torch = JsonDocument.Parse(f.Metadata["torch_optimizer"]);
        var root = torch.RootElement;
        Assert.That(root.GetProperty("class").GetString(), Is.EqualTo("AdamW"));
        Assert.That(root.GetProperty("step").GetString(), Is.EqualTo("tensor"));
        var kw = root.GetProperty("kwargs");
        Assert.That(kw.GetProperty("lr").GetDouble(), Is.EqualTo(model.CurrentLearningRate).And.EqualTo(options.Schedule.At(2e-3, 3)), "the next step's rate");
        Assert.That(kw.GetProperty("betas").EnumerateArray().Select(b => b.GetDouble()), Is.EqualTo(new[] { 0.9, 0.999 }));
        Assert.That(kw.GetProperty("weight_decay").GetDouble(), Is.EqualTo(0.05));
        Assert.That(kw.GetProperty("amsgrad").GetBoolean(), Is.False);

        var before = model.GetWeights(0);
        void Refused(string path, string message)
        {
            using var fresh = new Model(Spec, options);
            var w = fresh.GetWeights(0);
            var e = Assert.Throws<InvalidDataException>(() => Checkpoint.LoadTraining(fresh, path))!;
            Assert.That(e.Message, Does.Contain(message));
            Assert.That(fresh.GetWeights(0), Is.EqualTo(w), "a refused load changes nothing");
            Assert.That(fresh.StepCount, Is.Zero);
        }
        Refused(Rewrite(ckpt, (k, v) => k == "optimizer.step.3.bias" ? [4f] : v), "tensor 'optimizer.step.3.bias' is 4; the checkpoint is at step 3");
        Refused(Rewrite(ckpt, keep: k => k != "optimizer.step.0.weight"), "tensor 'optimizer.step.0.weight' is missing (expected a scalar, shape [])");
        Refused(Rewrite(ckpt, meta: m => m["torch_optimizer"] = m["torch_optimizer"].Replace("AdamW", "Adam")), "__metadata__ 'torch_optimizer' does not match");
        // A checkpoint from before torch.optim's description (neither the metadata nor the steps) still loads.
        string legacy = Rewrite(ckpt, meta: m => m.Remove("torch_optimizer"), keep: k => !k.StartsWith("optimizer.step.", StringComparison.Ordinal));
        using var resumed = new Model(Spec, options);
        Checkpoint.LoadTraining(resumed, legacy);
        Assert.That((resumed.StepCount, resumed.GetWeights(0)), Is.EqualTo((3L, before)));
    }

    [Test]
    public void Checkpoint_TorchDescription_ForEveryOptimizer()
    {
        var cases = new (OptimizerSettings Settings, string Class, string Step, string[] Keys)[]
        {
            (new Sgd(0.1, momentum: 0.9, dampening: 0.1, nesterov: false), "SGD", "none", ["lr", "weight_decay", "momentum", "dampening", "nesterov"]),
            (new Adam(amsgrad: true), "Adam", "tensor", ["lr", "weight_decay", "betas", "eps", "amsgrad"]),
            (new RmsProp(momentum: 0.5, centered: true), "RMSprop", "int", ["lr", "weight_decay", "alpha", "eps", "momentum", "centered"]),
            (new Adagrad(lrDecay: 0.01, initialAccumulatorValue: 0.1), "Adagrad", "tensor", ["lr", "weight_decay", "lr_decay", "initial_accumulator_value", "eps"]),
        };
        foreach (var (settings, cls, step, keys) in cases)
        {
            var t = TorchOptimizer.Of(settings with { ClipNorm = 2 }, 0.5);
            Assert.That((t.Class, t.Step, t.ClipNorm), Is.EqualTo((cls, step, 2.0)), cls);
            Assert.That(t.Kwargs.Keys, Is.EquivalentTo(keys), cls);
            Assert.That(t.Kwargs["lr"].GetDouble(), Is.EqualTo(0.5));
        }
    }

    [Test]
    public void Bf16AndF16_RoundToNearestEven_AndRefuseWhatDoesNotFit()
    {
        Assert.That(SafeTensorsWriter.ToBFloat16(1f), Is.EqualTo(0x3F80));
        Assert.That(SafeTensorsWriter.ToBFloat16(1.00390625f), Is.EqualTo(0x3F80), "a tie rounds to the even mantissa");
        Assert.That(SafeTensorsWriter.ToBFloat16(1.01171875f), Is.EqualTo(0x3F82), "a tie rounds to the even mantissa");
        Assert.That(SafeTensorsWriter.ToBFloat16(BitConverter.UInt32BitsToSingle(0x3F808001)), Is.EqualTo(0x3F81), "above the tie rounds up");
        Assert.That(SafeTensorsWriter.ToBFloat16(-2.5f), Is.EqualTo(0xC020));
        Assert.That(SafeTensorsWriter.ToBFloat16(float.NaN), Is.EqualTo(0x7FC0));
        string path = Path.Combine(_dir, "x.safetensors");
        var e = Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [("w", [2], [1f, 65520f])], null, TensorDtype.F16))!;
        Assert.That(e.Message, Does.Contain("tensor 'w' element 1 is 65520, beyond F16's range (±65504)"));
        e = Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [("w", [1], [float.MaxValue])], null, TensorDtype.BF16))!;
        Assert.That(e.Message, Does.Contain("beyond BF16's range"));
        Assert.That(File.Exists(path), Is.False, "nothing written");

        var values = new[] { 0f, -0f, 1f, -1.5f, 65504f, 6.1035156e-05f, 5.9604645e-08f, 0.1f, 3.1415927f };
        SafeTensorsWriter.Write(path, [("w", [values.Length], values)], null, TensorDtype.F16);
        var f = SafeTensorsFile.Read(path);
        Assert.That(f.Tensors["w"].Dtype, Is.EqualTo("F16"));
        Assert.That(f.ReadFloat("w"), Is.EqualTo(values.Select(v => (float)(Half)v).ToArray()));
        SafeTensorsWriter.Write(path, [("w", [values.Length], values)], null, TensorDtype.BF16);
        f = SafeTensorsFile.Read(path);
        Assert.That(f.Tensors["w"].Dtype, Is.EqualTo("BF16"));
        Assert.That(f.ReadFloat("w"), Is.EqualTo(values.Select(v => BitConverter.UInt32BitsToSingle((uint)SafeTensorsWriter.ToBFloat16(v) << 16)).ToArray()));
    }

    [Test]
    public void Bf16WeightsFile_RoundTrip_PredictsAsTheRoundedWeights()
    {
        using var model = Trained(Spec);
        string path = Path.Combine(_dir, "bf16.safetensors");
        Checkpoint.SaveWeights(model, path, new Preprocessing(Normalization.None), TensorDtype.BF16);
        var info = ModelFile.Read(path);
        using var loaded = new Model(info.Spec, new TrainingOptions { MaxBatch = 8, Threads = 1 });
        Checkpoint.LoadWeights(loaded, info);
        for (int l = 0; l < 2; l++)
            Assert.That(loaded.GetWeights(l), Is.EqualTo(model.GetWeights(l).Select(v => BitConverter.UInt32BitsToSingle((uint)SafeTensorsWriter.ToBFloat16(v) << 16)).ToArray()));
        var x = TestData.Floats(5 * 6, 9);
        var a = new float[5 * 4];
        var b = new float[5 * 4];
        model.Predict(x, a);
        loaded.Predict(x, b);
        for (int i = 0; i < a.Length; i++) Assert.That(b[i], Is.EqualTo(a[i]).Within(2e-2 * Math.Max(1, Math.Abs(a[i]))), "bf16 keeps 8 significant bits");
        // Non-finite halves in a file are refused like other values.
        string bad = Path.Combine(_dir, "inf.safetensors");
        SafeTensorsWriter.Write(bad, [("w", [2], [1f, float.PositiveInfinity])], null, TensorDtype.F16);
        Assert.That(Assert.Throws<InvalidDataException>(() => SafeTensorsFile.Read(bad).ReadFloat("w"))!.Message, Does.Contain("element 1 is ∞; expected a finite value").Or.Contain("element 1 is Infinity"));
    }
}
