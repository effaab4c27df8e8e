// The builder a user writes a network with, after PyTorch's nn.Sequential / Keras' Sequential:
//   var net = new Sequential(inputWidth: 784).Dense(256, "relu").Dropout(0.1).Dense(10);
//   using var model = net.Compile(new TrainingOptions { Loss = LossKind.CrossEntropy, ... });
// Dropout attaches to the Dense layer before it (it is applied to that layer's output). LayerNorm()
// normalizes over the features; Residual(block => block.Dense(512, "relu").LayerNorm()) adds a block
// y = x + f(x) (a learned projection of x when f ends at another width); blocks nest.
using System.Globalization;
using System.Numerics;
using Backprop.Kernels;

namespace Backprop.Engine;

/// <summary>A stack of modules (Dense layers, each optionally followed by Dropout; LayerNorms; BatchNorms; residual blocks) on an input of fixed width.</summary>
public sealed class Sequential
{
    private readonly List<ModuleSpec> _modules = new();
    private readonly string _prefix; // the state_dict prefix of a residual block's body ("" at the top)
    private int _width, _index, _denseBase;

    /// <summary>Starts a network on inputs of <paramref name="inputWidth"/> features.</summary>
    public Sequential(int inputWidth)
    {
        if (inputWidth < 1) throw new ArgumentOutOfRangeException(nameof(inputWidth), inputWidth, $"input width must be at least 1; got {inputWidth}.");
        InputWidth = _width = inputWidth;
        _prefix = "";
    }

    private Sequential(int inputWidth, string prefix, int denseBase)
    {
        InputWidth = _width = inputWidth;
        _prefix = prefix;
        _denseBase = denseBase;
    }

    private int DenseCount => _denseBase + ModelSpec.Walk(InputWidth, _modules).Dense.Count;

    /// <summary>Features per input sample.</summary>
    public int InputWidth { get; }

    /// <summary>Adds Dense(units) followed by <paramref name="activation"/> (identity when null).</summary>
    public Sequential Dense(int units, Activation? activation = null)
    {
        var layer = new LayerSpec(units, activation ?? new Activation(ActivationKind.Identity));
        ModelSpec.CheckLayer(DenseCount, layer);
        Add(layer, 1 + (layer.Activation.Kind != ActivationKind.Identity ? 1 : 0), units);
        return this;
    }

    private void Add(ModuleSpec m, int indices, int width)
    {
        _modules.Add(m);
        _index += indices;
        _width = width;
    }

    private string At => _prefix + _index.ToString(CultureInfo.InvariantCulture);

    /// <summary>Adds layer normalization over the features (learnable weight and bias, as torch.nn.LayerNorm) with <paramref name="eps"/>.</summary>
    public Sequential LayerNorm(double eps = 1e-5)
    {
        var norm = new LayerNormSpec(eps);
        ModelSpec.CheckNorm(At, norm);
        Add(norm, 1, _width);
        return this;
    }

    /// <summary>
    /// Adds batch normalization over the batch (torch.nn.BatchNorm1d: learnable weight and bias, running statistics updated by
    /// each training step with <paramref name="momentum"/>, used in inference) with <paramref name="eps"/>.
    /// </summary>
    public Sequential BatchNorm(double eps = 1e-5, double momentum = 0.1)
    {
        var norm = new BatchNormSpec(eps, momentum);
        ModelSpec.CheckBatchNorm(At, norm);
        Add(norm, 1, _width);
        return this;
    }

    /// <summary>
    /// Adds a residual block y = x + f(x), f built by <paramref name="block"/> on a Sequential of this width; when f ends at
    /// another width, x goes through a learned projection (a Linear with bias) first.
    /// </summary>
    public Sequential Residual(Func<Sequential, Sequential> block)
    {
        ArgumentNullException.ThrowIfNull(block);
        string at = At;
        var body = new Sequential(_width, at + ".body.", DenseCount);
        var built = block(body);
        if (!ReferenceEquals(built, body))
            throw new ArgumentException($"module {at} (Residual): the block must return the Sequential it was given (chain its calls: b => b.Dense(…).LayerNorm()).", nameof(block));
        if (body._modules.Count == 0)
            throw new ArgumentException($"module {at} (Residual): the block's body is empty; a residual block needs at least one module.", nameof(block));
        Add(new ResidualSpec(body._modules.ToArray()), 1, body._width);
        return this;
    }

    /// <summary>Adds Dense(units) with an activation by name ("relu", "gelu", "leaky_relu:0.2", …).</summary>
    public Sequential Dense(int units, string activation) => Dense(units, Activation.Parse(activation));

    /// <summary>Adds inverted dropout with probability <paramref name="p"/> after the last Dense layer.</summary>
    public Sequential Dropout(double p)
    {
        if (_modules.Count == 0 || _modules[^1] is not LayerSpec last)
            throw new InvalidOperationException($"Dropout must follow a Dense layer; {(_modules.Count == 0 ? "add Dense first" : $"module {_prefix}{_index - 1} is a {Kind(_modules[^1])}")}.");
        var layer = last with { Dropout = p };
        ModelSpec.CheckLayer(DenseCount - 1, layer);
        if (last.Dropout == 0 && p > 0) _index++;
        else if (last.Dropout > 0 && p == 0) _index--;
        _modules[^1] = layer;
        return this;
    }

    /// <summary>The description so far, with <paramref name="loss"/>.</summary>
    public ModelSpec ToSpec(LossKind loss, double labelSmoothing = 0, double huberDelta = 1.0) =>
        ModelSpec.FromModules(InputWidth, _modules.ToArray(), loss, labelSmoothing, huberDelta);

    private static string Kind(ModuleSpec m) => m switch { LayerNormSpec => "LayerNorm", BatchNormSpec => "BatchNorm", ResidualSpec => "Residual", _ => "Dense" };

    /// <summary>Compiles the network with <paramref name="options"/> into a trainable model (one plan, two native blocks).</summary>
    public Model Compile(TrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new(ToSpec(options.Loss, options.LabelSmoothing, options.HuberDelta), options);
    }

    /// <summary>Compiles the network into a model computing in <typeparamref name="T"/> (double: gradient checks of the same plan and kernels).</summary>
    public Model<T> Compile<T>(TrainingOptions options) where T : unmanaged, IFloatingPointIeee754<T>
    {
        ArgumentNullException.ThrowIfNull(options);
        return new(ToSpec(options.Loss, options.LabelSmoothing, options.HuberDelta), options);
    }
}
