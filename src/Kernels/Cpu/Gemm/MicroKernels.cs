// The registered GEMM micro-kernels and their block sizes on this machine (GemmBlocking, from the
// detected caches), for float and double. Whatever sizes the packing scratch or the tests need are
// derived from this list, so retuning a kernel (scripts/gen_microkernels.py) or another machine's
// caches cannot overrun a buffer sized elsewhere.
//   packed A block: ceil(mc / MR)·MR × kc ≤ MC × KC elements   (needs MC % MR == 0)
//   packed B block: kc × ceil(nc / NR)·NR ≤ KC × NC elements   (needs NC % NR == 0)
using System.Numerics;

namespace Backprop.Kernels.Cpu;

/// <summary>One micro-kernel's register block and cache blocks, in elements of its type.</summary>
/// <param name="Name">ISA of the kernel and its element type, e.g. "Avx512/float".</param>
/// <param name="Isa">The rung it serves.</param>
/// <param name="ElementSize">Bytes per element (4 or 8).</param>
/// <param name="MR">Rows of C per register tile.</param>
/// <param name="NR">Columns of C per register tile.</param>
/// <param name="MC">Rows of A per packed block.</param>
/// <param name="KC">Depth of a packed block.</param>
/// <param name="NC">Columns of B per packed block.</param>
public readonly record struct MicroKernelBlocks(string Name, Isa Isa, int ElementSize, int MR, int NR, int MC, int KC, int NC);

/// <summary>The micro-kernels the GEMM driver dispatches to.</summary>
public static class MicroKernels
{
    /// <summary>Every registered kernel, for float and double, and the bf16 kernel where this machine runs it.</summary>
    public static IReadOnlyList<MicroKernelBlocks> All { get; } =
    [
        Of<MicroKernelAvx512<float>, float>(Isa.Avx512), Of<MicroKernelAvx512<double>, double>(Isa.Avx512),
        Of<MicroKernelAvx2<float>, float>(Isa.Avx2), Of<MicroKernelAvx2<double>, double>(Isa.Avx2),
        Of<MicroKernelScalar<float>, float>(Isa.Scalar), Of<MicroKernelScalar<double>, double>(Isa.Scalar),
        .. (Bf16Gemm.IsAvailable ? [Bf16Gemm.Blocks] : Array.Empty<MicroKernelBlocks>()), // the native VDPBF16PS kernel, where it runs
    ];

    /// <summary>Bytes of one thread's packed A block: the largest MC·KC of any kernel.</summary>
    public static long PackABytes { get; } = All.Max(k => (long)k.MC * k.KC * k.ElementSize);

    /// <summary>Bytes of one thread's packed B block: the largest KC·NC of any kernel.</summary>
    public static long PackBBytes { get; } = All.Max(k => (long)k.KC * k.NC * k.ElementSize);

    /// <summary>Bytes of one thread's packed A and B blocks for the kernels of <paramref name="isa"/> (float and double): what a context on that rung needs.</summary>
    public static (long A, long B) PackBytes(Isa isa)
    {
        var ks = All.Where(k => k.Isa == isa).ToList();
        if (ks.Count == 0) return (PackABytes, PackBBytes);
        return (ks.Max(k => (long)k.MC * k.KC * k.ElementSize), ks.Max(k => (long)k.KC * k.NC * k.ElementSize));
    }

    /// <summary>The caches the blocks were computed from.</summary>
    public static CpuCaches Caches => CpuCaches.Detected;

    private static unsafe MicroKernelBlocks Of<TKernel, T>(Isa isa)
        where TKernel : struct, IMicroKernel<T>
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var b = Blocks<TKernel, T>.Value;
        return new($"{isa}/{typeof(T).Name.ToLowerInvariant()}", isa, sizeof(T), TKernel.MR, TKernel.NR, b.MC, b.KC, b.NC);
    }
}

/// <summary>
/// One kernel's blocks on this machine, computed once. The AVX2 kernel (6 x 16) takes its depth from L1's capacity
/// (<see cref="GemmBlocking.ForCapacity"/>): its way-based KC (168 on a 32 KiB 8-way L1d) stores
/// and reloads C every 168 steps of K, and on an AMD EPYC Zen 3 (AVX2, no AVX-512) KC 320-336 ran the float GEMMs 1-11 % faster
/// (bench gemm --threads 1 with BACKPROP_GEMM_BLOCKS, against OpenBLAS in the same process). The AVX-512 kernels (8 x 32 floats,
/// 8 x 16 doubles) stream their B micro-panel from L2 (<see cref="GemmBlocking.ForL2Stream"/>): on a Zen 4 the way-based KC of 128
/// left the large products at 0.71-0.87 of oneDNN, KC 512 at 0.89-1.05 (README, kernel section).
/// </summary>
internal static unsafe class Blocks<TKernel, T>
    where TKernel : struct, IMicroKernel<T>
    where T : unmanaged, IFloatingPointIeee754<T>
{
    public static readonly GemmBlocks Value = typeof(TKernel) == typeof(MicroKernelAvx2<T>)
        ? GemmBlocking.ForCapacity(TKernel.MR, TKernel.NR, sizeof(T), CpuCaches.Detected)
        : typeof(TKernel) == typeof(MicroKernelAvx512<T>)
            ? GemmBlocking.ForL2Stream(TKernel.MR, TKernel.NR, sizeof(T), CpuCaches.Detected)
            : GemmBlocking.For(TKernel.MR, TKernel.NR, sizeof(T), CpuCaches.Detected);
}
