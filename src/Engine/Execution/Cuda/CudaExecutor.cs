// The Plan on a GPU. One device allocation holds everything a step touches, laid out as on the CPU:
//   [ parameter block | activation block | labels | loss terms | norm partials | step constants | step status ]
// and one pinned host allocation stages what crosses the bus:
//   [ input batch | labels or targets | step constants | step status | output batch ].
// Each op list of the plan is lowered, per batch size, to a fixed list of commands (copies, typed kernel
// launches with their argument lists built once, GEMMs prepared once), one case per op kind: forward
// (cuBLASLt with the bias / ReLU / GELU epilogues, our kernels for the other activations and dropout), loss,
// backward (cuBLAS + our derivative, dropout and bias-gradient kernels), optimizer. The training step is that
// list captured once as a CUDA graph and replayed; the host writes the staging buffers, launches, waits, and
// reads the loss: nothing is allocated per step. A micro-batch of an accumulated step is its own list (keyed
// also by its first row, which moves the dropout masks, and by the whole batch's size, which divides the loss
// gradient), launched eagerly; the later micro-batches add their gradients into the grads section on the device.
// Across processes the gradient section is summed on the device through NCCL, on the device's stream, in the
// order of the CPU backend's exchange: deterministic: an all-to-all of the section after each round, each rank
// folding its chunk (copy_floats of rank 0's, add_into of the others'), then an all-gather; fast: an all-reduce.
// The device holds the live parameter block. The host keeps a mirror with explicit access: a read brings it
// up to date (one download after the device ran), a write marks it ahead so the next run uploads it first.
using System.Runtime.InteropServices;
using Backprop.Engine.Planning;
using Backprop.Engine.Training;
using Backprop.Kernels;
using Backprop.Kernels.Cuda;

namespace Backprop.Engine.Execution.Cuda;

internal sealed unsafe class CudaExecutor : IExecutor<float>
{
    private const uint Block = 256;
    private const int NormParts = 256;

    private readonly Plan _plan;
    private readonly IGpuDevice _gpu;
    private readonly bool _ownsDevice, _useGraph;
    private readonly ulong _arena, _params, _acts, _labels, _terms, _partials, _consts, _status;
    // Precision = Bf16: bf16 mirrors of the parameter values and of the activation block (same offsets, 2 bytes an element), written
    // by to_bf16 before the first GEMM of a program that reads them and reused only while their float values stand (Operand).
    private readonly bool _bf16;
    private readonly ulong _params16, _acts16;
    private readonly nint _staging;
    private readonly float* _input, _targets, _output;
    private readonly int* _labelStage;
    private readonly StepConstants* _constants;
    private readonly StepStatus* _stepStatus;
    private float* _host, _hostActs, _scratch;
    private bool _hostAhead, _deviceAhead;
    private readonly Dictionary<(IReadOnlyList<PlanOp> Ops, int Batch, int RowOffset, int GradientRows), Program> _programs = [];
    private readonly Dictionary<int, nint> _graphs = [];
    private bool _disposed;
    private readonly NcclCommunicator? _nccl;
    private readonly ulong _recv, _acc;
    private readonly long _chunk;
    private readonly CudaLaunch[] _fold = []; // [0]: acc = chunk of rank 0; [1 + r]: acc += chunk of rank r

