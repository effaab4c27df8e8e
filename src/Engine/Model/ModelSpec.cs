// A description of a dense network: input width, a tree of modules, and a loss. The modules are
// Dense(units, activation) layers with optional dropout after them, LayerNorm over the features, and
// Residual blocks (y = x + f(x), with a learned projection of x when f changes the width) whose bodies
// are module lists of their own. Layers lists the Dense layers in depth-first order (a residual block's
// body first, then its projection): what the plan numbers "layer l". A plain stack has no Modules (null;
// its JSON is what it always was). Parameter names are the state_dict names of the equivalent PyTorch
// module tree: nn.Sequential indices, where each activation other than the identity and each Dropout is
// a module of its own; a LayerNorm is nn.LayerNorm ("k.weight", "k.bias"); a residual block is a module
// with a "body" (nn.Sequential) and, when the width changes, a "proj" (nn.Linear): "k.body.0.weight",
// "k.proj.weight" (tests/golden/residual.py defines it).
using System.Globalization;
using System.Text.Json.Serialization;
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

/// <summary>A module of a network: a Dense layer (<see cref="LayerSpec"/>), a <see cref="LayerNormSpec"/> or a <see cref="ResidualSpec"/>.</summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "kind")]
[JsonDerivedType(typeof(LayerSpec), "dense")]
[JsonDerivedType(typeof(LayerNormSpec), "layer_norm")]
[JsonDerivedType(typeof(ResidualSpec), "residual")]
[JsonDerivedType(typeof(BatchNormSpec), "batch_norm")]
public abstract record ModuleSpec;

/// <summary>One dense layer: y = act(x·Wᵀ + b), then dropout with probability <paramref name="Dropout"/> in training.</summary>
public sealed record LayerSpec(int Units, Activation Activation, double Dropout = 0) : ModuleSpec;

/// <summary>Layer normalization over the features: y = (x − mean) / sqrt(var + eps) ⊙ weight + bias (torch.nn.LayerNorm, biased variance).</summary>
public sealed record LayerNormSpec(double Eps = 1e-5) : ModuleSpec;

/// <summary>
/// Batch normalization over the batch (torch.nn.BatchNorm1d on [batch, features]): in training y = (x − mean_B) / sqrt(var_B + eps)
/// ⊙ weight + bias with the batch's mean and biased variance, and running_mean ← (1 − momentum)·running_mean + momentum·mean_B,
/// running_var ← (1 − momentum)·running_var + momentum·var_B·n/(n − 1), num_batches_tracked += 1; in inference the running
/// statistics normalize. Training needs at least 2 samples per (micro-)batch, as torch.
/// </summary>
public sealed record BatchNormSpec(double Eps = 1e-5, double Momentum = 0.1) : ModuleSpec;

/// <summary>
/// A residual block: y = x + body(x), or y = proj(x) + body(x) with a learned projection (a Linear with bias) when the body
/// changes the width. The body is a module list of its own (blocks nest).
/// </summary>
public sealed record ResidualSpec(IReadOnlyList<ModuleSpec> Body) : ModuleSpec
{
    /// <inheritdoc />
    public bool Equals(ResidualSpec? other) => other is not null && Body.SequenceEqual(other.Body);

    /// <inheritdoc />
    public override int GetHashCode() => Body.Count;
}

/// <summary>Where a Dense layer sits in a model's tree: its index among the Dense layers, its state_dict prefix and input width.</summary>
public readonly record struct DenseSite(int Index, string Prefix, int InputWidth, LayerSpec Layer, bool Projection);

/// <summary>Where a LayerNorm sits in a model's tree: its index among the LayerNorms, its state_dict prefix and width.</summary>
public readonly record struct NormSite(int Index, string Prefix, int Width, LayerNormSpec Norm);

/// <summary>Where a BatchNorm sits in a model's tree: its index among the BatchNorms, its state_dict prefix and width.</summary>
public readonly record struct BatchNormSite(int Index, string Prefix, int Width, BatchNormSpec Norm);

