// The Plan on a GPU. One device allocation holds everything a step touches, laid out as on the CPU:
//   [ parameter block | activation block | labels | loss terms | norm partials | step constants | step status ]
// and one pinned host allocation stages what crosses the bus:
//   [ input batch | labels or targets | step constants | step status | output batch ].
// The plan's ops are lowered, per batch size, to a fixed list of commands (copies, kernel launches with
// their argument lists built once, GEMMs prepared once); a training step is that list captured once as a
// CUDA graph and replayed: copy in the batch and the step's constants, forward (cuBLASLt with the bias /
// ReLU / GELU epilogues, our kernels for the other activations and dropout), loss, backward (cuBLAS +
// our derivative, dropout and bias-gradient kernels), optimizer, copy out the status. The host writes
// the staging buffers, launches the graph, waits, and reads the loss: nothing is allocated per step.
using System.Runtime.InteropServices;
using Backprop.Engine.Planning;
using Backprop.Kernels.Cpu.Ops;
using Backprop.Kernels.Cpu.Optim;
using Backprop.Kernels.Cuda;

namespace Backprop.Engine.Cuda;

internal sealed unsafe class CudaExecutor : IDisposable
{
    private const uint Block = 256;
    private const int NormParts = 256;

    private readonly Plan _plan;
    private readonly IGpuDevice _gpu;
    private readonly bool _ownsDevice, _useGraph;
    private readonly ulong _arena, _params, _acts, _labels, _terms, _partials, _consts, _status;
    private readonly nint _staging;
    private readonly Dictionary<int, Program> _train = new(), _infer = new();
    private readonly Dictionary<int, nint> _graphs = new();
    private bool _disposed;

    public float* Input { get; }
    public int* Labels { get; }
    public float* Targets { get; }
    public StepConstants* Constants { get; }
    public StepStatus* Status { get; }
    public float* Output { get; }
    public string Description => _gpu.Description;
    public long ArenaBytes { get; }

    public CudaExecutor(Plan plan, IGpuDevice gpu, bool ownsDevice, bool useGraph)
    {
        _plan = plan;
        _gpu = gpu;
        _ownsDevice = ownsDevice;
        _useGraph = useGraph;
        var spec = plan.Spec;
        int B = plan.Options.MaxBatch, outW = spec.OutputWidth;
        long off = 0;
        long Take(long bytes) { long o = off; off += (bytes + 255) / 256 * 256; return o; }
        long pOff = Take(plan.ParameterBlock * 4), aOff = Take(Math.Max(1, plan.ActivationBlock) * 4), lOff = Take(B * 4L),
             tOff = Take((long)B * outW * 4), nOff = Take(NormParts * 4), cOff = Take(sizeof(StepConstants)), sOff = Take(sizeof(StepStatus));
        ArenaBytes = off;
        _arena = gpu.Allocate(off);
        (_params, _acts, _labels, _terms, _partials, _consts, _status) =
            (_arena + (ulong)pOff, _arena + (ulong)aOff, _arena + (ulong)lOff, _arena + (ulong)tOff, _arena + (ulong)nOff, _arena + (ulong)cOff, _arena + (ulong)sOff);

        off = 0;
        long inS = Take((long)B * spec.InputWidth * 4), labS = Take((long)B * Math.Max(1, outW) * 4), cS = Take(sizeof(StepConstants)),
             sS = Take(sizeof(StepStatus)), oS = Take((long)B * outW * 4);
        _staging = gpu.AllocatePinned(off);
        byte* s = (byte*)_staging;
        Input = (float*)(s + inS);
        Labels = (int*)(s + labS);
        Targets = (float*)(s + labS);
        Constants = (StepConstants*)(s + cS);
        Status = (StepStatus*)(s + sS);
        Output = (float*)(s + oS);
    }

    private ulong Act(Slot slot) => _acts + (ulong)(slot.Offset * 4);
    private ulong Par(Slot slot) => _params + (ulong)(slot.Offset * 4);
    private ulong Section(int k) => _params + (ulong)(k * _plan.ParameterSection * 4);

