// The flag values every command shares, parsed in one place: choices from a fixed set of names (one
// parser for every enum-valued flag), activations, losses, and --layers, which in every command means the
// hidden layer sizes (the input and output widths come from the data or from their own flags). Each
// failure is a UsageException naming the flag, the value seen and what was expected.
using System.Globalization;
using Backprop.Engine;
using Backprop.Kernels;

namespace Backprop.Cli;

internal static class Flags
{
    /// <summary>
    /// The value of <paramref name="flag"/> among <paramref name="choices"/>: names compared case-insensitively, '-' read as
    /// '_'; a name may carry aliases after '|' ("cross_entropy|ce"), which are accepted but not listed in the message.
    /// </summary>
    public static T Choice<T>(string flag, string text, params (string Name, T Value)[] choices)
    {
        string key = text.Trim().Replace('-', '_');
        foreach (var (name, value) in choices)
            if (name.Split('|').Any(n => string.Equals(n, key, StringComparison.OrdinalIgnoreCase))) return value;
        var names = choices.Select(c => c.Name.Split('|')[0]).ToArray();
        string list = names.Length <= 2 ? string.Join(" or ", names) : $"{string.Join(", ", names[..^1])} or {names[^1]}";
        throw new UsageException($"{flag} must be {list}; got '{text}'.");
    }

    /// <summary>An activation by name ("relu", "leaky_relu:0.2", …).</summary>
    public static Activation Activation(string flag, string text)
    {
        try { return Kernels.Activation.Parse(text); }
        catch (ArgumentException e) { throw new UsageException($"{flag}: {Message(e)}"); }
    }

    /// <summary>--loss.</summary>
    public static LossKind Loss(string text) => Choice("--loss", text,
        ("cross_entropy|ce", LossKind.CrossEntropy), ("mse", LossKind.Mse), ("l1", LossKind.L1), ("huber", LossKind.Huber),
        ("bce_with_logits|bce", LossKind.BceWithLogits));

    /// <summary>--backend (cpu, blas, cuda).</summary>
    public static Backend Backend(string text) => Choice("--backend", text, ("cpu", Engine.Backend.Cpu), ("blas", Engine.Backend.Blas), ("cuda", Engine.Backend.Cuda));

    /// <summary>--precision (fp32, bf16): the operand precision of the float32 GEMMs.</summary>
    public static Kernels.Cpu.GemmPrecision Precision(string text) => Choice("--precision", text,
        ("fp32|float32|f32", Kernels.Cpu.GemmPrecision.Fp32), ("bf16", Kernels.Cpu.GemmPrecision.Bf16));

    /// <summary>--init.</summary>
    public static InitScheme Init(string text) => Choice("--init", text,
        ("he_uniform", InitScheme.HeUniform), ("he_normal", InitScheme.HeNormal), ("xavier_uniform", InitScheme.XavierUniform),
        ("xavier_normal", InitScheme.XavierNormal), ("pytorch", InitScheme.PyTorchDefault));

    /// <summary>--layers: the hidden layer sizes, comma-separated (may be empty: no hidden layer).</summary>
    public static int[] Layers(string text)
    {
        if (text.Trim().Length == 0) return [];
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        var r = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out r[i]) || r[i] < 1 || r[i] > 1 << 20)
                throw new UsageException($"--layers must be comma-separated positive sizes of the hidden layers, e.g. 512,256; got '{text}'.");
        return r;
    }

    /// <summary>An exception's message without the " (Parameter 'x')" suffix .NET appends.</summary>
    public static string Message(Exception e) => e.Message.Split(" (Parameter")[0];

    /// <summary>A double for messages, in the invariant culture.</summary>
    public static string Inv(double v) => v.ToString(CultureInfo.InvariantCulture);
}
