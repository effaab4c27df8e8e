// A description of a dense network: input width, a sequence of Dense(units, activation) layers with
// optional dropout after them, and a loss. Layer i of the spec is nn.Sequential index 2i in the
// state_dict naming ("0.weight", "2.weight", ...), as the golden files and PyTorch name them.
using Backprop.Kernels;

namespace Backprop.Engine;

/// <summary>The losses a network can end in.</summary>
public enum LossKind
{
    /// <summary>Softmax cross-entropy over integer class labels.</summary>
    CrossEntropy,
    /// <summary>Mean squared error.</summary>
    Mse,
    /// <summary>Mean absolute error.</summary>
    L1,
    /// <summary>Huber loss.</summary>
    Huber,
    /// <summary>Binary cross-entropy on logits.</summary>
    BceWithLogits,
}

/// <summary>One dense layer: y = act(x·Wᵀ + b), then dropout with probability <paramref name="Dropout"/> in training.</summary>
public sealed record LayerSpec(int Units, Activation Activation, double Dropout = 0);

/// <summary>A dense network and its loss.</summary>
public sealed record ModelSpec(int InputWidth, IReadOnlyList<LayerSpec> Layers, LossKind Loss, double LabelSmoothing = 0, double HuberDelta = 1.0)
{
    /// <summary>Width of layer l's input (l = 0 is the network input).</summary>
    public int Width(int l) => l == 0 ? InputWidth : Layers[l - 1].Units;

    /// <summary>Width of the output.</summary>
    public int OutputWidth => Layers[^1].Units;

    /// <summary>
    /// Index of layer <paramref name="layer"/>'s Linear in the equivalent nn.Sequential, where each activation other than
    /// the identity and each Dropout is a module of its own: the prefix of its state_dict names ("0.weight", "2.bias", …).
    /// </summary>
    public int StateDictIndex(int layer)
    {
        if (layer < 0 || layer >= Layers.Count)
            throw new ArgumentOutOfRangeException(nameof(layer), layer, $"layer must be in [0, {Layers.Count}); got {layer}.");
        int idx = 0;
        for (int i = 0; i < layer; i++)
            idx += 1 + (Layers[i].Activation.Kind != ActivationKind.Identity ? 1 : 0) + (Layers[i].Dropout > 0 ? 1 : 0);
        return idx;
    }

    /// <summary>The state_dict names of layer <paramref name="layer"/>'s weight and bias.</summary>
    public (string Weight, string Bias) ParameterNames(int layer)
    {
        int idx = StateDictIndex(layer);
        return (FormattableString.Invariant($"{idx}.weight"), FormattableString.Invariant($"{idx}.bias"));
    }

    /// <summary>The rules of one layer (also what the Sequential builder checks as each layer is added).</summary>
    internal static void CheckLayer(int l, LayerSpec layer)
    {
        if (layer is null) throw new ArgumentNullException(nameof(layer), $"layer {l} is missing (null).");
        if (!Enum.IsDefined(layer.Activation.Kind))
            throw new ArgumentException($"layer {l} (Dense {layer.Units}): unknown activation kind {(int)layer.Activation.Kind}; expected one of {string.Join(", ", Enum.GetNames<ActivationKind>())}.", nameof(layer));
        double p = layer.Activation.Parameter;
        if (!double.IsNaN(p) && (!(p > 0) || !double.IsFinite(p)))
            throw new ArgumentException($"layer {l} (Dense {layer.Units}): the parameter of {layer.Activation.Kind} must be a positive number; got {p}.", nameof(layer));
        if (layer.Units < 1) throw new ArgumentOutOfRangeException(nameof(layer), layer.Units, $"layer {l} (Dense): units must be at least 1; got {layer.Units}.");
        if (!(layer.Dropout >= 0 && layer.Dropout < 1)) throw new ArgumentOutOfRangeException(nameof(layer), layer.Dropout, $"layer {l}: dropout must be in [0, 1); got {layer.Dropout}.");
    }

    /// <summary>Throws with a message naming the layer and the value when the description is inconsistent.</summary>
    public void Validate()
    {
        if (InputWidth < 1) throw new ArgumentOutOfRangeException(nameof(InputWidth), InputWidth, $"input width must be at least 1; got {InputWidth}.");
        if (!Enum.IsDefined(Loss)) throw new ArgumentOutOfRangeException(nameof(Loss), Loss, $"unknown loss {(int)Loss}; expected one of {string.Join(", ", Enum.GetNames<LossKind>())}.");
        if (Layers is null || Layers.Count == 0) throw new ArgumentException("a model needs at least one Dense layer; got none.", nameof(Layers));
        for (int l = 0; l < Layers.Count; l++) CheckLayer(l, Layers[l]);
        if (Loss == LossKind.CrossEntropy && OutputWidth < 2)
            throw new ArgumentException($"cross-entropy needs at least 2 output units; the last layer has {OutputWidth}.", nameof(Loss));
        if (!(LabelSmoothing >= 0 && LabelSmoothing <= 1)) throw new ArgumentOutOfRangeException(nameof(LabelSmoothing), LabelSmoothing, $"label smoothing must be in [0, 1]; got {LabelSmoothing}.");
        if (!(HuberDelta > 0)) throw new ArgumentOutOfRangeException(nameof(HuberDelta), HuberDelta, $"Huber delta must be positive; got {HuberDelta}.");
    }
}
