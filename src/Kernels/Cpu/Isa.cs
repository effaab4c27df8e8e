// Instruction-set ladder for the CPU kernels: Avx512 -> Avx2 (with FMA) -> Vector128 -> Scalar.
// What the CPU supports is detected once here. Which rung a kernel takes is not process state: it is
// the Isa of the CpuContext a call runs on (at most what the CPU supports), so tests that force each
// path run side by side in one process.
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Backprop.Kernels.Cpu;

/// <summary>A rung of the kernel dispatch ladder.</summary>
public enum Isa
{
    /// <summary>Plain scalar code; runs everywhere.</summary>
    Scalar = 0,
    /// <summary>128-bit vectors (SSE / NEON) for the elementwise kernels; GEMM uses its scalar kernel here.</summary>
    Vector128 = 1,
    /// <summary>256-bit vectors with FMA (AVX2 + FMA3).</summary>
    Avx2 = 2,
    /// <summary>512-bit vectors (AVX-512F).</summary>
    Avx512 = 3,
}

/// <summary>What this CPU supports.</summary>
public static class CpuIsa
{
    /// <summary>The best level this CPU and runtime support.</summary>
    public static Isa Supported { get; } = Detect();

    /// <summary>Throws <see cref="PlatformNotSupportedException"/> when this CPU lacks <paramref name="isa"/>; returns it otherwise.</summary>
    public static Isa Require(Isa isa)
    {
        if (isa < Isa.Scalar || isa > Isa.Avx512)
            throw new ArgumentOutOfRangeException(nameof(isa), isa, $"ISA must be Scalar, Vector128, Avx2 or Avx512; got {(int)isa}.");
        if (isa > Supported)
            throw new PlatformNotSupportedException($"Cannot force ISA {isa}: this CPU supports at most {Supported}.");
        return isa;
    }

    /// <summary>The lower of <paramref name="isa"/> and <see cref="Supported"/> (what a kernel asked for <paramref name="isa"/> runs).</summary>
    public static Isa Cap(Isa isa) => isa < Supported ? isa : Supported;

    private static Isa Detect()
    {
        if (Vector512.IsHardwareAccelerated && Avx512F.IsSupported && Fma.IsSupported) return Isa.Avx512;
        if (Avx2.IsSupported && Fma.IsSupported) return Isa.Avx2;
        if (Vector128.IsHardwareAccelerated) return Isa.Vector128;
        return Isa.Scalar;
    }
}
