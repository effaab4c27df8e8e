// The compiled form of a ModelSpec: every tensor's place in one of two blocks, and the lowered op
// lists of a training step, a gradient pass, a loss pass and an inference pass. Shapes and every
// model rule are checked here (and in ModelSpec.Validate), once; a step checks only the batch size and
// the labels. The rules of which tensor backward keeps and which gradient slot each op uses are applied
// here and nowhere else: executors run the ops as they come.
//
// Parameter block (64-byte aligned, each tensor starts on a 16-element boundary, gaps are zero):
//   [ params: W0 b0 W1 b1 … | grads: same layout | state slot 0: same layout | slot 1 | slot 2 | micro grads ]
// so the optimizer updates the whole block in one pass (params, grads and state share offsets). With
// gradient accumulation a last section receives each later micro-batch's gradients, added into the
// grads section in micro-batch order; across N processes each section is a multiple of 16·N elements,
// so it splits into N equal, aligned chunks for the exchange.
// Activation block, sized for one micro-batch (MaxBatch / (Accumulate · processes), rounded up):
//   x [B, in0]; per layer l: h_l [B, units] (activation output), z_l (pre-activation, only when f'
//   needs it), a_l (dropout output, only with dropout); two gradient slots [B, max width] used in
//   turn by backward (d(z_l) and d(z_{l−1}) never need to live longer than one layer); targets.
using Backprop.Kernels;

namespace Backprop.Engine.Planning;

/// <summary>A tensor's place in a block: offset and length in elements, and its shape.</summary>
public readonly record struct Slot(long Offset, long Length, int Rows, int Cols)
{
    /// <summary>No slot.</summary>
    public static readonly Slot None = new(-1, 0, 0, 0);
    /// <summary>True when the slot exists.</summary>
    public bool Exists => Offset >= 0;
}

/// <summary>Where one layer's tensors live.</summary>
public sealed record LayerSlots(Slot Weight, Slot Bias, Slot WeightGrad, Slot BiasGrad, Slot Output, Slot PreActivation, Slot DropOutput)
{
    /// <summary>What the next layer reads in training: the dropout output when there is one, else the activation output.</summary>
    public Slot Next => DropOutput.Exists ? DropOutput : Output;
}

/// <summary>A compiled model: block sizes, slots and the lowered ops of each pass.</summary>
public sealed class Plan
{
    private const int Align = 16; // elements per 64 bytes of float

    /// <summary>The description compiled.</summary>
    public ModelSpec Spec { get; }
    /// <summary>The training options compiled.</summary>
    public TrainingOptions Options { get; }
    /// <summary>Per layer slots.</summary>
    public IReadOnlyList<LayerSlots> Layers { get; }
    /// <summary>Elements of the parameter section (params, and each of grads and state slots, have this length).</summary>
    public long ParameterSection { get; }
    /// <summary>
    /// Elements of the parameter section without the padding to 16·processes: where the last tensor ends, the same for every
    /// world size (a reduction over the section whose blocking depends on its length, as the Cuda norm's, runs over this).
    /// </summary>
    public long ParameterExtent { get; }
    /// <summary>Real parameters (without alignment gaps).</summary>
    public long ParameterCount { get; }
    /// <summary>Optimizer state slots.</summary>
    public int StateSlots { get; }
    /// <summary>Elements of the parameter block: (2 + StateSlots) sections, one more with gradient accumulation.</summary>
    public long ParameterBlock => ParameterSection * (2 + StateSlots + (MicroGradients ? 1 : 0));
    /// <summary>Whether the block has a section for later micro-batches' gradients (gradient accumulation).</summary>
    public bool MicroGradients { get; }
    /// <summary>Rows of the activation block: the largest micro-batch (MaxBatch without accumulation or processes).</summary>
    public int Rows { get; }
    /// <summary>Micro-batches per step over all processes (Accumulate × processes).</summary>
    public int MicroBatches { get; }
    /// <summary>Whether a step splits its batch (accumulation or several processes).</summary>
    public bool SplitsSteps => MicroBatches > 1;
    /// <summary>A micro-batch's forward, loss and backward, its gradients into the grads section (the first of a step).</summary>
    public IReadOnlyList<PlanOp> MicroFirstOps { get; }
    /// <summary>A later micro-batch: forward, loss, backward into the micro section, then added into the grads section (empty without accumulation).</summary>
    public IReadOnlyList<PlanOp> MicroNextOps { get; }
    /// <summary>The micro section added into the grads section alone (an empty micro-batch's zeros; empty without accumulation).</summary>
    public IReadOnlyList<PlanOp> AccumulateOps { get; }
    /// <summary>The optimizer pass alone, over the summed gradients.</summary>
    public IReadOnlyList<PlanOp> UpdateOps { get; }
    /// <summary>Input slot [MaxBatch, input width] in the activation block.</summary>
    public Slot Input { get; }
    /// <summary>The network output in inference (the last layer's activation output).</summary>
    public Slot Output => Layers[^1].Output;
    /// <summary>The two gradient slots backward alternates between.</summary>
    public Slot GradA { get; }
    /// <summary>The second gradient slot.</summary>
    public Slot GradB { get; }
    /// <summary>Where the gradient pass leaves d(loss)/d(x) [MaxBatch, input width].</summary>
    public Slot InputGradient { get; }
    /// <summary>Regression targets [MaxBatch, outputs] (classification keeps labels in a separate int block).</summary>
    public Slot Targets { get; }
    /// <summary>Elements of the activation block.</summary>
    public long ActivationBlock { get; }
    /// <summary>Whether every layer's pre-activation is kept (a diagnostic plan, e.g. for gradient checks near kinks).</summary>
    public bool KeepsPreActivations { get; }
    /// <summary>A training step: forward with dropout, loss, backward, update (what Model.Step executes).</summary>
    public IReadOnlyList<PlanOp> TrainingOps { get; }
    /// <summary>The loss and every gradient, the network input's included, without an update (Model.Gradients).</summary>
    public IReadOnlyList<PlanOp> GradientOps { get; }
    /// <summary>Forward with dropout and the loss (Model.Loss: what finite differences evaluate).</summary>
    public IReadOnlyList<PlanOp> LossOps { get; }
    /// <summary>Forward without dropout (what Predict and Evaluate execute).</summary>
    public IReadOnlyList<PlanOp> InferenceOps { get; }
    // Each list is one read-only wrapper over an array, made once: indexing it allocates nothing, and nobody can edit the
    // ops (their slots are trusted by the executors).

