// Which executor a plan runs on: the backend of its options, in the model's element type.
//   Cpu  → CpuExecutor<T, FusedDense<T>>   Blas → CpuExecutor<T, BlasDense<T>>   Cuda → CudaExecutor (float only)
// A float Cpu model's context carries the GEMM precision (Bf16: bf16 operands in every packed GEMM of the fused kernels).
using System.Numerics;
using Backprop.Engine.Execution.Cuda;
using Backprop.Engine.Planning;
using Backprop.Kernels.Blas;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cuda;

namespace Backprop.Engine.Execution;

internal static class Executors
{
    /// <summary>An executor for <paramref name="plan"/>; <paramref name="device"/> (Cuda only) is not disposed by it.</summary>
    public static IExecutor<T> Create<T>(Plan plan, IGpuDevice? device) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var o = plan.Options;
        if (device != null && o.Backend != Backend.Cuda)
            throw new ArgumentException($"a device was given but the backend is {o.Backend}; set Backend = Cuda.", nameof(device));
        if (typeof(T) != typeof(float) && typeof(T) != typeof(double))
            throw new NotSupportedException($"a model computes in float or double; got {typeof(T).Name}.");
        switch (o.Backend)
        {
            case Backend.Cpu:
                CheckMemory<T>(plan, cpu: true, panels: true);
                return OnContext(plan, ctx => new CpuExecutor<T, FusedDense<T>>(plan, ctx));
            case Backend.Blas:
                OpenBlas.EnsureAvailable();
                CheckMemory<T>(plan, cpu: true);
                return OnContext(plan, ctx => new CpuExecutor<T, BlasDense<T>>(plan, ctx));
            case Backend.Cuda:
            {
                if (typeof(T) != typeof(float))
                    throw new NotSupportedException($"the Cuda backend computes in float; a model of {typeof(T).Name} runs on the Cpu or Blas backend.");
                CheckMemory<T>(plan, cpu: false);
                var gpu = device ?? CudaGpu.Open(o.AllowTf32);
                try { return (IExecutor<T>)(object)new CudaExecutor(plan, gpu, ownsDevice: device == null, o.CudaGraph); }
                catch
                {
                    if (device == null) gpu.Dispose();
                    throw;
                }
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(plan), o.Backend, $"Unknown backend {(int)o.Backend}.");
        }
    }

    /// <summary>
    /// <paramref name="options"/> with the precision a model of <typeparamref name="T"/> will run: Bf16 stays when this machine runs it,
    /// becomes Fp32 when it cannot and <see cref="TrainingOptions.PrecisionFallback"/> is set, and throws
    /// <see cref="PlatformNotSupportedException"/> saying why otherwise. Double models and other backends are returned as they are
    /// (double ignores it; the Cuda backend runs it wherever cuBLASLt has bf16 GEMMs; Validate refuses it on the Blas backend).
    /// </summary>
    public static TrainingOptions ResolvePrecision<T>(TrainingOptions options) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Precision != GemmPrecision.Bf16 || typeof(T) != typeof(float) || options.Backend != Backend.Cpu) return options;
        string? why = Bf16Gemm.Unavailable
            ?? (options.Isa is { } isa && isa != Isa.Avx512 ? $"the kernels are forced to the {isa} rung; VDPBF16PS runs on the Avx512 rung" : null);
        if (why is null) return options;
        if (options.PrecisionFallback) return options with { Precision = GemmPrecision.Fp32, PrecisionFallback = false };
        throw new PlatformNotSupportedException($"bf16 precision cannot run here: {why}. Train in float32 (Precision = Fp32), or set PrecisionFallback to fall back to it.");
    }

    // The executor owns its context; when the executor cannot be made, the context's threads and scratch go too.
    private static IExecutor<T> OnContext<T>(Plan plan, Func<CpuContext, IExecutor<T>> make) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var precision = typeof(T) == typeof(float) ? plan.Options.Precision : GemmPrecision.Fp32;
        var ctx = new CpuContext(plan.Options.Threads, plan.Options.Isa, null, precision);
        try { return make(ctx); }
        catch
        {
            ctx.Dispose();
            throw;
        }
    }

    private static long PackBytes(Isa? isa)
    {
        var (a, b) = MicroKernels.PackBytes(isa ?? CpuIsa.Supported);
        return a + b;
    }

    // At most what the Cpu executor's weight panels take: each dense layer's W with its rows rounded up to the widest panel (32).
    private static unsafe long PanelBytes<T>(Plan plan) where T : unmanaged, IFloatingPointIeee754<T> =>
        CpuExecutor<T, FusedDense<T>>.DenseWeights(plan).Sum(w => (long)((w.Rows + 31) / 32 * 32) * w.Cols * sizeof(T));

    // Refuses, before allocating, a model whose host memory is more than this machine (or its container limit) has.
    private static unsafe void CheckMemory<T>(Plan plan, bool cpu, bool panels = false) where T : unmanaged, IFloatingPointIeee754<T>
    {
        long need = cpu
            ? plan.BlockBytes(sizeof(T)) + plan.Options.Threads * PackBytes(plan.Options.Isa) + (panels ? PanelBytes<T>(plan) : 0)
            : plan.ParameterBlock * 4 + 2L * plan.Rows * (plan.Spec.InputWidth + plan.Spec.OutputWidth) * 4;
        long have = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (have > 0 && need > have)
            throw new InsufficientMemoryException(
                $"the model needs {need / 1048576.0:N0} MiB of host memory ({plan.ParameterBlock:N0} parameter-block and {plan.ActivationBlock:N0} activation " +
                $"elements at batch {plan.Rows}), but this machine offers {have / 1048576.0:N0} MiB: use narrower layers or a smaller batch.");
    }
}
