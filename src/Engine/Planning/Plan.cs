// The compiled form of a ModelSpec: every tensor's place in one of two blocks, and the lowered op
// lists of a training step, a gradient pass, a loss pass and an inference pass. Shapes and every
// model rule are checked here (and in ModelSpec.Validate), once; a step checks only the batch size and
// the labels. The rules of which tensor backward keeps and which gradient slot each op uses are applied
// here and nowhere else: executors run the ops as they come.
//
// Parameter block (64-byte aligned, each tensor starts on a 16-element boundary, gaps are zero):
//   [ params: W0 b0 W1 b1 … | grads: same layout | state slot 0: same layout | slot 1 | slot 2 | micro grads | buffers ]
// (in a tree, the parameters in depth-first module order: a norm's weight and bias where it sits, a
// residual block's projection after its body; buffers: each BatchNorm's running mean, running variance
// and num_batches_tracked, which no optimizer or exchange touches).
// so the optimizer updates the whole block in one pass (params, grads and state share offsets). With
// gradient accumulation a last section receives each later micro-batch's gradients, added into the
// grads section in micro-batch order; across N processes each section is a multiple of 16·N elements,
// so it splits into N equal, aligned chunks for the exchange.
// Activation block, sized for one micro-batch (MaxBatch / (Accumulate · processes), rounded up):
//   x [B, in0]; per layer l: h_l [B, units] (activation output), z_l (pre-activation, only when f'
//   needs it), a_l (dropout output, only with dropout); per LayerNorm its output and its rows' mean and
//   1/std [B, 2]; per residual block its output; the gradient slots [B, max width] backward takes from a
//   pool as it goes (lowest free first, freed when consumed: a plain stack alternates between two, as
//   d(z_l) and d(z_{l−1}) never need to live longer than one layer; a residual block holds its output's
//   gradient while its body runs backward, so each level of nesting takes more); targets.
//
// Backward hands each module the gradient of its output; when the output is a Dense layer's, it is
// already d(z) of that layer: whoever writes the last contribution to a Dense output's gradient applies
// that layer's activation derivative and dropout mask there (the next Dense's BwdData, a LayerNorm's
// backward, a residual block's join, the output layer's OutputBwd, or an ActivationBwd before a body).
// A block whose body starts with a Dense layer joins in that layer's BwdData: the skip gradient is made
// first and the GEMM adds to it (beta = 1), the derivative in its store; no ResidualBwd pass. Forward,
// a body that ends in a Dense layer (without dropout) adds the skip in that layer's store (DenseResidualFwd).
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

/// <summary>Where one LayerNorm's tensors live: weight and bias (and their gradients), output, and each row's mean and 1/std [rows, 2].</summary>
public sealed record NormSlots(Slot Weight, Slot Bias, Slot WeightGrad, Slot BiasGrad, Slot Output, Slot Stats);

/// <summary>
/// Where one BatchNorm's tensors live: weight and bias (and their gradients), output, the batch's mean and 1/std [2, features],
/// and its buffers (running mean, running variance, num_batches_tracked) in the parameter block's buffer section.
/// </summary>
public sealed record BatchNormSlots(Slot Weight, Slot Bias, Slot WeightGrad, Slot BiasGrad, Slot Output, Slot Stats, Slot RunningMean, Slot RunningVar, Slot Tracked);

/// <summary>Where one residual block's output lives, and its projection's Dense layer index (−1: none, the block keeps the width).</summary>
public sealed record ResidualSlots(Slot Output, int Projection);

