// Any file a model can come from, read as one: a backprop weights file, a backprop training checkpoint,
// or a plain PyTorch state_dict (a safetensors file without backprop's "format" metadata: as
// safetensors.torch.save_file writes it). Each gives the model description, how its inputs are prepared
// (null when the file does not say: a plain state_dict, or a weights file written before preprocessing was
// stored) and the names of each layer's tensors.
namespace Backprop.Engine.Checkpoints;

/// <summary>The kinds of model file.</summary>
public enum ModelFileKind
{
    /// <summary>A backprop weights file (model.safetensors).</summary>
    Weights,
    /// <summary>A backprop training checkpoint (checkpoint.safetensors).</summary>
    Checkpoint,
    /// <summary>A plain PyTorch state_dict of an nn.Sequential.</summary>
    StateDict,
}

/// <summary>A model file's description: the model, its input preprocessing (null: not recorded) and each Dense layer's tensor names (a LayerNorm's are its site's prefix + "weight" / "bias").</summary>
public sealed record ModelFileInfo(string Path, ModelFileKind Kind, ModelSpec Spec, Preprocessing? Preprocessing, IReadOnlyList<(string Weight, string Bias)> Tensors);

/// <summary>Reads weights files, checkpoints and plain state_dicts alike.</summary>
public static class ModelFile
{
    /// <summary>
    /// Describes the model in <paramref name="path"/>. A plain state_dict needs <paramref name="choices"/> for what it cannot say;
    /// for backprop's own files, which say it all, choices must be null. Throws <see cref="InvalidDataException"/> for a
    /// damaged or unreadable file, <see cref="ArgumentException"/> for choices missing, contradicting the file, or given for a
    /// file that states its model.
    /// </summary>
    public static ModelFileInfo Read(string path, StateDictChoices? choices = null)
    {
        var f = SafeTensorsFile.Read(path);
        string format = f.Metadata.GetValueOrDefault("format", "");
        if (IsStateDict(f))
        {
            var (spec, tensors) = StateDict.Describe(f, choices ?? new StateDictChoices());
            return new ModelFileInfo(path, ModelFileKind.StateDict, spec, null, tensors);
        }
        if (format is not (Checkpoint.FormatWeights or Checkpoint.FormatTraining))
            throw new InvalidDataException($"safetensors file '{path}': __metadata__ format '{format}' is no backprop file format (expected {Checkpoint.FormatWeights} or {Checkpoint.FormatTraining}).");
        if (choices is not null)
            throw new ArgumentException($"'{path}' is a backprop {(format == Checkpoint.FormatTraining ? "checkpoint" : "weights file")}, which states its model " +
                "(activations, dropout, loss); choices are for plain state_dict files.", nameof(choices));
        if (format == Checkpoint.FormatTraining)
        {
            var info = Checkpoint.ReadInfo(path);
            return new ModelFileInfo(path, ModelFileKind.Checkpoint, info.Spec, info.Run?.Preprocessing, Names(info.Spec));
        }
        var (s, pre) = Checkpoint.ReadWeightsInfo(f);
        return new ModelFileInfo(path, ModelFileKind.Weights, s, pre, Names(s));
    }

    /// <summary>True when <paramref name="f"/> is not one of backprop's own files (no "format" metadata naming one): a plain state_dict.</summary>
    public static bool IsStateDict(SafeTensorsFile f)
    {
        ArgumentNullException.ThrowIfNull(f);
        return !(f.Metadata.TryGetValue("format", out var format) && format.StartsWith("backprop-", StringComparison.Ordinal));
    }

    private static List<(string, string)> Names(ModelSpec spec) => Enumerable.Range(0, spec.Layers.Count).Select(spec.ParameterNames).ToList();
}