    /// <summary>Host parameter block → device (whole block: parameters, gradients, optimizer state).</summary>
    public void UploadParameters(float* host)
    {
        _gpu.CopyToDevice(_params, (nint)host, _plan.ParameterBlock * 4);
        _gpu.Synchronize();
    }

    /// <summary>Device parameter block → host.</summary>
    public void DownloadParameters(float* host)
    {
        _gpu.CopyToHost((nint)host, _params, _plan.ParameterBlock * 4);
        _gpu.Synchronize();
    }

    /// <summary>Host activation block → device (once, so that alignment gaps are zero as on the CPU).</summary>
    public void UploadActivations(float* host)
    {
        _gpu.CopyToDevice(_acts, (nint)host, Math.Max(1, _plan.ActivationBlock) * 4);
        _gpu.Synchronize();
    }

    /// <summary>Runs a training step on the staged batch and constants; returns the device's status.</summary>
    public StepStatus Train(int batch)
    {
        if (!_train.TryGetValue(batch, out var program)) program = TrainProgram(batch);
        if (_useGraph)
        {
            if (!_graphs.TryGetValue(batch, out var graph))
            {
                _gpu.BeginCapture();
                try { program.Run(_gpu); }
                finally { graph = _gpu.EndCapture(); }
                _graphs[batch] = graph;
            }
            _gpu.LaunchGraph(graph);
        }
        else program.Run(_gpu);
        _gpu.Synchronize();
        return *Status;
    }

    /// <summary>Forward (no dropout) on the staged input; the outputs land in <see cref="Output"/>.</summary>
    public void Infer(int batch)
    {
        if (!_infer.TryGetValue(batch, out var program)) _infer[batch] = program = InferProgram(batch);
        program.Run(_gpu);
        _gpu.Synchronize();
    }

    // ---- lowering ----

    private sealed class Program : IDisposable
    {
        private readonly List<Action<IGpuDevice>> _steps = [];
        private readonly List<KernelArgs> _args = [];
        public List<string> Listing { get; } = [];
        public void Add(string what, Action<IGpuDevice> step) { Listing.Add(what); _steps.Add(step); }
        public KernelArgs Keep(KernelArgs a) { _args.Add(a); return a; }
        public void Run(IGpuDevice gpu) { foreach (var s in _steps) s(gpu); }
        public void Dispose() { foreach (var a in _args) a.Dispose(); }
    }

    private uint Grid(long n) => (uint)Math.Clamp((n + Block - 1) / Block, 1, Math.Max(1, _gpu.Multiprocessors) * 8L);

    private void Kernel(Program p, string source, string name, uint grid, uint block, params object[] args)
    {
        nint f = _gpu.GetFunction(source, name);
        var a = p.Keep(new KernelArgs(args));
        p.Add($"{name}<<<{grid}, {block}>>>", g => g.Launch(f, grid, block, a));
    }

    private void Gemm(Program p, string what, in GemmDesc desc)
    {
        nint h = _gpu.PrepareGemm(desc);
        p.Add($"{what} {(desc.NeedsLt ? "cublasLtMatmul " + desc.Epilogue : "cublasSgemm")} {desc.M}x{desc.N}x{desc.K}", g => g.Gemm(h));
    }

    private static int Kind(Activation a) => (int)a.Kind;
    private static float Param(Activation a) => (float)a.EffectiveParameter;

    private ulong Saved(int l)
    {
        var s = _plan.Layers[l];
        return Act(_plan.Spec.Layers[l].Activation.GradFromOutput ? s.Output : s.PreActivation);
    }

