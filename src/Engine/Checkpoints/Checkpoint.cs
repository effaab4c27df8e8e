// Saving and loading models.
//   Weights:  safetensors with PyTorch state_dict names of the equivalent nn.Sequential
//             ("0.weight" [out, in], "0.bias", ...); metadata "spec" holds the model description.
//   Training: the weights, plus the optimizer state as "optimizer.<slot>.<name>" (exp_avg, exp_avg_sq,
//             max_exp_avg_sq, momentum_buffer, square_avg, grad_avg, sum: torch.optim's state names),
//             and metadata: the spec, the training options, the step count (schedule position and
//             dropout stream), the trainer's position (epoch and next batch: the shuffling stream) and,
//             when given, the run (epochs, validation, data, preprocessing: what resuming needs).
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
    private const string FormatWeights = "backprop-weights";
    private const string FormatTraining = "backprop-checkpoint";

    private static readonly string[] TrainingKeys = ["format", "spec", "options", "step", "epoch", "next_batch", "run"];

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

    private static IEnumerable<(string Name, Slot Slot)> Tensors(Model<float> model)
    {
        for (int l = 0; l < model.Spec.Layers.Count; l++)
        {
            var (w, b) = model.Spec.ParameterNames(l);
            yield return (w, model.Plan.Layers[l].Weight);
            yield return (b, model.Plan.Layers[l].Bias);
        }
    }

    // Weights [out, in] (one unit too, as PyTorch's nn.Linear), biases [out]; the plan stores a bias as one row.
    private static int[] Shape(string name, Slot s) => name.EndsWith(".bias", StringComparison.Ordinal) ? [s.Cols] : [s.Rows, s.Cols];

    /// <summary>Writes the weights (atomically) to <paramref name="path"/>.</summary>
    public static void SaveWeights(Model<float> model, string path)
    {
        var list = Tensors(model).Select(t => (t.Name, Shape(t.Name, t.Slot), model.Read(t.Slot).ToArray())).ToList();
        SafeTensorsWriter.Write(path, list, new Dictionary<string, string> { ["format"] = FormatWeights, ["spec"] = JsonSerializer.Serialize(model.Spec, Json) });
    }

    /// <summary>Writes the weights, the optimizer state, the training position and the run (when given) atomically to <paramref name="path"/>.</summary>
    public static void SaveTraining(Model<float> model, string path, TrainingPosition position, TrainingRun? run = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (position.Epoch < 1 || position.NextBatch < 0)
            throw new ArgumentOutOfRangeException(nameof(position), position, $"a training position has epoch >= 1 and next batch >= 0; got {position}.");
        run?.Validate(model.Spec.InputWidth);
        var list = Tensors(model).Select(t => (t.Name, Shape(t.Name, t.Slot), model.Read(t.Slot).ToArray())).ToList();
        var names = model.Options.Optimizer.StateNames;
        for (int k = 0; k < names.Count; k++)
            foreach (var (name, slot) in Tensors(model))
                list.Add(($"optimizer.{names[k]}.{name}", Shape(name, slot), model.ReadState(k, slot).ToArray()));
        var meta = new Dictionary<string, string>
        {
            ["format"] = FormatTraining,
            ["spec"] = JsonSerializer.Serialize(model.Spec, Json),
            ["options"] = JsonSerializer.Serialize(model.Options, Json),
            ["step"] = model.StepCount.ToString(CultureInfo.InvariantCulture),
            ["epoch"] = position.Epoch.ToString(CultureInfo.InvariantCulture),
            ["next_batch"] = position.NextBatch.ToString(CultureInfo.InvariantCulture),
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
        return new CheckpointInfo(spec, options, step, position, run);
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
    public static ModelSpec ReadSpec(string path)
    {
        var f = SafeTensorsFile.Read(path);
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
        var f = SafeTensorsFile.Read(path);
        var expected = Tensors(model).ToList();
        Validate(f, expected, allowPrefix: "optimizer.");
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
        var all = expected.Concat(names.SelectMany(n => expected.Select(t => (Name: $"optimizer.{n}.{t.Name}", t.Slot)))).ToList();
        Validate(f, all, allowPrefix: null);
        var values = all.Select(t => f.ReadFloat(t.Name)).ToList(); // every value read (and checked finite) before any is copied
        for (int i = 0; i < expected.Count; i++) values[i].CopyTo(model.Write(expected[i].Slot));
        for (int k = 0; k < names.Count; k++)
            for (int i = 0; i < expected.Count; i++) values[(k + 1) * expected.Count + i].CopyTo(model.WriteState(k, expected[i].Slot));
        model.RestoreStepCount(info.Step);
    }

    private static void Validate(SafeTensorsFile f, List<(string Name, Slot Slot)> expected, string? allowPrefix)
    {
        foreach (var (name, slot) in expected)
        {
            var shape = Shape(name, slot);
            if (!f.Tensors.TryGetValue(name, out var t))
                throw new InvalidDataException($"safetensors file '{f.Path}': tensor '{name}' is missing (expected shape [{string.Join(", ", shape)}]).");
            // Files written before one-unit weights were saved [1, in] hold them as [in]: the same values.
            bool legacyRow = shape.Length == 2 && shape[0] == 1 && t.Shape.Length == 1 && t.Shape[0] == shape[1] && !name.EndsWith(".bias", StringComparison.Ordinal);
            if (!t.Shape.SequenceEqual(shape) && !legacyRow)
                throw new InvalidDataException($"safetensors file '{f.Path}': tensor '{name}' has shape [{string.Join(", ", t.Shape)}]; the model expects [{string.Join(", ", shape)}].");
        }
        var known = expected.Select(e => e.Name).ToHashSet();
        foreach (var name in f.Tensors.Keys)
            if (!known.Contains(name) && (allowPrefix is null || !name.StartsWith(allowPrefix, StringComparison.Ordinal)))
                throw new InvalidDataException($"safetensors file '{f.Path}': unexpected tensor '{name}' (the model has {string.Join(", ", known.Take(6))}{(known.Count > 6 ? ", ..." : "")}).");
    }

    private static bool SameSpec(ModelSpec a, ModelSpec b) =>
        a.InputWidth == b.InputWidth && a.Loss == b.Loss && a.Layers.Count == b.Layers.Count && a.Layers.Zip(b.Layers).All(p => p.First == p.Second);

    private static string Describe(ModelSpec s) => $"{s.InputWidth}-{string.Join("-", s.Layers.Select(l => l.Units))}";
}
