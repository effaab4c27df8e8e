// The lowered ops of a plan: one record per kernel call, carrying every slot it reads and writes,
// already resolved (which tensor backward saved, which gradient slots a module's incoming and
// outgoing gradients use, where the dropout mask applies). An executor is a flat loop from op to kernel
// with no layout rules of its own; a new op kind is one new record here, one case in each executor.
// Slots of the activation block are [Rows, Cols]; an executor runs them on the (micro-)batch's first rows
// (a BatchNorm's statistics are [2, features], its running buffers slots of the parameter block).
using Backprop.Kernels;

namespace Backprop.Engine.Planning;

/// <summary>
/// One kernel call of a plan. <see cref="Layer"/> is the index of the module it belongs to among those of its kind: a Dense
/// layer's for the dense ops, a LayerNorm's for the LayerNorm ops, a residual block's for the residual ops (−1 for none).
/// </summary>
public abstract record PlanOp(int Layer)
{
    /// <summary>The op's kind, as listings show it.</summary>
    public abstract string Kind { get; }

    /// <inheritdoc />
    public sealed override string ToString() => Layer >= 0 ? $"{Kind}({Layer})" : Kind;
}

/// <summary>Dst = f(Src·Weightᵀ + Bias); PreActivation (when it exists) receives Src·Weightᵀ + Bias.</summary>
public sealed record DenseFwdOp(int Layer, Activation Activation, Slot Src, Slot Weight, Slot Bias, Slot Dst, Slot PreActivation) : PlanOp(Layer)
{
    /// <inheritdoc />
    public override string Kind => "DenseFwd";
}

/// <summary>
/// Dst = f(Src·Weightᵀ + Bias) + Skip: a residual block whose body ends in this Dense layer, the block's add in the GEMM's
/// store. Hidden is the layer's own output slot: it receives f(…) when KeepHidden (backward reads f' from it), PreActivation
/// (when it exists) the pre-activation.
/// </summary>
public sealed record DenseResidualFwdOp(int Layer, Activation Activation, Slot Src, Slot Weight, Slot Bias, Slot Hidden, bool KeepHidden, Slot PreActivation,
    Slot Skip, Slot Dst) : PlanOp(Layer)
{
    /// <inheritdoc />
    public override string Kind => "DenseResidualFwd";
}

/// <summary>Dst = dropout(Src) with probability P, its mask keyed by (seed, step, <see cref="PlanOp.Layer"/>).</summary>
public sealed record DropoutFwdOp(int Layer, double P, Slot Src, Slot Dst) : PlanOp(Layer)
{
    /// <inheritdoc />
    public override string Kind => "DropoutFwd";
}

/// <summary>The loss of Output against the labels (cross-entropy) or Targets, and d(loss)/d(Output) into DiffOutput, in one pass.</summary>
public sealed record LossOp(LossKind Loss, double LabelSmoothing, double HuberDelta, Slot Output, Slot Targets, Slot DiffOutput) : PlanOp(-1)
{
    /// <inheritdoc />
    public override string Kind => "Loss";
}

/// <summary>Diff ← Diff ⊙ f'(Saved), in place: the output layer's activation derivative (nothing to do for the identity).</summary>
public sealed record OutputBwdOp(int Layer, Activation Activation, Slot Saved, Slot Diff) : PlanOp(Layer)
{
    /// <inheritdoc />
    public override string Kind => "OutputBwd";
}

/// <summary>WeightGrad = DiffDstᵀ·Src and BiasGrad = Σ_batch DiffDst, in one pass over DiffDst.</summary>
public sealed record DenseBwdWeightsOp(int Layer, Slot DiffDst, Slot Src, Slot WeightGrad, Slot BiasGrad) : PlanOp(Layer)
{
    /// <inheritdoc />
    public override string Kind => "DenseBwdWeights";
}

/// <summary>
/// DiffSrc = (DiffDst·Weight) ⊙ g'(Saved) ⊙ mask: the gradient of the previous layer's pre-activation, g its activation
/// and mask its dropout (probability PrevDropout, stream <see cref="PlanOp.Layer"/> − 1). Saved does not exist when g is
/// the identity, and PrevDropout is 0 without dropout; for the gradient of the network input (Layer 0) both are so.
/// With Accumulate, DiffSrc already holds a residual block's skip gradient: DiffSrc = (DiffDst·Weight + DiffSrc) ⊙ g'(Saved) ⊙ mask
/// (the block's join in the GEMM's store).
/// </summary>
public sealed record DenseBwdDataOp(int Layer, Slot DiffDst, Slot Weight, Activation PrevActivation, Slot Saved, double PrevDropout, Slot DiffSrc,
    bool Accumulate = false) : PlanOp(Layer)
{
    /// <inheritdoc />
    public override string Kind => "DenseBwdData";
}

