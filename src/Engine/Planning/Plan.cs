// The compiled form of a ModelSpec: every tensor's place in one of two native blocks, and the
// ordered kernel calls of a training step. Shapes are checked here, once; a step checks only the
// batch size and the labels.
//
// Parameter block (64-byte aligned, each tensor starts on a 16-float boundary, gaps are zero):
//   [ params: W0 b0 W1 b1 … | grads: same layout | state slot 0: same layout | slot 1 | slot 2 ]
// so the optimizer updates the whole block in one pass (params, grads and state share offsets).
// Activation block, sized for MaxBatch:
//   x [B, in0]; per layer l: h_l [B, units] (activation output), z_l (pre-activation, only when f'
//   needs it), a_l (dropout output, only with dropout); two gradient slots [B, max width] used in
//   turn by backward (d(z_l) and d(z_{l−1}) never need to live longer than one layer); labels or
//   targets.
using Backprop.Engine;

namespace Backprop.Engine.Planning;

/// <summary>A tensor's place in a block: offset and length in elements, and its shape.</summary>
public readonly record struct Slot(long Offset, long Length, int Rows, int Cols)
{
    /// <summary>No slot.</summary>
    public static readonly Slot None = new(-1, 0, 0, 0);
    /// <summary>True when the slot exists.</summary>
    public bool Exists => Offset >= 0;
}

/// <summary>The kinds of step in a plan.</summary>
public enum OpKind
{
    /// <summary>h = f(a_prev·Wᵀ + b) (fused, or GEMM + bias/activation pass on Blas).</summary>
    DenseFwd,
    /// <summary>a = dropout(h).</summary>
    DropoutFwd,
    /// <summary>loss and d(output).</summary>
    Loss,
    /// <summary>d(output) ← mask and f' of the last layer.</summary>
    OutputBwd,
    /// <summary>dW, db of a layer.</summary>
    DenseBwdWeights,
    /// <summary>d(z_{l−1}) = (d(z_l)·W_l) ⊙ mask ⊙ f'_{l−1}.</summary>
    DenseBwdData,
    /// <summary>one fused pass over the parameter block.</summary>
    OptimizerUpdate,
}

/// <summary>One kernel call: its kind and the layer it belongs to.</summary>
public readonly record struct PlanOp(OpKind Kind, int Layer)
{
    /// <inheritdoc />
    public override string ToString() => Layer >= 0 ? $"{Kind}({Layer})" : Kind.ToString();
}

/// <summary>Where one layer's tensors live.</summary>
public sealed record LayerSlots(Slot Weight, Slot Bias, Slot WeightGrad, Slot BiasGrad, Slot Output, Slot PreActivation, Slot DropOutput)
{
    /// <summary>What the next layer reads: the dropout output when there is one, else the activation output.</summary>
    public Slot Next => DropOutput.Exists ? DropOutput : Output;
}

/// <summary>A compiled model: block sizes, slots and the ordered ops of a step.</summary>
public sealed class Plan
{
    private const int Align = 16; // floats per 64 bytes

    /// <summary>The description compiled.</summary>
    public ModelSpec Spec { get; }
    /// <summary>The training options compiled.</summary>
    public TrainingOptions Options { get; }
    /// <summary>Per layer slots.</summary>
    public IReadOnlyList<LayerSlots> Layers { get; }
    /// <summary>Elements of the parameter section (params, and each of grads and state slots, have this length).</summary>
    public long ParameterSection { get; }
    /// <summary>Real parameters (without alignment gaps).</summary>
    public long ParameterCount { get; }
    /// <summary>Optimizer state slots.</summary>
    public int StateSlots { get; }
    /// <summary>Elements of the parameter block: (2 + StateSlots) sections.</summary>
    public long ParameterBlock => ParameterSection * (2 + StateSlots);
    /// <summary>Input slot [MaxBatch, input width] in the activation block.</summary>
    public Slot Input { get; }
    /// <summary>The two gradient slots backward alternates between.</summary>
    public Slot GradA { get; }
    /// <summary>The second gradient slot.</summary>
    public Slot GradB { get; }
    /// <summary>Regression targets [MaxBatch, outputs] (classification keeps labels in a separate int block).</summary>
    public Slot Targets { get; }
    /// <summary>Elements of the activation block.</summary>
    public long ActivationBlock { get; }
    /// <summary>The ordered ops of a training step (what Model.Step executes).</summary>
    public IReadOnlyList<PlanOp> TrainingOps => _trainingOps;
    /// <summary>The ordered ops of an inference pass (what Predict and Evaluate execute).</summary>
    public IReadOnlyList<PlanOp> InferenceOps => _inferenceOps;

