// What the reports say about the kernels OpenBLAS picked. A DYNAMIC_ARCH OpenBLAS chooses its kernels from the CPU's
// family and model; one older than the CPU falls back to a generic core: Debian's 0.3.21 on a Sapphire/Emerald Rapids
// class Xeon (family 6 model 207) reports "Prescott" and runs its SSE3 kernels there, at about a fifth of its AVX-512
// ones (bench gemm: 34-37 against 131-190 GFLOP/s on one thread with OPENBLAS_CORETYPE=SkylakeX). A ratio against
// that is no measure of our kernels, so the reports say when the peer runs below this CPU's vector ISA, and why.
using Backprop.Kernels.Blas;
using Backprop.Kernels.Cpu;

namespace Backprop.Cli.Bench;

internal static class OpenBlasCore
{
    // OpenBLAS core names (openblas_get_corename) whose kernels use AVX-512, and those that use AVX2 with FMA.
    private static readonly HashSet<string> Avx512Cores = new(StringComparer.OrdinalIgnoreCase) { "SkylakeX", "Cooperlake", "SapphireRapids" };
    private static readonly HashSet<string> Avx2Cores = new(StringComparer.OrdinalIgnoreCase) { "Haswell", "Zen", "Excavator", "SkylakeX", "Cooperlake", "SapphireRapids" };

    /// <summary>The note for OpenBLAS as this process runs it (null where it uses this CPU's best vector ISA).</summary>
    public static string? Current => Note(OpenBlas.CoreName, CpuIsa.Supported, Environment.GetEnvironmentVariable("OPENBLAS_CORETYPE"));

    /// <summary>
    /// A sentence for a report when OpenBLAS's <paramref name="core"/> uses a narrower vector ISA than <paramref name="isa"/>,
    /// this CPU's best: why (<paramref name="coretype"/>, the OPENBLAS_CORETYPE variable, chose it; or OpenBLAS did not
    /// recognise the CPU) and which core name selects its widest kernels. Null when it uses the widest.
    /// </summary>
    public static string? Note(string core, Isa isa, string? coretype)
    {
        bool narrower = isa switch
        {
            Isa.Avx512 => !Avx512Cores.Contains(core),
            Isa.Avx2 => !Avx2Cores.Contains(core),
            _ => false,
        };
        if (!narrower) return null;
        var (widest, widestIsa) = isa == Isa.Avx512 ? ("SkylakeX", "AVX-512") : ("Haswell", "AVX2");
        string kind = Avx2Cores.Contains(core) ? "AVX2" : "pre-AVX2";
        string why = string.IsNullOrWhiteSpace(coretype)
            ? "this OpenBLAS did not recognise the CPU and fell back to them"
            : $"OPENBLAS_CORETYPE={coretype} chose them";
        return $"Note: OpenBLAS runs its {core} ({kind}) kernels on this {isa} CPU ({why}); OPENBLAS_CORETYPE={widest} " +
            $"selects its {widestIsa} kernels, so ratios against it here say little about ours.";
    }
}
