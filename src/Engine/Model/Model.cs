// A compiled, trainable model: one Plan, one native parameter block (parameters, gradients,
// optimizer state) and one native activation block sized for the largest batch. A training step
// runs the plan's ops on views into those blocks and allocates nothing. One thread uses a model at a
// time; Predict/Evaluate share the activation block with Step, so they too are single-caller, and a
// concurrent second caller gets an InvalidOperationException rather than wrong numbers.
using System.Runtime.InteropServices;
using Backprop.Engine.Cuda;
using Backprop.Engine.Planning;
using Backprop.Kernels.Cuda;
using Backprop.Kernels.Blas;
using Backprop.Kernels.Cpu.Gemm;
using Backprop.Kernels.Cpu.Ops;
using Backprop.Kernels.Cpu.Optim;

namespace Backprop.Engine;

/// <summary>A NaN or infinite loss: training stopped before the update, the parameters are those from before the step.</summary>
public sealed class TrainingDivergedException(long step, double loss, double learningRate)
    : Exception($"Training diverged at step {step}: the loss is {loss}. The parameters from before this step are kept. " +
                $"Try a lower learning rate (it was {learningRate:G3}), gradient clipping (--clip-norm), or normalized inputs.")
{
    /// <summary>The optimizer step (1-based) whose loss was not finite.</summary>
    public long Step { get; } = step;
    /// <summary>The loss seen.</summary>
    public double Loss { get; } = loss;
}

/// <summary>Loss, accuracy and confusion matrix of a model on a dataset.</summary>
public sealed record EvaluationResult(double Loss, double Accuracy, long[,]? Confusion, int Samples);

/// <summary>A compiled dense network with its optimizer, ready to train.</summary>
public sealed unsafe class Model : IDisposable
{
    private readonly Plan _plan;
    private readonly GemmContext _ctx;
    private float* _params;
    private float* _acts;
    private int* _labels;
    private bool _disposed;
    private long _step;
    private int _busy; // 1 while a call uses the activation block: one thread at a time
    // Cuda backend: the device holds the live parameter block. The host copy is brought up to date before
    // the host reads it (_deviceAhead) and sent back before the device next runs after a host write (_hostAhead).
    private CudaExecutor? _cuda;
    private bool _deviceAhead, _hostAhead;

    /// <summary>Compiles <paramref name="spec"/> with <paramref name="options"/> and initializes the parameters.</summary>
    /// <remarks>With <see cref="Backend.Cuda"/> this opens CUDA device 0 and throws <see cref="InvalidOperationException"/> saying why when there is none.</remarks>
    public Model(ModelSpec spec, TrainingOptions options) : this(spec, options, null) { }

    /// <summary>
    /// A model on <paramref name="device"/> (the Cuda backend; <paramref name="options"/>.Backend must be <see cref="Backend.Cuda"/>).
    /// The model does not dispose the device.
    /// </summary>
    public Model(ModelSpec spec, TrainingOptions options, IGpuDevice? device)
    {
        _plan = new Plan(spec, options);
        if (device != null && options.Backend != Backend.Cuda)
            throw new ArgumentException($"a device was given but the backend is {options.Backend}; set Backend = Cuda.", nameof(device));
        if (options.Backend == Backend.Blas) OpenBlas.EnsureAvailable();
        _ctx = new GemmContext(options.Threads);
        _params = (float*)NativeMemory.AlignedAlloc((nuint)(_plan.ParameterBlock * sizeof(float)), 64);
        _acts = (float*)NativeMemory.AlignedAlloc((nuint)(Math.Max(1, _plan.ActivationBlock) * sizeof(float)), 64);
        _labels = (int*)NativeMemory.AlignedAlloc((nuint)(options.MaxBatch * sizeof(int)), 64);
        new Span<float>(_params, checked((int)_plan.ParameterBlock)).Clear();
        new Span<float>(_acts, checked((int)_plan.ActivationBlock)).Clear();
        for (int l = 0; l < spec.Layers.Count; l++)
        {
            var s = _plan.Layers[l];
            Initializers.Initialize<float>(options.Init, options.Seed, (uint)l, spec.Width(l), spec.Layers[l].Units, View(_params, s.Weight), View(_params, s.Bias));
        }
        Optimizer.InitState<float>(options.Optimizer, State(0), State(1), State(2));
        if (options.Backend == Backend.Cuda)
        {
            try
            {
                _cuda = new CudaExecutor(_plan, device ?? CudaGpu.Open(options.AllowTf32), ownsDevice: device == null, options.CudaGraph);
                _cuda.UploadParameters(_params);
                _cuda.UploadActivations(_acts);
            }
            catch
            {
                Dispose();
                throw;
            }
        }
    }

