// The model facade: a compiled Plan and the executor that runs it, behind the public API (Step,
// Gradients, Loss, Predict, Evaluate, parameters and gradients by state_dict name). It validates what a
// caller passes, stages it, counts optimizer steps, and keeps the one-caller rule: Step, Gradients,
// Predict and Evaluate share the executor's buffers, so a concurrent second caller gets an
// InvalidOperationException rather than wrong numbers. A step with gradient accumulation or across
// processes (Plan.SplitsSteps) runs its micro-batches here, in order, sums their gradients (in the plan's
// AccumulateGradients op, or through the GradientReducer across processes) and then updates once. Model<T> computes in T (float trains; double runs
// the same plan and kernels for gradient checks); Model is Model<float>.
using System.Numerics;
using Backprop.Engine.Execution;
using Backprop.Engine.Planning;
using Backprop.Engine.Training;
using Backprop.Kernels;
using Backprop.Kernels.Cpu.Ops;
using Backprop.Kernels.Cpu.Optim;
using Backprop.Kernels.Cuda;

namespace Backprop.Engine;

/// <summary>A compiled dense network with its optimizer, computing in <typeparamref name="T"/> (float or double).</summary>
public partial class Model<T> : IDisposable where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly IExecutor<T> _exec;
    private readonly GradientReducer? _reducer;
    private readonly Dictionary<string, (Slot Value, Slot Grad)> _byName = [];
    private readonly Dictionary<string, Slot> _buffers = [];
    private long _step;
    private int _busy, _lastBatch; // _busy is 1 while a call uses the executor's buffers
    private bool _disposed, _haveGradients;

    /// <summary>Compiles <paramref name="spec"/> with <paramref name="options"/> and initializes the parameters.</summary>
    /// <remarks>With <see cref="Backend.Cuda"/> this opens CUDA device 0 and throws <see cref="InvalidOperationException"/> saying why when there is none.</remarks>
    public Model(ModelSpec spec, TrainingOptions options) : this(spec, options, null, false) { }

    /// <summary>A model on <paramref name="device"/> (Backend Cuda; not disposed by the model); <paramref name="keepPreActivations"/> keeps every layer's pre-activation readable.</summary>
    internal Model(ModelSpec spec, TrainingOptions options, IGpuDevice? device, bool keepPreActivations)
    {
        Plan = new Plan(spec, Executors.ResolvePrecision<T>(options), keepPreActivations);
        if (options.Distributed is not null && typeof(T) != typeof(float))
            throw new ArgumentException($"data-parallel training computes in float; this model computes in {typeof(T).Name}.", nameof(options));
        _exec = Executors.Create<T>(Plan, device);
        var list = new List<ParameterInfo>();
        foreach (var prm in Plan.Parameters)
        {
            _byName[prm.Name] = (prm.Value, prm.Grad);
            list.Add(new ParameterInfo(prm.Name, prm.Shape, prm.Layer));
        }
        Parameters = list;
        foreach (var b in Plan.Buffers) _buffers[b.Name] = b.Value;
        Buffers = Plan.Buffers.Select(b => new ParameterInfo(b.Name, b.Shape, -1)).ToArray();
        try
        {
            var block = _exec.WriteParameters();
            for (int l = 0; l < spec.Layers.Count; l++)
                Initializers.Initialize<T>(options.Init, options.Seed, (uint)l, spec.Width(l), spec.Layers[l].Units, View(block, Plan.Layers[l].Weight), View(block, Plan.Layers[l].Bias));
            foreach (var n in Plan.Norms) View(block, n.Weight).Fill(T.One); // torch.nn.LayerNorm: weight 1, bias 0
            foreach (var n in Plan.BatchNorms)
            {
                View(block, n.Weight).Fill(T.One); // torch.nn.BatchNorm1d: weight 1, bias 0, running mean 0, running var 1
                View(block, n.RunningVar).Fill(T.One);
            }
            Optimizer.InitState<T>(options.Optimizer, State(block, 0), State(block, 1), State(block, 2));
            if (options.Distributed is { } d)
            {
                _reducer = new GradientReducer(d, Plan.ParameterSection, options.Isa ?? Kernels.Cpu.CpuIsa.Supported, hostExchange: options.Backend != Backend.Cuda)
                {
                    Overlaps = d.Overlap && d.Mode == ReductionMode.Fast && options.Accumulate == 1 && options.Backend != Backend.Cuda,
                };
                BroadcastHeld();
            }
        }
        catch
        {
            _reducer?.Dispose();
            _exec.Dispose();
            throw;
        }
    }

    /// <summary>The compiled plan.</summary>
    public Plan Plan { get; }
    /// <summary>The description.</summary>
    public ModelSpec Spec => Plan.Spec;
    /// <summary>The options.</summary>
    public TrainingOptions Options => Plan.Options;
    /// <summary>Optimizer steps taken.</summary>
    public long StepCount => _step;
    /// <summary>The learning rate the next step will use.</summary>
    public double CurrentLearningRate => Options.Schedule.At(Options.Optimizer.LearningRate, _step);
    /// <summary>The device a Cuda model runs on (null on the CPU backends).</summary>
    public string? DeviceDescription => _exec.DeviceDescription;
    /// <summary>Every parameter tensor, in state_dict order ("0.weight", "0.bias", "2.weight", …).</summary>
    public IReadOnlyList<ParameterInfo> Parameters { get; }

    /// <summary>What a training step at <paramref name="batch"/> runs, one kernel call (CPU) or command (Cuda) per line.</summary>
    public IReadOnlyList<string> StepListing(int batch) => _exec.Listing(Plan.TrainingOps, batch);

    private static Span<T> View(Span<T> block, Slot s) => block.Slice(checked((int)s.Offset), checked((int)s.Length));
    private Span<T> Section(Span<T> block, int k) => block.Slice(checked((int)(k * Plan.ParameterSection)), checked((int)Plan.ParameterSection));
    private Span<T> State(Span<T> block, int k) => k < Plan.StateSlots ? Section(block, 2 + k) : default;

    private void Enter()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Interlocked.Exchange(ref _busy, 1) != 0)
            throw new InvalidOperationException("This model is in use by another thread: Step, Predict and Evaluate share its buffers, so call them from one thread at a time (or give each thread its own model).");
        try { OnEnter?.Invoke(); }
        catch
        {
            Exit();
            throw;
        }
    }

    private void Exit() => Volatile.Write(ref _busy, 0);

    /// <summary>Test seam: runs inside every call after it has taken the model, so a test can hold a call open deterministically.</summary>
    internal Action? OnEnter { get; set; }

    /// <summary>One training step on a classification batch: forward, loss, backward, update. Returns the loss.</summary>
    public double Step(ReadOnlySpan<T> x, ReadOnlySpan<int> labels) => Run(Plan.TrainingOps, x, labels, default, classification: true);
    /// <summary>One training step on a regression batch (targets [batch, outputs]). Returns the loss.</summary>
    public double Step(ReadOnlySpan<T> x, ReadOnlySpan<T> targets) => Run(Plan.TrainingOps, x, default, targets, classification: false);

    /// <summary>
    /// The loss of a classification batch and every gradient (read them with <see cref="Gradient"/> and <see cref="InputGradient"/>),
    /// without an update: the parameters and the step count stay. Dropout uses the masks the next step would use.
    /// </summary>
    public double Gradients(ReadOnlySpan<T> x, ReadOnlySpan<int> labels) => Run(Plan.GradientOps, x, labels, default, classification: true);
    /// <summary>As <see cref="Gradients(ReadOnlySpan{T}, ReadOnlySpan{int})"/> on a regression batch.</summary>
    public double Gradients(ReadOnlySpan<T> x, ReadOnlySpan<T> targets) => Run(Plan.GradientOps, x, default, targets, classification: false);

    /// <summary>The training-mode loss of a classification batch (dropout with the next step's masks), and nothing else: what finite differences evaluate.</summary>
    public double Loss(ReadOnlySpan<T> x, ReadOnlySpan<int> labels) => Run(Plan.LossOps, x, labels, default, classification: true);
    /// <summary>As <see cref="Loss(ReadOnlySpan{T}, ReadOnlySpan{int})"/> on a regression batch.</summary>
    public double Loss(ReadOnlySpan<T> x, ReadOnlySpan<T> targets) => Run(Plan.LossOps, x, default, targets, classification: false);

    private double Run(IReadOnlyList<PlanOp> ops, ReadOnlySpan<T> x, ReadOnlySpan<int> labels, ReadOnlySpan<T> targets, bool classification)
    {
        Enter();
        try
        {
            bool training = ReferenceEquals(ops, Plan.TrainingOps);
            int batch = CheckInputs(x, labels, targets, classification, training ? Options.MaxBatch : Plan.Rows);
            if (Plan.BatchNorms.Count > 0) CheckBatchStatistics(batch, training && Plan.SplitsSteps);
            if (training && Plan.SplitsSteps) return SplitStep(x, labels, targets, classification, batch);
            if (classification) labels.CopyTo(_exec.Labels);
            else targets.CopyTo(_exec.Targets);
            x.CopyTo(_exec.Input);
            long t = _step + 1;
            var (loss, finite) = _exec.Run(ops, batch, t);
            _lastBatch = batch;
            _haveGradients = ReferenceEquals(ops, Plan.GradientOps);
            if (ReferenceEquals(ops, Plan.TrainingOps))
            {
                if (!double.IsFinite(loss)) throw new TrainingDivergedException(t, loss, CurrentLearningRate);
                if (!finite) throw Diverged(t, loss);
                _step = t;
            }
            return loss;
        }
        finally { Exit(); }
    }

    // One optimizer step over the micro-batches of a split batch (accumulation, processes): round k runs micro-batch
    // k·N + rank; their gradients are summed in micro-batch order (see Distributed.cs), then one update.
    private double SplitStep(ReadOnlySpan<T> x, ReadOnlySpan<int> labels, ReadOnlySpan<T> targets, bool classification, int batch)
    {
        int outW = Spec.OutputWidth, inW = Spec.InputWidth;
        int M = Plan.MicroBatches, N = _reducer?.Size ?? 1, rank = _reducer?.Rank ?? 0, K = Options.Accumulate;
        long t = _step + 1;
        bool deterministic = _reducer is { Mode: ReductionMode.Deterministic };
        // Every rank knows the batch, so every rank agrees whether a micro-batch is empty (and then none overlaps).
        bool overlap = _reducer is { Overlaps: true } && batch >= M;
        double lossSum = 0;
        bool finite = true;
        for (int k = 0; k < K; k++)
        {
            var (start, count) = DistributedOptions.MicroBatch(batch, M, k * N + rank);
            bool first = k == 0 || deterministic;
            if (count == 0)
            {
                // An empty micro-batch (an epoch's last batch is smaller than M) adds zeros: to the exchange, or locally.
                if (first) _exec.ClearGradients(micro: false);
                else
                {
                    _exec.ClearGradients(micro: true);
                    _exec.Run(Plan.AccumulateOps, 0, t);
                }
            }
            else
            {
                x.Slice(start * inW, count * inW).CopyTo(_exec.Input);
                if (classification) labels.Slice(start, count).CopyTo(_exec.Labels);
                else targets.Slice(start * outW, count * outW).CopyTo(_exec.Targets);
                _exec.Overlap = overlap ? _reducer : null;
                var (loss, ok) = _exec.Run(first ? Plan.MicroFirstOps : Plan.MicroNextOps, count, t, start, batch);
                _exec.Overlap = null;
                lossSum += count * loss;
                finite &= ok;
            }
            if (deterministic)
            {
                long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
                _exec.FoldGradients(_reducer!, k);
                _reducer!.AddTicks(System.Diagnostics.Stopwatch.GetTimestamp() - t0);
            }
        }
        bool stop = false;
        if (_reducer is not null)
        {
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            finite &= _exec.FinishGradients(_reducer, overlap);
            _reducer.AddTicks(System.Diagnostics.Stopwatch.GetTimestamp() - t0);
            (lossSum, finite, stop) = _reducer.Combine(lossSum, finite, StopRequested);
        }
        _stopAgreed = stop;
        _lastBatch = Plan.Rows;
        _haveGradients = false;
        double mean = lossSum / batch;
        if (!double.IsFinite(mean)) throw new TrainingDivergedException(t, mean, CurrentLearningRate);
        if (!finite) throw Diverged(t, mean);
        // A device backend checks the summed gradients itself before it updates (a sum can overflow); it then leaves the parameters.
        if (!_exec.Run(Plan.UpdateOps, 0, t).GradientsFinite) throw Diverged(t, mean);
        _step = t;
        return mean;
    }

    private bool _stopAgreed;

    /// <summary>
    /// Data-parallel training: set by the caller before a step when this process wants to stop (a signal); the step tells every
    /// process, and <see cref="StopAgreed"/> is then true on all of them after that same step. Ignored by a lone process.
    /// </summary>
    public bool StopRequested { get; set; }

    /// <summary>Whether any process asked to stop at the last step (<see cref="StopRequested"/>); for a lone process, <see cref="StopRequested"/> itself.</summary>
    public bool StopAgreed => _reducer is null || !Plan.SplitsSteps ? StopRequested : _stopAgreed;

    /// <summary>Data-parallel training: seconds this process has spent summing gradients across processes (waiting for the others included); 0 alone.</summary>
    public double ReductionSeconds => _reducer is null ? 0 : _reducer.Ticks / (double)System.Diagnostics.Stopwatch.Frequency;

    /// <summary>This process's rank in a data-parallel job (0 alone).</summary>
    public int Rank => _reducer?.Rank ?? 0;
    /// <summary>Processes in the data-parallel job (1 alone).</summary>
    public int WorldSize => _reducer?.Size ?? 1;

    /// <summary>Data-parallel training: makes every process's parameters, optimizer state and step count rank 0's (after a load that may differ between machines).</summary>
    public void SynchronizeParameters()
    {
        Enter();
        try { BroadcastHeld(); }
        finally { Exit(); }
    }

    private unsafe void BroadcastHeld()
    {
        if (_reducer is null) return;
        var block = _exec.WriteParameters();
        fixed (T* p = block) _reducer.Broadcast(p, (long)block.Length * sizeof(T));
        long step = _step;
        _reducer.Broadcast(&step, sizeof(long));
        _step = step;
    }

    // Names the first parameter whose gradient is not finite (the failure path only: it reads the whole gradient section).
    private TrainingDivergedException Diverged(long t, double loss)
    {
        foreach (var p in Parameters)
        {
            var g = ReadHeld(Named(p.Name).Grad);
            for (int i = 0; i < g.Length; i++)
                if (!T.IsFinite(g[i])) return new TrainingDivergedException(t, loss, CurrentLearningRate, p.Name, i, double.CreateTruncating(g[i]));
        }
        return new TrainingDivergedException(t, loss, CurrentLearningRate, "an unknown tensor", -1, double.NaN);
    }

    // The batch a call passes, checked against the loss kind, the limit (a step's whole batch, or what one run holds), the widths and the labels.
    private int CheckInputs(ReadOnlySpan<T> x, ReadOnlySpan<int> labels, ReadOnlySpan<T> targets, bool classification, int limit)
    {
        if (classification)
        {
            if (Spec.Loss != LossKind.CrossEntropy) throw new InvalidOperationException($"this model's loss is {Spec.Loss}; pass target values, not labels.");
            int n = CheckBatch(x, labels.Length, limit);
            Labels.Check(labels, Spec.OutputWidth);
            return n;
        }
        if (Spec.Loss == LossKind.CrossEntropy) throw new InvalidOperationException("this model's loss is cross-entropy; pass class labels, not target values.");
        int batch = CheckBatch(x, targets.Length / Math.Max(1, Spec.OutputWidth), limit);
        if (targets.Length != batch * Spec.OutputWidth)
            throw new ArgumentException($"targets has {targets.Length} values; batch {batch} x {Spec.OutputWidth} outputs needs {batch * Spec.OutputWidth}.", nameof(targets));
        return batch;
    }

    /// <summary>
    /// Whether a training step on <paramref name="batch"/> samples is refused because a BatchNorm would see a (micro-)batch of one
    /// sample (the trainer drops such a last batch of an epoch, as torch's DataLoader(drop_last) would).
    /// </summary>
    internal bool RefusesTrainingBatch(int batch) => Plan.BatchNorms.Count > 0 && SmallestMicroBatch(batch, Plan.MicroBatches) < 2;

    // The fewest samples a non-empty micro-batch of a batch split into microBatches has (the batch itself when not split).
    internal static int SmallestMicroBatch(int batch, int microBatches)
    {
        int smallest = batch;
        for (int k = 0; k < microBatches && microBatches > 1; k++)
        {
            int count = DistributedOptions.MicroBatch(batch, microBatches, k).Count;
            if (count > 0) smallest = Math.Min(smallest, count);
        }
        return smallest;
    }

    // A BatchNorm in training normalizes with the batch's statistics: a (micro-)batch of one sample has none, as torch says.
    private void CheckBatchStatistics(int batch, bool split)
    {
        int smallest = SmallestMicroBatch(batch, split ? Plan.MicroBatches : 1);
        if (smallest < 2)
            throw new ArgumentException($"module {Spec.BatchNormSites[0].Prefix.TrimEnd('.')} (BatchNorm) needs more than 1 sample per batch in training, as torch; " +
                (split ? $"a batch of {batch} in {Plan.MicroBatches} micro-batches has one of {smallest}." : $"got {batch}."), nameof(batch));
    }

    private int CheckBatch(ReadOnlySpan<T> x, int batch, int limit)
    {
        if (batch < 1 || batch > limit)
            throw new ArgumentException($"a batch must hold 1 to {limit} samples (the compiled maximum{(limit < Options.MaxBatch ? $" of one micro-batch: a step's batch of {Options.MaxBatch} is split into {Plan.MicroBatches}" : "")}); got {batch}.", nameof(x));
        if (x.Length != batch * Spec.InputWidth)
            throw new ArgumentException($"x has {x.Length} values; {batch} samples x input width {Spec.InputWidth} needs {batch * Spec.InputWidth}.", nameof(x));
        return batch;
    }

    /// <summary>d(loss)/d(x) [batch, input width] of the last <see cref="Gradients(ReadOnlySpan{T}, ReadOnlySpan{int})"/> call.</summary>
    public ReadOnlySpan<T> InputGradient
    {
        get
        {
            if (!_haveGradients)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                throw new InvalidOperationException("the input gradient is there only after Gradients(...), before the next call.");
            }
            return Activations(Plan.InputGradient);
        }
    }

    /// <summary>Layer <paramref name="layer"/>'s pre-activation of the last training-mode call (a plan that keeps pre-activations; diagnostics).</summary>
    internal ReadOnlySpan<T> PreActivation(int layer) => Activations(Plan.Layers[layer].PreActivation.Exists ? Plan.Layers[layer].PreActivation
        : throw new InvalidOperationException($"layer {layer} keeps no pre-activation in this plan."));

    /// <summary>The network output of the last training-mode call [batch, outputs].</summary>
    internal ReadOnlySpan<T> TrainingOutput => Activations(Plan.TrainingOutput);

    private ReadOnlySpan<T> Activations(Slot slot)
    {
        Enter();
        try { return _exec.Activations(slot, _lastBatch); }
        finally { Exit(); }
    }

    // Forward without dropout over samples [start, start + batch) of x; returns the output rows.
    private ReadOnlySpan<T> Infer(ReadOnlySpan<T> x, int start, int batch)
    {
        int inW = Spec.InputWidth;
        x.Slice(start * inW, batch * inW).CopyTo(_exec.Input);
        _exec.Run(Plan.InferenceOps, batch, _step + 1);
        _haveGradients = false;
        return _exec.Output(batch);
    }

    /// <summary>Network outputs for <paramref name="x"/> ([n, input width]) into <paramref name="output"/> ([n, outputs]); no dropout; allocates nothing.</summary>
    public void Predict(ReadOnlySpan<T> x, Span<T> output)
    {
        Enter();
        try
        {
            int inW = Spec.InputWidth, outW = Spec.OutputWidth;
            if (x.Length % inW != 0) throw new ArgumentException($"x has {x.Length} values, not a multiple of the input width {inW}.", nameof(x));
            int n = x.Length / inW;
            if (output.Length < n * outW) throw new ArgumentException($"output has {output.Length} values; {n} samples x {outW} outputs need {n * outW}.", nameof(output));
            for (int start = 0; start < n; start += Plan.Rows)
            {
                int batch = Math.Min(Plan.Rows, n - start);
                Infer(x, start, batch).CopyTo(output.Slice(start * outW, batch * outW));
            }
        }
        finally { Exit(); }
    }

    /// <summary>Mean loss, accuracy and confusion matrix (rows: true class, columns: predicted) over a labelled set; no dropout.</summary>
    /// <remarks>Data-parallel training: a collective; every process passes the same set, evaluates its share, and gets the combined result.</remarks>
    public EvaluationResult Evaluate(ReadOnlySpan<T> x, ReadOnlySpan<int> labels)
    {
        Enter();
        try
        {
            if (Spec.Loss != LossKind.CrossEntropy) throw new InvalidOperationException($"this model's loss is {Spec.Loss}; evaluate it with target values.");
            int inW = Spec.InputWidth, C = Spec.OutputWidth, n = labels.Length;
            if (x.Length != n * inW) throw new ArgumentException($"x has {x.Length} values; {n} labels x input width {inW} needs {n * inW}.", nameof(x));
            Labels.Check(labels, C);
            var confusion = new long[C, C];
            double loss = MeanLoss(x, labels, default, confusion);
            long correct = 0;
            for (int c = 0; c < C; c++) correct += confusion[c, c];
            return new EvaluationResult(loss, n == 0 ? 0 : (double)correct / n, confusion, n);
        }
        finally { Exit(); }
    }

    /// <summary>Mean loss over a regression set (targets [n, outputs]); no dropout.</summary>
    public double EvaluateLoss(ReadOnlySpan<T> x, ReadOnlySpan<T> targets)
    {
        Enter();
        try
        {
            int inW = Spec.InputWidth, outW = Spec.OutputWidth, n = x.Length / inW;
            if (x.Length != n * inW || targets.Length != n * outW)
                throw new ArgumentException($"x has {x.Length} values and targets {targets.Length}; expected n x {inW} and n x {outW}.", nameof(targets));
            return MeanLoss(x, default, targets, null);
        }
        finally { Exit(); }
    }

    // The mean loss over x in chunks of Rows without dropout; with a confusion matrix, each prediction (the first
    // largest output) is counted in the row of its label. Across processes each takes a contiguous share of the samples
    // and the sums and counts are combined in rank order.
    private double MeanLoss(ReadOnlySpan<T> x, ReadOnlySpan<int> labels, ReadOnlySpan<T> targets, long[,]? confusion)
    {
        int n = x.Length / Spec.InputWidth, outW = Spec.OutputWidth;
        double sum = 0;
        int lo = 0, hi = n;
        if (_reducer is not null)
        {
            lo = (int)((long)n * _reducer.Rank / _reducer.Size);
            hi = (int)((long)n * (_reducer.Rank + 1) / _reducer.Size);
        }
        for (int start = lo; start < hi; start += Plan.Rows)
        {
            int batch = Math.Min(Plan.Rows, hi - start);
            var o = Infer(x, start, batch);
            var lab = labels.IsEmpty ? labels : labels.Slice(start, batch);
            sum += batch * Losses.ForwardBackward(Spec, o, lab, targets.IsEmpty ? targets : targets.Slice(start * outW, batch * outW), _exec.Scratch);
            for (int r = 0; confusion != null && r < batch; r++)
            {
                int best = 0;
                for (int c = 1; c < outW; c++) if (o[r * outW + c] > o[r * outW + best]) best = c;
                confusion[lab[r], best]++;
            }
        }
        if (_reducer is not null)
        {
            int C = confusion?.GetLength(0) ?? 0;
            var v = new double[1 + C * C];
            v[0] = sum;
            for (int i = 0; i < C * C; i++) v[1 + i] = confusion![i / C, i % C];
            _reducer.SumInRankOrder(v);
            sum = v[0];
            for (int i = 0; i < C * C; i++) confusion![i / C, i % C] = (long)v[1 + i];
        }
        return n == 0 ? 0 : sum / n;
    }

    /// <summary>Frees the executor's memory and threads. Using the model afterwards throws <see cref="ObjectDisposedException"/>.</summary>
    /// <remarks>Disposing a model while another thread is inside one of its calls throws <see cref="InvalidOperationException"/> (its memory is in use).</remarks>
    public void Dispose()
    {
        if (_disposed) return;
        if (Interlocked.Exchange(ref _busy, 1) != 0)
            throw new InvalidOperationException("This model is in use by another thread: dispose it after that call returns.");
        _disposed = true;
        _reducer?.Dispose();
        _exec.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>A compiled dense network computing in float: what training uses.</summary>
public sealed class Model : Model<float>
{
    /// <inheritdoc cref="Model{T}(ModelSpec, TrainingOptions)" />
    public Model(ModelSpec spec, TrainingOptions options) : base(spec, options, null, false) { }

    /// <summary>
    /// A model on <paramref name="device"/> (the Cuda backend; <paramref name="options"/>.Backend must be <see cref="Backend.Cuda"/>).
    /// The model does not dispose the device.
    /// </summary>
    public Model(ModelSpec spec, TrainingOptions options, IGpuDevice? device) : base(spec, options, device, false) { }
}
