// Everything about training that is not the layer stack: loss, optimizer, schedule, batch size,
// seed, threads, backend, initialization. Part of the description a Plan is compiled from.
using Backprop.Engine.Training;
using Backprop.Kernels;
using Backprop.Kernels.Cpu;

namespace Backprop.Engine;

/// <summary>Where the plan's kernels run.</summary>
public enum Backend
{
    /// <summary>The project's fused kernels (default).</summary>
    Cpu,
    /// <summary>OpenBLAS GEMMs with the project's elementwise kernels between them (unfused reference).</summary>
    Blas,
    /// <summary>An NVIDIA GPU: cuBLAS/cuBLASLt GEMMs and the project's CUDA kernels, the step replayed as a CUDA graph.</summary>
    Cuda,
}

/// <summary>Training settings; defaults are a sensible classifier setup (Adam 1e-3, batch 128).</summary>
public sealed record TrainingOptions
{
    /// <summary>The loss.</summary>
    public LossKind Loss { get; init; } = LossKind.CrossEntropy;
    /// <summary>Cross-entropy label smoothing.</summary>
    public double LabelSmoothing { get; init; }
    /// <summary>Huber δ.</summary>
    public double HuberDelta { get; init; } = 1.0;
    /// <summary>Optimizer and its hyper-parameters.</summary>
    public OptimizerSettings Optimizer { get; init; } = new Adam();
    /// <summary>Learning-rate schedule, stepped once per optimizer step.</summary>
    public LrSchedule Schedule { get; init; } = new();
    /// <summary>
    /// Largest batch a step takes: the global batch of one optimizer step, however it is split into micro-batches
    /// (<see cref="Accumulate"/>) and across processes (<see cref="Distributed"/>). Smaller batches need no new plan.
    /// </summary>
    public int MaxBatch { get; init; } = 128;
    /// <summary>
    /// Gradient accumulation: each step splits its batch into this many micro-batches per process, runs forward and backward on
    /// each, sums their gradients in micro-batch order and then updates once; the result is the step of the whole batch (the same
    /// mean), in the activation memory of one micro-batch. 1: no split.
    /// </summary>
    public int Accumulate { get; init; } = 1;
    /// <summary>Data-parallel training across processes (null: this process alone). A property of the launch, not of the run: checkpoints do not store it.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public DistributedOptions? Distributed { get; init; }
    /// <summary>Seed of initialization, dropout and shuffling.</summary>
    public ulong Seed { get; init; } = 1;
    /// <summary>Threads for the kernels.</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;
    /// <summary>
    /// CPU backends: the rung of the ISA ladder the kernels take (null: the best this CPU supports; tests force each). A property of
    /// the machine, not of the run: checkpoints do not store it, so a run resumes on whatever CPU it lands on.
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public Isa? Isa { get; init; }
    /// <summary>Kernel backend.</summary>
    public Backend Backend { get; init; } = Backend.Cpu;
    /// <summary>Cuda backend: capture the training step once per batch size as a CUDA graph and replay it (else launch each kernel).</summary>
    public bool CudaGraph { get; init; } = true;
    /// <summary>Cuda backend: let cuBLAS use TF32 tensor cores (faster, ~1e-3 relative error); FP32 when false.</summary>
    public bool AllowTf32 { get; init; }
    /// <summary>
    /// Float models on the Cpu and Cuda backends: the operand precision of the dense layers' GEMMs. <see cref="GemmPrecision.Bf16"/> is
    /// mixed precision: forward, dX and dW multiply bf16-rounded operands with float32 accumulation (on the CPU VDPBF16PS, AVX512_BF16;
    /// on the GPU cuBLASLt with CUDA_R_16BF operands), while the master weights, optimizer state, bias, activations, loss, softmax and
    /// update stay float32 (on the CPU a GEMM of at most 4 rows or 16 columns against a transposed operand takes the float32
    /// dot-product path). Checkpoints record it, so a resume continues in it. Double models (the
    /// gradient checks) ignore it. Where bf16 cannot run, the model refuses to compile unless <see cref="PrecisionFallback"/> is set.
    /// </summary>
    public GemmPrecision Precision { get; init; } = GemmPrecision.Fp32;
    /// <summary>
    /// With <see cref="Precision"/> Bf16 on a machine that cannot run it (no AVX512_BF16, the native kernels not built, a forced ISA
    /// below Avx512): compile in float32 instead of throwing. The model's <see cref="Model{T}.Options"/> then say Fp32, and so do its checkpoints.
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public bool PrecisionFallback { get; init; }
    /// <summary>Weight initialization.</summary>
    public InitScheme Init { get; init; } = InitScheme.HeUniform;

