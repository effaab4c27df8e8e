// Activation: a device-neutral description of an elementwise activation (kind + parameter), the
// vocabulary every backend shares. Each backend turns it into its own kernels: the CPU into the
// generic operator structs (Cpu.Ops.ActivationDispatch.Visit), CUDA into its kernels' constants
// (Cuda.CudaActivationCodes).
namespace Backprop.Kernels;

/// <summary>An activation chosen at run time: its kind and, for LeakyReLU and ELU, its parameter.</summary>
public readonly record struct Activation(ActivationKind Kind, double Parameter = double.NaN)
{
    /// <summary>The parameter in effect: LeakyReLU's slope (default 0.01), ELU's alpha (default 1); NaN otherwise.</summary>
    public double EffectiveParameter => Kind switch
    {
        ActivationKind.LeakyReLU => double.IsNaN(Parameter) ? 0.01 : Parameter,
        ActivationKind.ELU => double.IsNaN(Parameter) ? 1.0 : Parameter,
        _ => double.NaN,
    };

    /// <summary>True when backward needs the output (false: the pre-activation).</summary>
    public bool GradFromOutput => Kind is not (ActivationKind.GELU or ActivationKind.GELUTanh or ActivationKind.SiLU);

    /// <summary>Parses a name such as "relu", "leaky_relu", "leakyrelu:0.2", "elu:1.5", "gelu", "gelu_tanh", "silu".</summary>
    public static Activation Parse(string text)
    {
        var parts = text.Split(':', 2);
        string name = parts[0].Trim().Replace("_", "").Replace("-", "").ToLowerInvariant();
        ActivationKind kind = name switch
        {
            "identity" or "linear" or "none" => ActivationKind.Identity,
            "relu" => ActivationKind.ReLU,
            "leakyrelu" => ActivationKind.LeakyReLU,
            "elu" => ActivationKind.ELU,
            "tanh" => ActivationKind.Tanh,
            "sigmoid" => ActivationKind.Sigmoid,
            "gelu" => ActivationKind.GELU,
            "gelutanh" => ActivationKind.GELUTanh,
            "silu" or "swish" => ActivationKind.SiLU,
            _ => throw new ArgumentException(
                $"Unknown activation '{text}'; expected one of identity, relu, leaky_relu[:slope], elu[:alpha], tanh, sigmoid, gelu, gelu_tanh, silu.", nameof(text)),
        };
        double p = double.NaN;
        if (parts.Length == 2)
        {
            if (kind is not (ActivationKind.LeakyReLU or ActivationKind.ELU))
                throw new ArgumentException($"Activation '{parts[0]}' takes no parameter; got '{text}'.", nameof(text));
            if (!double.TryParse(parts[1], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out p) || !(p > 0) || !double.IsFinite(p))
                throw new ArgumentException($"The parameter of '{parts[0]}' must be a positive number; got '{parts[1]}'.", nameof(text));
        }
        return new Activation(kind, p);
    }

    /// <inheritdoc />
    public override string ToString() => Kind switch
    {
        ActivationKind.LeakyReLU or ActivationKind.ELU => $"{Kind}({EffectiveParameter.ToString(System.Globalization.CultureInfo.InvariantCulture)})",
        _ => Kind.ToString(),
    };
}

/// <summary>The activations the engine offers (names after PyTorch).</summary>
public enum ActivationKind
{
    /// <summary>y = x.</summary>
    Identity,
    /// <summary>y = max(x, 0); relu'(0) = 0.</summary>
    ReLU,
    /// <summary>y = x for x &gt; 0, slope·x otherwise (slope &gt; 0); leaky'(0) = slope.</summary>
    LeakyReLU,
    /// <summary>y = x for x &gt; 0, alpha·(e^x − 1) otherwise (alpha &gt; 0); elu'(0) = alpha.</summary>
    ELU,
    /// <summary>y = tanh(x).</summary>
    Tanh,
    /// <summary>y = 1 / (1 + e^−x).</summary>
    Sigmoid,
    /// <summary>y = x·Φ(x) = 0.5·x·(1 + erf(x/√2)) (exact GELU).</summary>
    GELU,
    /// <summary>y = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (GELU, tanh approximation).</summary>
    GELUTanh,
    /// <summary>y = x·sigmoid(x) (a.k.a. swish).</summary>
    SiLU,
}