/// <summary>A dense network and its loss.</summary>
/// <param name="InputWidth">Features per sample.</param>
/// <param name="Layers">The Dense layers in depth-first order (a residual block's body, then its projection).</param>
/// <param name="Loss">The loss.</param>
/// <param name="LabelSmoothing">Cross-entropy label smoothing.</param>
/// <param name="HuberDelta">The Huber loss's delta.</param>
/// <param name="Modules">The module tree; null for a plain stack of <paramref name="Layers"/> (build a tree with <see cref="FromModules"/>).</param>
public sealed record ModelSpec(int InputWidth, IReadOnlyList<LayerSpec> Layers, LossKind Loss, double LabelSmoothing = 0, double HuberDelta = 1.0,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<ModuleSpec>? Modules = null)
{
    /// <summary>
    /// A model of <paramref name="modules"/> (Dense, LayerNorm and Residual modules): its <see cref="Layers"/> are derived from
    /// the tree; a list of Dense layers alone gives the plain stack (Modules null).
    /// </summary>
    public static ModelSpec FromModules(int inputWidth, IReadOnlyList<ModuleSpec> modules, LossKind loss, double labelSmoothing = 0, double huberDelta = 1.0)
    {
        ArgumentNullException.ThrowIfNull(modules);
        int dense = 0;
        CheckModules(modules, "", inputWidth, ref dense); // the tree's rules first, with the module named (Walk assumes them)
        bool plain = modules.All(m => m is LayerSpec);
        var layers = plain ? modules.Cast<LayerSpec>().ToArray() : Walk(inputWidth, modules).Dense.Select(d => d.Layer).ToArray();
        return new ModelSpec(inputWidth, layers, loss, labelSmoothing, huberDelta, plain ? null : modules.ToArray());
    }

    /// <summary>The module tree: <see cref="Modules"/>, or the Dense layers of a plain stack.</summary>
    [JsonIgnore]
    public IReadOnlyList<ModuleSpec> Tree => Modules ?? Layers;

    /// <summary>Whether the model is more than a plain stack of Dense layers (it has LayerNorms or residual blocks).</summary>
    [JsonIgnore]
    public bool IsTree => Modules is not null;

    /// <summary>Width of layer l's input (l = 0 is the network input).</summary>
    public int Width(int l) => IsTree ? DenseSites[l].InputWidth : l == 0 ? InputWidth : Layers[l - 1].Units;

    /// <summary>Width of the output.</summary>
    public int OutputWidth => IsTree ? WidthAfter(Modules!, InputWidth) : Layers[^1].Units;

    // The width a module list leaves from its input width (no allocation: a step checks its targets against it).
    private static int WidthAfter(IReadOnlyList<ModuleSpec> mods, int width)
    {
        for (int i = 0; i < mods.Count; i++)
            width = mods[i] switch { LayerSpec d => d.Units, ResidualSpec r => WidthAfter(r.Body, width), _ => width };
        return width;
    }

    /// <summary>The Dense layers with their places in the tree, in the order of <see cref="Layers"/>.</summary>
    [JsonIgnore]
    public IReadOnlyList<DenseSite> DenseSites => Walk(InputWidth, Tree).Dense;

    /// <summary>The LayerNorms with their places in the tree, in depth-first order.</summary>
    [JsonIgnore]
    public IReadOnlyList<NormSite> NormSites => Walk(InputWidth, Tree).Norms;

    /// <summary>The BatchNorms with their places in the tree, in depth-first order.</summary>
    [JsonIgnore]
    public IReadOnlyList<BatchNormSite> BatchNormSites => Walk(InputWidth, Tree).BatchNorms;

