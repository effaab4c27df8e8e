// What a caller may ask of the bf16 GEMM: whether it runs here (and why not), the register tile and cache
// blocks of its native micro-kernel, the bf16 rounding the packing applies, and the VDPBF16PS peak loop.
using Backprop.Kernels.Native;

namespace Backprop.Kernels.Cpu;

/// <summary>The bf16 GEMM path (<see cref="GemmPrecision.Bf16"/>): availability, blocks, rounding, peak.</summary>
public static unsafe class Bf16Gemm
{
    /// <summary>Null when bf16 GEMMs run on this machine; otherwise why not and what to do.</summary>
    public static string? Unavailable => Bf16Native.Unavailable;

    /// <summary>True when bf16 GEMMs run on this machine.</summary>
    public static bool IsAvailable => Bf16Native.Unavailable is null;

    /// <summary>Throws <see cref="PlatformNotSupportedException"/> with the reason when bf16 GEMMs cannot run here.</summary>
    public static void Require()
    {
        if (Bf16Native.Unavailable is { } why) throw new PlatformNotSupportedException($"bf16 precision is unavailable: {why}");
    }

    /// <summary>The native micro-kernel's register tile and this machine's cache blocks (elements of 2 bytes along K).</summary>
    public static MicroKernelBlocks Blocks
    {
        get
        {
            Require();
            return s_blocks.Value;
        }
    }

    private static readonly Lazy<MicroKernelBlocks> s_blocks = new(() =>
    {
        var b = GemmBlocking.ForL2Stream(Bf16Native.MR, Bf16Native.NR, 2, CpuCaches.Detected);
        return new MicroKernelBlocks("Avx512Bf16/bf16", Isa.Avx512, 2, Bf16Native.MR, Bf16Native.NR, b.MC, b.KC, b.NC);
    });

    /// <summary>dst[i] = src[i] rounded to bf16 (nearest even; NaN stays NaN) and widened back: the value the GEMM multiplies.</summary>
    public static void Round(ReadOnlySpan<float> src, Span<float> dst)
    {
        Require();
        if (dst.Length < src.Length) throw new ArgumentException($"dst has {dst.Length} elements; src has {src.Length}.", nameof(dst));
        fixed (float* s = src)
        fixed (float* d = dst)
            Bf16Native.Round(s, d, src.Length);
    }

    /// <summary>Runs the VDPBF16PS peak loop (24 chains) for <paramref name="iterations"/> and returns the multiply-add FLOPs it did.</summary>
    public static double PeakLoop(long iterations)
    {
        Require();
        ArgumentOutOfRangeException.ThrowIfNegative(iterations);
        float r = Bf16Native.Peak(iterations);
        GC.KeepAlive(r);
        return iterations * 24.0 * 16 * 4; // 16 lanes x 2 pairs' products x (mul + add)
    }
}