    public CudaExecutor(Plan plan, IGpuDevice gpu, bool ownsDevice, bool useGraph)
    {
        _plan = plan;
        _gpu = gpu;
        _ownsDevice = ownsDevice;
        _useGraph = useGraph;
        var spec = plan.Spec;
        int B = plan.Rows, outW = spec.OutputWidth;
        long off = 0;
        long Take(long bytes) { long o = off; off += (bytes + 255) / 256 * 256; return o; }
        long pOff = Take(plan.ParameterBlock * 4), aOff = Take(Math.Max(1, plan.ActivationBlock) * 4), lOff = Take(B * 4L),
             tOff = Take((long)B * outW * 4), nOff = Take(NormParts * 4), cOff = Take(sizeof(StepConstants)), sOff = Take(sizeof(StepStatus));
        _bf16 = plan.Options.Precision == Kernels.Cpu.GemmPrecision.Bf16;
        long p16Off = Take(_bf16 ? plan.ParameterSection * 2 : 0), a16Off = Take(_bf16 ? Math.Max(1, plan.ActivationBlock) * 2 : 0);
        ArenaBytes = off;
        try
        {
            _arena = gpu.Allocate(off);
            (_params, _acts, _labels, _terms, _partials, _consts, _status) =
                (_arena + (ulong)pOff, _arena + (ulong)aOff, _arena + (ulong)lOff, _arena + (ulong)tOff, _arena + (ulong)nOff, _arena + (ulong)cOff, _arena + (ulong)sOff);
            (_params16, _acts16) = _bf16 ? (_arena + (ulong)p16Off, _arena + (ulong)a16Off) : (0UL, 0UL);

            off = 0;
            long inS = Take((long)B * spec.InputWidth * 4), labS = Take((long)B * Math.Max(1, outW) * 4), cS = Take(sizeof(StepConstants)),
                 sS = Take(sizeof(StepStatus)), oS = Take((long)B * outW * 4);
            _staging = gpu.AllocatePinned(off);
            byte* s = (byte*)_staging;
            _input = (float*)(s + inS);
            _labelStage = (int*)(s + labS);
            _targets = (float*)(s + labS);
            _constants = (StepConstants*)(s + cS);
            _stepStatus = (StepStatus*)(s + sS);
            _output = (float*)(s + oS);

            _host = (float*)NativeMemory.AlignedAlloc((nuint)(plan.ParameterBlock * 4), 64);
            _scratch = (float*)NativeMemory.AlignedAlloc((nuint)((long)B * outW * 4), 64);
            new Span<float>(_host, checked((int)plan.ParameterBlock)).Clear();
            _hostAhead = true;
            // Zero the activation block once, so alignment gaps read as zeros as on the CPU.
            var zeros = new float[Math.Max(1, plan.ActivationBlock)];
            fixed (float* z = zeros) _gpu.CopyToDevice(_acts, (nint)z, zeros.Length * 4L);
            _gpu.Synchronize();
            if (plan.Options.Distributed is { } d)
            {
                _nccl = d.DeviceCollectives!(gpu);
                if (_nccl.Size != d.Collectives.Size || _nccl.Rank != d.Collectives.Rank)
                    throw new InvalidOperationException($"the device communicator is rank {_nccl.Rank} of {_nccl.Size}, the job's rank {d.Collectives.Rank} of {d.Collectives.Size}.");
                _chunk = plan.ParameterSection / _nccl.Size;
                if (d.Mode == ReductionMode.Deterministic)
                {
                    _recv = gpu.Allocate(plan.ParameterSection * 4);
                    _acc = gpu.Allocate(Math.Max(1, _chunk) * 4);
                    _fold = new CudaLaunch[1 + _nccl.Size];
                    _fold[0] = CudaKernels.CopyFloats(gpu, Grid(_chunk), Block, _acc, _recv, _chunk);
                    for (int r = 0; r < _nccl.Size; r++)
                        _fold[1 + r] = CudaKernels.AddInto(gpu, Grid(_chunk), Block, _acc, _recv + (ulong)(r * _chunk * 4), _chunk, _status);
                }
            }
        }
        catch
        {
            foreach (var k in _fold) k?.Args.Dispose();
            _nccl?.Dispose();
            if (_recv != 0) gpu.Free(_recv);
            if (_acc != 0) gpu.Free(_acc);
            FreeMemory(); // a device the caller owns must not keep what this constructor allocated
            throw;
        }
    }

    public string? DeviceDescription => _gpu.Description;
    public long ArenaBytes { get; }
    public Span<float> Input => new(_input, _plan.Rows * _plan.Spec.InputWidth);
    public Span<int> Labels => new(_labelStage, _plan.Rows);
    public Span<float> Targets => new(_targets, _plan.Rows * _plan.Spec.OutputWidth);
    public Span<float> Scratch => new(_scratch, _plan.Rows * _plan.Spec.OutputWidth);

    private ulong Act(Slot slot) => _acts + (ulong)(slot.Offset * 4);
    private ulong Par(Slot slot) => _params + (ulong)(slot.Offset * 4);
    private ulong Act16(Slot slot) => _acts16 + (ulong)(slot.Offset * 2);
    private ulong Par16(Slot slot) => _params16 + (ulong)(slot.Offset * 2);