/// <summary>A parameter tensor (or buffer) of the plan: its state_dict name, its value and gradient slots, its shape, and the Dense layer it belongs to (−1: a norm's).</summary>
public sealed record PlanParameter(string Name, Slot Value, Slot Grad, int[] Shape, int Layer);

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
    /// <summary>Per LayerNorm slots, in depth-first order.</summary>
    public IReadOnlyList<NormSlots> Norms { get; }
    /// <summary>Per BatchNorm slots, in depth-first order.</summary>
    public IReadOnlyList<BatchNormSlots> BatchNorms { get; }
    /// <summary>The buffers (BatchNorm running statistics and counts) with their state_dict names, in block order; Grad does not exist.</summary>
    public IReadOnlyList<PlanParameter> Buffers { get; }
    /// <summary>Elements of the buffer section at the end of the parameter block.</summary>
    public long BufferSection { get; }
    /// <summary>Per residual block slots, in depth-first order.</summary>
    public IReadOnlyList<ResidualSlots> Residuals { get; }
    /// <summary>Every parameter tensor, in the order of the parameter block.</summary>
    public IReadOnlyList<PlanParameter> Parameters { get; }
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
    /// <summary>Elements of the parameter block: (2 + StateSlots) sections, one more with gradient accumulation, then the buffers.</summary>
    public long ParameterBlock => ParameterSection * (2 + StateSlots + (MicroGradients ? 1 : 0)) + BufferSection;
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
    /// <summary>The network output in inference (the last module's output).</summary>
    public Slot Output { get; }
    /// <summary>The network output in training (after dropout, where the last module has any: refused for the output layer).</summary>
    public Slot TrainingOutput { get; }
    /// <summary>The first gradient slot (the loss writes d(output) there).</summary>
    public Slot GradA => GradientSlots[0];
    /// <summary>The second gradient slot.</summary>
    public Slot GradB => GradientSlots[1];
    /// <summary>Every gradient slot backward takes from (at least two).</summary>
    public IReadOnlyList<Slot> GradientSlots { get; }
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
        int denseCount = 0, normCount = 0, residualCount = 0, batchNormCount = 0;
        _nodes = Lower(spec.Tree, ref denseCount, ref normCount, ref residualCount, ref batchNormCount);
        if (_nodes[^1] is DenseNode { L: var last })
        {
            var ls = spec.Layers[last];
            if (spec.Loss == LossKind.CrossEntropy && ls.Activation.Kind != ActivationKind.Identity)
                throw new ArgumentException($"layer {last} (Dense {ls.Units}): cross-entropy takes logits, so the last layer's activation must be identity; got {ls.Activation}.");
            if (ls.Dropout > 0)
                throw new ArgumentException($"layer {last} (Dense {ls.Units}): dropout on the output layer feeds noise into the loss; remove it (got p = {ls.Dropout}).");
        }
        var denseSites = spec.DenseSites;
        var normSites = spec.NormSites;
        var bnSites = spec.BatchNormSites;
        if (bnSites.Count > 0 && world > 1)
            throw new ArgumentException($"module {bnSites[0].Prefix.TrimEnd('.')} (BatchNorm): data-parallel training keeps one set of running statistics per process; " +
                "train a model with BatchNorm in one process (LayerNorm has no such state).");

        long p = 0;
        Slot Param(int rows, int cols)
        {
            var s = new Slot(p, (long)rows * cols, rows, cols);
            p += Round((long)rows * cols);
            return s;
        }
        var w = new Slot[L];
        var b = new Slot[L];
        var nw = new Slot[normSites.Count];
        var nb = new Slot[normSites.Count];
        var bw = new Slot[bnSites.Count];
        var bb = new Slot[bnSites.Count];
        // Parameters in depth-first module order (a plain stack: W0 b0 W1 b1 …).
        foreach (var (kind, i) in Order(_nodes))
            switch (kind)
            {
                case ParamKind.LayerNorm:
                    nw[i] = Param(1, normSites[i].Width);
                    nb[i] = Param(1, normSites[i].Width);
                    ParameterCount += nw[i].Length + nb[i].Length;
                    break;
                case ParamKind.BatchNorm:
                    bw[i] = Param(1, bnSites[i].Width);
                    bb[i] = Param(1, bnSites[i].Width);
                    ParameterCount += bw[i].Length + bb[i].Length;
                    break;
                default:
                    w[i] = Param(spec.Layers[i].Units, spec.Width(i));
                    b[i] = Param(1, spec.Layers[i].Units);
                    ParameterCount += w[i].Length + b[i].Length;
                    break;
            }
        ParameterExtent = p;
        long chunk = (long)Align * world;
        ParameterSection = (p + chunk - 1) / chunk * chunk;
        StateSlots = options.Optimizer.StateSlots;
        // Across processes in deterministic mode every micro-batch's gradients go to the exchange, not to a local sum.
        MicroGradients = options.Accumulate > 1 && (world == 1 || options.Distributed!.Mode == Training.ReductionMode.Fast);
        // The buffers after the last section: each BatchNorm's running mean, running variance and count.
        long buffers = ParameterSection * (2 + StateSlots + (MicroGradients ? 1 : 0)), bufferStart = buffers;
        Slot Buffer(int cols)
        {
            var s = new Slot(buffers, cols, 1, cols);
            buffers += Round(cols);
            return s;
        }
        var running = bnSites.Select(site => (Mean: Buffer(site.Width), Var: Buffer(site.Width), Tracked: Buffer(1))).ToArray();
        BufferSection = buffers - bufferStart;
        if (ParameterBlock > int.MaxValue)
            throw new ArgumentException($"the model {Describe(spec)} has {ParameterCount:N0} parameters; with gradients and {StateSlots} optimizer state slot(s) that is " +
                $"{ParameterBlock:N0} elements, more than a block holds ({int.MaxValue:N0}): use narrower layers.");
        Slot Grad(Slot s) => s with { Offset = s.Offset + ParameterSection };

        long a = 0;
        Slot Act(int cols)
        {
            var s = new Slot(a, (long)B * cols, B, cols);
            a += Round((long)B * cols);
            return s;
        }
        Input = Act(spec.InputWidth);
        var layers = new LayerSlots[L];
        var norms = new NormSlots[normSites.Count];
        var residuals = new ResidualSlots[residualCount];
        var batchNorms = new BatchNormSlots[batchNormCount];
        int maxWidth = spec.InputWidth;
        void Layout(Node[] seq)
        {
            foreach (var node in seq)
                switch (node)
                {
                    case DenseNode d:
                        layers[d.L] = DenseSlots(d.L);
                        break;
                    case NormNode n:
                        norms[n.N] = new NormSlots(nw[n.N], nb[n.N], Grad(nw[n.N]), Grad(nb[n.N]), Act(normSites[n.N].Width), Act(2));
                        break;
                    case BatchNormNode n:
                    {
                        int width = bnSites[n.N].Width;
                        var stats = new Slot(a, 2L * width, 2, width);
                        a += Round(2L * width);
                        batchNorms[n.N] = new BatchNormSlots(bw[n.N], bb[n.N], Grad(bw[n.N]), Grad(bb[n.N]), Act(width), stats,
                            running[n.N].Mean, running[n.N].Var, running[n.N].Tracked);
                        break;
                    }
                    case ResidualNode r:
                        Layout(r.Body);
                        if (r.Projection >= 0) layers[r.Projection] = DenseSlots(r.Projection);
                        residuals[r.R] = new ResidualSlots(Act(r.Width), r.Projection);
                        break;
                }
        }
        LayerSlots DenseSlots(int l)
        {
            var s = spec.Layers[l];
            maxWidth = Math.Max(maxWidth, s.Units);
            var outSlot = Act(s.Units);
            var pre = s.Activation.GradFromOutput && !keepPreActivations ? Slot.None : Act(s.Units);
            var drop = s.Dropout > 0 ? Act(s.Units) : Slot.None;
            return new LayerSlots(w[l], b[l], Grad(w[l]), Grad(b[l]), outSlot, pre, drop);
        }
        Layout(_nodes);
        foreach (var n in normSites) maxWidth = Math.Max(maxWidth, n.Width);
        foreach (var n in bnSites) maxWidth = Math.Max(maxWidth, n.Width);
        Layers = layers;
        Norms = norms;
        BatchNorms = batchNorms;
        Residuals = residuals;
        var outValue = OutputOf(_nodes);
        Output = outValue.Infer;
        TrainingOutput = outValue.Train;

        // Backward's gradient slots: as many as its deepest moment holds (a dry run of the gradient pass counts them).
        _gradients = [];
        _ = Backward(inputGradient: true).ToList();
        int count = Math.Max(2, _poolHigh);
        var grads = new Slot[count];
        for (int i = 0; i < count; i++) grads[i] = Act(maxWidth);
        _gradients = grads;
        GradientSlots = Array.AsReadOnly(grads);
        Targets = spec.Loss == LossKind.CrossEntropy ? Slot.None : Act(spec.OutputWidth);
        ActivationBlock = a;
        if (ActivationBlock > int.MaxValue)
            throw new ArgumentException($"the model {Describe(spec)} at batch {B} needs {ActivationBlock:N0} activation elements, more than a block holds " +
                $"({int.MaxValue:N0}): use a smaller batch or narrower layers.");

        var parameters = new List<PlanParameter>();
        var buffersList = new List<PlanParameter>();
        foreach (var (kind, i) in Order(_nodes))
            switch (kind)
            {
                case ParamKind.LayerNorm:
                {
                    var (pw, pb) = (normSites[i].Prefix + "weight", normSites[i].Prefix + "bias");
                    parameters.Add(new PlanParameter(pw, norms[i].Weight, norms[i].WeightGrad, [norms[i].Weight.Cols], -1));
                    parameters.Add(new PlanParameter(pb, norms[i].Bias, norms[i].BiasGrad, [norms[i].Bias.Cols], -1));
                    break;
                }
                case ParamKind.BatchNorm:
                {
                    var (site, bn) = (bnSites[i].Prefix, batchNorms[i]);
                    parameters.Add(new PlanParameter(site + "weight", bn.Weight, bn.WeightGrad, [bn.Weight.Cols], -1));
                    parameters.Add(new PlanParameter(site + "bias", bn.Bias, bn.BiasGrad, [bn.Bias.Cols], -1));
                    buffersList.Add(new PlanParameter(site + "running_mean", bn.RunningMean, Slot.None, [bn.RunningMean.Cols], -1));
                    buffersList.Add(new PlanParameter(site + "running_var", bn.RunningVar, Slot.None, [bn.RunningVar.Cols], -1));
                    buffersList.Add(new PlanParameter(site + "num_batches_tracked", bn.Tracked, Slot.None, [], -1));
                    break;
                }
                default:
                {
                    var (pw, pb) = (denseSites[i].Prefix + "weight", denseSites[i].Prefix + "bias");
                    parameters.Add(new PlanParameter(pw, layers[i].Weight, layers[i].WeightGrad, [layers[i].Weight.Rows, layers[i].Weight.Cols], i));
                    parameters.Add(new PlanParameter(pb, layers[i].Bias, layers[i].BiasGrad, [layers[i].Bias.Cols], i));
                    break;
                }
            }
        Parameters = parameters.AsReadOnly();
        Buffers = buffersList.AsReadOnly();

        // Only a step moves the BatchNorms' running statistics: Loss and Gradients evaluate without changing the model.
        PlanOp[] loss = [.. Forward(training: true), Loss()];
        PlanOp[] stepLoss = [.. Forward(training: true, updateRunning: true), Loss()];
        InferenceOps = Array.AsReadOnly(Forward(training: false).ToArray());
        LossOps = Array.AsReadOnly(loss);
        TrainingOps = Array.AsReadOnly<PlanOp>([.. stepLoss, .. Backward(inputGradient: false), new OptimizerUpdateOp()]);
        MicroFirstOps = Array.AsReadOnly<PlanOp>([.. stepLoss, .. Backward(inputGradient: false)]);
        long micro = (2 + StateSlots) * ParameterSection;
        MicroNextOps = Array.AsReadOnly<PlanOp>(MicroGradients
            ? [.. stepLoss, .. Backward(inputGradient: false, gradientShift: micro - ParameterSection),
                new AccumulateGradientsOp(new Slot(micro, ParameterSection, 1, 0), new Slot(ParameterSection, ParameterSection, 1, 0))]
            : []);
        UpdateOps = Array.AsReadOnly<PlanOp>([new OptimizerUpdateOp()]);
        AccumulateOps = Array.AsReadOnly<PlanOp>(MicroGradients ? [MicroNextOps[^1]] : []);
        GradientOps = Array.AsReadOnly<PlanOp>([.. loss, .. Backward(inputGradient: true)]);
        InputGradient = Width(_gradients[_inputGradientSlot], spec.InputWidth);
    }

    // The tree as the plan numbers it: Dense layers, LayerNorms and residual blocks each by their depth-first index.
    private abstract record Node;
    private sealed record DenseNode(int L) : Node;
    private sealed record NormNode(int N) : Node;
    private sealed record ResidualNode(int R, Node[] Body, int Projection, int Width) : Node;
    private sealed record BatchNormNode(int N) : Node;
    private enum ParamKind { Dense, LayerNorm, BatchNorm }

    private readonly Node[] _nodes;
    private Slot[] _gradients;
    private int _poolHigh, _inputGradientSlot;

    private Node[] Lower(IReadOnlyList<ModuleSpec> mods, ref int dense, ref int norm, ref int residual, ref int batchNorm)
    {
        var nodes = new Node[mods.Count];
        for (int i = 0; i < mods.Count; i++)
            switch (mods[i])
            {
                case LayerSpec:
                    nodes[i] = new DenseNode(dense++);
                    break;
                case LayerNormSpec:
                    nodes[i] = new NormNode(norm++);
                    break;
                case BatchNormSpec:
                    nodes[i] = new BatchNormNode(batchNorm++);
                    break;
                case ResidualSpec r:
                    int rIndex = residual++;
                    var body = Lower(r.Body, ref dense, ref norm, ref residual, ref batchNorm);
                    int outW = WidthOf(body[^1]);
                    int inWidth = InputWidthOf(body[0]);
                    nodes[i] = new ResidualNode(rIndex, body, outW != inWidth ? dense++ : -1, outW);
                    break;
            }
        return nodes;
    }

    private int WidthOf(Node n) => n switch
    {
        DenseNode d => Spec.Layers[d.L].Units,
        NormNode m => Spec.NormSites[m.N].Width,
        BatchNormNode m => Spec.BatchNormSites[m.N].Width,
        ResidualNode r => r.Width,
        _ => throw new InvalidOperationException($"unknown node {n}"),
    };

    private int InputWidthOf(Node n) => n switch
    {
        DenseNode d => Spec.Width(d.L),
        NormNode m => Spec.NormSites[m.N].Width,
        BatchNormNode m => Spec.BatchNormSites[m.N].Width,
        ResidualNode r => InputWidthOf(r.Body[0]),
        _ => throw new InvalidOperationException($"unknown node {n}"),
    };

    // Parameter order: depth-first, a residual block's projection after its body.
    private static IEnumerable<(ParamKind Kind, int Index)> Order(Node[] seq)
    {
        foreach (var node in seq)
            switch (node)
            {
                case DenseNode d: yield return (ParamKind.Dense, d.L); break;
                case NormNode n: yield return (ParamKind.LayerNorm, n.N); break;
                case BatchNormNode n: yield return (ParamKind.BatchNorm, n.N); break;
                case ResidualNode r:
                    foreach (var x in Order(r.Body)) yield return x;
                    if (r.Projection >= 0) yield return (ParamKind.Dense, r.Projection);
                    break;
            }
    }

    // A value flowing between modules: its slot in training (after dropout) and in inference, and the Dense layer that
    // produced it (−1: the input, a LayerNorm or a residual block).
    private readonly record struct Value(Slot Train, Slot Infer, int Producer)
    {
        public Slot Get(bool training) => training ? Train : Infer;
    }

    private Value InputValue => new(Input, Input, -1);

    private Value OutputOf(Node n) => n switch
    {
        DenseNode d => new Value(Layers[d.L].Next, Layers[d.L].Output, d.L),
        NormNode m => new Value(Norms[m.N].Output, Norms[m.N].Output, -1),
        BatchNormNode m => new Value(BatchNorms[m.N].Output, BatchNorms[m.N].Output, -1),
        ResidualNode r => new Value(Residuals[r.R].Output, Residuals[r.R].Output, -1),
        _ => throw new InvalidOperationException($"unknown node {n}"),
    };

    private Value OutputOf(Node[] seq) => OutputOf(seq[^1]);

    // The derivative the last writer of v's gradient applies: v's producing Dense layer's activation and dropout.
    private Derivative DerivativeOf(Value v)
    {
        if (v.Producer < 0) return Derivative.None;
        var s = Spec.Layers[v.Producer];
        if (s.Activation.Kind == ActivationKind.Identity && s.Dropout == 0) return Derivative.None;
        return new Derivative(s.Activation, s.Activation.Kind == ActivationKind.Identity ? Slot.None : Saved(v.Producer), s.Dropout, v.Producer);
    }

    // The slot backward reads f' from: the output when f' is cheaper from it, else the pre-activation.
    private Slot Saved(int l) => Spec.Layers[l].Activation.GradFromOutput ? Layers[l].Output : Layers[l].PreActivation;

    // A gradient slot used at a narrower width: same place, [MaxBatch, cols].
    private static Slot Width(Slot s, int cols) => s with { Length = (long)s.Rows * cols, Cols = cols };

    // updateRunning: the BatchNorms move their running statistics (a step's forward, not Loss or Gradients).
    private List<PlanOp> Forward(bool training, bool updateRunning = false)
    {
        var ops = new List<PlanOp>();
        Fwd(_nodes, InputValue, training, updateRunning, ops);
        return ops;
    }

    private Value Fwd(Node[] seq, Value x, bool training, bool updateRunning, List<PlanOp> ops)
    {
        foreach (var node in seq)
            x = Fwd(node, x, training, updateRunning, ops);
        return x;
    }

    private Value Fwd(Node node, Value x, bool training, bool updateRunning, List<PlanOp> ops)
    {
        switch (node)
        {
            case DenseNode d:
                DenseForward(d.L, x, training, ops);
                break;
            case NormNode n:
            {
                var s = Norms[n.N];
                ops.Add(new LayerNormFwdOp(n.N, Spec.NormSites[n.N].Norm.Eps, x.Get(training), s.Weight, s.Bias, s.Output, s.Stats));
                break;
            }
            case BatchNormNode n:
            {
                var s = BatchNorms[n.N];
                var bn = Spec.BatchNormSites[n.N].Norm;
                ops.Add(new BatchNormFwdOp(n.N, bn.Eps, bn.Momentum, training, training && updateRunning, x.Get(training), s.Weight, s.Bias, s.Output, s.Stats,
                    s.RunningMean, s.RunningVar, s.Tracked));
                break;
            }
            case ResidualNode r:
            {
                var skip = x;
                if (r.Projection >= 0)
                {
                    DenseForward(r.Projection, x, training, ops);
                    skip = OutputOf(new DenseNode(r.Projection));
                }
                // A body ending in a Dense layer without dropout adds the skip in that layer's GEMM store.
                if (r.Body[^1] is DenseNode { L: var last } && Spec.Layers[last].Dropout == 0)
                {
                    var before = Fwd(r.Body[..^1], x, training, updateRunning, ops);
                    var s = Spec.Layers[last];
                    var slots = Layers[last];
                    bool keep = s.Activation.Kind != ActivationKind.Identity && s.Activation.GradFromOutput;
                    ops.Add(new DenseResidualFwdOp(last, s.Activation, before.Get(training), slots.Weight, slots.Bias, slots.Output, keep, slots.PreActivation,
                        skip.Get(training), Residuals[r.R].Output));
                    break;
                }
                var f = Fwd(r.Body, x, training, updateRunning, ops);
                ops.Add(new ResidualAddOp(r.R, skip.Get(training), f.Get(training), Residuals[r.R].Output));
                break;
            }
        }
        return OutputOf(node);
    }

    private void DenseForward(int l, Value x, bool training, List<PlanOp> ops)
    {
        var s = Spec.Layers[l];
        var slots = Layers[l];
        ops.Add(new DenseFwdOp(l, s.Activation, x.Get(training), slots.Weight, slots.Bias, slots.Output, slots.PreActivation));
        if (training && s.Dropout > 0) ops.Add(new DropoutFwdOp(l, s.Dropout, slots.Output, slots.DropOutput));
    }

    private LossOp Loss() =>
        new(Spec.Loss, Spec.LabelSmoothing, Spec.HuberDelta, TrainingOutput, Targets, Width(GradA, Spec.OutputWidth));

    // The gradient slots' pool during one lowering: a reference count per slot (a residual block's output gradient is
    // shared by its body and its skip path), the lowest free slot taken first.
    private List<int> _pool = [];

    private int Take()
    {
        int i = _pool.IndexOf(0);
        if (i < 0)
        {
            i = _pool.Count;
            _pool.Add(0);
        }
        _pool[i] = 1;
        _poolHigh = Math.Max(_poolHigh, _pool.Count);
        return i;
    }

    private void Release(int i)
    {
        if (i < 0) return;
        if (_pool[i] <= 0) throw new InvalidOperationException($"plan lowering released gradient slot {i} twice.");
        _pool[i]--;
    }

    private Slot G(int i, int cols) => i < _gradients.Length ? Width(_gradients[i], cols) : new Slot(-1, 0, Rows, cols); // the dry run has no slots yet

    // Backward: each module's ops in reverse order, gradient slots from the pool; the network input's gradient only when
    // asked. gradientShift moves the parameter gradients to another section (a later micro-batch's).
    private List<PlanOp> Backward(bool inputGradient, long gradientShift = 0)
    {
        _pool = [];
        var ops = new List<PlanOp>();
        int g = Take(); // slot 0: the loss's d(output)
        if (_nodes[^1] is DenseNode { L: var last })
            ops.Add(new OutputBwdOp(last, Spec.Layers[last].Activation, Saved(last), G(g, Spec.OutputWidth)));
        int dx = Bwd(_nodes, InputValue, g, convert: true, needInput: inputGradient, gradientShift, ops);
        if (inputGradient) _inputGradientSlot = dx;
        Release(dx);
        if (_gradients.Length > 0 && _poolHigh > _gradients.Length)
            throw new InvalidOperationException($"plan lowering: backward took {_poolHigh} gradient slots; the dry run counted {_gradients.Length}.");
        return ops;
    }

    // Runs seq backward from g (its output's gradient, already d(z) when the output is a Dense layer's); returns the slot of
    // its input's gradient (−1 when not needed). convert: whether that gradient is final here, so its writer applies the
    // producer's derivative (false in a residual body: the block's join adds the skip path first).
    // into (≥ 0): the first module, a Dense layer, adds its input gradient to that slot (a residual block's skip gradient) and
    // applies intoDerivative to the sum: the block's join in that layer's BwdData GEMM.
    private int Bwd(Node[] seq, Value input, int g, bool convert, bool needInput, long shift, List<PlanOp> ops, int into = -1, Derivative intoDerivative = default)
    {
        for (int i = seq.Length - 1; i >= 0; i--)
        {
            var x = i == 0 ? input : OutputOf(seq[i - 1]);
            if (i == 0 && into >= 0)
                return DenseBackward(((DenseNode)seq[0]).L, x, g, intoDerivative, needInput: true, shift, ops, into);
            g = Bwd(seq[i], x, g, i == 0 ? convert : true, i == 0 ? needInput : true, shift, ops);
        }
        return g;
    }

    private int Bwd(Node node, Value x, int g, bool convert, bool needInput, long shift, List<PlanOp> ops)
    {
        var deriv = convert ? DerivativeOf(x) : Derivative.None;
        switch (node)
        {
            case DenseNode d:
                return DenseBackward(d.L, x, g, deriv, needInput, shift, ops);
            case NormNode n:
            {
                var s = Norms[n.N];
                return NormBackward(s.Output.Cols, g, needInput, ops, (dy, dx) =>
                    new LayerNormBwdOp(n.N, dy, x.Train, s.Weight, s.Stats, Shift(s.WeightGrad, shift), Shift(s.BiasGrad, shift), dx, deriv));
            }
            case BatchNormNode n:
            {
                var s = BatchNorms[n.N];
                return NormBackward(s.Output.Cols, g, needInput, ops, (dy, dx) =>
                    new BatchNormBwdOp(n.N, dy, x.Train, s.Weight, s.Stats, Shift(s.WeightGrad, shift), Shift(s.BiasGrad, shift), dx, deriv));
            }
            case ResidualNode r:
            {
                int outW = r.Width, inW = x.Train.Cols;
                var f = OutputOf(r.Body);
                var df = DerivativeOf(f);
                int gf = g;
                if (df.Exists)
                {
                    gf = Take();
                    ops.Add(new ActivationBwdOp(f.Producer, df, G(g, outW), G(gf, outW)));
                }
                else _pool[g]++; // shared by the body and the skip path
                // The join folded into the body's first layer: when the body starts with a Dense layer, the skip gradient is
                // made first (the projection's dX, or the output gradient itself) and that layer's BwdData adds its product to
                // it, the block input's derivative in the same store. The output gradient takes the sum only when no one outside
                // this block holds it (an enclosing block's skip path may) and the layer does not read it as its own dZ.
                int ours = gf == g ? 2 : 1;
                bool ownSkip = r.Projection >= 0 || (_pool[g] == ours && !(r.Body.Length == 1 && gf == g));
                if (needInput && r.Body[0] is DenseNode && ownSkip)
                {
                    int into = r.Projection >= 0 ? DenseBackward(r.Projection, x, g, Derivative.None, needInput: true, shift, ops) : g; // releases g
                    return Bwd(r.Body, x, gf, convert: false, needInput: true, shift, ops, into, deriv);
                }
                int body = Bwd(r.Body, x, gf, convert: false, needInput, shift, ops);
                int skip = g;
                if (r.Projection >= 0)
                    skip = DenseBackward(r.Projection, x, g, Derivative.None, needInput, shift, ops); // releases g
                if (!needInput)
                {
                    if (r.Projection < 0) Release(g);
                    return -1;
                }
                ops.Add(new ResidualBwdOp(r.R, G(body, inW), G(skip, inW), G(body, inW), deriv));
                Release(skip);
                return body;
            }
            default:
                throw new InvalidOperationException($"unknown node {node}");
        }
    }

    // A norm's backward: its output gradient in, its input gradient (when needed) into a new slot of the same width.
    private int NormBackward(int width, int g, bool needInput, List<PlanOp> ops, Func<Slot, Slot, PlanOp> op)
    {
        int dst = needInput ? Take() : -1;
        ops.Add(op(G(g, width), needInput ? G(dst, width) : Slot.None));
        Release(g);
        return dst;
    }

    // A parameter gradient slot moved to another section (a later micro-batch's).
    private static Slot Shift(Slot s, long shift) => s with { Offset = s.Offset + shift };

    // into ≥ 0: the input gradient is added to that slot (DenseBwdData with Accumulate) instead of a new one.
    private int DenseBackward(int l, Value x, int g, Derivative deriv, bool needInput, long shift, List<PlanOp> ops, int into = -1)
    {
        var slots = Layers[l];
        var dz = G(g, Spec.Layers[l].Units);
        ops.Add(new DenseBwdWeightsOp(l, dz, x.Train, Shift(slots.WeightGrad, shift), Shift(slots.BiasGrad, shift)));
        if (!needInput)
        {
            Release(g);
            return -1;
        }
        if (deriv.Exists && deriv.Layer != l - 1)
            throw new InvalidOperationException($"plan lowering: layer {l}'s data gradient would apply layer {deriv.Layer}'s derivative; DenseBwdData applies layer {l - 1}'s.");
        int dst = into >= 0 ? into : Take();
        ops.Add(new DenseBwdDataOp(l, dz, slots.Weight, deriv.Exists ? deriv.Activation : new Activation(ActivationKind.Identity), deriv.Saved, deriv.Dropout,
            G(dst, Spec.Width(l)), Accumulate: into >= 0));
        Release(g);
        return dst;
    }

    private static long Round(long n) => (n + Align - 1) / Align * Align;

    private static string Describe(ModelSpec spec) => spec.Describe();

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
        for (int n = 0; n < Norms.Count; n++)
            sb.AppendLine($"  layer norm {n}: weight[{Norms[n].Weight.Cols}]@{Norms[n].Weight.Offset} bias@{Norms[n].Bias.Offset} out@{Norms[n].Output.Offset} stats@{Norms[n].Stats.Offset}");
        for (int n = 0; n < BatchNorms.Count; n++)
            sb.AppendLine($"  batch norm {n}: weight[{BatchNorms[n].Weight.Cols}]@{BatchNorms[n].Weight.Offset} bias@{BatchNorms[n].Bias.Offset} out@{BatchNorms[n].Output.Offset} " +
                $"stats@{BatchNorms[n].Stats.Offset} running mean@{BatchNorms[n].RunningMean.Offset} var@{BatchNorms[n].RunningVar.Offset} tracked@{BatchNorms[n].Tracked.Offset}");
        for (int r = 0; r < Residuals.Count; r++)
            sb.AppendLine($"  residual {r}: out@{Residuals[r].Output.Offset}" + (Residuals[r].Projection >= 0 ? $" projection: layer {Residuals[r].Projection}" : ""));
        sb.AppendLine($"  step: {string.Join(" → ", TrainingOps)}");
        return sb.ToString();
    }
}
