// Elementwise regression losses, mean over all N elements, forward and backward in one pass:
//   MSE:    l = (x − t)²                          dl/dx = 2(x − t) / N
//   L1:     l = |x − t|                           dl/dx = sign(x − t) / N       (sign(0) = 0, as PyTorch)
//   Huber:  l = ½d² for |d| < δ, δ(|d| − ½δ) else  dl/dx = clamp(d, −δ, δ) / N  (d = x − t)
//   BCE with logits (targets t in [0, 1]):
//           l = max(x, 0) − x·t + log(1 + e^−|x|)  dl/dx = (σ(x) − t) / N       (stable for |x| large)
// input, target, grad: same length; grad may alias input.
using System.Numerics;

namespace Backprop.Kernels.Cpu.Ops;

/// <summary>Which elementwise loss to compute.</summary>
public enum RegressionLossKind
{
    /// <summary>Mean squared error.</summary>
    Mse,
    /// <summary>Mean absolute error.</summary>
    L1,
    /// <summary>Huber loss with threshold delta.</summary>
    Huber,
    /// <summary>Binary cross-entropy on logits.</summary>
    BceWithLogits,
}

/// <summary>MSE, L1, Huber and binary cross-entropy with logits.</summary>
public static class RegressionLosses
{
    /// <summary>
    /// Returns the mean loss and writes d(loss)/d(input) into <paramref name="grad"/>, divided by <paramref name="gradientElements"/>
    /// (0: the input's length; a micro-batch of a larger batch passes the whole batch's element count).
    /// </summary>
    public static double ForwardBackward<T>(RegressionLossKind kind, ReadOnlySpan<T> input, ReadOnlySpan<T> target, Span<T> grad, double delta = 1.0, long gradientElements = 0)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = input.Length;
        if (gradientElements != 0 && gradientElements < n)
            throw new ArgumentOutOfRangeException(nameof(gradientElements), gradientElements, $"the gradient's element count must be 0 (the input's) or at least the input's {n}; got {gradientElements}.");
        if (target.Length != n) throw new ArgumentException($"target has {target.Length} elements; input has {n}.", nameof(target));
        if (grad.Length < n) throw new ArgumentException($"grad has {grad.Length} elements; input has {n}.", nameof(grad));
        if (kind == RegressionLossKind.Huber && !(delta > 0))
            throw new ArgumentOutOfRangeException(nameof(delta), delta, $"Huber delta must be positive; got {delta}.");
        if (n == 0) return 0;
        T invN = T.One / T.CreateTruncating(gradientElements == 0 ? n : gradientElements);
        T d0 = T.CreateTruncating(delta);
        T two = T.CreateTruncating(2), half = T.CreateTruncating(0.5);
        double total = 0;
        for (int i = 0; i < n; i++)
        {
            T x = input[i], t = target[i], l, g;
            switch (kind)
            {
                case RegressionLossKind.Mse:
                { T d = x - t; l = d * d; g = two * d; break; }
                case RegressionLossKind.L1:
                { T d = x - t; l = T.Abs(d); g = d > T.Zero ? T.One : d < T.Zero ? -T.One : T.Zero; break; }
                case RegressionLossKind.Huber:
                {
                    T d = x - t, a = T.Abs(d);
                    l = a < d0 ? half * d * d : d0 * (a - half * d0);
                    g = d > d0 ? d0 : d < -d0 ? -d0 : d;
                    break;
                }
                case RegressionLossKind.BceWithLogits:
                {
                    T e = T.Exp(-T.Abs(x));
                    l = T.Max(x, T.Zero) - x * t + T.LogP1(e);
                    T s = x >= T.Zero ? T.One / (T.One + e) : e / (T.One + e);
                    g = s - t;
                    break;
                }
                default: throw new ArgumentOutOfRangeException(nameof(kind), kind, $"Unknown loss kind {(int)kind}.");
            }
            total += double.CreateTruncating(l);
            grad[i] = g * invN;
        }
        return total / n;
    }
}