    /// <summary>The device a Cuda model runs on (null on the CPU backends).</summary>
    public string? DeviceDescription => _cuda?.Description;

    /// <summary>The Cuda backend's lowered training step for <paramref name="batch"/>, one command per line.</summary>
    public IReadOnlyList<string> CudaStepListing(int batch) =>
        _cuda?.TrainingListing(batch) ?? throw new InvalidOperationException($"this model runs on the {Options.Backend} backend, not Cuda.");

    // Host reads of the parameter block on the Cuda backend: fetch the device's copy first.
    private void HostRead()
    {
        if (_cuda != null && _deviceAhead)
        {
            _cuda.DownloadParameters(_params);
            _deviceAhead = false;
        }
    }

    // Host writes: the next device run sends the block first.
    private void HostWrite()
    {
        HostRead();
        if (_cuda != null) _hostAhead = true;
    }

    private void DeviceRun()
    {
        if (_hostAhead)
        {
            _cuda!.UploadParameters(_params);
            _hostAhead = false;
        }
    }

    /// <summary>The compiled plan.</summary>
    public Plan Plan => _plan;
    /// <summary>The description.</summary>
    public ModelSpec Spec => _plan.Spec;
    /// <summary>The options.</summary>
    public TrainingOptions Options => _plan.Options;
    /// <summary>Optimizer steps taken.</summary>
    public long StepCount => _step;
    /// <summary>The learning rate the next step will use.</summary>
    public double CurrentLearningRate => Options.Schedule.At(Options.Optimizer.LearningRate, _step);

    private static Span<float> View(float* block, Slot s) => new(block + s.Offset, checked((int)s.Length));
    private Span<float> Section(int k) => new(_params + k * _plan.ParameterSection, checked((int)_plan.ParameterSection));
    private Span<float> State(int k) => k < _plan.StateSlots ? Section(2 + k) : default;

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    // Step, Predict and Evaluate share the activation block, so a model serves one thread at a time.
    // A second concurrent caller gets an exception instead of silently wrong numbers.
    private void Enter()
    {
        ThrowIfDisposed();
        if (Interlocked.Exchange(ref _busy, 1) != 0)
            throw new InvalidOperationException("This model is in use by another thread: Step, Predict and Evaluate share its buffers, so call them from one thread at a time (or give each thread its own model).");
    }

    private void Exit() => Volatile.Write(ref _busy, 0);

    /// <summary>One training step on a classification batch: forward, loss, backward, update. Returns the loss.</summary>
    public double Step(ReadOnlySpan<float> x, ReadOnlySpan<int> labels)
    {
        Enter();
        try
        {
            if (Spec.Loss != LossKind.CrossEntropy) throw new InvalidOperationException($"this model's loss is {Spec.Loss}; pass target values, not labels.");
            int batch = CheckBatch(x, labels.Length);
            Labels.Check(labels, Spec.OutputWidth);
            labels.CopyTo(new Span<int>(_cuda != null ? _cuda.Labels : _labels, batch));
            return Train(x, batch);
        }
        finally { Exit(); }
    }

    /// <summary>One training step on a regression batch (targets [batch, outputs]). Returns the loss.</summary>
    public double Step(ReadOnlySpan<float> x, ReadOnlySpan<float> targets)
    {
        Enter();
        try
        {
            if (Spec.Loss == LossKind.CrossEntropy) throw new InvalidOperationException("this model's loss is cross-entropy; pass class labels, not target values.");
            int batch = CheckBatch(x, targets.Length / Math.Max(1, Spec.OutputWidth));
            if (targets.Length != batch * Spec.OutputWidth)
                throw new ArgumentException($"targets has {targets.Length} values; batch {batch} x {Spec.OutputWidth} outputs needs {batch * Spec.OutputWidth}.", nameof(targets));
            targets.CopyTo(new Span<float>(_cuda != null ? _cuda.Targets : _acts + _plan.Targets.Offset, targets.Length));
            return Train(x, batch);
        }
        finally { Exit(); }
    }

