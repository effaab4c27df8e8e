// The losses of a ModelSpec on the CPU kernels, forward and backward in one pass: the one place a
// LossKind becomes a kernel call (the CPU executor's Loss op, Evaluate on any backend, the loss
// gradient check and the test oracles all come here).
//   CrossEntropy: softmax cross-entropy of logits [batch, C] against integer labels (label smoothing ε)
//   Mse, L1, Huber (δ), BceWithLogits: elementwise against targets of the output's shape
// Each returns the mean loss and writes d(loss)/d(output) into grad (which may alias output).
using System.Numerics;
using Backprop.Kernels.Cpu.Ops;

namespace Backprop.Engine.Execution;

/// <summary>Loss forward and backward for a <see cref="LossKind"/>.</summary>
public static class Losses
{
    /// <summary>
    /// The mean loss of <paramref name="output"/> ([n, outputs]) against <paramref name="labels"/> (cross-entropy) or <paramref name="targets"/>;
    /// d(loss)/d(output) into <paramref name="grad"/>, as a share of a batch of <paramref name="gradientRows"/> samples (0: n, the batch itself).
    /// </summary>
    public static double ForwardBackward<T>(LossKind loss, double labelSmoothing, double huberDelta, int outputs,
        ReadOnlySpan<T> output, ReadOnlySpan<int> labels, ReadOnlySpan<T> targets, Span<T> grad, int gradientRows = 0)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        long elements = (long)gradientRows * outputs;
        return loss switch
        {
            LossKind.CrossEntropy => SoftmaxCrossEntropy.ForwardBackward(output, labels, outputs, grad, labelSmoothing, gradientRows),
            LossKind.Mse => RegressionLosses.ForwardBackward(RegressionLossKind.Mse, output, targets, grad, gradientElements: elements),
            LossKind.L1 => RegressionLosses.ForwardBackward(RegressionLossKind.L1, output, targets, grad, gradientElements: elements),
            LossKind.Huber => RegressionLosses.ForwardBackward(RegressionLossKind.Huber, output, targets, grad, huberDelta, elements),
            LossKind.BceWithLogits => RegressionLosses.ForwardBackward(RegressionLossKind.BceWithLogits, output, targets, grad, gradientElements: elements),
            _ => throw new ArgumentOutOfRangeException(nameof(loss), loss, $"Unknown loss {(int)loss}."),
        };
    }

    /// <summary>As the general overload, with the loss and its settings from <paramref name="spec"/>.</summary>
    public static double ForwardBackward<T>(ModelSpec spec, ReadOnlySpan<T> output, ReadOnlySpan<int> labels, ReadOnlySpan<T> targets, Span<T> grad)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        ArgumentNullException.ThrowIfNull(spec);
        return ForwardBackward(spec.Loss, spec.LabelSmoothing, spec.HuberDelta, spec.OutputWidth, output, labels, targets, grad);
    }
}
