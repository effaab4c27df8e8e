// Which executor a plan runs on: the backend of its options, in the model's element type.
//   Cpu  → CpuExecutor<T, FusedDense<T>>   Blas → CpuExecutor<T, BlasDense<T>>   Cuda → CudaExecutor (float only)
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
                return new CpuExecutor<T, FusedDense<T>>(plan, new CpuContext(o.Threads, o.Isa));
            case Backend.Blas:
                OpenBlas.EnsureAvailable();
                return new CpuExecutor<T, BlasDense<T>>(plan, new CpuContext(o.Threads, o.Isa));
            case Backend.Cuda:
            {
                if (typeof(T) != typeof(float))
                    throw new NotSupportedException($"the Cuda backend computes in float; a model of {typeof(T).Name} runs on the Cpu or Blas backend.");
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
}