    // A GEMM operand: the float slot itself, or (bf16) its mirror. The mirror is converted now unless this program converted the
    // same operand for the same layer earlier (key), while its float values cannot have changed since: a layer's input from its
    // forward to its dW (the plan keeps it live and unwritten), its weights from its forward to its dX (until the update), its dZ
    // from its dW to its dX (the next op).
    private ulong Operand(Program p, (char Role, int Layer) key, Slot slot, ulong at, ulong mirror, long n)
    {
        if (!_bf16) return at;
        if (p.Mirrored.TryGetValue(key, out var done) && done == slot) return mirror;
        p.Add(CudaKernels.ToBf16(_gpu, Grid(n), Block, at, mirror, n));
        p.Mirrored[key] = slot;
        return mirror;
    }

    private ulong ActOperand(Program p, char role, int layer, Slot slot, int rows) =>
        Operand(p, (role, layer), slot, Act(slot), Act16(slot), (long)rows * slot.Cols);
    private ulong ParOperand(Program p, int layer, Slot slot) => Operand(p, ('w', layer), slot, Par(slot), Par16(slot), (long)slot.Rows * slot.Cols);

    private ulong Section(int k) => _params + (ulong)(k * _plan.ParameterSection * 4);

    // ---- the host mirror ----

    public ReadOnlySpan<float> ReadParameters()
    {
        if (_deviceAhead)
        {
            _gpu.CopyToHost((nint)_host, _params, _plan.ParameterBlock * 4);
            _gpu.Synchronize();
            _deviceAhead = false;
        }
        return new(_host, checked((int)_plan.ParameterBlock));
    }

    public Span<float> WriteParameters()
    {
        ReadParameters();
        _hostAhead = true;
        return new(_host, checked((int)_plan.ParameterBlock));
    }

    private void Upload()
    {
        if (!_hostAhead) return;
        _gpu.CopyToDevice(_params, (nint)_host, _plan.ParameterBlock * 4);
        _gpu.Synchronize();
        _hostAhead = false;
    }

    // ---- running ----

    public RunResult Run(IReadOnlyList<PlanOp> ops, int batch, long step, int rowOffset = 0, int gradientRows = 0)
    {
        if (gradientRows == batch) gradientRows = 0;
        Upload();
        *_constants = ConstantsFor(_plan.Options, step);
        var key = (ops, batch, rowOffset, gradientRows);
        if (!_programs.TryGetValue(key, out var program)) _programs[key] = program = Lower(ops, batch, rowOffset, gradientRows);
        if (_useGraph && ReferenceEquals(ops, _plan.TrainingOps))
        {
            if (!_graphs.TryGetValue(batch, out var graph))
            {
                _gpu.BeginCapture();
                try { program.Run(_gpu); }
                catch
                {
                    // End the capture and free what it made; the error that stopped it is the one to report.
                    try { _gpu.DestroyGraph(_gpu.EndCapture()); }
                    catch (Exception e) when (e is CudaException or InvalidOperationException) { }
                    throw;
                }
                graph = _gpu.EndCapture();
                _graphs[batch] = graph;
            }
            _gpu.LaunchGraph(graph);
        }
        else program.Run(_gpu);
        _gpu.Synchronize();
        if (program.Backward) _deviceAhead = true;
        return new RunResult(program.HasLoss ? _stepStatus->Loss : double.NaN, !program.ReadsStatus || _stepStatus->Skip != 2);
    }

    public ReadOnlySpan<float> Output(int batch) => new(_output, batch * _plan.Spec.OutputWidth);

    private float[]? _zeros;

    public void ClearGradients(bool micro)
    {
        Upload();
        _zeros ??= new float[_plan.ParameterSection]; // once: an empty micro-batch is rare (an epoch's last batch)
        fixed (float* z = _zeros) _gpu.CopyToDevice(Section(micro ? 2 + _plan.StateSlots : 1), (nint)z, _plan.ParameterSection * 4);
        _gpu.Synchronize();
        _deviceAhead = true;
    }

    // NCCL sums after the backward pass; the device's stream orders it.
    public GradientReducer? Overlap { set { } }

    public void FoldGradients(GradientReducer reducer, int round)
    {
        var nccl = _nccl ?? throw new InvalidOperationException("this model has no device communicator.");
        nccl.Alltoall(Section(1), _recv, _chunk);
        if (round == 0) Launch(_fold[0]);
        for (int r = round == 0 ? 1 : 0; r < nccl.Size; r++) Launch(_fold[1 + r]);
    }

