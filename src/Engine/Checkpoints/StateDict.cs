// A plain PyTorch state_dict of an nn.Sequential of Linear layers, as safetensors.torch.save_file writes it
// (no backprop metadata), read as a model: the tensors are "<prefix><index>.weight" [out, in] and
// "<prefix><index>.bias" [out] (one prefix for all, "" for a bare nn.Sequential, "net." for one held in a
// module's attribute), the widths come from the shapes, and the gaps between Linear indices are the
// modules without parameters: none (the layers follow directly: no activation), one (an activation, or a
// Dropout when the layer has no activation) or two (an activation, then a Dropout). What the file cannot
// say, the caller says (StateDictChoices): the activations, the loss, the dropout probability. A choice
// that contradicts the file (an activation where no module sits, more layers than the file has) is an
// ArgumentException naming both; a file that is not such a state_dict is an InvalidDataException.
using System.Globalization;
using System.Text.RegularExpressions;
using Backprop.Kernels;

namespace Backprop.Engine.Checkpoints;

/// <summary>What a plain state_dict cannot say about its model.</summary>
public sealed record StateDictChoices
{
    /// <summary>
    /// The activations: null or empty when no module sits between the Linears; one (every hidden layer); one per hidden
    /// layer; or one per layer, the last applied after the last Linear (a module the state_dict cannot show). A file with a
    /// single Linear has no hidden layer: one activation other than identity is refused there.
    /// </summary>
    public IReadOnlyList<Activation>? Activations { get; init; }

    /// <summary>The loss; null: cross-entropy when the model has at least 2 outputs (a one-output model must be told).</summary>
    public LossKind? Loss { get; init; }

    /// <summary>The probability given to the file's Dropout modules (0: as at inference, where dropout does nothing).</summary>
    public double Dropout { get; init; }
}

/// <summary>One nn.Linear of a state_dict: its module index, its tensors' names and its widths.</summary>
public sealed record StateDictLinear(int Index, string Weight, string Bias, int Out, int In);

/// <summary>Reads a plain PyTorch state_dict as a model description.</summary>
public static partial class StateDict
{
    [GeneratedRegex(@"^(?<prefix>(?:[A-Za-z_][A-Za-z0-9_]*\.)*)(?<index>0|[1-9][0-9]{0,8})\.(?<kind>weight|bias)$", RegexOptions.CultureInvariant)]
    private static partial Regex ParameterName();

    /// <summary>The Linear modules of <paramref name="f"/> in order, checked: names, shapes, and each layer's input the previous one's output.</summary>
    public static IReadOnlyList<StateDictLinear> Linears(SafeTensorsFile f)
    {
        ArgumentNullException.ThrowIfNull(f);
        string Where(string what) => $"state_dict '{f.Path}': {what}";
        if (f.Tensors.Count == 0) throw new InvalidDataException(Where("the file holds no tensors; expected the weights and biases of nn.Linear layers."));
        string? prefix = null;
        var byIndex = new SortedDictionary<int, (string? W, string? B)>();
        foreach (var name in f.Tensors.Keys.Order(StringComparer.Ordinal))
        {
            var m = ParameterName().Match(name);
            if (!m.Success)
                throw new InvalidDataException(Where($"tensor '{name}' is not a Linear layer's parameter of an nn.Sequential (expected '<index>.weight' and " +
                    "'<index>.bias'); only nn.Linear layers with activations and Dropout between them are read."));
            string p = m.Groups["prefix"].Value;
            if (prefix is not null && p != prefix)
                throw new InvalidDataException(Where($"tensor '{name}' has the prefix '{p}' but others have '{prefix}'; expected one nn.Sequential."));
            prefix = p;
            int index = int.Parse(m.Groups["index"].Value, CultureInfo.InvariantCulture);
            var entry = byIndex.GetValueOrDefault(index);
            byIndex[index] = m.Groups["kind"].Value == "weight" ? (name, entry.B) : (entry.W, name);
        }
        var layers = new List<StateDictLinear>();
        foreach (var (index, (w, b)) in byIndex)
        {
            if (w is null) throw new InvalidDataException(Where($"module {index} has a bias '{b}' but no weight; expected an nn.Linear."));
            if (b is null)
                throw new InvalidDataException(Where($"Linear {index} ('{w}') has no bias (nn.Linear(bias=False)); backprop's dense layers always have one."));
            var ws = f.Tensors[w].Shape;
            var bs = f.Tensors[b].Shape;
            if (ws.Length != 2 || ws[0] < 1 || ws[1] < 1)
                throw new InvalidDataException(Where($"'{w}' has shape [{string.Join(", ", ws)}]; an nn.Linear weight is [out, in] with both at least 1."));
            if (bs.Length != 1 || bs[0] != ws[0])
                throw new InvalidDataException(Where($"'{b}' has shape [{string.Join(", ", bs)}]; the bias of '{w}' [{ws[0]}, {ws[1]}] is [{ws[0]}]."));
            if (layers.Count > 0 && layers[^1].Out != ws[1])
                throw new InvalidDataException(Where($"'{w}' takes {ws[1]} inputs but the layer before it ('{layers[^1].Weight}') gives {layers[^1].Out}."));
            layers.Add(new StateDictLinear(index, w, b, ws[0], ws[1]));
        }
        if (layers[0].Index != 0)
            throw new InvalidDataException(Where($"the first Linear is module {layers[0].Index}: modules 0..{layers[0].Index - 1} hold no parameters " +
                "(e.g. nn.Flatten) and their meaning cannot be read; backprop reads models whose module 0 is the first Linear, on flat inputs."));
        return layers;
    }