    /// <summary>Throws with the offending value when a setting is out of range.</summary>
    public void Validate()
    {
        if (!Enum.IsDefined(Backend)) throw new ArgumentOutOfRangeException(nameof(Backend), Backend, $"unknown backend {(int)Backend}; expected Cpu, Blas or Cuda.");
        if (!Enum.IsDefined(Init)) throw new ArgumentOutOfRangeException(nameof(Init), Init, $"unknown initialization {(int)Init}; expected one of {string.Join(", ", Enum.GetNames<InitScheme>())}.");
        if (!Enum.IsDefined(Loss)) throw new ArgumentOutOfRangeException(nameof(Loss), Loss, $"unknown loss {(int)Loss}; expected one of {string.Join(", ", Enum.GetNames<LossKind>())}.");
        if (!(LabelSmoothing >= 0 && LabelSmoothing <= 1)) throw new ArgumentOutOfRangeException(nameof(LabelSmoothing), LabelSmoothing, $"label smoothing must be in [0, 1]; got {LabelSmoothing}.");
        if (!(HuberDelta > 0) || !double.IsFinite(HuberDelta)) throw new ArgumentOutOfRangeException(nameof(HuberDelta), HuberDelta, $"Huber delta must be a finite positive number; got {HuberDelta}.");
        if (MaxBatch < 1) throw new ArgumentOutOfRangeException(nameof(MaxBatch), MaxBatch, $"batch size must be at least 1; got {MaxBatch}.");
        if (Accumulate < 1 || Accumulate > 65536) throw new ArgumentOutOfRangeException(nameof(Accumulate), Accumulate, $"accumulate must be in [1, 65536] micro-batches; got {Accumulate}.");
        int world = Distributed?.Collectives.Size ?? 1;
        if ((long)Accumulate * world > MaxBatch)
            throw new ArgumentOutOfRangeException(nameof(Accumulate), Accumulate, $"a batch of {MaxBatch} cannot be split into {(long)Accumulate * world} micro-batches " +
                $"(accumulate {Accumulate} x {world} process(es)); expected at most {MaxBatch} in all.");
        if (Distributed is { Overlap: true } && (Distributed.Mode != ReductionMode.Fast || Accumulate > 1))
            throw new ArgumentException($"overlapping the gradient sum with the backward pass needs the fast reduction and no accumulation; got {Distributed.Mode.ToString().ToLowerInvariant()} with accumulate {Accumulate}.");
        if (Backend == Backend.Cuda && Distributed is { DeviceCollectives: null })
            throw new ArgumentException($"data-parallel training on the cuda backend sums gradients on the device with NCCL: DistributedOptions.DeviceCollectives must make the device's communicator (NcclCommunicator.Create); got none for {world} process(es).");
        if (!Enum.IsDefined(Precision)) throw new ArgumentOutOfRangeException(nameof(Precision), Precision, $"unknown precision {(int)Precision}; expected Fp32 or Bf16.");
        if (Precision == GemmPrecision.Bf16 && Backend == Backend.Blas)
            throw new ArgumentException("bf16 precision runs on the Cpu and Cuda backends; the Blas backend is the float32 OpenBLAS reference (use Precision = Fp32 there).");
        if (Threads < 1 || Threads > 1024) throw new ArgumentOutOfRangeException(nameof(Threads), Threads, $"threads must be in [1, 1024]; got {Threads}.");
        ArgumentNullException.ThrowIfNull(Optimizer);
        ArgumentNullException.ThrowIfNull(Schedule);
        Optimizer.Validate();
        if (Isa is { } isa) CpuIsa.Require(isa);
        Schedule.Validate();
    }
}