    // The update's own gradient check (grad_check or the norm) then decides whether the sum is finite.
    public bool FinishGradients(GradientReducer reducer, bool overlapped)
    {
        var nccl = _nccl ?? throw new InvalidOperationException("this model has no device communicator.");
        if (reducer.Mode == ReductionMode.Deterministic) nccl.Allgather(_acc, Section(1), _chunk);
        else nccl.AllreduceSum(Section(1), _plan.ParameterSection);
        _gpu.Synchronize();
        _deviceAhead = true;
        return true;
    }

    private void Launch(CudaLaunch k) => _gpu.Launch(k.Function, k.Grid, k.Block, k.Args);

    public ReadOnlySpan<float> Activations(Slot slot, int batch)
    {
        if (_hostActs == null) _hostActs = (float*)NativeMemory.AlignedAlloc((nuint)(Math.Max(1, _plan.ActivationBlock) * 4), 64);
        _gpu.CopyToHost((nint)(_hostActs + slot.Offset), Act(slot), (long)batch * slot.Cols * 4);
        _gpu.Synchronize();
        return new(_hostActs + slot.Offset, batch * slot.Cols);
    }

    public IReadOnlyList<string> Listing(IReadOnlyList<PlanOp> ops, int batch)
    {
        if (!_programs.TryGetValue((ops, batch, 0, 0), out var program)) _programs[(ops, batch, 0, 0)] = program = Lower(ops, batch, 0, 0);
        return program.Listing;
    }

    // ---- lowering: one case per op kind ----

    private sealed class Program : IDisposable
    {
        private readonly List<Action<IGpuDevice>> _steps = [];
        private readonly List<KernelArgs> _args = [];
        public List<string> Listing { get; } = [];
        public bool HasLoss { get; set; }
        public bool ReadsStatus { get; set; }
        public bool Backward { get; set; }
        /// <summary>bf16: the operands whose mirrors this program has written and may still read, by role ('x', 'w', 'z') and layer.</summary>
        public Dictionary<(char Role, int Layer), Slot> Mirrored { get; } = [];
        public void Add(string what, Action<IGpuDevice> step) { Listing.Add(what); _steps.Add(step); }
        public void Add(CudaLaunch k)
        {
            _args.Add(k.Args);
            Add($"{k.Name}<<<{k.Grid}, {k.Block}>>>", g => g.Launch(k.Function, k.Grid, k.Block, k.Args));
        }
        public void Run(IGpuDevice gpu) { foreach (var s in _steps) s(gpu); }
        public void Dispose() { foreach (var a in _args) a.Dispose(); }
    }

    private uint Grid(long n) => (uint)Math.Clamp((n + Block - 1) / Block, 1, Math.Max(1, _gpu.Multiprocessors) * 8L);

    private void Gemm(Program p, string what, in GemmDesc desc)
    {
        nint h = _gpu.PrepareGemm(desc);
        p.Add($"{what} {(desc.NeedsLt ? "cublasLtMatmul " + desc.Epilogue : "cublasSgemm")}{(desc.Bf16 ? " bf16" : "")} {desc.M}x{desc.N}x{desc.K}", g => g.Gemm(h));
    }

