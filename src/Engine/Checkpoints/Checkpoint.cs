// Saving and loading models.
//   Weights:  safetensors with PyTorch state_dict names of the equivalent nn.Sequential
//             ("0.weight" [out, in], "0.bias", ...); metadata "spec" holds the model description.
//   Training: the weights, plus the optimizer state as "optimizer.<slot>.<name>" (exp_avg, exp_avg_sq,
//             max_exp_avg_sq, momentum_buffer, square_avg, grad_avg, sum: torch.optim's state names),
//             and metadata: the spec, the training options, the step count (schedule position and
//             dropout stream), and the trainer's position (epoch and next batch: the shuffling stream).
// Loading validates the whole file (SafeTensorsFile) and every tensor against the plan before
// copying anything, so a failed load leaves the model as it was.
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Backprop.Engine.Planning;

namespace Backprop.Engine.Checkpoints;

/// <summary>Where a trainer stands: the epoch being trained and the next batch in it.</summary>
public readonly record struct TrainingPosition(int Epoch, int NextBatch);

/// <summary>A training checkpoint's description: enough to rebuild the model and continue.</summary>
public sealed record CheckpointInfo(ModelSpec Spec, TrainingOptions Options, long Step, TrainingPosition Position);

/// <summary>Weights and training checkpoints in the safetensors format.</summary>
public static class Checkpoint
{
    private const string FormatWeights = "backprop-weights";
    private const string FormatTraining = "backprop-checkpoint";

    internal static readonly JsonSerializerOptions Json = new()
    {
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter(), new OptimizerSettingsJson() },
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

    private static int[] Shape(Slot s) => s.Rows == 1 ? [s.Cols] : [s.Rows, s.Cols];

    /// <summary>Writes the weights (atomically) to <paramref name="path"/>.</summary>
    public static void SaveWeights(Model<float> model, string path)
    {
        var list = Tensors(model).Select(t => (t.Name, Shape(t.Slot), model.Read(t.Slot).ToArray())).ToList();
        SafeTensorsWriter.Write(path, list, new Dictionary<string, string> { ["format"] = FormatWeights, ["spec"] = JsonSerializer.Serialize(model.Spec, Json) });
    }

    /// <summary>Writes the weights, the optimizer state and the training position (atomically) to <paramref name="path"/>.</summary>
    public static void SaveTraining(Model<float> model, string path, TrainingPosition position)
    {
        var list = Tensors(model).Select(t => (t.Name, Shape(t.Slot), model.Read(t.Slot).ToArray())).ToList();
        var names = model.Options.Optimizer.StateNames;
        for (int k = 0; k < names.Count; k++)
            foreach (var (name, slot) in Tensors(model))
                list.Add(($"optimizer.{names[k]}.{name}", Shape(slot), model.ReadState(k, slot).ToArray()));
        SafeTensorsWriter.Write(path, list, new Dictionary<string, string>
        {
            ["format"] = FormatTraining,
            ["spec"] = JsonSerializer.Serialize(model.Spec, Json),
            ["options"] = JsonSerializer.Serialize(model.Options, Json),
            ["step"] = model.StepCount.ToString(CultureInfo.InvariantCulture),
            ["epoch"] = position.Epoch.ToString(CultureInfo.InvariantCulture),
            ["next_batch"] = position.NextBatch.ToString(CultureInfo.InvariantCulture),
        });
    }

    /// <summary>Reads a training checkpoint's description (spec, options, step, position) without touching any model.</summary>
    public static CheckpointInfo ReadInfo(string path)
    {
        var f = SafeTensorsFile.Read(path);
        string Meta(string key) => f.Metadata.TryGetValue(key, out var v) ? v
            : throw new InvalidDataException($"safetensors file '{path}': not a training checkpoint (no '{key}' in __metadata__).");
        if (Meta("format") != FormatTraining) throw new InvalidDataException($"safetensors file '{path}': format '{f.Metadata["format"]}' is not a training checkpoint.");
        try
        {
            var spec = JsonSerializer.Deserialize<ModelSpec>(Meta("spec"), Json) ?? throw new InvalidDataException("empty spec");
            var options = JsonSerializer.Deserialize<TrainingOptions>(Meta("options"), Json) ?? throw new InvalidDataException("empty options");
            return new CheckpointInfo(spec, options, long.Parse(Meta("step"), CultureInfo.InvariantCulture),
                new TrainingPosition(int.Parse(Meta("epoch"), CultureInfo.InvariantCulture), int.Parse(Meta("next_batch"), CultureInfo.InvariantCulture)));
        }
        catch (Exception e) when (e is JsonException or FormatException or OverflowException)
        {
            throw new InvalidDataException($"safetensors file '{path}': the checkpoint metadata is damaged ({e.Message}).", e);
        }
    }

    /// <summary>The model description stored in a weights file or training checkpoint written by backprop.</summary>
    public static ModelSpec ReadSpec(string path)
    {
        var f = SafeTensorsFile.Read(path);
        if (!f.Metadata.TryGetValue("spec", out var json))
            throw new InvalidDataException($"safetensors file '{path}' has no model description (__metadata__ 'spec'); it was not written by backprop.");
        try
        {
            return JsonSerializer.Deserialize<ModelSpec>(json, Json) ?? throw new InvalidDataException($"safetensors file '{path}': empty model description.");
        }
        catch (JsonException e) { throw new InvalidDataException($"safetensors file '{path}': the model description is damaged ({e.Message}).", e); }
    }

    /// <summary>Loads weights (a weights file or a training checkpoint) into <paramref name="model"/>; validates everything first.</summary>
    public static void LoadWeights(Model<float> model, string path)
    {
        var f = SafeTensorsFile.Read(path);
        var expected = Tensors(model).ToList();
        Validate(f, expected, allowPrefix: "optimizer.");
        foreach (var (name, slot) in expected) f.ReadFloat(name).CopyTo(model.Write(slot));
    }

    /// <summary>Restores weights, optimizer state and step count from a training checkpoint into a model built from its <see cref="CheckpointInfo"/>.</summary>
    public static void LoadTraining(Model<float> model, string path)
    {
        var info = ReadInfo(path);
        if (!SameSpec(info.Spec, model.Spec))
            throw new InvalidDataException($"checkpoint '{path}' describes another model ({Describe(info.Spec)}); this model is {Describe(model.Spec)}.");
        var f = SafeTensorsFile.Read(path);
        var names = model.Options.Optimizer.StateNames;
        var expected = Tensors(model).ToList();
        var all = expected.Concat(names.SelectMany(n => expected.Select(t => ($"optimizer.{n}.{t.Name}", t.Slot)))).ToList();
        Validate(f, all, allowPrefix: null);
        foreach (var (name, slot) in expected) f.ReadFloat(name).CopyTo(model.Write(slot));
        for (int k = 0; k < names.Count; k++)
            foreach (var (name, slot) in expected) f.ReadFloat($"optimizer.{names[k]}.{name}").CopyTo(model.WriteState(k, slot));
        model.RestoreStepCount(info.Step);
    }

    private static void Validate(SafeTensorsFile f, List<(string Name, Slot Slot)> expected, string? allowPrefix)
    {
        foreach (var (name, slot) in expected)
        {
            if (!f.Tensors.TryGetValue(name, out var t))
                throw new InvalidDataException($"safetensors file '{f.Path}': tensor '{name}' is missing (expected shape [{string.Join(", ", Shape(slot))}]).");
            var shape = Shape(slot);
            if (!t.Shape.SequenceEqual(shape))
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
