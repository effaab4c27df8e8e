// Softmax cross-entropy from logits, forward and backward in one pass over each row.
//   p = softmax(x) computed as x - lse with lse = m + log Σ_c e^(x_c - m), m = max_c x_c
//   (stable for logits of ±1e4), q = (1 - ε)·onehot(label) + ε/C (label smoothing ε),
//   loss = (1/B) Σ_rows −Σ_c q_c log p_c,   d(logits) = (p − q) / B.
// logits [B, C] row-major, labels [B]; grad may alias logits (written in place). A micro-batch of a
// larger batch of N samples divides its gradient by N instead (gradientRows = N), so the gradients of the
// micro-batches sum to the gradient of the whole batch; the loss returned is still its own rows' mean.
using System.Numerics;

namespace Backprop.Kernels.Cpu.Ops;

/// <summary>Softmax cross-entropy with integer labels (PyTorch's F.cross_entropy, mean reduction).</summary>
public static class SoftmaxCrossEntropy
{
    /// <summary>Returns the mean loss and writes d(loss)/d(logits) into <paramref name="grad"/>, divided by <paramref name="gradientRows"/> (0: the batch).</summary>
    public static double ForwardBackward<T>(ReadOnlySpan<T> logits, ReadOnlySpan<int> labels, int classes, Span<T> grad, double labelSmoothing = 0, int gradientRows = 0)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int batch = labels.Length;
        if (gradientRows != 0 && gradientRows < batch)
            throw new ArgumentOutOfRangeException(nameof(gradientRows), gradientRows, $"the gradient's row count must be 0 (the batch) or at least the batch {batch}; got {gradientRows}.");
        if (classes < 1) throw new ArgumentOutOfRangeException(nameof(classes), classes, $"classes must be at least 1; got {classes}.");
        if (!(labelSmoothing >= 0 && labelSmoothing <= 1))
            throw new ArgumentOutOfRangeException(nameof(labelSmoothing), labelSmoothing, $"label smoothing must be in [0, 1]; got {labelSmoothing}.");
        if (logits.Length < (long)batch * classes)
            throw new ArgumentException($"logits has {logits.Length} elements; {batch} labels x {classes} classes need {(long)batch * classes}.", nameof(logits));
        if (grad.Length < (long)batch * classes)
            throw new ArgumentException($"grad has {grad.Length} elements; {batch} labels x {classes} classes need {(long)batch * classes}.", nameof(grad));
        Labels.Check(labels, classes);
        if (batch == 0) return 0;

        T invB = T.One / T.CreateTruncating(gradientRows == 0 ? batch : gradientRows);
        T eps = T.CreateTruncating(labelSmoothing);
        T off = eps / T.CreateTruncating(classes);        // q_c for c != label
        T on = T.One - eps + off;                          // q_c for c == label
        double total = 0;
        for (int r = 0; r < batch; r++)
        {
            var x = logits.Slice(r * classes, classes);
            var g = grad.Slice(r * classes, classes);
            int label = labels[r];
            T m = x[0];
            for (int c = 1; c < classes; c++) if (x[c] > m) m = x[c];
            T s = T.Zero;
            for (int c = 0; c < classes; c++) s += T.Exp(x[c] - m);
            T lse = m + T.Log(s);
            // −Σ q_c log p_c = lse·Σq − Σ q_c x_c = lse − (off·Σ x_c + (on − off)·x_label)
            T sumX = T.Zero;
            for (int c = 0; c < classes; c++) sumX += x[c];
            T xl = x[label];
            double rowLoss = double.CreateTruncating(lse) - (double.CreateTruncating(off) * double.CreateTruncating(sumX)
                                                            + double.CreateTruncating(on - off) * double.CreateTruncating(xl));
            total += rowLoss;
            for (int c = 0; c < classes; c++)
            {
                T p = T.Exp(x[c] - lse);
                g[c] = (p - (c == label ? on : off)) * invB;
            }
        }
        return total / batch;
    }
}

/// <summary>Label validation shared by the classification losses and metrics.</summary>
public static class Labels
{
    /// <summary>Throws, naming the sample and the label, when a label is outside [0, classes).</summary>
    public static void Check(ReadOnlySpan<int> labels, int classes)
    {
        for (int i = 0; i < labels.Length; i++)
            if ((uint)labels[i] >= (uint)classes)
                throw new ArgumentOutOfRangeException(nameof(labels), labels[i],
                    $"Label {labels[i]} of sample {i} is outside [0, {classes}); expected a class index below the number of classes.");
    }
}