    /// <summary>Compiles <paramref name="spec"/> with <paramref name="options"/>, checking every shape.</summary>
    public Plan(ModelSpec spec, TrainingOptions options) : this(spec, options, keepPreActivations: false) { }

    /// <summary>
    /// Compiles <paramref name="spec"/> with <paramref name="options"/>; with <paramref name="keepPreActivations"/> every
    /// layer keeps its pre-activation (results are the same; it costs a slot and a store per layer).
    /// </summary>
    public Plan(ModelSpec spec, TrainingOptions options, bool keepPreActivations)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(options);
        spec.Validate();
        options.Validate();
        Spec = spec;
        Options = options;
        KeepsPreActivations = keepPreActivations;
        int L = spec.Layers.Count;
        int world = options.Distributed?.Collectives.Size ?? 1;
        MicroBatches = options.Accumulate * world;
        int B = Rows = (options.MaxBatch + MicroBatches - 1) / MicroBatches;
        // Across processes in deterministic mode every micro-batch's gradients go to the exchange, not to a local sum.
        MicroGradients = options.Accumulate > 1 && (world == 1 || options.Distributed!.Mode == Training.ReductionMode.Fast);
        if (spec.Loss == LossKind.CrossEntropy && spec.Layers[^1].Activation.Kind != ActivationKind.Identity)
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
        ParameterExtent = p;
        long chunk = (long)Align * world;
        ParameterSection = (p + chunk - 1) / chunk * chunk;
        StateSlots = options.Optimizer.StateSlots;
        if (ParameterBlock > int.MaxValue)
            throw new ArgumentException($"the model {Describe(spec)} has {ParameterCount:N0} parameters; with gradients and {StateSlots} optimizer state slot(s) that is " +
                $"{ParameterBlock:N0} elements, more than a block holds ({int.MaxValue:N0}): use narrower layers.");

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
            var pre = s.Activation.GradFromOutput && !keepPreActivations ? Slot.None : Act(s.Units);
            var drop = s.Dropout > 0 ? Act(s.Units) : Slot.None;
            layers[l] = new LayerSlots(w[l], b[l], w[l] with { Offset = w[l].Offset + ParameterSection }, b[l] with { Offset = b[l].Offset + ParameterSection }, outSlot, pre, drop);
        }
        GradA = Act(maxWidth);
        GradB = Act(maxWidth);
        Targets = spec.Loss == LossKind.CrossEntropy ? Slot.None : Act(spec.OutputWidth);
        ActivationBlock = a;
        if (ActivationBlock > int.MaxValue)
            throw new ArgumentException($"the model {Describe(spec)} at batch {B} needs {ActivationBlock:N0} activation elements, more than a block holds " +
                $"({int.MaxValue:N0}): use a smaller batch or narrower layers.");
        Layers = layers;
        InputGradient = Width(L % 2 == 0 ? GradA : GradB, spec.InputWidth);

        PlanOp[] loss = [.. Forward(training: true), Loss()];
        InferenceOps = Array.AsReadOnly(Forward(training: false).ToArray());
        LossOps = Array.AsReadOnly(loss);
        TrainingOps = Array.AsReadOnly<PlanOp>([.. loss, .. Backward(inputGradient: false), new OptimizerUpdateOp()]);
        MicroFirstOps = Array.AsReadOnly<PlanOp>([.. loss, .. Backward(inputGradient: false)]);
        long micro = (2 + StateSlots) * ParameterSection;
        MicroNextOps = Array.AsReadOnly<PlanOp>(MicroGradients
            ? [.. loss, .. Backward(inputGradient: false, gradientShift: micro - ParameterSection),
                new AccumulateGradientsOp(new Slot(micro, ParameterSection, 1, 0), new Slot(ParameterSection, ParameterSection, 1, 0))]
            : []);
        UpdateOps = Array.AsReadOnly<PlanOp>([new OptimizerUpdateOp()]);
        AccumulateOps = Array.AsReadOnly<PlanOp>(MicroGradients ? [MicroNextOps[^1]] : []);
        GradientOps = Array.AsReadOnly<PlanOp>([.. loss, .. Backward(inputGradient: true)]);
    }

    // The slot backward reads f' from: the output when f' is cheaper from it, else the pre-activation.
    private Slot Saved(int l) => Spec.Layers[l].Activation.GradFromOutput ? Layers[l].Output : Layers[l].PreActivation;

    // What layer l reads: the network input, or the previous layer's output (after dropout in training).
    private Slot LayerInput(int l, bool training) => l == 0 ? Input : training ? Layers[l - 1].Next : Layers[l - 1].Output;

    // A gradient slot used at a narrower width: same place, [MaxBatch, cols].
    private static Slot Width(Slot s, int cols) => s with { Length = (long)s.Rows * cols, Cols = cols };

    private IEnumerable<PlanOp> Forward(bool training)
    {
        for (int l = 0; l < Layers.Count; l++)
        {
            var s = Spec.Layers[l];
            var slots = Layers[l];
            yield return new DenseFwdOp(l, s.Activation, LayerInput(l, training), slots.Weight, slots.Bias, slots.Output, slots.PreActivation);
            if (training && s.Dropout > 0) yield return new DropoutFwdOp(l, s.Dropout, slots.Output, slots.DropOutput);
        }
    }

    private LossOp Loss() =>
        new(Spec.Loss, Spec.LabelSmoothing, Spec.HuberDelta, Layers[^1].Next, Targets, Width(GradA, Spec.OutputWidth));

    // Backward: the two gradient slots alternate after each BwdData; layer 0 computes d(x) only when asked.
    // gradientShift moves the weight and bias gradients to another section (a later micro-batch's).
    private IEnumerable<PlanOp> Backward(bool inputGradient, long gradientShift = 0)
    {
        int L = Layers.Count;
        Slot grad = GradA, other = GradB;
        yield return new OutputBwdOp(L - 1, Spec.Layers[^1].Activation, Saved(L - 1), Width(grad, Spec.OutputWidth));
        for (int l = L - 1; l >= 0; l--)
        {
            var slots = Layers[l];
            var dz = Width(grad, Spec.Layers[l].Units);
            yield return new DenseBwdWeightsOp(l, dz, LayerInput(l, training: true), slots.WeightGrad with { Offset = slots.WeightGrad.Offset + gradientShift },
                slots.BiasGrad with { Offset = slots.BiasGrad.Offset + gradientShift });
            if (l == 0 && !inputGradient) break;
            var dst = Width(other, Spec.Width(l));
            if (l == 0)
                yield return new DenseBwdDataOp(0, dz, slots.Weight, new Activation(ActivationKind.Identity), Slot.None, 0, dst);
            else
            {
                var prev = Spec.Layers[l - 1];
                yield return new DenseBwdDataOp(l, dz, slots.Weight, prev.Activation,
                    prev.Activation.Kind == ActivationKind.Identity ? Slot.None : Saved(l - 1), prev.Dropout, dst);
            }
            (grad, other) = (other, grad);
        }
    }

    private static long Round(long n) => (n + Align - 1) / Align * Align;

    private static string Describe(ModelSpec spec) => $"{spec.InputWidth}-{string.Join("-", spec.Layers.Select(l => l.Units))}";

    /// <summary>Bytes the blocks of this plan take in elements of <paramref name="elementSize"/> bytes (what an executor allocates for them).</summary>
    public long BlockBytes(int elementSize) => (ParameterBlock + Math.Max(1, ActivationBlock)) * elementSize + Rows * sizeof(int);

    /// <summary>A readable listing: blocks, slots and ops.</summary>
    public override string ToString()
    {
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"parameter block: {ParameterBlock} elements ({ParameterCount} parameters, {StateSlots} optimizer state slot(s){(MicroGradients ? ", micro-batch gradients" : "")}); " +
            $"activation block: {ActivationBlock} elements for {(SplitsSteps ? $"micro-batches of up to {Rows} (batch {Options.MaxBatch} in {MicroBatches})" : $"batch {Options.MaxBatch}")}");
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
