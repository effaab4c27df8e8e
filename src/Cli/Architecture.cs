// `--arch`: the shape of the network `train` builds between the data's input and its classes.
//   mlp                                   the --layers stack: Dense(h, act) [Dropout] per hidden size h
//   resmlp:width=W,blocks=K[,norm=layer|batch|none]
//                                         Dense(W, act) [Dropout], then K residual blocks
//                                         x + Dense(W, act)(x) [Dropout inside the block], each followed by a
//                                         LayerNorm (norm=layer, the default; "post-norm": LN(x + f(x))) or a
//                                         BatchNorm (norm=batch), then the output layer. The activation and
//                                         dropout are --activation's and --dropout's.
// Each failure is a UsageException naming the flag, the value seen and what was expected.
using System.Globalization;
using Backprop.Engine;
using Backprop.Kernels;

namespace Backprop.Cli;

/// <summary>The norm after each residual block.</summary>
internal enum BlockNorm { None, Layer, Batch }

internal sealed record Architecture(bool Residual, int Width, int Blocks, BlockNorm Norm)
{
    public const string Help =
        "Network shape: mlp (the --layers stack) or resmlp:width=W,blocks=K[,norm=layer|batch|none] (Dense W, then K residual blocks x + Dense W(x), " +
        "each followed by a LayerNorm (default), a BatchNorm or nothing, then the output layer; --activation and --dropout apply).";

    public static readonly Architecture Mlp = new(false, 0, 0, BlockNorm.None);

    /// <summary>Parses --arch's <paramref name="text"/>.</summary>
    public static Architecture Parse(string text)
    {
        string t = text.Trim();
        if (string.Equals(t, "mlp", StringComparison.OrdinalIgnoreCase)) return Mlp;
        const string expected = "mlp or resmlp:width=W,blocks=K[,norm=layer|batch|none] (e.g. resmlp:width=512,blocks=4,norm=layer)";
        int colon = t.IndexOf(':');
        string kind = colon < 0 ? t : t[..colon];
        if (!string.Equals(kind, "resmlp", StringComparison.OrdinalIgnoreCase))
            throw new UsageException($"--arch must be {expected}; got '{text}'.");
        int width = 0, blocks = 0;
        var norm = BlockNorm.Layer;
        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var part in (colon < 0 ? "" : t[(colon + 1)..]).Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            int eq = part.IndexOf('=');
            string key = eq < 0 ? part : part[..eq].Trim(), value = eq < 0 ? "" : part[(eq + 1)..].Trim();
            if (!seen.Add(key)) throw new UsageException($"--arch: '{key}' is given twice in '{text}'.");
            switch (key.ToLowerInvariant())
            {
                case "width":
                    width = Positive("width", value, text, 1 << 20);
                    break;
                case "blocks":
                    blocks = Positive("blocks", value, text, 1024);
                    break;
                case "norm":
                    norm = Flags.Choice("--arch norm", value, ("layer", BlockNorm.Layer), ("batch", BlockNorm.Batch), ("none", BlockNorm.None));
                    break;
                default:
                    throw new UsageException($"--arch resmlp takes width, blocks and norm; got '{key}' in '{text}'.");
            }
        }
        if (width == 0 || blocks == 0)
            throw new UsageException($"--arch resmlp needs width and blocks (e.g. resmlp:width=512,blocks=4); got '{text}'.");
        return new Architecture(true, width, blocks, norm);
    }

    private static int Positive(string key, string value, string text, int max) =>
        int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int v) && v >= 1 && v <= max ? v
            : throw new UsageException($"--arch: {key} must be a whole number in [1, {max}]; got '{value}' in '{text}'.");

    /// <summary>The network from <paramref name="input"/> features to <paramref name="classes"/> outputs (identity, or <paramref name="last"/>).</summary>
    public Sequential Build(int input, int classes, int[] hidden, Activation act, double dropout, Activation? last = null)
    {
        var net = new Sequential(input);
        if (!Residual)
        {
            foreach (int h in hidden)
            {
                net.Dense(h, act);
                if (dropout > 0) net.Dropout(dropout);
            }
            return net.Dense(classes, last);
        }
        net.Dense(Width, act);
        if (dropout > 0) net.Dropout(dropout);
        for (int k = 0; k < Blocks; k++)
        {
            net.Residual(b => dropout > 0 ? b.Dense(Width, act).Dropout(dropout) : b.Dense(Width, act));
            if (Norm == BlockNorm.Layer) net.LayerNorm();
            else if (Norm == BlockNorm.Batch) net.BatchNorm();
        }
        return net.Dense(classes, last);
    }
}
