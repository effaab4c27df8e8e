// Fused optimizer update: one pass over each parameter tensor reads p, g and the state once and
// writes p and the state. Per element, in order (t = step count from 1, lr from the schedule):
//   g ← clamp(g, −clip_value, clip_value)            (ClipValue > 0)
//   g ← g · norm_scale                                 (global-norm clipping: scale from GlobalNormScale)
//   g ← g + l1·sign(p)                                 (L1 > 0)
//   SGD:     g ← g + wd·p; buf ← (t = 1 ? g : μ·buf + (1−dampening)·g); g ← nesterov ? g + μ·buf : buf; p ← p − lr·g
//   Adam:    g ← g + wd·p; m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²; (AMSGrad: v̂ ← max(v̂, v), used for v)
//            p ← p − (lr/(1−β1^t)) · m / (√v / √(1−β2^t) + ε)
//   AdamW:   p ← p·(1 − lr·wd), then Adam without the L2 term
//   RMSprop: g ← g + wd·p; s ← α·s + (1−α)·g²; (centered: a ← α·a + (1−α)·g, d = √(s − a²) + ε; else d = √s + ε)
//            momentum > 0: b ← μ·b + g/d, p ← p − lr·b; else p ← p − lr·g/d
//   Adagrad: g ← g + wd·p; clr = lr/(1 + (t−1)·lr_decay); s ← s + g²; p ← p − clr·g/(√s + ε)
// These are torch.optim's single-tensor algorithms (see tests/golden/optimizers.json).
using System.Numerics;

namespace Backprop.Kernels.Cpu.Optim;

/// <summary>Per-step scalars of an update: the scheduled learning rate, the step count and the global clipping scale.</summary>
public readonly record struct OptimizerStep(double LearningRate, long Step, double NormScale = 1.0);

