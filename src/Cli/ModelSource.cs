// The model file of `predict`, `evaluate`, `export` and `train --init-from`: a backprop weights file, a
// backprop checkpoint, or a plain PyTorch state_dict (safetensors without backprop's metadata). Backprop's
// files state their model and their input preprocessing; for a state_dict, what the file cannot say comes
// from --activation (one for every hidden layer, one per hidden layer, or one per layer), --loss and
// --normalize (scale or none; default none). A flag that a backprop file already answers is refused, as
// is one that contradicts the file.
using System.CommandLine;
using Backprop.Engine;
using Backprop.Engine.Checkpoints;
using Backprop.Engine.Data;
using Backprop.Kernels;

namespace Backprop.Cli;

internal sealed class ModelSource
{
    public Option<string?> Activation { get; } = new("--activation")
    {
        Description = "Plain state_dict files: the activations, one for every hidden layer (relu), one per hidden layer (relu,tanh) or one per layer " +
            "(relu,tanh,sigmoid: the last after the last Linear); identity where a module between two Linears is a Dropout.",
    };
    public Option<string?> Loss { get; } = new("--loss")
    {
        Description = "Plain state_dict files: the loss (default cross_entropy; a one-output model needs mse, l1, huber or bce_with_logits).",
    };
    public Option<string?> Normalize { get; } = new("--normalize")
    {
        Description = "Plain state_dict files: the input scaling the model expects, scale (x/255) or none (default: none). Backprop's files record theirs.",
    };

    /// <summary>The flags, for a command that takes model files.</summary>
    public void AddTo(Command cmd)
    {
        cmd.Options.Add(Activation);
        cmd.Options.Add(Loss);
        cmd.Options.Add(Normalize);
    }

    /// <summary>
    /// Reads the model file <paramref name="path"/> given as <paramref name="flag"/>: its description and the preprocessing its
    /// inputs get. <paramref name="dropout"/> is the probability of a state_dict's Dropout modules.
    /// </summary>
    public (ModelFileInfo Info, Preprocessing Preprocessing) Open(ParseResult p, string flag, string path, TextWriter stderr, double dropout = 0) =>
        Open(flag, path, p.GetValue(Activation), p.GetValue(Loss), p.GetValue(Normalize), stderr, dropout);

    /// <summary>As above, with the flags' texts (null: not given).</summary>
    public static (ModelFileInfo Info, Preprocessing Preprocessing) Open(string flag, string path, string? activation, string? lossText, string? normalize,
        TextWriter stderr, double dropout = 0)
    {
        if (Directory.Exists(path)) throw new UsageException($"{flag} '{path}' is a folder; expected a .safetensors file (e.g. {Path.Combine(path, "model.safetensors")}).");
        if (!File.Exists(path)) throw new UsageException($"{flag} '{path}' does not exist.");
        var acts = activation is { } a ? a.Split(',', StringSplitOptions.TrimEntries).Select(t => Flags.Activation("--activation", t)).ToList() : null;
        LossKind? loss = lossText is { } l ? Flags.Loss(l) : null;
        Normalization? norm = normalize is { } n
            ? Flags.Choice("--normalize", n, ("scale", Normalization.Scale01), ("none", Normalization.None), ("standardize", Normalization.Standardize))
            : null;
        try
        {
            bool stateDict = ModelFile.IsStateDict(SafeTensorsFile.Read(path));
            if (!stateDict)
            {
                if (acts is not null || loss is not null)
                    throw new UsageException($"{(acts is not null ? "--activation" : "--loss")} is for plain PyTorch state_dict files; {flag} '{path}' was written by backprop and records its model.");
                var info = ModelFile.Read(path);
                var pre = info.Preprocessing;
                if (pre is not null)
                {
                    if (norm is { } given && given != pre.Kind)
                        throw new UsageException($"--normalize {normalize} contradicts {flag} '{path}', whose model was trained with {Describe(pre.Kind)}; drop the flag.");
                    return (info, pre);
                }
                if (norm is null)
                    stderr.WriteLine($"warning: {flag} '{path}' does not record its input preprocessing (written before backprop stored it); assuming none: " +
                        "give --normalize scale if it was trained on x/255.");
                return (info, Given(norm ?? Normalization.None));
            }
            var sd = ModelFile.Read(path, new StateDictChoices { Activations = acts, Loss = loss, Dropout = dropout });
            return (sd, Given(norm ?? Normalization.None));
        }
        catch (InvalidDataException e) { throw new UsageException(e.Message); }
        catch (ArgumentException e) when (e.ParamName == "choices") { throw new UsageException($"{Flags.Message(e)} (--activation, --loss)"); }
    }

    // The preprocessing a flag can state: statistics for standardization live in backprop's files only.
    private static Preprocessing Given(Normalization n) => n == Normalization.Standardize
        ? throw new UsageException("--normalize standardize needs the training set's statistics, which only backprop's own files carry; use scale or none.")
        : new Preprocessing(n);

    public static string Describe(Normalization n) => n switch
    {
        Normalization.Scale01 => "scale (x/255)",
        Normalization.Standardize => "standardize (the training set's mean and std)",
        _ => "no scaling",
    };

    /// <summary>An inference model of <paramref name="info"/>'s description with its weights loaded; batches of up to <paramref name="batch"/>.</summary>
    public static Model Load(ModelFileInfo info, int threads, int batch = 256)
    {
        Model? model = null;
        try
        {
            model = new Model(info.Spec, new TrainingOptions { Loss = info.Spec.Loss, MaxBatch = batch, Threads = threads });
            Checkpoint.LoadWeights(model, info);
            return model;
        }
        catch (InvalidDataException e)
        {
            model?.Dispose();
            throw new UsageException(e.Message);
        }
        catch (Exception e) when (e is ArgumentException or InsufficientMemoryException)
        {
            model?.Dispose();
            throw new UsageException(Flags.Message(e));
        }
    }
}
