// Saving and loading models.
//   Weights:  safetensors with PyTorch state_dict names of the equivalent nn.Sequential
//             ("0.weight" [out, in], "0.bias", ...; a tree's "k.body.i.weight", "k.proj.weight", a norm's
//             1-D weight and bias, a BatchNorm's buffers running_mean, running_var and the scalar
//             num_batches_tracked), in F32 (or F16 / BF16 for inference); metadata "spec"
//             holds the model description and "preprocessing" (when given) how its inputs are scaled.
//   Training: the weights, plus the optimizer state as "optimizer.<state>.<name>" (exp_avg, exp_avg_sq,
//             max_exp_avg_sq, momentum_buffer, square_avg, grad_avg, sum, and the per-parameter step as a
//             scalar where torch.optim keeps one: torch.optim's state names), and metadata: the spec, the
//             training options, the step count (schedule position and dropout stream), the trainer's
//             position (epoch and next batch: the shuffling stream), the torch.optim description
//             (TorchOptimizer: class, hyper-parameters, the next step's learning rate) and, when given,
//             the run (epochs, validation, data, preprocessing: what resuming needs).
// Weights are [out, in] (a one-unit layer too), biases [out]. Loading validates the whole file
// (SafeTensorsFile), the metadata completely (every field's type and range, unknown keys, the model's
// rules as a Plan states them) and every tensor against the plan, and reads every tensor (finite
// values) before copying anything, so a failed load leaves the model as it was.
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Backprop.Engine.Planning;

namespace Backprop.Engine.Checkpoints;

/// <summary>Where a trainer stands: the epoch being trained and the next batch in it.</summary>
public readonly record struct TrainingPosition(int Epoch, int NextBatch);

/// <summary>A training checkpoint's description: enough to rebuild the model and continue (Run: null when the writer gave none).</summary>
public sealed record CheckpointInfo(ModelSpec Spec, TrainingOptions Options, long Step, TrainingPosition Position, TrainingRun? Run = null);

/// <summary>Weights and training checkpoints in the safetensors format.</summary>
public static class Checkpoint
{
    internal const string FormatWeights = "backprop-weights";
    internal const string FormatTraining = "backprop-checkpoint";

    private static readonly string[] TrainingKeys = ["format", "spec", "options", "step", "epoch", "next_batch", "torch_optimizer", "run"];
    private static readonly string[] WeightsKeys = ["format", "spec", "preprocessing"];

    // Strict: a key the record does not have (a damaged or misspelled one) is an error, not a default; enums by name only;
    // constructor parameters without a default must be there.
    internal static readonly JsonSerializerOptions Json = new()
    {
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        RespectNullableAnnotations = true,
        RespectRequiredConstructorParameters = true,
        Converters = { new JsonStringEnumConverter(allowIntegerValues: false), new OptimizerSettingsJson() },
    };

    // Every parameter tensor with its state_dict name and shape: weights [out, in] (one unit too, as PyTorch's nn.Linear),
    // biases and a LayerNorm's weight [out] (the plan stores them as one row).
    private static IEnumerable<(string Name, Slot Slot, int[] Shape)> Tensors(Model<float> model) =>
        model.Plan.Parameters.Select(p => (p.Name, p.Value, p.Shape));

    // The buffers (BatchNorm running_mean, running_var and num_batches_tracked, a scalar): saved with the weights, no optimizer state.
    private static IEnumerable<(string Name, Slot Slot, int[] Shape)> Buffers(Model<float> model) =>
        model.Plan.Buffers.Select(p => (p.Name, p.Value, p.Shape));

    private static IEnumerable<(string Name, Slot Slot, int[] Shape)> TensorsAndBuffers(Model<float> model) => Tensors(model).Concat(Buffers(model));

    /// <summary>
    /// Writes the weights (atomically) to <paramref name="path"/> as <paramref name="dtype"/>, with how the model's inputs are
    /// prepared (<paramref name="preprocessing"/>; null: not recorded).
    /// </summary>
    public static void SaveWeights(Model<float> model, string path, Preprocessing? preprocessing = null, TensorDtype dtype = TensorDtype.F32)
    {
        var (list, meta, counts) = WeightsFile(model, preprocessing);
        SafeTensorsWriter.Write(path, list, meta, dtype, counts);
    }