    // gradientRows 0: the batch is the whole batch.
    private Program Lower(IReadOnlyList<PlanOp> ops, int batch, int rowOffset, int gradientRows)
    {
        var p = new Program();
        var spec = _plan.Spec;
        bool hasLoss = ops.Any(o => o is LossOp);
        bool readsStatus = hasLoss || ops.Any(o => o is OptimizerUpdateOp or AccumulateGradientsOp);
        if (batch > 0) p.Add("copy input", g => g.CopyToDevice(Act(_plan.Input), (nint)_input, (long)batch * spec.InputWidth * 4));
        if (hasLoss)
        {
            if (spec.Loss == LossKind.CrossEntropy) p.Add("copy labels", g => g.CopyToDevice(_labels, (nint)_labelStage, batch * 4L));
            else p.Add("copy targets", g => g.CopyToDevice(Act(_plan.Targets), (nint)_targets, (long)batch * spec.OutputWidth * 4));
        }
        if (hasLoss || ops.Any(o => o is OptimizerUpdateOp)) p.Add("copy step constants", g => g.CopyToDevice(_consts, (nint)_constants, sizeof(StepConstants)));
        foreach (var op in ops)
        {
            switch (op)
            {
                case DenseFwdOp f: DenseFwd(p, f, batch); break;
                case DenseResidualFwdOp f:
                {
                    // The layer into its own output slot, then the add (cuBLASLt's epilogues apply the activation after any C term).
                    DenseFwd(p, new DenseFwdOp(f.Layer, f.Activation, f.Src, f.Weight, f.Bias, f.Hidden, f.PreActivation), batch);
                    long count = (long)batch * f.Dst.Cols;
                    p.Add(CudaKernels.AddFloats(_gpu, Grid(count), Block, Act(f.Dst), Act(f.Skip), Act(f.Hidden), count));
                    break;
                }
                case DropoutFwdOp d: p.Add(Dropout(d.Layer, d.P, Act(d.Src), Act(d.Dst), (long)batch * d.Src.Cols, (long)rowOffset * d.Src.Cols)); break;
                case LossOp l: Loss(p, l, batch, gradientRows == 0 ? batch : gradientRows); break;
                case OutputBwdOp o:
                    if (o.Activation.Kind != ActivationKind.Identity)
                    {
                        long n = (long)batch * o.Diff.Cols;
                        p.Add(CudaKernels.ActBwd(_gpu, Grid(n), Block, Act(o.Saved), Act(o.Diff), Act(o.Diff), n, o.Activation));
                    }
                    break;
                case DenseBwdWeightsOp w:
                {
                    int inW = w.Src.Cols, units = w.DiffDst.Cols;
                    ulong dz = ActOperand(p, 'z', w.Layer, w.DiffDst, batch), x = ActOperand(p, 'x', w.Layer, w.Src, batch);
                    Gemm(p, $"dense{w.Layer} dW", GemmDesc.RowMajor(LtEpilogue.Default, true, false, units, inW, batch, dz, units, x, inW, Par(w.WeightGrad), inW, bf16: _bf16));
                    p.Add(CudaKernels.ColumnSums(_gpu, (uint)((units + Block - 1) / Block), Block, Act(w.DiffDst), Par(w.BiasGrad), batch, units, accumulate: false));
                    p.Backward = true;
                    break;
                }
                case DenseBwdDataOp d:
                {
                    int inW = d.DiffSrc.Cols, units = d.DiffDst.Cols;
                    ulong dz = ActOperand(p, 'z', d.Layer, d.DiffDst, batch), wt = ParOperand(p, d.Layer, d.Weight);
                    Gemm(p, $"dense{d.Layer} dX{(d.Accumulate ? " +=" : "")}", GemmDesc.RowMajor(LtEpilogue.Default, false, false, batch, inW, units, dz, units, wt, inW, Act(d.DiffSrc), inW,
                        bf16: _bf16, accumulate: d.Accumulate));
                    long n = (long)batch * inW;
                    if (d.Saved.Exists) p.Add(CudaKernels.ActBwd(_gpu, Grid(n), Block, Act(d.Saved), Act(d.DiffSrc), Act(d.DiffSrc), n, d.PrevActivation));
                    if (d.PrevDropout > 0) p.Add(Dropout(d.Layer - 1, d.PrevDropout, Act(d.DiffSrc), Act(d.DiffSrc), n, (long)rowOffset * inW));
                    break;
                }
                case LayerNormFwdOp n:
                    p.Add(CudaKernels.LayerNormFwd(_gpu, Warps(batch), Block, Act(n.Src), Par(n.Weight), Par(n.Bias), Act(n.Dst), Act(n.Stats), batch, n.Src.Cols, (float)n.Eps));
                    break;
                case LayerNormBwdOp n:
                {
                    int cols = n.DiffDst.Cols;
                    if (n.DiffSrc.Exists)
                        p.Add(CudaKernels.LayerNormBwdData(_gpu, Warps(batch), Block, Act(n.DiffDst), Act(n.Src), Par(n.Weight), Act(n.Stats), Act(n.DiffSrc), batch, cols));
                    p.Add(CudaKernels.LayerNormParamGrads(_gpu, PerFeature(cols), Block, Act(n.DiffDst), Act(n.Src), Act(n.Stats), Par(n.WeightGrad), Par(n.BiasGrad), batch, cols));
                    if (n.DiffSrc.Exists) Derivative(p, n.Derivative, Act(n.DiffSrc), (long)batch * cols, (long)rowOffset * cols);
                    p.Backward = true;
                    break;
                }
                case BatchNormFwdOp n:
                {
                    int cols = n.Src.Cols;
                    p.Add(CudaKernels.BatchNormStats(_gpu, PerFeature(cols), Block, Act(n.Src), Act(n.Stats), Par(n.RunningMean), Par(n.RunningVar), Par(n.Tracked), batch, cols,
                        (float)n.Eps, (float)n.Momentum, n.Training, n.UpdateRunning));
                    long count = (long)batch * cols;
                    p.Add(CudaKernels.BatchNormApply(_gpu, Grid(count), Block, Act(n.Src), Act(n.Stats), Par(n.Weight), Par(n.Bias), Act(n.Dst), count, cols));
                    break;
                }
                case BatchNormBwdOp n:
                {
                    int cols = n.DiffDst.Cols;
                    long count = (long)batch * cols;
                    p.Add(CudaKernels.BatchNormParamGrads(_gpu, PerFeature(cols), Block, Act(n.DiffDst), Act(n.Src), Act(n.Stats), Par(n.WeightGrad), Par(n.BiasGrad), batch, cols));
                    if (n.DiffSrc.Exists)
                    {
                        p.Add(CudaKernels.BatchNormBwdData(_gpu, Grid(count), Block, Act(n.DiffDst), Act(n.Src), Act(n.Stats), Par(n.Weight), Par(n.WeightGrad), Par(n.BiasGrad),
                            Act(n.DiffSrc), count, batch, cols));
                        Derivative(p, n.Derivative, Act(n.DiffSrc), count, (long)rowOffset * cols);
                    }
                    p.Backward = true;
                    break;
                }
                case ResidualAddOp r:
                {
                    long count = (long)batch * r.Dst.Cols;
                    p.Add(CudaKernels.AddFloats(_gpu, Grid(count), Block, Act(r.Dst), Act(r.Skip), Act(r.Body), count));
                    break;
                }
                case ResidualBwdOp r:
                {
                    long count = (long)batch * r.Dst.Cols;
                    p.Add(CudaKernels.AddFloats(_gpu, Grid(count), Block, Act(r.Dst), Act(r.Body), Act(r.Skip), count));
                    Derivative(p, r.Derivative, Act(r.Dst), count, (long)rowOffset * r.Dst.Cols);
                    break;
                }
                case ActivationBwdOp a:
                {
                    long count = (long)batch * a.Dst.Cols;
                    var d = a.Derivative;
                    if (d.Activation.Kind != ActivationKind.Identity)
                    {
                        p.Add(CudaKernels.ActBwd(_gpu, Grid(count), Block, Act(d.Saved), Act(a.Src), Act(a.Dst), count, d.Activation));
                        if (d.Dropout > 0) p.Add(Dropout(d.Layer, d.Dropout, Act(a.Dst), Act(a.Dst), count, (long)rowOffset * a.Dst.Cols));
                    }
                    else p.Add(Dropout(d.Layer, d.Dropout, Act(a.Src), Act(a.Dst), count, (long)rowOffset * a.Dst.Cols)); // a derivative without an activation has dropout
                    break;
                }
                case AccumulateGradientsOp a:
                    p.Add(CudaKernels.AddInto(_gpu, Grid(a.Into.Length), Block, Par(a.Into), Par(a.From), a.Into.Length, _status));
                    p.Backward = true;
                    break;
                case OptimizerUpdateOp:
                    Update(p);
                    p.Mirrored.Clear(); // the weights' mirrors are stale now
                    p.Backward = true;
                    break;
                default: throw new NotSupportedException($"the Cuda executor has no lowering for plan op {op}.");
            }
        }
        if (readsStatus) p.Add("copy status", g => g.CopyToHost((nint)_stepStatus, _status, sizeof(StepStatus)));
        else p.Add("copy output", g => g.CopyToHost((nint)_output, Act(_plan.Output), (long)batch * spec.OutputWidth * 4));
        p.HasLoss = hasLoss;
        p.ReadsStatus = readsStatus;
        return p;
    }