/// <summary>One fused optimizer pass over the parameter block (parameters, gradients and state share offsets).</summary>
public sealed record OptimizerUpdateOp() : PlanOp(-1)
{
    /// <inheritdoc />
    public override string Kind => "OptimizerUpdate";
}

/// <summary>Into += From over a whole parameter section (a later micro-batch's gradients added to the sum so far), flagging a non-finite sum.</summary>
public sealed record AccumulateGradientsOp(Slot From, Slot Into) : PlanOp(-1)
{
    /// <inheritdoc />
    public override string Kind => "AccumulateGradients";
}

/// <summary>
/// The derivative the last writer of a Dense layer's output gradient applies: ⊙ f'(Saved) for its activation (Saved does not
/// exist for the identity) and ⊙ mask for its dropout (probability Dropout, stream Layer).
/// </summary>
public readonly record struct Derivative(Activation Activation, Slot Saved, double Dropout, int Layer)
{
    /// <summary>Nothing to apply.</summary>
    public static readonly Derivative None = new(new Activation(ActivationKind.Identity), Slot.None, 0, -1);

    /// <summary>Whether there is anything to apply.</summary>
    public bool Exists => Layer >= 0;
}

/// <summary>
/// Dst = (Src − mean) / sqrt(var + Eps) ⊙ Weight + Bias over each row's features; Stats [rows, 2] receives each row's mean
/// and 1/sqrt(var + Eps) (what backward reads).
/// </summary>
public sealed record LayerNormFwdOp(int Layer, double Eps, Slot Src, Slot Weight, Slot Bias, Slot Dst, Slot Stats) : PlanOp(Layer)
{
    /// <inheritdoc />
    public override string Kind => "LayerNormFwd";
}

/// <summary>
/// WeightGrad = Σ_batch DiffDst ⊙ x̂, BiasGrad = Σ_batch DiffDst, and (when DiffSrc exists) DiffSrc = the gradient of Src
/// (x̂ = (Src − mean) · rstd from Stats), then ⊙ the producer's <see cref="Derivative"/>.
/// </summary>
public sealed record LayerNormBwdOp(int Layer, Slot DiffDst, Slot Src, Slot Weight, Slot Stats, Slot WeightGrad, Slot BiasGrad, Slot DiffSrc, Derivative Derivative) : PlanOp(Layer)
{
    /// <inheritdoc />
    public override string Kind => "LayerNormBwd";
}

/// <summary>Dst = Skip + Body: a residual block's output (Skip is its input, or the projection's output).</summary>
public sealed record ResidualAddOp(int Layer, Slot Skip, Slot Body, Slot Dst) : PlanOp(Layer)
{
    /// <inheritdoc />
    public override string Kind => "ResidualAdd";
}

/// <summary>Dst = (Body + Skip) ⊙ the producer's <see cref="Derivative"/>: a residual block's input gradient from its two paths (Dst may alias Body).</summary>
public sealed record ResidualBwdOp(int Layer, Slot Body, Slot Skip, Slot Dst, Derivative Derivative) : PlanOp(Layer)
{
    /// <inheritdoc />
    public override string Kind => "ResidualBwd";
}

/// <summary>Dst = Src ⊙ the <see cref="Derivative"/> of Dense layer <see cref="PlanOp.Layer"/>: a residual body's output gradient as d(z) of its last layer.</summary>
public sealed record ActivationBwdOp(int Layer, Derivative Derivative, Slot Src, Slot Dst) : PlanOp(Layer)
{
    /// <inheritdoc />
    public override string Kind => "ActivationBwd";
}

/// <summary>
/// Batch normalization of Src over the batch into Dst. Training: the batch's mean and 1/sqrt(var + Eps) per feature into Stats
/// [2, features], and (UpdateRunning) the running statistics moved by Momentum and Tracked incremented; inference: the running
/// statistics normalize (RunningMean, RunningVar and Tracked live in the parameter block's buffer section).
/// </summary>
public sealed record BatchNormFwdOp(int Layer, double Eps, double Momentum, bool Training, bool UpdateRunning, Slot Src, Slot Weight, Slot Bias, Slot Dst, Slot Stats,
    Slot RunningMean, Slot RunningVar, Slot Tracked) : PlanOp(Layer)
{
    /// <inheritdoc />
    public override string Kind => "BatchNormFwd";
}

/// <summary>
/// WeightGrad = Σ_batch DiffDst ⊙ x̂, BiasGrad = Σ_batch DiffDst, and (when DiffSrc exists) DiffSrc, the gradient of Src through
/// the batch statistics, then ⊙ the producer's <see cref="Derivative"/>.
/// </summary>
public sealed record BatchNormBwdOp(int Layer, Slot DiffDst, Slot Src, Slot Weight, Slot Stats, Slot WeightGrad, Slot BiasGrad, Slot DiffSrc, Derivative Derivative) : PlanOp(Layer)
{
    /// <inheritdoc />
    public override string Kind => "BatchNormBwd";
}