    /// <summary>
    /// Index of layer <paramref name="layer"/>'s Linear in the equivalent top-level nn.Sequential, where each activation other
    /// than the identity and each Dropout is a module of its own: the prefix of its state_dict names ("0.weight", "2.bias", …).
    /// A layer inside a residual block has the block's index.
    /// </summary>
    public int StateDictIndex(int layer)
    {
        if (layer < 0 || layer >= Layers.Count)
            throw new ArgumentOutOfRangeException(nameof(layer), layer, $"layer must be in [0, {Layers.Count}); got {layer}.");
        var prefix = DenseSites[layer].Prefix;
        return int.Parse(prefix.AsSpan(0, prefix.IndexOf('.')), CultureInfo.InvariantCulture);
    }

    /// <summary>The state_dict names of layer <paramref name="layer"/>'s weight and bias.</summary>
    public (string Weight, string Bias) ParameterNames(int layer)
    {
        if (layer < 0 || layer >= Layers.Count)
            throw new ArgumentOutOfRangeException(nameof(layer), layer, $"layer must be in [0, {Layers.Count}); got {layer}.");
        var prefix = DenseSites[layer].Prefix;
        return (prefix + "weight", prefix + "bias");
    }

    /// <summary>A short description: "784-256-10" for a plain stack, "784-512-[512-LN]x2-10"-like for a tree.</summary>
    public string Describe() =>
        $"{InputWidth}-{string.Join("-", Tree.Select(Describe))}";

    private static string Describe(ModuleSpec m) => m switch
    {
        LayerSpec d => d.Units.ToString(CultureInfo.InvariantCulture),
        LayerNormSpec => "LN",
        BatchNormSpec => "BN",
        ResidualSpec r => $"[{string.Join("-", r.Body.Select(Describe))}]",
        _ => "?",
    };

    // The tree in depth-first order: each Dense (a residual block's body first, then its projection) and each LayerNorm with
    // its state_dict prefix and widths, and the output width. Assumes a tree Validate accepts (CheckModules walks it first).
    internal static (List<DenseSite> Dense, List<NormSite> Norms, List<BatchNormSite> BatchNorms, int OutputWidth) Walk(int inputWidth, IReadOnlyList<ModuleSpec> modules)
    {
        var dense = new List<DenseSite>();
        var norms = new List<NormSite>();
        var batchNorms = new List<BatchNormSite>();
        int Seq(IReadOnlyList<ModuleSpec> mods, string prefix, int width)
        {
            int idx = 0;
            foreach (var m in mods)
            {
                string at = prefix + idx.ToString(CultureInfo.InvariantCulture) + ".";
                switch (m)
                {
                    case LayerSpec d:
                        dense.Add(new DenseSite(dense.Count, at, width, d, false));
                        width = d.Units;
                        idx += 1 + (d.Activation.Kind != ActivationKind.Identity ? 1 : 0) + (d.Dropout > 0 ? 1 : 0);
                        break;
                    case LayerNormSpec n:
                        norms.Add(new NormSite(norms.Count, at, width, n));
                        idx++;
                        break;
                    case BatchNormSpec bn:
                        batchNorms.Add(new BatchNormSite(batchNorms.Count, at, width, bn));
                        idx++;
                        break;
                    case ResidualSpec r:
                        int inner = Seq(r.Body, at + "body.", width);
                        if (inner != width) dense.Add(new DenseSite(dense.Count, at + "proj.", width, new LayerSpec(inner, new Activation(ActivationKind.Identity)), true));
                        width = inner;
                        idx++;
                        break;
                }
            }
            return width;
        }
        int output = Seq(modules, "", inputWidth);
        return (dense, norms, batchNorms, output);
    }

