// The builder a user writes a network with, after PyTorch's nn.Sequential / Keras' Sequential:
//   var net = new Sequential(inputWidth: 784).Dense(256, "relu").Dropout(0.1).Dense(10);
//   using var model = net.Compile(new TrainingOptions { Loss = LossKind.CrossEntropy, ... });
// Dropout attaches to the Dense layer before it (it is applied to that layer's output).
using System.Numerics;
using Backprop.Kernels;

namespace Backprop.Engine;

/// <summary>A stack of Dense layers (each optionally followed by Dropout) on an input of fixed width.</summary>
public sealed class Sequential
{
    private readonly List<LayerSpec> _layers = new();

    /// <summary>Starts a network on inputs of <paramref name="inputWidth"/> features.</summary>
    public Sequential(int inputWidth)
    {
        if (inputWidth < 1) throw new ArgumentOutOfRangeException(nameof(inputWidth), inputWidth, $"input width must be at least 1; got {inputWidth}.");
        InputWidth = inputWidth;
    }

    /// <summary>Features per input sample.</summary>
    public int InputWidth { get; }

    /// <summary>Adds Dense(units) followed by <paramref name="activation"/> (identity when null).</summary>
    public Sequential Dense(int units, Activation? activation = null)
    {
        var layer = new LayerSpec(units, activation ?? new Activation(ActivationKind.Identity));
        ModelSpec.CheckLayer(_layers.Count, layer);
        _layers.Add(layer);
        return this;
    }

    /// <summary>Adds Dense(units) with an activation by name ("relu", "gelu", "leaky_relu:0.2", …).</summary>
    public Sequential Dense(int units, string activation) => Dense(units, Activation.Parse(activation));

    /// <summary>Adds inverted dropout with probability <paramref name="p"/> after the last Dense layer.</summary>
    public Sequential Dropout(double p)
    {
        if (_layers.Count == 0) throw new InvalidOperationException("Dropout must follow a Dense layer; add Dense first.");
        var layer = _layers[^1] with { Dropout = p };
        ModelSpec.CheckLayer(_layers.Count - 1, layer);
        _layers[^1] = layer;
        return this;
    }

    /// <summary>The description so far, with <paramref name="loss"/>.</summary>
    public ModelSpec ToSpec(LossKind loss, double labelSmoothing = 0, double huberDelta = 1.0) =>
        new(InputWidth, _layers.ToArray(), loss, labelSmoothing, huberDelta);

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
