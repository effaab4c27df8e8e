// Instruction-set ladder for the CPU kernels: Avx512 -> Avx2 (with FMA) -> Vector128 -> Scalar.
// The best supported level is decided once; `Cpu.MaxIsa` caps it so tests and
// benchmarks can force every path on one machine.
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

/// <summary>What this CPU supports and which path the kernels take.</summary>
public static class CpuIsa
{
    private static Isa _cap = Isa.Avx512;

    /// <summary>The best level this CPU and runtime support.</summary>
    public static Isa Supported { get; } = Detect();

    /// <summary>
    /// The level the kernels use: the lower of <see cref="Supported"/> and the cap set by
    /// <see cref="Force"/> (by default no cap).
    /// </summary>
    public static Isa Active => _cap < Supported ? _cap : Supported;

    /// <summary>
    /// Caps the dispatch ladder at <paramref name="isa"/> for this process (tests and benchmarks use it
    /// to run every path). Asking for a level the CPU lacks throws.
    /// </summary>
    public static void Force(Isa isa)
    {
        if (isa > Supported)
            throw new PlatformNotSupportedException($"Cannot force ISA {isa}: this CPU supports at most {Supported}.");
        _cap = isa;
    }

    /// <summary>Removes the cap set by <see cref="Force"/>.</summary>
    public static void Reset() => _cap = Isa.Avx512;

    private static Isa Detect()
    {
        if (Vector512.IsHardwareAccelerated && Avx512F.IsSupported && Fma.IsSupported) return Isa.Avx512;
        if (Avx2.IsSupported && Fma.IsSupported) return Isa.Avx2;
        if (Vector128.IsHardwareAccelerated) return Isa.Vector128;
        return Isa.Scalar;
    }
}
