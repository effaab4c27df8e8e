// The plan on this CPU, in T = float (training) or double (gradient checks of the very same kernels).
// One 64-byte-aligned native block holds the parameters, their gradients and the optimizer state; a
// second holds the activations and scratch for the largest batch; a third the labels. Run is a flat
// loop from op to kernel: the ops carry their slots, so nothing here knows a layout rule, and a new op
// kind is one more case. TDense picks the dense products (fused kernels or OpenBLAS + passes).
// Every weight gradient is checked for NaN and infinities in the store of its GEMM (db by a scan of its
// few values); a non-finite one stops the step before the update, as a non-finite loss does.
using System.Numerics;
using System.Runtime.InteropServices;
using Backprop.Engine.Planning;
using Backprop.Engine.Training;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cpu.Ops;
using Backprop.Kernels.Cpu.Optim;

namespace Backprop.Engine.Execution;

internal sealed unsafe class CpuExecutor<T, TDense> : IExecutor<T>
    where T : unmanaged, IFloatingPointIeee754<T>
    where TDense : struct, IDenseKernels<T>
{
    private readonly Plan _plan;
    private readonly CpuContext _ctx;
    private T* _params, _acts;
    private int* _labels, _nonFinite;
    // The forward's Wᵀ panels of each dense layer (when TDense reads them): the optimizer pass writes them as it updates W
    // (Optimizer.UpdateAndPack), and any other write of the parameters (WriteParameters) has them repacked whole before
    // the next run. The panels of a layer live at _panelsOf[its weight slot's offset], in one block.
    private readonly PanelMatrix<T>[] _panels = [];
    private readonly Dictionary<long, nint> _panelsOf = [];
    private T* _panelBlock;
    private bool _panelsStale = true;

    /// <summary>Whether Backend.Cpu keeps the forward's weight panels (false repacks W in every forward; for measurements and tests).</summary>
    internal static bool KeepPanels { get; set; } = Environment.GetEnvironmentVariable("BACKPROP_WEIGHT_PANELS") != "0";

    public CpuExecutor(Plan plan, CpuContext ctx)
    {
        _plan = plan;
        _ctx = ctx;
        try
        {
            _params = Allocate<T>(plan.ParameterBlock);
            _acts = Allocate<T>(plan.ActivationBlock);
            _labels = Allocate<int>(plan.Rows);
            _nonFinite = Allocate<int>(1);
            if (TDense.ReadsPanels && KeepPanels && Gemm.PanelWidth<T>(ctx) > 0)
            {
                var weights = DenseWeights(plan);
                long total = 0;
                foreach (var w in weights) total += Gemm.PanelsLength<T>(ctx, w.Rows, w.Cols);
                _panelBlock = Allocate<T>(total);
                _panels = new PanelMatrix<T>[weights.Count];
                long at = 0;
                for (int i = 0; i < weights.Count; i++)
                {
                    var w = weights[i];
                    _panels[i] = new PanelMatrix<T>(_params + w.Offset, w.Rows, w.Cols, w.Cols, _panelBlock + at);
                    _panelsOf[w.Offset] = (nint)(_panelBlock + at);
                    at += Gemm.PanelsLength<T>(ctx, w.Rows, w.Cols);
                }
            }
        }
        catch
        {
            FreeBlocks(); // the caller disposes the context
            throw;
        }
    }

    /// <summary>The weight slots ([units, inputs], rows contiguous) the plan's dense forwards read, by offset.</summary>
    internal static List<Slot> DenseWeights(Plan plan)
    {
        var seen = new SortedDictionary<long, Slot>();
        foreach (var op in plan.TrainingOps.Concat(plan.InferenceOps).Concat(plan.GradientOps).Concat(plan.LossOps))
        {
            var w = op switch { DenseFwdOp f => f.Weight, DenseResidualFwdOp r => r.Weight, _ => default };
            if (w.Length > 0 && w.Length == (long)w.Rows * w.Cols) seen[w.Offset] = w;
        }
        return [.. seen.Values];
    }

    // The panels of the weight slot w, or null (the forward then packs W itself).
    private T* Panels(Slot w) => _panelsOf.TryGetValue(w.Offset, out var p) ? (T*)p : null;

    private static TE* Allocate<TE>(long n) where TE : unmanaged
    {
        var p = (TE*)NativeMemory.AlignedAlloc((nuint)(Math.Max(1, n) * sizeof(TE)), 64);
        new Span<TE>(p, checked((int)Math.Max(1, n))).Clear();
        return p;
    }

    public string? DeviceDescription => null;
    public Span<T> Input => Span(_plan.Input);
    public Span<int> Labels => new(_labels, _plan.Rows);
    public Span<T> Targets => _plan.Targets.Exists ? Span(_plan.Targets) : default;
    public Span<T> Scratch => Span(_plan.GradA);

    private Span<T> Span(Slot s) => new(_acts + s.Offset, checked((int)s.Length));
    private Span<T> Rows(Slot s, int batch) => new(_acts + s.Offset, batch * s.Cols);
    private T* At(Slot s) => s.Exists ? _acts + s.Offset : null;
    private T* Param(Slot s) => _params + s.Offset;

    public GradientReducer? Overlap { private get; set; }

    public RunResult Run(IReadOnlyList<PlanOp> ops, int batch, long step, int rowOffset = 0, int gradientRows = 0)
    {
        double loss = double.NaN;
        ulong seed = _plan.Options.Seed;
        var overlap = Overlap;
        *_nonFinite = 0;
        if (_panelsStale && _panels.Length > 0)
        {
            Gemm.PackPanels<T>(_ctx, _panels);
            _panelsStale = false;
        }
        for (int i = 0; i < ops.Count; i++)
        {
            overlap?.Progress(); // the layers' sums started so far move along between kernels
            switch (ops[i])
            {
                case DenseFwdOp f:
                    TDense.Fwd(_ctx, f.Activation, batch, f.Src.Cols, f.Dst.Cols, At(f.Src), Param(f.Weight), Param(f.Bias), At(f.Dst), At(f.PreActivation), Panels(f.Weight));
                    break;
                case DenseResidualFwdOp f:
                    TDense.FwdResidual(_ctx, f.Activation, batch, f.Src.Cols, f.Dst.Cols, At(f.Src), Param(f.Weight), Param(f.Bias), At(f.Dst), At(f.PreActivation),
                        f.KeepHidden ? At(f.Hidden) : null, At(f.Skip), Panels(f.Weight));
                    break;
                case DropoutFwdOp d:
                    Dropout.Apply<T>(d.P, seed, (ulong)step, (uint)d.Layer, Rows(d.Src, batch), Rows(d.Dst, batch), _ctx.Isa, (long)rowOffset * d.Src.Cols);
                    break;
                case LossOp l:
                    loss = Losses.ForwardBackward<T>(l.Loss, l.LabelSmoothing, l.HuberDelta, l.Output.Cols, Rows(l.Output, batch),
                        new ReadOnlySpan<int>(_labels, batch), l.Targets.Exists ? Rows(l.Targets, batch) : default, Rows(l.DiffOutput, batch), gradientRows);
                    if (!double.IsFinite(loss) && ops[^1] is OptimizerUpdateOp) return new RunResult(loss, GradientsFinite: true);
                    break;
                case OutputBwdOp o:
                    if (o.Activation.Kind != Kernels.ActivationKind.Identity)
                        ActivationDispatch.Backward(_ctx.Isa, o.Activation, At(o.Saved), At(o.Diff), At(o.Diff), batch * o.Diff.Cols);
                    break;
                case DenseBwdWeightsOp w:
                    TDense.BwdWeights(_ctx, batch, w.Src.Cols, w.DiffDst.Cols, At(w.DiffDst), At(w.Src), Param(w.WeightGrad), Param(w.BiasGrad), _nonFinite);
                    // W and b of a layer are adjacent: their gradients are final now, so their sum can start.
                    overlap?.LayerReady((float*)Param(w.WeightGrad), w.BiasGrad.Offset + w.BiasGrad.Length - w.WeightGrad.Offset);
                    break;
                case DenseBwdDataOp d:
                    TDense.BwdData(_ctx, d.PrevActivation, batch, d.DiffSrc.Cols, d.DiffDst.Cols, At(d.DiffDst), Param(d.Weight), At(d.Saved), At(d.DiffSrc), d.Accumulate);
                    if (d.PrevDropout > 0)
                    {
                        var dx = Rows(d.DiffSrc, batch);
                        Dropout.Apply<T>(d.PrevDropout, seed, (ulong)step, (uint)(d.Layer - 1), dx, dx, _ctx.Isa, (long)rowOffset * d.DiffSrc.Cols);
                    }
                    break;
                case LayerNormFwdOp n:
                    LayerNorm.Forward(_ctx, batch, n.Src.Cols, n.Eps, At(n.Src), Param(n.Weight), Param(n.Bias), At(n.Dst), At(n.Stats));
                    break;
                case LayerNormBwdOp n:
                    LayerNorm.Backward(_ctx, batch, n.DiffDst.Cols, At(n.DiffDst), At(n.Src), Param(n.Weight), At(n.Stats), Param(n.WeightGrad), Param(n.BiasGrad), At(n.DiffSrc));
                    NormGradientsDone(n.WeightGrad, n.BiasGrad, n.DiffSrc, n.Derivative, batch, step, rowOffset);
                    break;
                case BatchNormFwdOp n:
                    BatchNorm.Forward(_ctx, n.Training, batch, n.Src.Cols, n.Eps, n.Momentum, At(n.Src), Param(n.Weight), Param(n.Bias), At(n.Dst), At(n.Stats),
                        n.UpdateRunning || !n.Training ? Param(n.RunningMean) : null, Param(n.RunningVar), Param(n.Tracked));
                    break;
                case BatchNormBwdOp n:
                    BatchNorm.Backward(_ctx, batch, n.DiffDst.Cols, At(n.DiffDst), At(n.Src), Param(n.Weight), At(n.Stats), Param(n.WeightGrad), Param(n.BiasGrad), At(n.DiffSrc));
                    NormGradientsDone(n.WeightGrad, n.BiasGrad, n.DiffSrc, n.Derivative, batch, step, rowOffset);
                    break;
                case ResidualAddOp r:
                    Accumulate.Sum(_ctx.Isa, At(r.Dst), At(r.Skip), At(r.Body), (long)batch * r.Dst.Cols);
                    break;
                case ResidualBwdOp r:
                    Accumulate.Sum(_ctx.Isa, At(r.Dst), At(r.Body), At(r.Skip), (long)batch * r.Dst.Cols);
                    ApplyDerivative(r.Derivative, r.Dst, batch, step, rowOffset);
                    break;
                case ActivationBwdOp a:
                    if (a.Derivative.Activation.Kind != Kernels.ActivationKind.Identity)
                        ActivationDispatch.Backward(_ctx.Isa, a.Derivative.Activation, At(a.Derivative.Saved), At(a.Src), At(a.Dst), batch * a.Dst.Cols);
                    else Rows(a.Src, batch).CopyTo(Rows(a.Dst, batch));
                    if (a.Derivative.Dropout > 0) ApplyDerivative(a.Derivative with { Activation = new Kernels.Activation(Kernels.ActivationKind.Identity) }, a.Dst, batch, step, rowOffset);
                    break;
                case AccumulateGradientsOp a:
                    if (!Accumulate.AddInto(_ctx.Isa, _params + a.Into.Offset, _params + a.From.Offset, a.Into.Length)) *_nonFinite = 1;
                    break;
                case OptimizerUpdateOp:
                    if (*_nonFinite != 0) return new RunResult(loss, GradientsFinite: false); // parameters and state stay
                    Update(step);
                    break;
                default:
                    throw new InvalidOperationException($"the CPU executor has no kernel for plan op {ops[i]}.");
            }
        }
        return new RunResult(loss, *_nonFinite == 0);
    }

    // After a norm's backward: its weight and bias gradients checked and handed to the exchange (adjacent: one range), and the
    // input gradient (when made) multiplied by its producer's derivative.
    private void NormGradientsDone(Slot weightGrad, Slot biasGrad, Slot diffSrc, in Derivative d, int batch, long step, int rowOffset)
    {
        if (!Accumulate.AllFinite(_ctx.Isa, Param(weightGrad), weightGrad.Length) || !Accumulate.AllFinite(_ctx.Isa, Param(biasGrad), biasGrad.Length)) *_nonFinite = 1;
        Overlap?.LayerReady((float*)Param(weightGrad), biasGrad.Offset + biasGrad.Length - weightGrad.Offset);
        if (diffSrc.Exists) ApplyDerivative(d, diffSrc, batch, step, rowOffset);
    }

    // Diff ⊙= f'(saved) ⊙ dropout mask of the Dense layer that produced the value Diff is the gradient of.
    private void ApplyDerivative(in Derivative d, Slot diff, int batch, long step, int rowOffset)
    {
        if (!d.Exists) return;
        if (d.Activation.Kind != Kernels.ActivationKind.Identity)
            ActivationDispatch.Backward(_ctx.Isa, d.Activation, At(d.Saved), At(diff), At(diff), batch * diff.Cols);
        if (d.Dropout > 0)
        {
            var dx = Rows(diff, batch);
            Dropout.Apply<T>(d.Dropout, _plan.Options.Seed, (ulong)step, (uint)d.Layer, dx, dx, _ctx.Isa, (long)rowOffset * diff.Cols);
        }
    }

    // The fused optimizer pass over the whole parameter section, with the global-norm scale when clipping by norm.
    private void Update(long t)
    {
        var opt = _plan.Options.Optimizer;
        double lr = _plan.Options.Schedule.At(opt.LearningRate, t - 1);
        long len = _plan.ParameterSection;
        var grads = new ReadOnlySpan<T>(_params + len, checked((int)len));
        double scale = opt.ClipNorm > 0 ? Optimizer.GlobalNormScale(Optimizer.SumOfSquares(grads, opt.ClipValue), opt.ClipNorm) : 1.0;
        int slots = _plan.StateSlots;
        T* s = _params + 2 * len;
        if (_panels.Length > 0)
            Optimizer.UpdateAndPack<T>(_ctx, opt, new OptimizerStep(lr, t, scale), _params, _params + len,
                slots > 0 ? s : null, slots > 1 ? s + len : null, slots > 2 ? s + 2 * len : null, len, _panels);
        else
            Optimizer.Update(_ctx, opt, new OptimizerStep(lr, t, scale), _params, _params + len,
                slots > 0 ? s : null, slots > 1 ? s + len : null, slots > 2 ? s + 2 * len : null, len);
    }

    public void ClearGradients(bool micro) =>
        new Span<T>(_params + (micro ? (2 + _plan.StateSlots) * _plan.ParameterSection : _plan.ParameterSection), checked((int)_plan.ParameterSection)).Clear();

    // Data parallelism runs in float (the model refuses it for double), so the gradient section is float here.
    public void FoldGradients(GradientReducer reducer, int round) => reducer.Fold((float*)(_params + _plan.ParameterSection), round);
    public bool FinishGradients(GradientReducer reducer, bool overlapped) => reducer.Finish((float*)(_params + _plan.ParameterSection), overlapped);

    public ReadOnlySpan<T> Activations(Slot slot, int batch) => Rows(slot, batch);
    public ReadOnlySpan<T> Output(int batch) => Rows(_plan.Output, batch);
    public ReadOnlySpan<T> ReadParameters() => new(_params, checked((int)_plan.ParameterBlock));
    public Span<T> WriteParameters()
    {
        _panelsStale = true; // the caller writes W: the next run repacks the panels from it
        return new(_params, checked((int)_plan.ParameterBlock));
    }

    public IReadOnlyList<string> Listing(IReadOnlyList<PlanOp> ops, int batch) =>
        ops.Select(o => $"{o} {typeof(TDense).Name.Split('`')[0]}<{typeof(T).Name}> batch {batch}").ToArray();

    public void Dispose()
    {
        if (_params == null) return;
        _ctx.Dispose();
        FreeBlocks();
    }

    private void FreeBlocks()
    {
        NativeMemory.AlignedFree(_params);
        NativeMemory.AlignedFree(_acts);
        NativeMemory.AlignedFree(_labels);
        NativeMemory.AlignedFree(_nonFinite);
        NativeMemory.AlignedFree(_panelBlock);
        _params = _acts = _panelBlock = null;
        _labels = _nonFinite = null;
    }
}
