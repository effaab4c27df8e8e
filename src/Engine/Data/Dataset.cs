// An in-memory dataset: features [n, width] row-major as float, and either class labels or
// regression targets [n, outputs]. Normalization is fitted on a training split and applied to others.
namespace Backprop.Engine.Data;

/// <summary>How features are scaled before training.</summary>
public enum Normalization
{
    /// <summary>As stored.</summary>
    None,
    /// <summary>x / 255 (byte images to [0, 1]).</summary>
    Scale01,
    /// <summary>(x − mean) / std per feature, with the statistics of the training split only.</summary>
    Standardize,
}

/// <summary>Features with labels (classification) or targets (regression).</summary>
public sealed class Dataset(float[] features, int[]? labels, float[]? targets, int width, int outputs)
{
    /// <summary>[Count, Width] row-major.</summary>
    public float[] Features { get; } = features;
    /// <summary>Class labels, or null.</summary>
    public int[]? Labels { get; } = labels;
    /// <summary>Targets [Count, Outputs], or null.</summary>
    public float[]? Targets { get; } = targets;
    /// <summary>Features per sample.</summary>
    public int Width { get; } = width;
    /// <summary>Classes (classification) or target values per sample.</summary>
    public int Outputs { get; } = outputs;
    /// <summary>Samples.</summary>
    public int Count => Features.Length / Math.Max(1, Width);

    /// <summary>Rows [start, start + count) as a new dataset.</summary>
    public Dataset Slice(int start, int count)
    {
        if (start < 0 || count < 0 || start + count > Count)
            throw new ArgumentOutOfRangeException(nameof(count), $"slice [{start}, {start + count}) is outside the {Count} samples.");
        return new Dataset(Features.AsSpan(start * Width, count * Width).ToArray(), Labels?.AsSpan(start, count).ToArray(),
            Targets?.AsSpan(start * Outputs, count * Outputs).ToArray(), Width, Outputs);
    }

    /// <summary>Per-feature statistics for <see cref="Normalization.Standardize"/> (std floored at 1e-6).</summary>
    public (float[] Mean, float[] Std) FeatureStats()
    {
        var mean = new double[Width];
        var sq = new double[Width];
        int n = Count;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < Width; j++) { double v = Features[i * Width + j]; mean[j] += v; sq[j] += v * v; }
        var m = new float[Width];
        var s = new float[Width];
        for (int j = 0; j < Width; j++)
        {
            double mu = mean[j] / Math.Max(1, n);
            m[j] = (float)mu;
            s[j] = (float)Math.Max(1e-6, Math.Sqrt(Math.Max(0, sq[j] / Math.Max(1, n) - mu * mu)));
        }
        return (m, s);
    }

    /// <summary>Scales the features in place: /255, or (x − mean)/std with the given statistics.</summary>
    public void Normalize(Normalization how, float[]? mean = null, float[]? std = null)
    {
        switch (how)
        {
            case Normalization.None: return;
            case Normalization.Scale01:
                for (int i = 0; i < Features.Length; i++) Features[i] *= 1f / 255f;
                return;
            case Normalization.Standardize:
                if (mean is null || std is null || mean.Length != Width || std.Length != Width)
                    throw new ArgumentException($"standardization needs a mean and std of {Width} features (from the training split).");
                for (int i = 0; i < Features.Length; i++) Features[i] = (Features[i] - mean[i % Width]) / std[i % Width];
                return;
            default:
                throw new ArgumentOutOfRangeException(nameof(how), how, $"Unknown normalization {(int)how}.");
        }
    }
}
