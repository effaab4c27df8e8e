// Fused optimizer update: one pass over the parameter block reads p, g and the state once and writes
// p and the state. Per element, in order (t = step count from 1, lr from the schedule):
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
// These are torch.optim's single-tensor algorithms (see tests/golden/optimizers.json). Each formula is
// written once over ISimd and runs on every rung of the vector ladder with the same bits. Where each
// state array lives is the settings' business: slot k of the state is StateNames[k].
using System.Numerics;
using System.Runtime.Intrinsics;
using Backprop.Kernels.Threading;

namespace Backprop.Kernels.Cpu.Optim;

/// <summary>Per-step scalars of an update: the scheduled learning rate, the step count and the global clipping scale.</summary>
public readonly record struct OptimizerStep(double LearningRate, long Step, double NormScale = 1.0);

/// <summary>Fused optimizer kernels.</summary>
public static unsafe class Optimizer
{
    /// <summary>Fills each state slot with its initial value (<see cref="OptimizerSettings.InitialState"/>: zeros, Adagrad's accumulator value).</summary>
    public static void InitState<T>(OptimizerSettings s, Span<T> state0, Span<T> state1, Span<T> state2)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        state0.Fill(T.CreateTruncating(s.StateSlots > 0 ? s.InitialState(0) : 0));
        state1.Fill(T.CreateTruncating(s.StateSlots > 1 ? s.InitialState(1) : 0));
        state2.Fill(T.CreateTruncating(s.StateSlots > 2 ? s.InitialState(2) : 0));
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

