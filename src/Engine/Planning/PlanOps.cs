// The lowered ops of a plan: one record per kernel call, carrying every slot it reads and writes,
// already resolved (which tensor backward saved, which of the two gradient slots a layer's incoming and
// outgoing gradients use, where the dropout mask applies). An executor is a flat loop from op to kernel
// with no layout rules of its own; a new op kind is one new record here, one case in each executor.
// Slots of the activation block are [Rows, Cols]; an executor runs them on the (micro-)batch's first rows.
using Backprop.Kernels;

namespace Backprop.Engine.Planning;

/// <summary>One kernel call of a plan. <see cref="Layer"/> is the spec layer it belongs to (−1 for none).</summary>
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
/// </summary>
public sealed record DenseBwdDataOp(int Layer, Slot DiffDst, Slot Weight, Activation PrevActivation, Slot Saved, double PrevDropout, Slot DiffSrc) : PlanOp(Layer)
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