    private void Forward(Program p, int l, int batch, bool training)
    {
        var spec = _plan.Spec;
        var layer = spec.Layers[l];
        var slots = _plan.Layers[l];
        int inW = spec.Width(l), units = layer.Units;
        ulong src = l == 0 ? Act(_plan.Input) : Act(training ? _plan.Layers[l - 1].Next : _plan.Layers[l - 1].Output);
        ulong dst = Act(slots.Output), w = Par(slots.Weight), b = Par(slots.Bias);
        var kind = layer.Activation.Kind;
        // cuBLASLt's GELU epilogue is the tanh approximation; its aux output is the pre-activation GELU' needs.
        // cuBLASLt wants the GELU aux leading dimension divisible by 8 (CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD);
        // other widths take the BIAS epilogue and our kernel. (ReLU's aux would be a bit mask with ld divisible
        // by 128; ReLU backward reads its output instead, so no aux is needed.)
        var (epi, aux) = kind switch
        {
            ActivationKind.Identity => (LtEpilogue.Bias, 0UL),
            ActivationKind.ReLU => (LtEpilogue.ReluBias, 0UL),
            ActivationKind.GELUTanh when units % 8 == 0 => (LtEpilogue.GeluAuxBias, Act(slots.PreActivation)),
            _ => (LtEpilogue.Bias, 0UL),
        };
        Gemm(p, $"dense{l} fwd", GemmDesc.RowMajor(epi, false, true, batch, units, inW, src, inW, w, inW, dst, units, bias: b, aux: aux, auxLd: aux != 0 ? units : 0));
        bool fused = kind is ActivationKind.Identity or ActivationKind.ReLU || epi == LtEpilogue.GeluAuxBias;
        if (!fused)
            Kernel(p, "activations.cu", "bias_act_fwd", Grid((long)batch * units), Block,
                dst, 0UL, slots.PreActivation.Exists ? Act(slots.PreActivation) : 0UL, batch, units, Kind(layer.Activation), Param(layer.Activation));
    }

    private void Dropout(Program p, int layer, ulong x, ulong y, long n)
    {
        double prob = _plan.Spec.Layers[layer].Dropout;
        long groups = (n + 3) / 4;
        Kernel(p, "dropout.cu", "dropout_apply", (uint)Math.Max(1, (groups + Block - 1) / Block), Block,
            x, y, n, _plan.Options.Seed, _consts, (uint)layer, Kernels.Cpu.Ops.Dropout.Threshold(prob), (float)(1.0 / (1.0 - prob)));
    }

    private Program InferProgram(int batch)
    {
        var p = new Program();
        var spec = _plan.Spec;
        p.Add("copy input", g => g.CopyToDevice(Act(_plan.Input), (nint)Input, (long)batch * spec.InputWidth * 4));
        foreach (var op in _plan.InferenceOps) Forward(p, op.Layer, batch, training: false);
        p.Add("copy output", g => g.CopyToHost((nint)Output, Act(_plan.Layers[^1].Output), (long)batch * spec.OutputWidth * 4));
        return p;
    }

