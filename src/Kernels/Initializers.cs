// Weight initialization for a dense layer's W [out, in] (fan_in = in, fan_out = out) and bias [out].
//   XavierUniform:  U(−a, a), a = gain·√(6/(fan_in + fan_out))      XavierNormal: N(0, gain·√(2/(fan_in + fan_out)))
//   HeUniform:      U(−a, a), a = √2·√(3/fan_in) = √(6/fan_in)        HeNormal:     N(0, √2/√fan_in)    (ReLU gain √2)
//   PyTorchDefault: nn.Linear's reset_parameters: W ~ U(−1/√fan_in, 1/√fan_in) (kaiming_uniform with a=√5),
//                   b ~ U(−1/√fan_in, 1/√fan_in); all other schemes start the bias at zero.
// Random numbers come from Philox keyed by the seed, stream = layer, substream = tensor (0 = W, 1 = b),
// so a layer's initial weights do not depend on the other layers or on the order of initialization.
using System.Numerics;

namespace Backprop.Kernels;

/// <summary>Initialization schemes.</summary>
public enum InitScheme
{
    /// <summary>Glorot uniform.</summary>
    XavierUniform,
    /// <summary>Glorot normal.</summary>
    XavierNormal,
    /// <summary>Kaiming uniform (fan-in, ReLU gain).</summary>
    HeUniform,
    /// <summary>Kaiming normal (fan-in, ReLU gain).</summary>
    HeNormal,
    /// <summary>PyTorch nn.Linear's default (weights and bias uniform in ±1/√fan_in).</summary>
    PyTorchDefault,
}

/// <summary>Deterministic initializers.</summary>
public static class Initializers
{
    /// <summary>Fills W [out, in] and bias [out] for layer <paramref name="layer"/> with <paramref name="scheme"/>.</summary>
    public static void Initialize<T>(InitScheme scheme, ulong seed, uint layer, int inFeatures, int outFeatures, Span<T> weights, Span<T> bias, double gain = 1.0)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (inFeatures < 1 || outFeatures < 1)
            throw new ArgumentOutOfRangeException(nameof(inFeatures), $"layer sizes must be positive; got in={inFeatures}, out={outFeatures}.");
        if (weights.Length != (long)inFeatures * outFeatures)
            throw new ArgumentException($"weights has {weights.Length} elements; [{outFeatures}, {inFeatures}] needs {(long)inFeatures * outFeatures}.", nameof(weights));
        if (bias.Length != 0 && bias.Length != outFeatures)
            throw new ArgumentException($"bias has {bias.Length} elements; expected {outFeatures} (or 0 for no bias).", nameof(bias));
        double fanIn = inFeatures, fanOut = outFeatures;
        switch (scheme)
        {
            case InitScheme.XavierUniform: Uniform(weights, gain * Math.Sqrt(6 / (fanIn + fanOut)), seed, layer, 0); break;
            case InitScheme.XavierNormal: Normal(weights, gain * Math.Sqrt(2 / (fanIn + fanOut)), seed, layer, 0); break;
            case InitScheme.HeUniform: Uniform(weights, Math.Sqrt(6 / fanIn), seed, layer, 0); break;
            case InitScheme.HeNormal: Normal(weights, Math.Sqrt(2 / fanIn), seed, layer, 0); break;
            case InitScheme.PyTorchDefault: Uniform(weights, 1 / Math.Sqrt(fanIn), seed, layer, 0); break;
            default: throw new ArgumentOutOfRangeException(nameof(scheme), scheme, $"Unknown init scheme {(int)scheme}.");
        }
        if (scheme == InitScheme.PyTorchDefault) Uniform(bias, 1 / Math.Sqrt(fanIn), seed, layer, 1);
        else bias.Clear();
    }

    /// <summary>x[i] ~ U(−a, a) from Philox(seed, stream, substream) word i.</summary>
    public static void Uniform<T>(Span<T> x, double a, ulong seed, uint stream, ulong substream) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int i = 0; i < x.Length; i++)
            x[i] = T.CreateTruncating((2 * Philox.Uniform24(Philox.Word(seed, stream, substream, i)) - 1) * a);
    }

    /// <summary>x[i] ~ N(0, std²) by Box–Muller from Philox words 2i and 2i+1 of (seed, stream, substream | 1 &lt;&lt; 32).</summary>
    public static void Normal<T>(Span<T> x, double std, ulong seed, uint stream, ulong substream) where T : unmanaged, IFloatingPointIeee754<T>
    {
        ulong sub = substream | 1UL << 32;
        for (int i = 0; i < x.Length; i++)
        {
            var (a, b, c, _) = Philox.Generate((uint)i, stream, (uint)sub, (uint)(sub >> 32), (uint)seed, (uint)(seed >> 32));
            double u1 = Philox.Uniform53(a, b), u2 = Philox.Uniform24(c);
            x[i] = T.CreateTruncating(std * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
    }
}