    private void DenseFwd(Program p, DenseFwdOp f, int batch)
    {
        int inW = f.Src.Cols, units = f.Dst.Cols;
        var kind = f.Activation.Kind;
        // cuBLASLt's GELU epilogue is the tanh approximation; its aux output is the pre-activation GELU' needs.
        // cuBLASLt wants the GELU aux leading dimension divisible by 8 (CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD);
        // other widths take the BIAS epilogue and our kernel. (ReLU's aux would be a bit mask with ld divisible
        // by 128; ReLU backward reads its output instead, so no aux is needed.)
        var (epi, aux) = kind switch
        {
            ActivationKind.Identity => (LtEpilogue.Bias, 0UL),
            ActivationKind.ReLU => (LtEpilogue.ReluBias, 0UL),
            ActivationKind.GELUTanh when units % 8 == 0 => (LtEpilogue.GeluAuxBias, Act(f.PreActivation)),
            _ => (LtEpilogue.Bias, 0UL),
        };
        ulong x = ActOperand(p, 'x', f.Layer, f.Src, batch), w = ParOperand(p, f.Layer, f.Weight);
        Gemm(p, $"dense{f.Layer} fwd", GemmDesc.RowMajor(epi, false, true, batch, units, inW, x, inW, w, inW, Act(f.Dst), units,
            bias: Par(f.Bias), aux: aux, auxLd: aux != 0 ? units : 0, bf16: _bf16));
        bool fused = kind is ActivationKind.Identity or ActivationKind.ReLU || epi == LtEpilogue.GeluAuxBias;
        if (!fused)
            p.Add(CudaKernels.BiasActFwd(_gpu, Grid((long)batch * units), Block, Act(f.Dst), 0UL, f.PreActivation.Exists ? Act(f.PreActivation) : 0UL, batch, units, f.Activation));
    }

