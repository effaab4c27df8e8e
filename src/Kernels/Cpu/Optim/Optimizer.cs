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
using System.Runtime.Intrinsics;
using Backprop.Kernels.Cpu.Gemm;
using Backprop.Kernels.Threading;

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
        => UpdateCore(new Hyper(s), step, p, g, state0, state1, state2);

    /// <summary>
    /// As <see cref="Update{T}(OptimizerSettings, in OptimizerStep, Span{T}, ReadOnlySpan{T}, Span{T}, Span{T}, Span{T})"/> on
    /// n elements at raw pointers, split over the threads of <paramref name="ctx"/> in ranges aligned to 64 elements (elementwise,
    /// so the result does not depend on the split). State pointers the optimizer does not use may be null.
    /// </summary>
    public static unsafe void Update<T>(GemmContext ctx, OptimizerSettings s, in OptimizerStep step, T* p, T* g, T* state0, T* state1, T* state2, long n)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var job = new UpdateJob<T> { H = new Hyper(s), Step = step, P = p, G = g, S0 = state0, S1 = state1, S2 = state2, N = n };
        int parts = n < 16384 ? 1 : Math.Min(ctx.Threads, (int)(n / 8192));
        ctx.Pool.Run(ref job, parts);
    }

    private unsafe struct UpdateJob<T> : IParallelJob where T : unmanaged, IFloatingPointIeee754<T>
    {
        public Hyper H;
        public OptimizerStep Step;
        public T* P, G, S0, S1, S2;
        public long N;

        public void Execute(int part, int parts)
        {
            long chunks = (N + 63) / 64;
            long a = Math.Min(N, chunks * part / parts * 64), b = Math.Min(N, chunks * (part + 1) / parts * 64);
            int len = checked((int)(b - a));
            if (len == 0) return;
            int slots = H.StateSlots;
            UpdateCore(H, Step, new Span<T>(P + a, len), new ReadOnlySpan<T>(G + a, len),
                slots > 0 ? new Span<T>(S0 + a, len) : default, slots > 1 ? new Span<T>(S1 + a, len) : default, slots > 2 ? new Span<T>(S2 + a, len) : default);
        }
    }

    /// <summary>The hyper-parameters as an unmanaged value (what a parallel job can carry).</summary>
    private readonly struct Hyper(OptimizerSettings s)
    {
        public OptimizerKind Kind { get; } = s.Kind;
        public double Momentum { get; } = s.Momentum;
        public double Dampening { get; } = s.Dampening;
        public bool Nesterov { get; } = s.Nesterov;
        public double Beta1 { get; } = s.Beta1;
        public double Beta2 { get; } = s.Beta2;
        public double Eps { get; } = s.Eps;
        public double WeightDecay { get; } = s.WeightDecay;
        public bool Amsgrad { get; } = s.Amsgrad;
        public double Alpha { get; } = s.Alpha;
        public bool Centered { get; } = s.Centered;
        public double LrDecay { get; } = s.LrDecay;
        public double L1 { get; } = s.L1;
        public double ClipValue { get; } = s.ClipValue;
        public int StateSlots { get; } = s.StateSlots;
    }

    private static void UpdateCore<T>(in Hyper s, in OptimizerStep step, Span<T> p, ReadOnlySpan<T> g, Span<T> state0, Span<T> state1, Span<T> state2)
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
                int i = 0;
                if (CpuIsa.Active >= Isa.Avx512 && !clipOn && s.L1 == 0)
                {
                    var vlr = Vector512.Create(lr); var vwd = Vector512.Create(wd); var vmu = Vector512.Create(mu); var vdamp = Vector512.Create(damp); var vs = Vector512.Create(scale);
                    for (; i + Vector512<T>.Count <= n; i += Vector512<T>.Count)
                    {
                        var pi = Vector512.Create(p.Slice(i, Vector512<T>.Count));
                        var gi = Vector512.Create(g.Slice(i, Vector512<T>.Count));
                        if (scaleOn) gi *= vs;
                        gi += vwd * pi;
                        if (slots > 0)
                        {
                            var buf = first ? gi : vmu * Vector512.Create(state0.Slice(i, Vector512<T>.Count)) + vdamp * gi;
                            buf.CopyTo(state0.Slice(i));
                            gi = s.Nesterov ? gi + vmu * buf : buf;
                        }
                        (pi - vlr * gi).CopyTo(p.Slice(i));
                    }
                }
                for (; i < n; i++)
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
                T stepSize = T.CreateTruncating(AdamStepSize(step.LearningRate, s.Beta1, step.Step));
                T sqrtBc2 = T.CreateTruncating(AdamSqrtBiasCorrection2(s.Beta2, step.Step));
                T eps = T.CreateTruncating(s.Eps);
                T decay = T.One - lr * wd;
                int i = 0;
                if (CpuIsa.Active >= Isa.Avx512 && !clipOn && s.L1 == 0)
                {
                    int vc = Vector512<T>.Count;
                    var vb1 = Vector512.Create(b1); var vb2 = Vector512.Create(b2); var vob1 = Vector512.Create(ob1); var vob2 = Vector512.Create(ob2);
                    var vstep = Vector512.Create(stepSize); var vsq = Vector512.Create(sqrtBc2); var veps = Vector512.Create(eps);
                    var vwd = Vector512.Create(wd); var vdecay = Vector512.Create(decay); var vs = Vector512.Create(scale);
                    for (; i + vc <= n; i += vc)
                    {
                        var pi = Vector512.Create(p.Slice(i, vc));
                        var gi = Vector512.Create(g.Slice(i, vc));
                        if (scaleOn) gi *= vs;
                        if (decoupled) pi *= vdecay; else gi += vwd * pi;
                        var m = vb1 * Vector512.Create(state0.Slice(i, vc)) + vob1 * gi;
                        var v = vb2 * Vector512.Create(state1.Slice(i, vc)) + vob2 * gi * gi;
                        m.CopyTo(state0.Slice(i));
                        v.CopyTo(state1.Slice(i));
                        if (s.Amsgrad)
                        {
                            v = Vector512.Max(Vector512.Create(state2.Slice(i, vc)), v);
                            v.CopyTo(state2.Slice(i));
                        }
                        (pi - vstep * m / (Vector512.Sqrt(v) / vsq + veps)).CopyTo(p.Slice(i));
                    }
                }
                for (; i < n; i++)
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
                T clr = T.CreateTruncating(AdagradLearningRate(step.LearningRate, s.LrDecay, step.Step));
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

    /// <summary>Adam/AdamW step size at step <paramref name="t"/> (1-based): lr / (1 − β1^t).</summary>
    public static double AdamStepSize(double lr, double beta1, long t) => lr / (1 - Math.Pow(beta1, t));

    /// <summary>Adam/AdamW √(1 − β2^t) at step <paramref name="t"/> (1-based).</summary>
    public static double AdamSqrtBiasCorrection2(double beta2, long t) => Math.Sqrt(1 - Math.Pow(beta2, t));

    /// <summary>Adagrad's decayed learning rate at step <paramref name="t"/> (1-based): lr / (1 + (t − 1)·lr_decay).</summary>
    public static double AdagradLearningRate(double lr, double lrDecay, long t) => lr / (1 + (t - 1) * lrDecay);

    private static T Prepare<T>(T g, T p, T clip, bool clipOn, T scale, bool scaleOn, T l1) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (clipOn) g = T.Clamp(g, -clip, clip);
        if (scaleOn) g *= scale;
        if (l1 != T.Zero) g += l1 * (p > T.Zero ? T.One : p < T.Zero ? -T.One : T.Zero);
        return g;
    }
}