/// <summary>Fused optimizer kernels.</summary>
public static class Optimizer
{
    /// <summary>Fills the state arrays with their initial values (zeros; Adagrad's accumulator with its initial value).</summary>
    public static void InitState<T>(OptimizerSettings s, Span<T> state0, Span<T> state1, Span<T> state2)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        state0.Clear();
        state1.Clear();
        state2.Clear();
        if (s.Kind == OptimizerKind.Adagrad) state0.Fill(T.CreateTruncating(s.InitialAccumulatorValue));
    }

    /// <summary>Σ g² over one tensor (after value clipping when it is on), in double; add over tensors for the global norm.</summary>
    public static double SumOfSquares<T>(ReadOnlySpan<T> g, double clipValue) where T : unmanaged, IFloatingPointIeee754<T>
    {
        double s = 0;
        if (clipValue > 0)
        {
            foreach (var v in g) { double x = Math.Clamp(double.CreateTruncating(v), -clipValue, clipValue); s += x * x; }
        }
        else
        {
            foreach (var v in g) { double x = double.CreateTruncating(v); s += x * x; }
        }
        return s;
    }

    /// <summary>PyTorch's clip_grad_norm_ coefficient min(1, max_norm / (norm + 1e-6)); 1 when clipping is off.</summary>
    public static double GlobalNormScale(double sumOfSquares, double maxNorm) =>
        maxNorm > 0 ? Math.Min(1.0, maxNorm / (Math.Sqrt(sumOfSquares) + 1e-6)) : 1.0;

    /// <summary>Updates <paramref name="p"/> and the state in one pass (see the file header for the formulas).</summary>
    public static void Update<T>(OptimizerSettings s, in OptimizerStep step, Span<T> p, ReadOnlySpan<T> g, Span<T> state0, Span<T> state1, Span<T> state2)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = p.Length;
        if (g.Length != n) throw new ArgumentException($"gradient has {g.Length} elements; parameters have {n}.", nameof(g));
        int slots = s.StateSlots;
        if (slots > 0 && state0.Length != n || slots > 1 && state1.Length != n || slots > 2 && state2.Length != n)
            throw new ArgumentException($"{s.Kind} needs {slots} state array(s) of {n} elements; got {state0.Length}, {state1.Length}, {state2.Length}.");
        if (step.Step < 1) throw new ArgumentOutOfRangeException(nameof(step), step.Step, $"step count must start at 1; got {step.Step}.");

        T lr = T.CreateTruncating(step.LearningRate);
        T wd = T.CreateTruncating(s.WeightDecay);
        T l1 = T.CreateTruncating(s.L1);
        T clip = T.CreateTruncating(s.ClipValue);
        bool clipOn = s.ClipValue > 0;
        T scale = T.CreateTruncating(step.NormScale);
        bool scaleOn = step.NormScale != 1.0;
        switch (s.Kind)
        {
            case OptimizerKind.Sgd:
            {
                T mu = T.CreateTruncating(s.Momentum), damp = T.One - T.CreateTruncating(s.Dampening);
                bool first = step.Step == 1;
                for (int i = 0; i < n; i++)
                {
                    T gi = Prepare(g[i], p[i], clip, clipOn, scale, scaleOn, l1) + wd * p[i];
                    if (slots > 0)
                    {
                        T buf = first ? gi : mu * state0[i] + damp * gi;
                        state0[i] = buf;
                        gi = s.Nesterov ? gi + mu * buf : buf;
                    }
                    p[i] -= lr * gi;
                }
                break;
            }
            case OptimizerKind.Adam:
            case OptimizerKind.AdamW:
            {
                bool decoupled = s.Kind == OptimizerKind.AdamW;
                T b1 = T.CreateTruncating(s.Beta1), b2 = T.CreateTruncating(s.Beta2);
                T ob1 = T.One - b1, ob2 = T.One - b2;
                double bc1 = 1 - Math.Pow(s.Beta1, step.Step), bc2 = 1 - Math.Pow(s.Beta2, step.Step);
                T stepSize = T.CreateTruncating(step.LearningRate / bc1);
                T sqrtBc2 = T.CreateTruncating(Math.Sqrt(bc2));
                T eps = T.CreateTruncating(s.Eps);
                T decay = T.One - lr * wd;
                for (int i = 0; i < n; i++)
                {
                    T pi = p[i];
                    T gi = Prepare(g[i], pi, clip, clipOn, scale, scaleOn, l1);
                    if (decoupled) pi *= decay; else gi += wd * pi;
                    T m = b1 * state0[i] + ob1 * gi;
                    T v = b2 * state1[i] + ob2 * gi * gi;
                    state0[i] = m;
                    state1[i] = v;
                    if (s.Amsgrad)
                    {
                        v = T.Max(state2[i], v);
                        state2[i] = v;
                    }
                    p[i] = pi - stepSize * m / (T.Sqrt(v) / sqrtBc2 + eps);
                }
                break;
            }
            case OptimizerKind.RMSprop:
            {
                T a = T.CreateTruncating(s.Alpha), oa = T.One - a, mu = T.CreateTruncating(s.Momentum), eps = T.CreateTruncating(s.Eps);
                bool centered = s.Centered, momentum = s.Momentum > 0;
                Span<T> avgG = centered ? state1 : default;
                Span<T> buf = momentum ? (centered ? state2 : state1) : default;
                for (int i = 0; i < n; i++)
                {
                    T gi = Prepare(g[i], p[i], clip, clipOn, scale, scaleOn, l1) + wd * p[i];
                    T sq = a * state0[i] + oa * gi * gi;
                    state0[i] = sq;
                    T d;
                    if (centered)
                    {
                        T ga = a * avgG[i] + oa * gi;
                        avgG[i] = ga;
                        d = T.Sqrt(sq - ga * ga) + eps;
                    }
                    else d = T.Sqrt(sq) + eps;
                    if (momentum)
                    {
                        T b = mu * buf[i] + gi / d;
                        buf[i] = b;
                        p[i] -= lr * b;
                    }
                    else p[i] -= lr * gi / d;
                }
                break;
            }
            case OptimizerKind.Adagrad:
            {
                T clr = T.CreateTruncating(step.LearningRate / (1 + (step.Step - 1) * s.LrDecay));
                T eps = T.CreateTruncating(s.Eps);
                for (int i = 0; i < n; i++)
                {
                    T gi = Prepare(g[i], p[i], clip, clipOn, scale, scaleOn, l1) + wd * p[i];
                    T sum = state0[i] + gi * gi;
                    state0[i] = sum;
                    p[i] -= clr * gi / (T.Sqrt(sum) + eps);
                }
                break;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(s), s.Kind, $"Unknown optimizer {(int)s.Kind}.");
        }
    }

    private static T Prepare<T>(T g, T p, T clip, bool clipOn, T scale, bool scaleOn, T l1) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (clipOn) g = T.Clamp(g, -clip, clip);
        if (scaleOn) g *= scale;
        if (l1 != T.Zero) g += l1 * (p > T.Zero ? T.One : p < T.Zero ? -T.One : T.Zero);
        return g;
    }
}