    // Diff ⊙= f'(saved) ⊙ mask of the Dense layer that produced the value diff is the gradient of (n elements from the batch's element offset).
    private void Derivative(Program p, in Derivative d, ulong diff, long n, long offset)
    {
        if (!d.Exists) return;
        if (d.Activation.Kind != ActivationKind.Identity) p.Add(CudaKernels.ActBwd(_gpu, Grid(n), Block, Act(d.Saved), diff, diff, n, d.Activation));
        if (d.Dropout > 0) p.Add(Dropout(d.Layer, d.Dropout, diff, diff, n, offset));
    }

    // One warp per row; one thread per feature.
    private static uint Warps(int rows) => (uint)Math.Max(1, (rows * 32L + Block - 1) / Block);

    private static uint PerFeature(int cols) => (uint)Math.Max(1, (cols + Block - 1) / Block);

    private CudaLaunch Dropout(int layer, double prob, ulong x, ulong y, long n, long offset)
    {
        long groups = (n + 3) / 4;
        return CudaKernels.DropoutApply(_gpu, (uint)Math.Max(1, (groups + Block - 1) / Block), Block,
            x, y, n, offset, _plan.Options.Seed, _consts, (uint)layer, Kernels.Cpu.Ops.Dropout.Threshold(prob), (float)(1.0 / (1.0 - prob)));
    }

    // gradientRows: the rows of the whole batch the loss gradient is a share of.
    private void Loss(Program p, LossOp l, int batch, int gradientRows)
    {
        ulong o = Act(l.Output), grad = Act(l.DiffOutput);
        int outW = l.Output.Cols;
        long n = (long)batch * outW;
        if (l.Loss == LossKind.CrossEntropy)
        {
            p.Add(CudaKernels.SoftmaxCe(_gpu, (uint)((batch * 32L + Block - 1) / Block), Block, o, _labels, grad, _terms, batch, outW, (float)l.LabelSmoothing, gradientRows));
            p.Add(CudaKernels.LossReduce(_gpu, 1, Block, _terms, batch, batch, _status));
            return;
        }
        ulong t = Act(l.Targets);
        long gradN = (long)gradientRows * outW;
        p.Add(l.Loss switch
        {
            LossKind.Mse => CudaKernels.Mse(_gpu, Grid(n), Block, o, t, grad, _terms, n, gradN),
            LossKind.L1 => CudaKernels.L1Loss(_gpu, Grid(n), Block, o, t, grad, _terms, n, gradN),
            LossKind.Huber => CudaKernels.Huber(_gpu, Grid(n), Block, o, t, grad, _terms, n, (float)l.HuberDelta, gradN),
            LossKind.BceWithLogits => CudaKernels.BceWithLogits(_gpu, Grid(n), Block, o, t, grad, _terms, n, gradN),
            _ => throw new NotSupportedException($"loss {l.Loss} has no CUDA kernel."),
        });
        p.Add(CudaKernels.LossReduce(_gpu, 1, Block, _terms, n, n, _status));
    }

