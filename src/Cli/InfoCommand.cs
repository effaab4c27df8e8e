// `backprop info`: what this machine offers: the ISA path, cores, the GEMM micro-kernels, bf16 GEMMs, OpenBLAS, and CUDA
// (device, compute capability, memory, driver, cuBLAS and NVRTC versions, or why not).
using System.CommandLine;
using Backprop.Kernels.Blas;
using Backprop.Kernels.Cpu;

namespace Backprop.Cli;

internal static class InfoCommand
{
    public static Command Create(TextWriter stdout)
    {
        var info = new Command("info", "What this machine offers: ISA path, cores, OpenBLAS, CUDA (device, compute capability, memory, driver, cuBLAS and NVRTC versions, or why not).");
        info.SetAction(_ =>
        {
            stdout.WriteLine($"cpu: {Environment.ProcessorCount} logical cores, kernel ISA {CpuIsa.Supported}");
            stdout.WriteLine($"caches: {MicroKernels.Caches}");
            stdout.WriteLine($"gemm micro-kernels (blocks from the caches): {string.Join(", ", MicroKernels.All.Where(k => k.Isa == CpuIsa.Supported).Select(k => $"{k.Name} {k.MR}x{k.NR} (MC {k.MC}, KC {k.KC}, NC {k.NC})"))}");
            stdout.WriteLine(Bf16Gemm.Unavailable is { } noBf16
                ? $"bf16 (--precision bf16): not available: {noBf16}"
                : $"bf16 (--precision bf16): AVX512_BF16 with the native kernels (libbackprop_cpu.so); {Bf16Rates.Describe(Bf16Rates.Measure())}");
            stdout.WriteLine(OpenBlas.IsAvailable
                ? $"openblas: core {OpenBlas.CoreName}, {OpenBlas.Threads} threads, config '{OpenBlas.Config.Trim()}'"
                : $"openblas: not available: {OpenBlas.UnavailableReason}");
            var cuda = Backprop.Kernels.Cuda.CudaDriver.Probe();
            stdout.WriteLine(cuda.Available
                ? $"cuda: {cuda.DeviceName}, compute capability {cuda.Major}.{cuda.Minor} ({cuda.Arch}), {cuda.TotalMemory / (1L << 20):N0} MiB, {cuda.Multiprocessors} SMs, driver {cuda.DriverVersion / 1000}.{cuda.DriverVersion % 1000 / 10}"
                : $"cuda: not available: {cuda.Reason}");
            var (blas, blasWhy) = Backprop.Kernels.Cuda.CuBlas.Probe();
            stdout.WriteLine(blas ? $"cublas: {Backprop.Kernels.Cuda.CuBlas.Version?.ToString() ?? "version unknown"} (cuBLAS and cuBLASLt)" : $"cublas: not available: {blasWhy}");
            stdout.WriteLine(Backprop.Kernels.Cuda.Nvrtc.IsAvailable
                ? $"nvrtc: {Backprop.Kernels.Cuda.Nvrtc.Version.Major}.{Backprop.Kernels.Cuda.Nvrtc.Version.Minor}; kernels: {string.Join(", ", Backprop.Kernels.Cuda.CudaSources.Kernels)}"
                : $"nvrtc: not available: {Backprop.Kernels.Cuda.Nvrtc.UnavailableReason}");
            return 0;
        });
        return info;
    }
}