    private Program TrainProgram(int batch)
    {
        var p = new Program();
        _train[batch] = p;
        var spec = _plan.Spec;
        var opt = _plan.Options.Optimizer;
        int outW = spec.OutputWidth;
        bool ce = spec.Loss == LossKind.CrossEntropy;
        p.Add("copy input", g => g.CopyToDevice(Act(_plan.Input), (nint)Input, (long)batch * spec.InputWidth * 4));
        if (ce) p.Add("copy labels", g => g.CopyToDevice(_labels, (nint)Labels, batch * 4L));
        else p.Add("copy targets", g => g.CopyToDevice(Act(_plan.Targets), (nint)Targets, (long)batch * outW * 4));
        p.Add("copy step constants", g => g.CopyToDevice(_consts, (nint)Constants, sizeof(StepConstants)));
        ulong grad = Act(_plan.GradA), other = Act(_plan.GradB);
        foreach (var op in _plan.TrainingOps)
        {
            switch (op.Kind)
            {
                case OpKind.DenseFwd:
                    Forward(p, op.Layer, batch, training: true);
                    break;
                case OpKind.DropoutFwd:
                {
                    var s = _plan.Layers[op.Layer];
                    Dropout(p, op.Layer, Act(s.Output), Act(s.DropOutput), (long)batch * spec.Layers[op.Layer].Units);
                    break;
                }
                case OpKind.Loss:
                {
                    ulong o = Act(_plan.Layers[^1].Next);
                    long n = (long)batch * outW;
                    if (ce)
                    {
                        Kernel(p, "losses.cu", "softmax_ce", (uint)((batch * 32L + Block - 1) / Block), Block, o, _labels, grad, _terms, batch, outW, (float)spec.LabelSmoothing);
                        Kernel(p, "losses.cu", "loss_reduce", 1, Block, _terms, (long)batch, (double)batch, _status);
                    }
                    else
                    {
                        ulong t = Act(_plan.Targets);
                        switch (spec.Loss)
                        {
                            case LossKind.Mse: Kernel(p, "losses.cu", "mse", Grid(n), Block, o, t, grad, _terms, n); break;
                            case LossKind.L1: Kernel(p, "losses.cu", "l1_loss", Grid(n), Block, o, t, grad, _terms, n); break;
                            case LossKind.Huber: Kernel(p, "losses.cu", "huber", Grid(n), Block, o, t, grad, _terms, n, (float)spec.HuberDelta); break;
                            case LossKind.BceWithLogits: Kernel(p, "losses.cu", "bce_with_logits", Grid(n), Block, o, t, grad, _terms, n); break;
                            default: throw new NotSupportedException($"loss {spec.Loss} has no CUDA kernel.");
                        }
                        Kernel(p, "losses.cu", "loss_reduce", 1, Block, _terms, n, (double)n, _status);
                    }
                    break;
                }
                case OpKind.OutputBwd:
                {
                    var a = spec.Layers[op.Layer].Activation;
                    if (a.Kind != ActivationKind.Identity)
                    {
                        long n = (long)batch * spec.Layers[op.Layer].Units;
                        Kernel(p, "activations.cu", "act_bwd", Grid(n), Block, Saved(op.Layer), grad, grad, n, Kind(a), Param(a));
                    }
                    break;
                }
                case OpKind.DenseBwdWeights:
                {
                    int l = op.Layer, inW = spec.Width(l), units = spec.Layers[l].Units;
                    var s = _plan.Layers[l];
                    ulong src = l == 0 ? Act(_plan.Input) : Act(_plan.Layers[l - 1].Next);
                    Gemm(p, $"dense{l} dW", GemmDesc.RowMajor(LtEpilogue.Default, true, false, units, inW, batch, grad, units, src, inW, Par(s.WeightGrad), inW));
                    Kernel(p, "activations.cu", "column_sums", (uint)((units + Block - 1) / Block), Block, grad, Par(s.BiasGrad), batch, units, 0);
                    break;
                }
                case OpKind.DenseBwdData:
                {
                    int l = op.Layer, inW = spec.Width(l), units = spec.Layers[l].Units;
                    var prev = spec.Layers[l - 1];
                    Gemm(p, $"dense{l} dX", GemmDesc.RowMajor(LtEpilogue.Default, false, false, batch, inW, units, grad, units, Par(_plan.Layers[l].Weight), inW, other, inW));
                    long n = (long)batch * inW;
                    if (prev.Activation.Kind != ActivationKind.Identity)
                        Kernel(p, "activations.cu", "act_bwd", Grid(n), Block, Saved(l - 1), other, other, n, Kind(prev.Activation), Param(prev.Activation));
                    if (prev.Dropout > 0) Dropout(p, l - 1, other, other, n);
                    (grad, other) = (other, grad);
                    break;
                }
                case OpKind.OptimizerUpdate:
                    Update(p);
                    break;
                default:
                    throw new InvalidOperationException($"unknown plan op {op}");
            }
        }
        p.Add("copy status", g => g.CopyToHost((nint)Status, _status, sizeof(StepStatus)));
        return p;
    }