    /// <summary>Writes the weights file <see cref="SaveWeights(Model{float}, string, Preprocessing?, TensorDtype)"/> writes to <paramref name="stream"/> instead (a container's entry).</summary>
    public static void SaveWeights(Model<float> model, Stream stream, Preprocessing? preprocessing = null, TensorDtype dtype = TensorDtype.F32)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var (list, meta, counts) = WeightsFile(model, preprocessing);
        SafeTensorsWriter.Write(stream, list, meta, dtype, counts);
    }

    private static (List<(string, int[], float[])>, Dictionary<string, string>, HashSet<string>) WeightsFile(Model<float> model, Preprocessing? preprocessing)
    {
        ArgumentNullException.ThrowIfNull(model);
        preprocessing?.Validate(model.Spec.InputWidth);
        var list = TensorsAndBuffers(model).Select(t => (t.Name, t.Shape, model.Read(t.Slot).ToArray())).ToList();
        var meta = new Dictionary<string, string> { ["format"] = FormatWeights, ["spec"] = JsonSerializer.Serialize(model.Spec, Json) };
        if (preprocessing is not null) meta["preprocessing"] = JsonSerializer.Serialize(preprocessing, Json);
        // The BatchNorm counts stay F32: BF16 holds whole numbers exactly only to 256, F16 to 2048.
        var counts = model.Plan.Buffers.Where(b => b.Shape.Length == 0).Select(b => b.Name).ToHashSet();
        return (list, meta, counts);
    }

    /// <summary>Writes the weights, the optimizer state, the training position and the run (when given) atomically to <paramref name="path"/>.</summary>
    public static void SaveTraining(Model<float> model, string path, TrainingPosition position, TrainingRun? run = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (position.Epoch < 1 || position.NextBatch < 0)
            throw new ArgumentOutOfRangeException(nameof(position), position, $"a training position has epoch >= 1 and next batch >= 0; got {position}.");
        run?.Validate(model.Spec.InputWidth);
        var list = TensorsAndBuffers(model).Select(t => (t.Name, t.Shape, model.Read(t.Slot).ToArray())).ToList();
        var names = model.Options.Optimizer.StateNames;
        for (int k = 0; k < names.Count; k++)
            foreach (var (name, slot, shape) in Tensors(model))
                list.Add(($"optimizer.{names[k]}.{name}", shape, model.ReadState(k, slot).ToArray()));
        if (TorchOptimizer.HasStep(model.Options.Optimizer.Kind))
            foreach (var (name, _, _) in Tensors(model))
                list.Add(($"optimizer.{TorchOptimizer.StepState}.{name}", [], [(float)model.StepCount]));
        var meta = new Dictionary<string, string>
        {
            ["format"] = FormatTraining,
            ["spec"] = JsonSerializer.Serialize(model.Spec, Json),
            ["options"] = JsonSerializer.Serialize(model.Options, Json),
            ["step"] = model.StepCount.ToString(CultureInfo.InvariantCulture),
            ["epoch"] = position.Epoch.ToString(CultureInfo.InvariantCulture),
            ["next_batch"] = position.NextBatch.ToString(CultureInfo.InvariantCulture),
            ["torch_optimizer"] = TorchJson(model.Options, model.StepCount),
        };
        if (run is not null) meta["run"] = JsonSerializer.Serialize(run, Json);
        SafeTensorsWriter.Write(path, list, meta);
    }

    /// <summary>
    /// Reads a training checkpoint's description (spec, options, step, position, run) without touching any model, validating
    /// it completely: every field's type and range, no unknown keys, and the model's rules as the engine would refuse them.
    /// </summary>
    public static CheckpointInfo ReadInfo(string path)
    {
        var f = SafeTensorsFile.Read(path);
        string Meta(string key) => f.Metadata.TryGetValue(key, out var v) ? v
            : throw new InvalidDataException($"safetensors file '{path}': not a training checkpoint (no '{key}' in __metadata__).");
        if (Meta("format") != FormatTraining) throw new InvalidDataException($"safetensors file '{path}': format '{f.Metadata["format"]}' is not a training checkpoint.");
        foreach (var key in f.Metadata.Keys)
            if (!TrainingKeys.Contains(key))
                throw new InvalidDataException($"safetensors file '{path}': unknown __metadata__ key '{key}' (a training checkpoint has {string.Join(", ", TrainingKeys)}).");
        var spec = Parse<ModelSpec>(path, "spec", Meta("spec"));
        var options = Parse<TrainingOptions>(path, "options", Meta("options"));
        var run = f.Metadata.TryGetValue("run", out var runJson) ? Parse<TrainingRun>(path, "run", runJson) : null;
        long step = Count(path, "step", Meta("step"), 0);
        var position = new TrainingPosition((int)Math.Min(int.MaxValue, Count(path, "epoch", Meta("epoch"), 1)), (int)Math.Min(int.MaxValue, Count(path, "next_batch", Meta("next_batch"), 0)));
        try
        {
            _ = new Plan(spec, options);
            run?.Validate(spec.InputWidth);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"safetensors file '{path}': the checkpoint describes a run the engine refuses: {e.Message.Split(" (Parameter")[0]}", e);
        }
        if (run is not null && position.Epoch > run.Epochs + 1)
            throw new InvalidDataException($"safetensors file '{path}': the checkpoint is at epoch {position.Epoch} of a run of {run.Epochs} epochs.");
        // Written by backprop from the options and the step; anything else is a damaged or edited file.
        if (f.Metadata.TryGetValue("torch_optimizer", out var torch) && torch != TorchJson(options, step))
            throw new InvalidDataException($"safetensors file '{path}': __metadata__ 'torch_optimizer' does not match the checkpoint's options and step " +
                $"(expected {TorchJson(options, step)}; found {(torch.Length > 200 ? torch[..200] + "..." : torch)}).");
        return new CheckpointInfo(spec, options, step, position, run);
    }

    private static string TorchJson(TrainingOptions options, long step) =>
        JsonSerializer.Serialize(TorchOptimizer.Of(options.Optimizer, options.Schedule.At(options.Optimizer.LearningRate, step)), Json);

    // A weights file's description: its spec (a model the engine builds) and its preprocessing (null: not recorded).
    internal static (ModelSpec Spec, Preprocessing? Preprocessing) ReadWeightsInfo(SafeTensorsFile f)
    {
        string path = f.Path;
        foreach (var key in f.Metadata.Keys)
            if (!WeightsKeys.Contains(key))
                throw new InvalidDataException($"safetensors file '{path}': unknown __metadata__ key '{key}' (a weights file has {string.Join(", ", WeightsKeys)}).");
        var spec = ReadSpec(f);
        Preprocessing? pre = f.Metadata.TryGetValue("preprocessing", out var json) ? Parse<Preprocessing>(path, "preprocessing", json) : null;
        try { pre?.Validate(spec.InputWidth); }
        catch (ArgumentException e) { throw new InvalidDataException($"safetensors file '{path}': __metadata__ 'preprocessing' is damaged ({e.Message.Split(" (Parameter")[0]}).", e); }
        return (spec, pre);
    }

    // One metadata JSON value as T, every error an InvalidDataException naming the file and the key.
    private static T Parse<T>(string path, string key, string json) where T : class
    {
        try
        {
            return JsonSerializer.Deserialize<T>(json, Json) ?? throw new InvalidDataException($"safetensors file '{path}': __metadata__ '{key}' is null.");
        }
        catch (Exception e) when (e is JsonException or NotSupportedException or ArgumentException or InvalidOperationException)
        {
            throw new InvalidDataException($"safetensors file '{path}': __metadata__ '{key}' is damaged ({e.Message.Split(" (Parameter")[0]}).", e);
        }
    }

    // A whole number >= min written in digits only (no sign, spaces or exponent), as the writer writes it.
    private static long Count(string path, string key, string text, long min)
    {
        if (!long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long v) || v < min)
            throw new InvalidDataException($"safetensors file '{path}': __metadata__ '{key}' is '{text}'; expected a whole number >= {min}.");
        return v;
    }

    /// <summary>The model description stored in a weights file or training checkpoint written by backprop, validated as a model the engine builds.</summary>
    public static ModelSpec ReadSpec(string path) => ReadSpec(SafeTensorsFile.Read(path));

    /// <summary>The model description stored in safetensors bytes already read (<see cref="SafeTensorsFile.Parse"/>), validated as <see cref="ReadSpec(string)"/> does.</summary>
    public static ModelSpec ReadSpec(SafeTensorsFile f)
    {
        ArgumentNullException.ThrowIfNull(f);
        string path = f.Path;
        if (!f.Metadata.TryGetValue("spec", out var json))
            throw new InvalidDataException($"safetensors file '{path}' has no model description (__metadata__ 'spec'); it was not written by backprop.");
        var spec = Parse<ModelSpec>(path, "spec", json);
        try { _ = new Plan(spec, new TrainingOptions { Loss = spec.Loss, MaxBatch = 1, Threads = 1 }); }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"safetensors file '{path}': the model description is one the engine refuses: {e.Message.Split(" (Parameter")[0]}", e);
        }
        return spec;
    }

    /// <summary>Loads weights (a weights file or a training checkpoint) into <paramref name="model"/>; validates everything first.</summary>
    public static void LoadWeights(Model<float> model, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        LoadWeights(model, SafeTensorsFile.Read(path));
    }

    /// <summary>Loads weights from safetensors bytes already read (<see cref="SafeTensorsFile.Parse"/>) into <paramref name="model"/>; validates everything first.</summary>
    public static void LoadWeights(Model<float> model, SafeTensorsFile f)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(f);
        var expected = TensorsAndBuffers(model).ToList();
        Validate(f, expected, allowPrefix: "optimizer.");
        var values = expected.Select(t => f.ReadFloat(t.Name)).ToList(); // every value read (and checked finite) before any is copied
        for (int i = 0; i < expected.Count; i++) values[i].CopyTo(model.Write(expected[i].Slot));
    }

    /// <summary>
    /// Loads the weights of the model file <paramref name="file"/> describes (a weights file, a checkpoint or a plain state_dict)
    /// into <paramref name="model"/>, whose layers must have the file's widths; validates everything first.
    /// </summary>
    public static void LoadWeights(Model<float> model, ModelFileInfo file)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(file);
        if (file.Tensors.Count != model.Spec.Layers.Count || file.Spec.InputWidth != model.Spec.InputWidth ||
            !file.Spec.Layers.Select(l => l.Units).SequenceEqual(model.Spec.Layers.Select(l => l.Units)) ||
            SameStructure(file.Spec, model.Spec) is false)
        {
            string names = Describe(file.Spec) == Describe(model.Spec) && Prefixes(file.Spec).Zip(Prefixes(model.Spec)).FirstOrDefault(p => p.First != p.Second) is ({ } a, { } b)
                ? $" (the same widths, but the tensors are named otherwise: the file has '{a}weight' where this model has '{b}weight'; activations and Dropout are modules of their own in the torch module tree)"
                : "";
            throw new InvalidDataException($"'{file.Path}' holds a {Describe(file.Spec)} model; this model is {Describe(model.Spec)}{names}.");
        }
        var f = SafeTensorsFile.Read(file.Path);
        var expected = new List<(string Name, Slot Slot, int[] Shape)>();
        if (model.Spec.IsTree) expected.AddRange(TensorsAndBuffers(model)); // a backprop file of the same tree: the same names
        else
            for (int l = 0; l < file.Tensors.Count; l++)
            {
                var s = model.Plan.Layers[l];
                expected.Add((file.Tensors[l].Weight, s.Weight, [s.Weight.Rows, s.Weight.Cols]));
                expected.Add((file.Tensors[l].Bias, s.Bias, [s.Bias.Cols]));
            }
        Validate(f, expected, allowPrefix: file.Kind == ModelFileKind.Checkpoint ? "optimizer." : null);
        var values = expected.Select(t => f.ReadFloat(t.Name)).ToList(); // every value read (and checked finite) before any is copied
        for (int i = 0; i < expected.Count; i++) values[i].CopyTo(model.Write(expected[i].Slot));
    }

    /// <summary>Restores weights, optimizer state and step count from a training checkpoint into a model built from its <see cref="CheckpointInfo"/>.</summary>
    public static void LoadTraining(Model<float> model, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        var info = ReadInfo(path);
        if (!SameSpec(info.Spec, model.Spec))
            throw new InvalidDataException($"checkpoint '{path}' describes another model ({Describe(info.Spec)}); this model is {Describe(model.Spec)}.");
        var f = SafeTensorsFile.Read(path);
        var names = model.Options.Optimizer.StateNames;
        var expected = Tensors(model).ToList();
        var buffers = Buffers(model).ToList();
        var all = expected.Concat(names.SelectMany(n => expected.Select(t => (Name: $"optimizer.{n}.{t.Name}", t.Slot, t.Shape)))).Concat(buffers).ToList();
        // The per-parameter steps (scalars) of checkpoints that carry torch.optim's description; older ones have neither.
        var steps = f.Metadata.ContainsKey("torch_optimizer") && TorchOptimizer.HasStep(model.Options.Optimizer.Kind)
            ? expected.Select(t => $"optimizer.{TorchOptimizer.StepState}.{t.Name}").ToList() : [];
        Validate(f, all, allowPrefix: null, scalars: steps);
        foreach (var name in steps)
            if (f.ReadFloat(name)[0] != (float)info.Step)
                throw new InvalidDataException($"safetensors file '{path}': tensor '{name}' is {f.ReadFloat(name)[0]}; the checkpoint is at step {info.Step}.");
        var values = all.Select(t => f.ReadFloat(t.Name)).ToList(); // every value read (and checked finite) before any is copied
        for (int i = 0; i < expected.Count; i++) values[i].CopyTo(model.Write(expected[i].Slot));
        for (int k = 0; k < names.Count; k++)
            for (int i = 0; i < expected.Count; i++) values[(k + 1) * expected.Count + i].CopyTo(model.WriteState(k, expected[i].Slot));
        for (int i = 0; i < buffers.Count; i++) values[(names.Count + 1) * expected.Count + i].CopyTo(model.Write(buffers[i].Slot));
        model.RestoreStepCount(info.Step);
    }

    private static void Validate(SafeTensorsFile f, List<(string Name, Slot Slot, int[] Shape)> expected, string? allowPrefix, IReadOnlyList<string>? scalars = null)
    {
        foreach (var name in scalars ?? [])
        {
            if (!f.Tensors.TryGetValue(name, out var t))
                throw new InvalidDataException($"safetensors file '{f.Path}': tensor '{name}' is missing (expected a scalar, shape []).");
            if (t.Shape.Length != 0)
                throw new InvalidDataException($"safetensors file '{f.Path}': tensor '{name}' has shape [{string.Join(", ", t.Shape)}]; expected a scalar, shape [].");
        }
        foreach (var (name, _, shape) in expected)
        {
            if (!f.Tensors.TryGetValue(name, out var t))
                throw new InvalidDataException($"safetensors file '{f.Path}': tensor '{name}' is missing (expected shape [{string.Join(", ", shape)}]).");
            // Files written before one-unit weights were saved [1, in] hold them as [in]: the same values.
            bool legacyRow = shape.Length == 2 && shape[0] == 1 && t.Shape.Length == 1 && t.Shape[0] == shape[1] && !name.EndsWith(".bias", StringComparison.Ordinal);
            if (!t.Shape.SequenceEqual(shape) && !legacyRow)
                throw new InvalidDataException($"safetensors file '{f.Path}': tensor '{name}' has shape [{string.Join(", ", t.Shape)}]; the model expects [{string.Join(", ", shape)}].");
        }
        var known = expected.Select(e => e.Name).Concat(scalars ?? []).ToHashSet();
        foreach (var name in f.Tensors.Keys)
            if (!known.Contains(name) && (allowPrefix is null || !name.StartsWith(allowPrefix, StringComparison.Ordinal)))
                throw new InvalidDataException($"safetensors file '{f.Path}': unexpected tensor '{name}' (the model has {string.Join(", ", known.Take(6))}{(known.Count > 6 ? ", ..." : "")}).");
    }

    private static bool SameSpec(ModelSpec a, ModelSpec b) =>
        a.InputWidth == b.InputWidth && a.Loss == b.Loss && a.Tree.Count == b.Tree.Count && a.Tree.SequenceEqual(b.Tree);

    // Whether two trees have the same modules at the same state_dict names (what loading a tree's weights by name needs; for plain
    // stacks the layers map by position, whatever their activations).
    private static IEnumerable<string> Prefixes(ModelSpec s) =>
        s.DenseSites.Select(d => d.Prefix).Concat(s.NormSites.Select(n => n.Prefix)).Concat(s.BatchNormSites.Select(n => n.Prefix));

    private static bool SameStructure(ModelSpec a, ModelSpec b) =>
        a.IsTree == b.IsTree && (!a.IsTree || (a.Describe() == b.Describe() && Prefixes(a).SequenceEqual(Prefixes(b))));

    private static string Describe(ModelSpec s) => s.Describe();
}