    /// <summary>
    /// Updates <paramref name="p"/> and the state in one pass (see the file header for the formulas); state slot k
    /// is <see cref="OptimizerSettings.StateNames"/>[k]. The vector path is the best up to <paramref name="isa"/>.
    /// </summary>
    public static void Update<T>(OptimizerSettings s, in OptimizerStep step, Span<T> p, ReadOnlySpan<T> g, Span<T> state0, Span<T> state1, Span<T> state2,
        Isa isa = Isa.Avx512)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = p.Length;
        if (g.Length != n) throw new ArgumentException($"gradient has {g.Length} elements; parameters have {n}.", nameof(g));
        int slots = s.StateSlots;
        if (slots > 0 && state0.Length != n || slots > 1 && state1.Length != n || slots > 2 && state2.Length != n)
            throw new ArgumentException($"{s.Kind} needs {slots} state array(s) of {n} elements; got {state0.Length}, {state1.Length}, {state2.Length}.");
        CheckStep(step);
        fixed (T* pp = p) fixed (T* pg = g) fixed (T* p0 = state0) fixed (T* p1 = state1) fixed (T* p2 = state2)
        {
            var job = new UpdateJob<T> { H = new Hyper<T>(s, step), Isa = isa, P = pp, G = pg, S0 = p0, S1 = p1, S2 = p2, N = n };
            job.Execute(0, 1);
        }
    }

    /// <summary>
    /// As the span overload on n elements at raw pointers (state slot k at <paramref name="state0"/>, … ), split over the
    /// threads of <paramref name="ctx"/> in ranges aligned to 64 elements (elementwise, so the result does not depend on
    /// the split), on the context's ISA path. State pointers the optimizer does not use may be null.
    /// </summary>
    public static void Update<T>(CpuContext ctx, OptimizerSettings s, in OptimizerStep step, T* p, T* g, T* state0, T* state1, T* state2, long n)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckStep(step);
        var job = new UpdateJob<T> { H = new Hyper<T>(s, step), Isa = ctx.Isa, P = p, G = g, S0 = state0, S1 = state1, S2 = state2, N = n };
        int parts = n < 16384 ? 1 : Math.Min(ctx.Threads, (int)(n / 8192));
        ctx.Pool.Run(ref job, parts);
    }

    /// <summary>
    /// As <see cref="Update{T}(CpuContext, OptimizerSettings, in OptimizerStep, T*, T*, T*, T*, T*, long)"/>, and in the same pass the
    /// panels of each matrix in <paramref name="panels"/> (weights inside [p, p + n), rows contiguous: Ldb = K; in ascending order,
    /// not overlapping) written from the updated values: each group of a panel's rows is updated, then packed while it is in cache.
    /// The update is elementwise, so p and the state are those of Update bit for bit, and the panels those of
    /// <see cref="Gemm.PackPanels{T}(CpuContext, ReadOnlySpan{PanelMatrix{T}})"/> run after it.
    /// </summary>
    public static void UpdateAndPack<T>(CpuContext ctx, OptimizerSettings s, in OptimizerStep step, T* p, T* g, T* state0, T* state1, T* state2, long n,
        ReadOnlySpan<PanelMatrix<T>> panels)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckStep(step);
        var layout = PanelLayout.Of<T>(ctx);
        long last = 0;
        for (int i = 0; i < panels.Length; i++)
        {
            var m = panels[i];
            long start = m.B - p, end = start + (long)m.N * m.K;
            if (m.Ldb != m.K) throw new ArgumentException($"panel matrix {i}: rows must be contiguous (ldb = k = {m.K}); got ldb {m.Ldb}.", nameof(panels));
            if (start < last || end > n)
                throw new ArgumentException($"panel matrix {i} spans elements [{start}, {end}) of the block; expected them inside [{last}, {n}) (ascending, not overlapping).", nameof(panels));
            last = end;
        }
        fixed (PanelMatrix<T>* pm = panels)
        {
            var job = new UpdatePackJob<T>
            {
                U = new UpdateJob<T> { H = new Hyper<T>(s, step), Isa = ctx.Isa, P = p, G = g, S0 = state0, S1 = state1, S2 = state2, N = n },
                Matrices = pm, Count = panels.Length, Layout = layout,
            };
            int parts = n < 16384 ? 1 : Math.Min(ctx.Threads, (int)(n / 8192));
            ctx.Pool.Run(ref job, parts);
        }
    }

    // Part t of T takes the elements [n·t/T, n·(t+1)/T), each end moved up to the next group boundary of the matrix it falls in;
    // inside a matrix it updates and then packs one group of Width rows at a time.
    private struct UpdatePackJob<T> : IParallelJob where T : unmanaged, IFloatingPointIeee754<T>
    {
        public UpdateJob<T> U;
        public PanelMatrix<T>* Matrices;
        public int Count;
        public PanelLayout Layout;

        public readonly void Execute(int part, int parts)
        {
            long n = U.N, a = Snap(n * part / parts), b = Snap(n * (part + 1) / parts), x = a;
            for (int i = 0; i < Count && x < b; i++)
            {
                var m = Matrices[i];
                long start = m.B - U.P, end = start + (long)m.N * m.K, group = (long)Layout.Width * m.K;
                if (end <= x || group == 0) continue;
                if (start >= b) break;
                if (start > x)
                {
                    Range(x, start);
                    x = start;
                }
                for (long stop = Math.Min(end, b); x < stop;)
                {
                    long ge = Math.Min(end, x + group);
                    Range(x, ge);
                    int r0 = (int)((x - start) / m.K);
                    Gemm.PanelRows(Layout, m.B, m.K, m.K, r0, r0 + (int)((ge - x) / m.K), m.Panels);
                    x = ge;
                }
            }
            if (x < b) Range(x, b);
        }

        private readonly long Snap(long x)
        {
            for (int i = 0; i < Count; i++)
            {
                var m = Matrices[i];
                long start = m.B - U.P, end = start + (long)m.N * m.K, group = (long)Layout.Width * m.K;
                if (x > start && x < end && group > 0) return Math.Min(end, start + (x - start + group - 1) / group * group);
            }
            return x;
        }

        // The update of elements [lo, hi) on this thread.
        private readonly void Range(long lo, long hi)
        {
            var u = U;
            u.P += lo;
            u.G += lo;
            if (u.S0 != null) u.S0 += lo;
            if (u.S1 != null) u.S1 += lo;
            if (u.S2 != null) u.S2 += lo;
            u.N = hi - lo;
            u.Execute(0, 1);
        }
    }

    private static void CheckStep(in OptimizerStep step)
    {
        if (step.Step < 1) throw new ArgumentOutOfRangeException(nameof(step), step.Step, $"step count must start at 1; got {step.Step}.");
    }

    private struct UpdateJob<T> : IParallelJob where T : unmanaged, IFloatingPointIeee754<T>
    {
        public Hyper<T> H;
        public Isa Isa;
        public T* P, G, S0, S1, S2;
        public long N;

        public void Execute(int part, int parts)
        {
            long chunks = (N + 63) / 64;
            long a = Math.Min(N, chunks * part / parts * 64), b = Math.Min(N, chunks * (part + 1) / parts * 64);
            if (b <= a) return;
            // The state slots by role, as the settings lay them out.
            T* s0 = S0, s1 = S1, s2 = S2;
            T* Slot(int k) => k < 0 ? null : (k == 0 ? s0 : k == 1 ? s1 : s2) + a;
            nint n = (nint)(b - a);
            switch (H.Kind)
            {
                case OptimizerKind.Sgd:
                    Run(new SgdFormula<T> { H = H, P = P + a, G = G + a, Buf = Slot(H.SlotA) }, n);
                    break;
                case OptimizerKind.Adam:
                case OptimizerKind.AdamW:
                    Run(new AdamFormula<T> { H = H, P = P + a, G = G + a, M = Slot(H.SlotA), V = Slot(H.SlotB), VMax = Slot(H.SlotC) }, n);
                    break;
                case OptimizerKind.RMSprop:
                    Run(new RmsPropFormula<T> { H = H, P = P + a, G = G + a, Sq = Slot(H.SlotA), Avg = Slot(H.SlotB), Buf = Slot(H.SlotC) }, n);
                    break;
                case OptimizerKind.Adagrad:
                    Run(new AdagradFormula<T> { H = H, P = P + a, G = G + a, Sum = Slot(H.SlotA) }, n);
                    break;
                default:
                    throw new InvalidOperationException($"Unknown optimizer {(int)H.Kind}.");
            }
        }

        private readonly void Run<TFormula>(TFormula formula, nint n) where TFormula : struct, IFormula<T>
        {
            var rungs = new Rungs<T, TFormula> { Formula = formula };
            VectorLadder.Run<T, Rungs<T, TFormula>>(Isa, ref rungs, n);
        }
    }

    /// <summary>
    /// The settings and the step's scalars as an unmanaged value (what a parallel job can carry), with the state slots by
    /// role: SGD A = momentum_buffer; Adam A = exp_avg, B = exp_avg_sq, C = max_exp_avg_sq; RMSprop A = square_avg,
    /// B = grad_avg, C = momentum_buffer; Adagrad A = sum (−1: not kept).
    /// </summary>
    private readonly struct Hyper<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public readonly OptimizerKind Kind;
        public readonly int SlotA, SlotB, SlotC;
        public readonly bool ClipOn, ScaleOn, L1On, First, Nesterov, Decoupled;
        public readonly T Lr, Wd, L1, Clip, Scale, Mu, Damp, B1, B2, Ob1, Ob2, StepSize, SqrtBc2, Eps, Decay, Alpha, OneMinusAlpha;

        public Hyper(OptimizerSettings s, in OptimizerStep step)
        {
            Kind = s.Kind;
            SlotA = SlotB = SlotC = -1;
            Lr = T.CreateTruncating(step.LearningRate);
            Wd = T.CreateTruncating(s.WeightDecay);
            L1 = T.CreateTruncating(s.L1);
            L1On = s.L1 != 0;
            Clip = T.CreateTruncating(s.ClipValue);
            ClipOn = s.ClipValue > 0;
            Scale = T.CreateTruncating(step.NormScale);
            ScaleOn = step.NormScale != 1.0;
            First = step.Step == 1;
            switch (s)
            {
                case Sgd sgd:
                    SlotA = sgd.SlotOf(Sgd.MomentumBuffer);
                    Mu = T.CreateTruncating(sgd.Momentum);
                    Damp = T.CreateTruncating(1 - sgd.Dampening); // 1 − x in double, as torch.optim computes its scalars in Python
                    Nesterov = sgd.Nesterov;
                    break;
                case Adam adam:
                    (SlotA, SlotB, SlotC) = (adam.SlotOf(Adam.ExpAvg), adam.SlotOf(Adam.ExpAvgSq), adam.SlotOf(Adam.MaxExpAvgSq));
                    Decoupled = adam is AdamW;
                    B1 = T.CreateTruncating(adam.Beta1);
                    B2 = T.CreateTruncating(adam.Beta2);
                    Ob1 = T.CreateTruncating(1 - adam.Beta1);
                    Ob2 = T.CreateTruncating(1 - adam.Beta2);
                    StepSize = T.CreateTruncating(adam.StepSize(step.LearningRate, step.Step));
                    SqrtBc2 = T.CreateTruncating(adam.SqrtBiasCorrection2(step.Step));
                    Eps = T.CreateTruncating(adam.Eps);
                    Decay = T.CreateTruncating(1 - step.LearningRate * s.WeightDecay);
                    break;
                case RmsProp rms:
                    (SlotA, SlotB, SlotC) = (rms.SlotOf(RmsProp.SquareAvg), rms.SlotOf(RmsProp.GradAvg), rms.SlotOf(RmsProp.MomentumBuffer));
                    Alpha = T.CreateTruncating(rms.Alpha);
                    OneMinusAlpha = T.CreateTruncating(1 - rms.Alpha);
                    Mu = T.CreateTruncating(rms.Momentum);
                    Eps = T.CreateTruncating(rms.Eps);
                    break;
                case Adagrad ada:
                    SlotA = ada.SlotOf(Adagrad.Sum);
                    StepSize = T.CreateTruncating(ada.DecayedLearningRate(step.LearningRate, step.Step));
                    Eps = T.CreateTruncating(ada.Eps);
                    break;
                default:
                    throw new ArgumentOutOfRangeException(nameof(s), s.Kind, $"Unknown optimizer {s.GetType().Name}.");
            }
        }
    }

    /// <summary>An update formula written once over ISimd: elements [i, i + width of TV).</summary>
    private interface IFormula<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        void Run<TV, S>(nint i) where S : ISimd<TV, T>;
    }

    /// <summary>A formula on every rung of the vector ladder.</summary>
    private struct Rungs<T, TFormula> : IVectorKernel<T>
        where T : unmanaged, IFloatingPointIeee754<T>
        where TFormula : struct, IFormula<T>
    {
        public TFormula Formula;
        public void Step512(nint i) => Formula.Run<Vector512<T>, Simd512<T>>(i);
        public void Step256(nint i) => Formula.Run<Vector256<T>, Simd256<T>>(i);
        public void Step128(nint i) => Formula.Run<Vector128<T>, Simd128<T>>(i);
        public void Step1(nint i) => Formula.Run<T, Simd1<T>>(i);
    }

    /// <summary>The extensions every algorithm applies first: value clipping, the global-norm scale, L1.</summary>
    private static TV Prepare<TV, S, T>(in Hyper<T> h, TV g, TV p) where S : ISimd<TV, T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (h.ClipOn) g = S.Clamp(g, S.Splat(-h.Clip), S.Splat(h.Clip));
        if (h.ScaleOn) g = S.Mul(g, S.Splat(h.Scale));
        if (h.L1On) g = S.Add(g, S.Mul(S.Splat(h.L1), S.Sign(p)));
        return g;
    }

    private struct SgdFormula<T> : IFormula<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public Hyper<T> H;
        public T* P, G, Buf;

        public readonly void Run<TV, S>(nint i) where S : ISimd<TV, T>
        {
            TV p = S.Load(P + i);
            TV g = S.Add(Prepare<TV, S, T>(H, S.Load(G + i), p), S.Mul(S.Splat(H.Wd), p));
            if (Buf != null)
            {
                TV buf = H.First ? g : S.Add(S.Mul(S.Splat(H.Mu), S.Load(Buf + i)), S.Mul(S.Splat(H.Damp), g));
                S.Store(buf, Buf + i);
                g = H.Nesterov ? S.Add(g, S.Mul(S.Splat(H.Mu), buf)) : buf;
            }
            S.Store(S.Sub(p, S.Mul(S.Splat(H.Lr), g)), P + i);
        }
    }

    private struct AdamFormula<T> : IFormula<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public Hyper<T> H;
        public T* P, G, M, V, VMax;

        public readonly void Run<TV, S>(nint i) where S : ISimd<TV, T>
        {
            TV p = S.Load(P + i);
            TV g = Prepare<TV, S, T>(H, S.Load(G + i), p);
            if (H.Decoupled) p = S.Mul(p, S.Splat(H.Decay));
            else g = S.Add(g, S.Mul(S.Splat(H.Wd), p));
            TV m = S.Add(S.Mul(S.Splat(H.B1), S.Load(M + i)), S.Mul(S.Splat(H.Ob1), g));
            TV v = S.Add(S.Mul(S.Splat(H.B2), S.Load(V + i)), S.Mul(S.Mul(S.Splat(H.Ob2), g), g));
            S.Store(m, M + i);
            S.Store(v, V + i);
            if (VMax != null)
            {
                v = S.Max(S.Load(VMax + i), v);
                S.Store(v, VMax + i);
            }
            S.Store(S.Sub(p, S.Div(S.Mul(S.Splat(H.StepSize), m), S.Add(S.Div(S.Sqrt(v), S.Splat(H.SqrtBc2)), S.Splat(H.Eps)))), P + i);
        }
    }

    private struct RmsPropFormula<T> : IFormula<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public Hyper<T> H;
        public T* P, G, Sq, Avg, Buf;

        public readonly void Run<TV, S>(nint i) where S : ISimd<TV, T>
        {
            TV p = S.Load(P + i);
            TV g = S.Add(Prepare<TV, S, T>(H, S.Load(G + i), p), S.Mul(S.Splat(H.Wd), p));
            TV sq = S.Add(S.Mul(S.Splat(H.Alpha), S.Load(Sq + i)), S.Mul(S.Mul(S.Splat(H.OneMinusAlpha), g), g));
            S.Store(sq, Sq + i);
            TV d;
            if (Avg != null)
            {
                TV ga = S.Add(S.Mul(S.Splat(H.Alpha), S.Load(Avg + i)), S.Mul(S.Splat(H.OneMinusAlpha), g));
                S.Store(ga, Avg + i);
                d = S.Add(S.Sqrt(S.Sub(sq, S.Mul(ga, ga))), S.Splat(H.Eps));
            }
            else d = S.Add(S.Sqrt(sq), S.Splat(H.Eps));
            if (Buf != null)
            {
                TV b = S.Add(S.Mul(S.Splat(H.Mu), S.Load(Buf + i)), S.Div(g, d));
                S.Store(b, Buf + i);
                S.Store(S.Sub(p, S.Mul(S.Splat(H.Lr), b)), P + i);
            }
            else S.Store(S.Sub(p, S.Div(S.Mul(S.Splat(H.Lr), g), d)), P + i);
        }
    }

    private struct AdagradFormula<T> : IFormula<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public Hyper<T> H;
        public T* P, G, Sum;

        public readonly void Run<TV, S>(nint i) where S : ISimd<TV, T>
        {
            TV p = S.Load(P + i);
            TV g = S.Add(Prepare<TV, S, T>(H, S.Load(G + i), p), S.Mul(S.Splat(H.Wd), p));
            TV sum = S.Add(S.Load(Sum + i), S.Mul(g, g));
            S.Store(sum, Sum + i);
            S.Store(S.Sub(p, S.Div(S.Mul(S.Splat(H.StepSize), g), S.Add(S.Sqrt(sum), S.Splat(H.Eps)))), P + i);
        }
    }
}