    private int CheckBatch(ReadOnlySpan<float> x, int batch)
    {
        if (batch < 1 || batch > Options.MaxBatch)
            throw new ArgumentException($"a batch must hold 1 to {Options.MaxBatch} samples (the compiled maximum); got {batch}.", nameof(x));
        if (x.Length != batch * Spec.InputWidth)
            throw new ArgumentException($"x has {x.Length} values; {batch} samples x input width {Spec.InputWidth} needs {batch * Spec.InputWidth}.", nameof(x));
        return batch;
    }

    // Runs the plan's training ops in order; the two gradient slots alternate after each BwdData.
    private double Train(ReadOnlySpan<float> x, int batch)
    {
        if (_cuda != null) return TrainCuda(x, batch);
        x.CopyTo(new Span<float>(_acts + _plan.Input.Offset, x.Length));
        long t = _step + 1;
        float* grad = _acts + _plan.GradA.Offset;
        float* other = _acts + _plan.GradB.Offset;
        double loss = double.NaN;
        var ops = _plan.TrainingOps;
        for (int i = 0; i < ops.Count; i++)
        {
            var op = ops[i];
            switch (op.Kind)
            {
                case OpKind.DenseFwd:
                    Forward(op.Layer, batch, training: true);
                    break;
                case OpKind.DropoutFwd:
                    DropoutForward(op.Layer, batch, t);
                    break;
                case OpKind.Loss:
                    loss = LossForwardBackward(_acts + _plan.Layers[^1].Next.Offset, grad, batch);
                    if (!double.IsFinite(loss)) throw new TrainingDivergedException(t, loss, CurrentLearningRate);
                    break;
                case OpKind.OutputBwd:
                    var act = Spec.Layers[op.Layer].Activation;
                    if (act.Kind != ActivationKind.Identity)
                        ActivationDispatch.Backward(act, Saved(op.Layer), grad, grad, batch * Spec.Layers[op.Layer].Units);
                    break;
                case OpKind.DenseBwdWeights:
                    BackwardWeights(op.Layer, batch, grad);
                    break;
                case OpKind.DenseBwdData:
                    BackwardData(op.Layer, batch, grad, other, t);
                    float* swap = grad;
                    grad = other;
                    other = swap;
                    break;
                case OpKind.OptimizerUpdate:
                    Update(t);
                    break;
                default:
                    throw new InvalidOperationException($"unknown plan op {op}");
            }
        }
        _step = t;
        return loss;
    }

    // The whole step on the device: stage the batch and the step's constants, replay the graph, read the status.
    // A non-finite loss makes the device skip the update, so the parameters stay those from before the step.
    private double TrainCuda(ReadOnlySpan<float> x, int batch)
    {
        DeviceRun();
        long t = _step + 1;
        x.CopyTo(new Span<float>(_cuda!.Input, x.Length));
        *_cuda.Constants = CudaExecutor.ConstantsFor(Options, t);
        var status = _cuda.Train(batch);
        if (status.Skip != 0) throw new TrainingDivergedException(t, status.Loss, CurrentLearningRate);
        _step = t;
        _deviceAhead = true;
        return status.Loss;
    }

    private float* Saved(int l)
    {
        var s = _plan.Layers[l];
        return _acts + (Spec.Layers[l].Activation.GradFromOutput ? s.Output.Offset : s.PreActivation.Offset);
    }

    private float* LayerInput(int l, bool training) =>
        _acts + (l == 0 ? _plan.Input.Offset : training ? _plan.Layers[l - 1].Next.Offset : _plan.Layers[l - 1].Output.Offset);

    private void Forward(int l, int batch, bool training)
    {
        var s = Spec.Layers[l];
        var slots = _plan.Layers[l];
        int inW = Spec.Width(l), outW = s.Units;
        float* src = LayerInput(l, training);
        float* w = _params + slots.Weight.Offset, b = _params + slots.Bias.Offset, dst = _acts + slots.Output.Offset;
        float* pre = slots.PreActivation.Exists ? _acts + slots.PreActivation.Offset : null;
        if (Options.Backend == Backend.Cpu)
            ActivationDispatch.DenseFwd(s.Activation, _ctx, batch, inW, outW, src, w, b, dst, pre);
        else
        {
            OpenBlas.Sgemm(Transpose.N, Transpose.T, batch, outW, inW, 1f, src, inW, w, inW, 0f, dst, outW);
            ActivationDispatch.BiasForward(s.Activation, dst, b, batch, outW, pre);
        }
    }