    private void Update(Program p)
    {
        var o = _plan.Options.Optimizer;
        long n = _plan.ParameterSection;
        ulong prm = Section(0), g = Section(1);
        int slots = _plan.StateSlots;
        ulong S(int k) => k < slots ? Section(2 + k) : 0UL;
        bool useScale = o.ClipNorm > 0;
        if (useScale)
        {
            Kernel(p, "optim.cu", "sumsq_partial", NormParts, Block, g, n, (float)o.ClipValue, _partials);
            Kernel(p, "optim.cu", "sumsq_final", 1, 32, _partials, NormParts, (float)o.ClipNorm, _status);
        }
        float clip = (float)o.ClipValue, l1 = (float)o.L1, wd = (float)o.WeightDecay;
        int sc = useScale ? 1 : 0;
        switch (o.Kind)
        {
            case OptimizerKind.Sgd:
                Kernel(p, "optim.cu", "sgd_update", Grid(n), Block, prm, g, S(0), n, (float)o.Momentum, (float)o.Dampening, wd, o.Nesterov ? 1 : 0, clip, sc, l1, _consts, _status);
                break;
            case OptimizerKind.Adam:
            case OptimizerKind.AdamW:
                Kernel(p, "optim.cu", "adam_update", Grid(n), Block, prm, g, S(0), S(1), o.Amsgrad ? S(2) : 0UL, n, (float)o.Beta1, (float)o.Beta2, (float)o.Eps, wd,
                    o.Kind == OptimizerKind.AdamW ? 1 : 0, o.Amsgrad ? 1 : 0, clip, sc, l1, _consts, _status);
                break;
            case OptimizerKind.RMSprop:
            {
                ulong avg = o.Centered ? S(1) : 0UL, buf = o.Momentum > 0 ? (o.Centered ? S(2) : S(1)) : 0UL;
                Kernel(p, "optim.cu", "rmsprop_update", Grid(n), Block, prm, g, S(0), avg, buf, n, (float)o.Alpha, (float)o.Eps, wd, (float)o.Momentum, o.Centered ? 1 : 0, clip, sc, l1, _consts, _status);
                break;
            }
            case OptimizerKind.Adagrad:
                Kernel(p, "optim.cu", "adagrad_update", Grid(n), Block, prm, g, S(0), n, (float)o.Eps, wd, clip, sc, l1, _consts, _status);
                break;
            default:
                throw new NotSupportedException($"optimizer {o.Kind} has no CUDA kernel.");
        }
    }

    /// <summary>The lowered training step for <paramref name="batch"/>, one command per line (for diagnostics and tests).</summary>
    public IReadOnlyList<string> TrainingListing(int batch)
    {
        if (!_train.TryGetValue(batch, out var p)) p = TrainProgram(batch);
        return p.Listing;
    }

    /// <summary>Fills the step constants for step <paramref name="t"/> (1-based) with the CPU optimizer's own formulas.</summary>
    public static StepConstants ConstantsFor(TrainingOptions options, long t)
    {
        var o = options.Optimizer;
        double lr = options.Schedule.At(o.LearningRate, t - 1);
        var c = new StepConstants { Step = (ulong)t, LearningRate = (float)lr, First = t == 1 ? 1 : 0, StepSize = (float)lr, SqrtBiasCorrection2 = 1, Decay = 1 };
        switch (o.Kind)
        {
            case OptimizerKind.Adam:
            case OptimizerKind.AdamW:
                c.StepSize = (float)Optimizer.AdamStepSize(lr, o.Beta1, t);
                c.SqrtBiasCorrection2 = (float)Optimizer.AdamSqrtBiasCorrection2(o.Beta2, t);
                c.Decay = 1f - (float)lr * (float)o.WeightDecay;
                break;
            case OptimizerKind.Adagrad:
                c.StepSize = (float)Optimizer.AdagradLearningRate(lr, o.LrDecay, t);
                break;
        }
        return c;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var g in _graphs.Values) _gpu.DestroyGraph(g);
        foreach (var p in _train.Values) p.Dispose();
        foreach (var p in _infer.Values) p.Dispose();
        _gpu.FreePinned(_staging);
        _gpu.Free(_arena);
        if (_ownsDevice) _gpu.Dispose();
    }
}