    // The optimizer's state slots by torch.optim name, as the settings lay them out.
    private void Update(Program p)
    {
        var o = _plan.Options.Optimizer;
        long n = _plan.ParameterSection;
        ulong prm = Section(0), g = Section(1);
        ulong S(string name) => o.SlotOf(name) is var k and >= 0 ? Section(2 + k) : 0UL;
        bool useScale = o.ClipNorm > 0;
        // Every gradient is checked before the update (skip = 2 when one is not finite): by the norm when clipping by norm,
        // else by a pass of its own.
        if (useScale)
        {
            // Over the unpadded extent: the slices of sumsq_partial depend on the length, and the padding for N processes must not move them.
            p.Add(CudaKernels.SumsqPartial(_gpu, NormParts, Block, g, _plan.ParameterExtent, (float)o.ClipValue, _partials));
            p.Add(CudaKernels.SumsqFinal(_gpu, 1, 32, _partials, NormParts, (float)o.ClipNorm, _status));
        }
        else p.Add(CudaKernels.GradCheck(_gpu, Grid(n), Block, g, n, _status));
        p.Add(o switch
        {
            Sgd s => CudaKernels.SgdUpdate(_gpu, Grid(n), Block, prm, g, S(Sgd.MomentumBuffer), n, s, useScale, _consts, _status),
            Adam a => CudaKernels.AdamUpdate(_gpu, Grid(n), Block, prm, g, S(Adam.ExpAvg), S(Adam.ExpAvgSq), S(Adam.MaxExpAvgSq), n, a, useScale, _consts, _status),
            RmsProp r => CudaKernels.RmspropUpdate(_gpu, Grid(n), Block, prm, g, S(RmsProp.SquareAvg), S(RmsProp.GradAvg), S(RmsProp.MomentumBuffer), n, r, useScale, _consts, _status),
            Adagrad a => CudaKernels.AdagradUpdate(_gpu, Grid(n), Block, prm, g, S(Adagrad.Sum), n, a, useScale, _consts, _status),
            _ => throw new NotSupportedException($"optimizer {o.Kind} has no CUDA kernel."),
        });
    }

    /// <summary>Fills the step constants for step <paramref name="t"/> (1-based) with the optimizer's own formulas.</summary>
    public static StepConstants ConstantsFor(TrainingOptions options, long t)
    {
        var o = options.Optimizer;
        double lr = options.Schedule.At(o.LearningRate, t - 1);
        var c = new StepConstants { Step = (ulong)t, LearningRate = (float)lr, First = t == 1 ? 1 : 0, StepSize = (float)lr, SqrtBiasCorrection2 = 1, Decay = 1 };
        switch (o)
        {
            case Adam adam:
                c.StepSize = (float)adam.StepSize(lr, t);
                c.SqrtBiasCorrection2 = (float)adam.SqrtBiasCorrection2(t);
                c.Decay = (float)(1 - lr * o.WeightDecay); // in double, as the CPU update and torch.optim
                break;
            case Adagrad ada:
                c.StepSize = (float)ada.DecayedLearningRate(lr, t);
                break;
        }
        return c;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var g in _graphs.Values) _gpu.DestroyGraph(g);
        foreach (var p in _programs.Values) p.Dispose();
        foreach (var k in _fold) k.Args.Dispose();
        _nccl?.Dispose();
        if (_recv != 0) _gpu.Free(_recv);
        if (_acc != 0) _gpu.Free(_acc);
        FreeMemory();
        if (_ownsDevice) _gpu.Dispose();
    }

    private void FreeMemory()
    {
        if (_staging != 0) _gpu.FreePinned(_staging);
        if (_arena != 0) _gpu.Free(_arena);
        if (_host != null) NativeMemory.AlignedFree(_host);
        if (_scratch != null) NativeMemory.AlignedFree(_scratch);
        if (_hostActs != null) NativeMemory.AlignedFree(_hostActs);
        _host = _scratch = _hostActs = null;
    }
}
