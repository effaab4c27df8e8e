// Activation: a runtime description (kind + parameter) that turns into the generic operator struct.
// Kernels are generic over the operator; Visit hands the concrete struct to a visitor so a caller
// that only knows the kind at run time still ends in fully specialized code (no boxing, no virtual
// call per element).
using System.Numerics;

namespace Backprop.Kernels.Cpu.Ops;

/// <summary>Receives the concrete activation operator for a runtime <see cref="Activation"/>.</summary>
public interface IActivationVisitor<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>Called once with the operator.</summary>
    void Visit<TAct>(TAct act) where TAct : unmanaged, IActivation<T>;
}

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

    /// <summary>Hands the operator for this activation, instantiated for T, to <paramref name="visitor"/>.</summary>
    public void Visit<T, TVisitor>(ref TVisitor visitor)
        where T : unmanaged, IFloatingPointIeee754<T>
        where TVisitor : struct, IActivationVisitor<T>
    {
        switch (Kind)
        {
            case ActivationKind.Identity: visitor.Visit(default(Identity<T>)); break;
            case ActivationKind.ReLU: visitor.Visit(default(ReLU<T>)); break;
            case ActivationKind.LeakyReLU: visitor.Visit(new LeakyReLU<T>(T.CreateTruncating(EffectiveParameter))); break;
            case ActivationKind.ELU: visitor.Visit(new Elu<T>(T.CreateTruncating(EffectiveParameter))); break;
            case ActivationKind.Tanh: visitor.Visit(default(Tanh<T>)); break;
            case ActivationKind.Sigmoid: visitor.Visit(default(Sigmoid<T>)); break;
            case ActivationKind.GELU: visitor.Visit(default(Gelu<T>)); break;
            case ActivationKind.GELUTanh: visitor.Visit(default(GeluTanh<T>)); break;
            case ActivationKind.SiLU: visitor.Visit(default(SiLU<T>)); break;
            default: throw new ArgumentOutOfRangeException(nameof(Kind), Kind, $"Unknown activation kind {(int)Kind}.");
        }
    }

    /// <inheritdoc />
    public override string ToString() => Kind switch
    {
        ActivationKind.LeakyReLU or ActivationKind.ELU => $"{Kind}({EffectiveParameter.ToString(System.Globalization.CultureInfo.InvariantCulture)})",
        _ => Kind.ToString(),
    };
}