    private void DropoutForward(int l, int batch, long t)
    {
        var slots = _plan.Layers[l];
        int n = batch * Spec.Layers[l].Units;
        Dropout.Apply<float>(Spec.Layers[l].Dropout, Options.Seed, (ulong)t, (uint)l,
            new ReadOnlySpan<float>(_acts + slots.Output.Offset, n), new Span<float>(_acts + slots.DropOutput.Offset, n));
    }

    private double LossForwardBackward(float* output, float* grad, int batch)
    {
        int n = batch * Spec.OutputWidth;
        var o = new ReadOnlySpan<float>(output, n);
        var g = new Span<float>(grad, n);
        return Spec.Loss switch
        {
            LossKind.CrossEntropy => SoftmaxCrossEntropy.ForwardBackward(o, new ReadOnlySpan<int>(_labels, batch), Spec.OutputWidth, g, Spec.LabelSmoothing),
            _ => RegressionLosses.ForwardBackward(RegressionKind(Spec.Loss), o, new ReadOnlySpan<float>(_acts + _plan.Targets.Offset, n), g, Spec.HuberDelta),
        };
    }

    private static RegressionLossKind RegressionKind(LossKind k) => k switch
    {
        LossKind.Mse => RegressionLossKind.Mse,
        LossKind.L1 => RegressionLossKind.L1,
        LossKind.Huber => RegressionLossKind.Huber,
        LossKind.BceWithLogits => RegressionLossKind.BceWithLogits,
        _ => throw new ArgumentOutOfRangeException(nameof(k), k, $"{k} is not an elementwise loss."),
    };

    private void BackwardWeights(int l, int batch, float* dz)
    {
        var slots = _plan.Layers[l];
        int inW = Spec.Width(l), outW = Spec.Layers[l].Units;
        float* src = LayerInput(l, training: true);
        float* dw = _params + slots.WeightGrad.Offset, db = _params + slots.BiasGrad.Offset;
        if (Options.Backend == Backend.Cpu)
            Dense.BwdWeights(_ctx, GradientMode.Overwrite, batch, inW, outW, dz, src, dw, db);
        else
        {
            OpenBlas.Sgemm(Transpose.T, Transpose.N, outW, inW, batch, 1f, dz, outW, src, inW, 0f, dw, inW);
            Elementwise.ColumnSums(dz, batch, outW, db, accumulate: false);
        }
    }

    private void BackwardData(int l, int batch, float* dz, float* dst, long t)
    {
        var slots = _plan.Layers[l];
        var prev = Spec.Layers[l - 1];
        int inW = Spec.Width(l), outW = Spec.Layers[l].Units;
        float* w = _params + slots.Weight.Offset;
        float* saved = Saved(l - 1);
        if (Options.Backend == Backend.Cpu)
            ActivationDispatch.DenseBwdData(prev.Activation, _ctx, batch, inW, outW, dz, w, saved, dst);
        else
        {
            OpenBlas.Sgemm(Transpose.N, Transpose.N, batch, inW, outW, 1f, dz, outW, w, inW, 0f, dst, inW);
            ActivationDispatch.Backward(prev.Activation, saved, dst, dst, batch * inW);
        }
        if (prev.Dropout > 0)
        {
            var d = new Span<float>(dst, batch * inW);
            Dropout.Apply<float>(prev.Dropout, Options.Seed, (ulong)t, (uint)(l - 1), d, d);
        }
    }

    private void Update(long t)
    {
        var opt = Options.Optimizer;
        double lr = Options.Schedule.At(opt.LearningRate, t - 1);
        var grads = Section(1);
        double scale = opt.ClipNorm > 0 ? Optimizer.GlobalNormScale(Optimizer.SumOfSquares<float>(grads, opt.ClipValue), opt.ClipNorm) : 1.0;
        float* sec = _params;
        long len = _plan.ParameterSection;
        int slots = _plan.StateSlots;
        Optimizer.Update(_ctx, opt, new OptimizerStep(lr, t, scale), sec, sec + len,
            slots > 0 ? sec + 2 * len : null, slots > 1 ? sec + 3 * len : null, slots > 2 ? sec + 4 * len : null, len);
    }