    /// <summary>
    /// The model <paramref name="f"/> describes with <paramref name="choices"/>, and each layer's tensor names. Throws
    /// <see cref="InvalidDataException"/> when the file is not such a state_dict, <see cref="ArgumentException"/> when the
    /// choices are missing or contradict it.
    /// </summary>
    public static (ModelSpec Spec, IReadOnlyList<(string Weight, string Bias)> Tensors) Describe(SafeTensorsFile f, StateDictChoices choices)
    {
        ArgumentNullException.ThrowIfNull(choices);
        var linears = Linears(f);
        string Where(string what) => $"state_dict '{f.Path}': {what}";
        int L = linears.Count, hidden = L - 1;
        var acts = choices.Activations ?? [];
        if (!(choices.Dropout >= 0 && choices.Dropout < 1))
            throw new ArgumentException(Where($"the dropout probability must be in [0, 1); got {choices.Dropout}."), nameof(choices));
        // One activation means every hidden layer's; a file with a single Linear has none, and applying it after that Linear
        // instead would silently change the model's outputs.
        if (hidden == 0 && acts.Count == 1 && acts[0].Kind != ActivationKind.Identity)
            throw new ArgumentException(Where($"the file has a single Linear layer, so there is no hidden layer for the activation {acts[0]}; " +
                "leave the activation out (the output is the Linear's, as the loss expects)."), nameof(choices));
        if (acts.Count > 1 && acts.Count != hidden && acts.Count != L)
            throw new ArgumentException(Where($"{acts.Count} activations given, but the file has {L} Linear layers: give one, {hidden} (one per hidden layer) or {L} (one per layer)."), nameof(choices));
        Activation ActivationOf(int l) =>
            acts.Count == 0 ? new Activation(ActivationKind.Identity)
            : acts.Count == L ? acts[l]
            : l < hidden ? acts[acts.Count == 1 ? 0 : l] : new Activation(ActivationKind.Identity);

        var layers = new List<LayerSpec>();
        for (int l = 0; l < L; l++)
        {
            var act = ActivationOf(l);
            bool hasAct = act.Kind != ActivationKind.Identity;
            double dropout = 0;
            if (l < hidden)
            {
                int gap = linears[l + 1].Index - linears[l].Index - 1;
                string between = $"between Linear {linears[l].Index} and Linear {linears[l + 1].Index}";
                switch (gap)
                {
                    case 0 when hasAct:
                        throw new ArgumentException(Where($"the activation {act} of layer {l} contradicts the file: Linear {linears[l + 1].Index} follows Linear {linears[l].Index} directly, with no module between them; give identity for layer {l}."), nameof(choices));
                    case 0:
                        break;
                    case 1 when acts.Count == 0:
                        throw new ArgumentException(Where($"module {linears[l].Index + 1} {between} holds no parameters: an activation or a Dropout, which the file cannot say; name the hidden activations (identity where it is a Dropout)."), nameof(choices));
                    case 1:
                        if (!hasAct) dropout = choices.Dropout;
                        break;
                    case 2 when !hasAct:
                        throw new ArgumentException(Where($"modules {linears[l].Index + 1} and {linears[l].Index + 2} {between} hold no parameters (an activation, then a Dropout), but layer {l}'s activation is given as identity; name it."), nameof(choices));
                    case 2:
                        dropout = choices.Dropout;
                        break;
                    default:
                        throw new InvalidDataException(Where($"{gap} modules without parameters sit {between}; backprop reads at most an activation and a Dropout between two Linears."));
                }
            }
            layers.Add(new LayerSpec(linears[l].Out, act, dropout));
        }
        int outputs = linears[^1].Out;
        var loss = choices.Loss ?? (outputs >= 2 ? LossKind.CrossEntropy
            : throw new ArgumentException(Where("the model has one output, so the loss cannot be cross-entropy; name it (mse, l1, huber or bce_with_logits)."), nameof(choices)));
        var spec = new ModelSpec(linears[0].In, layers, loss);
        try { _ = new Planning.Plan(spec, new TrainingOptions { Loss = loss, MaxBatch = 1, Threads = 1 }); }
        catch (ArgumentException e) { throw new ArgumentException(Where($"the model it describes is one the engine refuses: {e.Message.Split(" (Parameter")[0]}"), nameof(choices), e); }
        return (spec, linears.Select(x => (x.Weight, x.Bias)).ToList());
    }
}
