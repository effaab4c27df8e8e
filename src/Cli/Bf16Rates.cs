// Whether bf16 GEMMs can pay on this CPU: VDPBF16PS does twice the multiply-adds of a float32 FMA per instruction, but not
// every core issues it as often. An AMD Zen 4 ran it at about twice the float32 FMA rate (bf16 GEMMs 1.4-2.3x float32); an
// Intel Xeon of the Sapphire Rapids class at half (69 against 134 GFLOP/s on one thread; bf16 GEMMs 0.44-0.73x float32).
// Both peaks are measured in the process, with the benchmarks' own peak loops, so `info` and `train --precision bf16` say
// which kind of CPU this is instead of letting a slower mode pass for a faster one.
using System.Globalization;
using Backprop.Cli.Bench;
using Backprop.Kernels.Threading;

namespace Backprop.Cli;

internal static class Bf16Rates
{
    /// <summary>One thread's VDPBF16PS and float32 FMA peaks in GFLOP/s, measured now (about a quarter of a second).</summary>
    public static (double Bf16, double Fp32) Measure()
    {
        using var pool = new WorkerPool(1);
        return (Bf16GemmBench.Bf16Peak(pool, 1), FmaPeak.Measure(pool, 1));
    }

    /// <summary>The two peaks and their ratio, and what it means for bf16 GEMMs here.</summary>
    public static string Describe((double Bf16, double Fp32) peaks) =>
        Rates(peaks) + (IsSlower(peaks)
            ? ": this CPU issues VDPBF16PS at a lower rate than float32 FMAs, so bf16 GEMMs run slower than float32 here"
            : ": bf16 GEMMs can outrun float32 here");

    /// <summary>The warning <c>train --precision bf16</c> prints where bf16 is slower than float32 (null where it is not).</summary>
    public static string? SlowerWarning((double Bf16, double Fp32) peaks) =>
        IsSlower(peaks)
            ? $"warning: --precision bf16 will likely train slower than fp32 on this CPU ({Rates(peaks)}); bf16 pays only where VDPBF16PS outruns the float32 FMA (see `backprop info`)."
            : null;

    private static string Rates((double Bf16, double Fp32) p) =>
        string.Create(CultureInfo.InvariantCulture, $"VDPBF16PS peak {p.Bf16:F1} GFLOP/s against float32 FMA {p.Fp32:F1} GFLOP/s on one thread, {p.Bf16 / p.Fp32:F2}x");

    // VDPBF16PS counts 4 flops per lane against an FMA's 2: below the FMA's rate in flops it saves nothing on compute.
    private static bool IsSlower((double Bf16, double Fp32) p) => p.Bf16 < p.Fp32;
}