    // Forward without dropout over samples [start, start + batch) of x; returns the output slot.
    private float* InferChunk(ReadOnlySpan<float> x, int start, int batch)
    {
        int inW = Spec.InputWidth;
        if (_cuda != null)
        {
            DeviceRun();
            x.Slice(start * inW, batch * inW).CopyTo(new Span<float>(_cuda.Input, batch * inW));
            _cuda.Infer(batch);
            return _cuda.Output;
        }
        x.Slice(start * inW, batch * inW).CopyTo(new Span<float>(_acts + _plan.Input.Offset, batch * inW));
        var ops = _plan.InferenceOps;
        for (int i = 0; i < ops.Count; i++) Forward(ops[i].Layer, batch, training: false);
        return _acts + _plan.Layers[^1].Output.Offset;
    }

    /// <summary>Network outputs for <paramref name="x"/> ([n, input width]) into <paramref name="output"/> ([n, outputs]); no dropout; allocates nothing.</summary>
    public void Predict(ReadOnlySpan<float> x, Span<float> output)
    {
        Enter();
        try { PredictCore(x, output); }
        finally { Exit(); }
    }

    private void PredictCore(ReadOnlySpan<float> x, Span<float> output)
    {
        int inW = Spec.InputWidth, outW = Spec.OutputWidth;
        if (x.Length % inW != 0) throw new ArgumentException($"x has {x.Length} values, not a multiple of the input width {inW}.", nameof(x));
        int n = x.Length / inW;
        if (output.Length < n * outW) throw new ArgumentException($"output has {output.Length} values; {n} samples x {outW} outputs need {n * outW}.", nameof(output));
        for (int start = 0; start < n; start += Options.MaxBatch)
        {
            int batch = Math.Min(Options.MaxBatch, n - start);
            new ReadOnlySpan<float>(InferChunk(x, start, batch), batch * outW).CopyTo(output.Slice(start * outW, batch * outW));
        }
    }

    /// <summary>Mean loss, accuracy and confusion matrix (rows: true class, columns: predicted) over a labelled set; no dropout.</summary>
    public EvaluationResult Evaluate(ReadOnlySpan<float> x, ReadOnlySpan<int> labels)
    {
        Enter();
        try { return EvaluateCore(x, labels); }
        finally { Exit(); }
    }

    private EvaluationResult EvaluateCore(ReadOnlySpan<float> x, ReadOnlySpan<int> labels)
    {
        if (Spec.Loss != LossKind.CrossEntropy) throw new InvalidOperationException($"this model's loss is {Spec.Loss}; evaluate it with target values.");
        int inW = Spec.InputWidth, C = Spec.OutputWidth, n = labels.Length;
        if (x.Length != n * inW) throw new ArgumentException($"x has {x.Length} values; {n} labels x input width {inW} needs {n * inW}.", nameof(x));
        Labels.Check(labels, C);
        var confusion = new long[C, C];
        double lossSum = 0;
        long correct = 0;
        float* grad = _acts + _plan.GradA.Offset;
        for (int start = 0; start < n; start += Options.MaxBatch)
        {
            int batch = Math.Min(Options.MaxBatch, n - start);
            float* o = InferChunk(x, start, batch);
            var lab = labels.Slice(start, batch);
            lossSum += batch * SoftmaxCrossEntropy.ForwardBackward(new ReadOnlySpan<float>(o, batch * C), lab, C, new Span<float>(grad, batch * C), Spec.LabelSmoothing);
            for (int r = 0; r < batch; r++)
            {
                int best = 0;
                for (int c = 1; c < C; c++) if (o[r * C + c] > o[r * C + best]) best = c;
                confusion[lab[r], best]++;
                if (best == lab[r]) correct++;
            }
        }
        return new EvaluationResult(n == 0 ? 0 : lossSum / n, n == 0 ? 0 : (double)correct / n, confusion, n);
    }

    /// <summary>Mean loss over a regression set (targets [n, outputs]); no dropout.</summary>
    public double EvaluateLoss(ReadOnlySpan<float> x, ReadOnlySpan<float> targets)
    {
        Enter();
        try { return EvaluateLossCore(x, targets); }
        finally { Exit(); }
    }