    // The rules of a tree's modules, each named by its state_dict prefix; dense counts the Dense layers seen (their numbers in messages).
    // width: the list's input width; returns its output width (a block that changes the width counts its projection).
    internal static int CheckModules(IReadOnlyList<ModuleSpec> mods, string prefix, int width, ref int dense)
    {
        if (mods is null) throw new ArgumentException($"{(prefix.Length == 0 ? "the model's" : $"residual block {prefix.TrimEnd('.')}'s")} module list is missing (null).", nameof(mods));
        int idx = 0;
        foreach (var m in mods)
        {
            string at = prefix + idx.ToString(CultureInfo.InvariantCulture);
            switch (m)
            {
                case LayerSpec d:
                    CheckLayer(dense, d);
                    dense++;
                    width = d.Units;
                    idx += 1 + (d.Activation.Kind != ActivationKind.Identity ? 1 : 0) + (d.Dropout > 0 ? 1 : 0);
                    break;
                case LayerNormSpec n:
                    CheckNorm(at, n);
                    idx++;
                    break;
                case BatchNormSpec bn:
                    CheckBatchNorm(at, bn);
                    idx++;
                    break;
                case ResidualSpec r:
                    if (r.Body is null || r.Body.Count == 0)
                        throw new ArgumentException($"module {at} (Residual): the block's body is empty; a residual block needs at least one module.", nameof(mods));
                    int inner = CheckModules(r.Body, at + ".body.", width, ref dense);
                    if (inner != width) dense++; // the projection, numbered after the body as Walk numbers it
                    width = inner;
                    idx++;
                    break;
                case null:
                    throw new ArgumentException($"module {at} is missing (null).", nameof(mods));
                default:
                    throw new ArgumentException($"module {at}: unknown module type {m.GetType().Name}; expected Dense, LayerNorm, BatchNorm or Residual.", nameof(mods));
            }
        }
        return width;
    }

    /// <summary>The rules of one BatchNorm (also what the Sequential builder checks as it is added).</summary>
    internal static void CheckBatchNorm(string at, BatchNormSpec norm)
    {
        if (!(norm.Eps > 0) || !double.IsFinite(norm.Eps))
            throw new ArgumentOutOfRangeException(nameof(norm), norm.Eps, $"module {at} (BatchNorm): eps must be a positive finite number; got {norm.Eps}.");
        if (!(norm.Momentum >= 0 && norm.Momentum <= 1))
            throw new ArgumentOutOfRangeException(nameof(norm), norm.Momentum, $"module {at} (BatchNorm): momentum must be in [0, 1]; got {norm.Momentum}.");
    }

    /// <summary>The rules of one LayerNorm (also what the Sequential builder checks as it is added).</summary>
    internal static void CheckNorm(string at, LayerNormSpec norm)
    {
        if (!(norm.Eps > 0) || !double.IsFinite(norm.Eps))
            throw new ArgumentOutOfRangeException(nameof(norm), norm.Eps, $"module {at} (LayerNorm): eps must be a positive finite number; got {norm.Eps}.");
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
        if (Modules is null)
            for (int l = 0; l < Layers.Count; l++) CheckLayer(l, Layers[l]);
        else
        {
            if (Modules.Count == 0) throw new ArgumentException("a model needs at least one module; Modules is empty (null means a plain stack of Layers).", nameof(Modules));
            int dense = 0;
            CheckModules(Modules, "", InputWidth, ref dense);
            var derived = Walk(InputWidth, Modules).Dense.Select(d => d.Layer).ToList();
            if (!derived.SequenceEqual(Layers))
                throw new ArgumentException($"the spec's layers ({string.Join(", ", Layers.Select(l => l.Units))}) are not the Dense layers of its modules " +
                    $"({string.Join(", ", derived.Select(l => l.Units))}, projections included); build a tree with ModelSpec.FromModules.", nameof(Layers));
        }
        if (Loss == LossKind.CrossEntropy && OutputWidth < 2)
            throw new ArgumentException($"cross-entropy needs at least 2 output units; the last layer has {OutputWidth}.", nameof(Loss));
        if (!(LabelSmoothing >= 0 && LabelSmoothing <= 1)) throw new ArgumentOutOfRangeException(nameof(LabelSmoothing), LabelSmoothing, $"label smoothing must be in [0, 1]; got {LabelSmoothing}.");
        if (!(HuberDelta > 0)) throw new ArgumentOutOfRangeException(nameof(HuberDelta), HuberDelta, $"Huber delta must be positive; got {HuberDelta}.");
    }
}