    // Arrays, so indexing them through IReadOnlyList in the step allocates nothing.
    private readonly PlanOp[] _trainingOps;
    private readonly PlanOp[] _inferenceOps;

    /// <summary>Compiles <paramref name="spec"/> with <paramref name="options"/>, checking every shape.</summary>
    public Plan(ModelSpec spec, TrainingOptions options)
    {
        spec.Validate();
        options.Validate();
        Spec = spec;
        Options = options;
        int L = spec.Layers.Count;
        int B = options.MaxBatch;
        if (spec.Loss == LossKind.CrossEntropy && spec.Layers[^1].Activation.Kind != Kernels.Cpu.Ops.ActivationKind.Identity)
            throw new ArgumentException($"layer {L - 1} (Dense {spec.Layers[^1].Units}): cross-entropy takes logits, so the last layer's activation must be identity; got {spec.Layers[^1].Activation}.");
        if (spec.Layers[^1].Dropout > 0)
            throw new ArgumentException($"layer {L - 1} (Dense {spec.Layers[^1].Units}): dropout on the output layer feeds noise into the loss; remove it (got p = {spec.Layers[^1].Dropout}).");

        long p = 0;
        Slot Param(int rows, int cols)
        {
            var s = new Slot(p, (long)rows * cols, rows, cols);
            p += Round((long)rows * cols);
            return s;
        }
        var w = new Slot[L];
        var b = new Slot[L];
        for (int l = 0; l < L; l++)
        {
            w[l] = Param(spec.Layers[l].Units, spec.Width(l));
            b[l] = Param(1, spec.Layers[l].Units);
            ParameterCount += w[l].Length + b[l].Length;
        }
        ParameterSection = p;
        StateSlots = options.Optimizer.StateSlots;

        long a = 0;
        Slot Act(int cols)
        {
            var s = new Slot(a, (long)B * cols, B, cols);
            a += Round((long)B * cols);
            return s;
        }
        Input = Act(spec.InputWidth);
        var layers = new LayerSlots[L];
        int maxWidth = spec.InputWidth;
        for (int l = 0; l < L; l++)
        {
            var s = spec.Layers[l];
            maxWidth = Math.Max(maxWidth, s.Units);
            var outSlot = Act(s.Units);
            var pre = s.Activation.GradFromOutput ? Slot.None : Act(s.Units);
            var drop = s.Dropout > 0 ? Act(s.Units) : Slot.None;
            layers[l] = new LayerSlots(w[l], b[l], w[l] with { Offset = w[l].Offset + p }, b[l] with { Offset = b[l].Offset + p }, outSlot, pre, drop);
        }
        GradA = Act(maxWidth);
        GradB = Act(maxWidth);
        Targets = spec.Loss == LossKind.CrossEntropy ? Slot.None : Act(spec.OutputWidth);
        ActivationBlock = a;
        Layers = layers;

        var train = new List<PlanOp>();
        var infer = new List<PlanOp>();
        for (int l = 0; l < L; l++)
        {
            train.Add(new PlanOp(OpKind.DenseFwd, l));
            infer.Add(new PlanOp(OpKind.DenseFwd, l));
            if (spec.Layers[l].Dropout > 0) train.Add(new PlanOp(OpKind.DropoutFwd, l));
        }
        train.Add(new PlanOp(OpKind.Loss, -1));
        train.Add(new PlanOp(OpKind.OutputBwd, L - 1));
        for (int l = L - 1; l >= 0; l--)
        {
            train.Add(new PlanOp(OpKind.DenseBwdWeights, l));
            if (l > 0) train.Add(new PlanOp(OpKind.DenseBwdData, l));
        }
        train.Add(new PlanOp(OpKind.OptimizerUpdate, -1));
        _trainingOps = train.ToArray();
        _inferenceOps = infer.ToArray();
    }

    private static long Round(long n) => (n + Align - 1) / Align * Align;

    /// <summary>A readable listing: blocks, slots and ops.</summary>
    public override string ToString()
    {
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"parameter block: {ParameterBlock} floats ({ParameterCount} parameters, {StateSlots} optimizer state slot(s)); activation block: {ActivationBlock} floats for batch {Options.MaxBatch}");
        for (int l = 0; l < Layers.Count; l++)
        {
            var s = Layers[l];
            sb.AppendLine($"  layer {l}: W[{s.Weight.Rows}x{s.Weight.Cols}]@{s.Weight.Offset} b@{s.Bias.Offset} out@{s.Output.Offset}" +
                          (s.PreActivation.Exists ? $" pre@{s.PreActivation.Offset}" : "") + (s.DropOutput.Exists ? $" drop@{s.DropOutput.Offset}" : ""));
        }
        sb.AppendLine($"  step: {string.Join(" → ", TrainingOps)}");
        return sb.ToString();
    }
}