    private double EvaluateLossCore(ReadOnlySpan<float> x, ReadOnlySpan<float> targets)
    {
        int inW = Spec.InputWidth, outW = Spec.OutputWidth;
        int n = x.Length / inW;
        if (x.Length != n * inW || targets.Length != n * outW)
            throw new ArgumentException($"x has {x.Length} values and targets {targets.Length}; expected n x {inW} and n x {outW}.", nameof(targets));
        double sum = 0;
        float* grad = _acts + _plan.GradA.Offset;
        for (int start = 0; start < n; start += Options.MaxBatch)
        {
            int batch = Math.Min(Options.MaxBatch, n - start);
            var o = new ReadOnlySpan<float>(InferChunk(x, start, batch), batch * outW);
            sum += batch * RegressionLosses.ForwardBackward(RegressionKind(Spec.Loss), o, targets.Slice(start * outW, batch * outW), new Span<float>(grad, batch * outW), Spec.HuberDelta);
        }
        return n == 0 ? 0 : sum / n;
    }

    /// <summary>A copy of layer <paramref name="layer"/>'s weights [units, inputs].</summary>
    public float[] GetWeights(int layer) { ThrowIfDisposed(); HostRead(); return View(_params, _plan.Layers[layer].Weight).ToArray(); }
    /// <summary>A copy of layer <paramref name="layer"/>'s bias [units].</summary>
    public float[] GetBias(int layer) { ThrowIfDisposed(); HostRead(); return View(_params, _plan.Layers[layer].Bias).ToArray(); }

    /// <summary>Overwrites layer <paramref name="layer"/>'s weights and bias (shapes must match the plan).</summary>
    public void SetParameters(int layer, ReadOnlySpan<float> weights, ReadOnlySpan<float> bias)
    {
        ThrowIfDisposed();
        var s = _plan.Layers[layer];
        if (weights.Length != s.Weight.Length) throw new ArgumentException($"layer {layer}: weights has {weights.Length} values; [{s.Weight.Rows}, {s.Weight.Cols}] needs {s.Weight.Length}.", nameof(weights));
        if (bias.Length != s.Bias.Length) throw new ArgumentException($"layer {layer}: bias has {bias.Length} values; [{s.Bias.Cols}] needs {s.Bias.Length}.", nameof(bias));
        HostWrite();
        weights.CopyTo(View(_params, s.Weight));
        bias.CopyTo(View(_params, s.Bias));
    }

    /// <summary>A view of a parameter tensor in the parameter block (for checkpoints).</summary>
    internal Span<float> ParameterView(Slot slot) { ThrowIfDisposed(); HostWrite(); return View(_params, slot); }

    /// <summary>A view of optimizer state slot <paramref name="k"/> for the tensor at <paramref name="slot"/>.</summary>
    internal Span<float> StateView(int k, Slot slot)
    {
        ThrowIfDisposed();
        if (k >= _plan.StateSlots) throw new ArgumentOutOfRangeException(nameof(k), k, $"the optimizer has {_plan.StateSlots} state slot(s).");
        HostWrite();
        return new Span<float>(_params + (2 + k) * _plan.ParameterSection + slot.Offset, checked((int)slot.Length));
    }

    /// <summary>Sets the optimizer step count (the schedule position and the dropout stream follow it), for checkpoints.</summary>
    internal void RestoreStepCount(long step)
    {
        ThrowIfDisposed();
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), step, $"step count must be >= 0; got {step}.");
        _step = step;
    }

    /// <summary>Length of the parameter section (all layers' W and b with alignment gaps) for <see cref="CopyParametersTo"/>.</summary>
    public int ParameterSectionLength => checked((int)_plan.ParameterSection);

    /// <summary>Copies every parameter (the whole parameter section) into <paramref name="destination"/>.</summary>
    public void CopyParametersTo(Span<float> destination)
    {
        ThrowIfDisposed();
        HostRead();
        Section(0).CopyTo(destination);
    }

    /// <summary>Overwrites every parameter from a copy made by <see cref="CopyParametersTo"/>.</summary>
    public void CopyParametersFrom(ReadOnlySpan<float> source)
    {
        ThrowIfDisposed();
        if (source.Length != _plan.ParameterSection)
            throw new ArgumentException($"source has {source.Length} values; the parameter section has {_plan.ParameterSection}.", nameof(source));
        HostWrite();
        source.CopyTo(Section(0));
    }

    /// <summary>Frees the native blocks and the worker threads. Using the model afterwards throws <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _cuda?.Dispose();
        _cuda = null;
        _ctx.Dispose();
        NativeMemory.AlignedFree(_params);
        NativeMemory.AlignedFree(_acts);
        NativeMemory.AlignedFree(_labels);
        _params = null;
        _acts = null;
        _labels = null;
    }
}
