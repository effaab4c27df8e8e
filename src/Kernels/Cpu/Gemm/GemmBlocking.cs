// The GEMM's cache blocks, computed from the caches of the machine it runs on with the analytical
// model of BLIS (Low, Igual, Smith and Quintana-Ortí, "Analytical Modeling Is Enough for
// High-Performance BLIS", ACM TOMS 43(2), 2016), for one micro-kernel (MR x NR) and element size S:
//
//   KC  the B micro-panel (KC x NR) stays in L1 while the A micro-panels (MR x KC) stream through:
//       of the W1 ways of a set, C_A = floor((W1 - 1) / (1 + NR/MR)) hold A and the rest B, one is
//       left for C, so KC = C_A * (L1 way bytes) / (MR * S).
//   MC  the packed A block (MC x KC) stays in L2 next to the B micro-panel in use:
//       C_A2 = W2 - 1 - ceil(KC * NR * S / L2 way bytes) ways, MC = C_A2 * (L2 way bytes) / (KC * S).
//   NC  the packed B block (KC x NC) takes half of this core's share of L3.
//
// KC is rounded down to a multiple of 8, MC to one of MR, NC to one of NR, within sane bounds. The
// blocks never depend on the thread count, and the driver balances them against the problem
// (GemmBlocks.Step: 784 = 200 + 200 + 200 + 184 rather than 256 + 256 + 256 + 16). BACKPROP_GEMM_BLOCKS=MC,KC,NC (any of
// them 0 to keep the model's; MC and NC at most 4096, KC at most 1024) overrides them for a measurement; a malformed
// value throws (the CLI checks it first: exit 2).
using System.Globalization;

namespace Backprop.Kernels.Cpu;

/// <summary>Cache blocks of one micro-kernel, in elements: rows of A per packed block, depth, columns of B per packed block.</summary>
public readonly record struct GemmBlocks(int MC, int KC, int NC)
{
    /// <summary>
    /// The step that splits <paramref name="extent"/> into as few blocks of at most <paramref name="block"/> as possible, of
    /// near-equal size rounded up to a multiple of <paramref name="multiple"/> (the last block takes the rest).
    /// </summary>
    public static int Step(int extent, int block, int multiple)
    {
        if (extent <= block) return extent;
        int blocks = (extent + block - 1) / block;
        int step = (extent + blocks - 1) / blocks;
        step = (step + multiple - 1) / multiple * multiple;
        return Math.Min(step, block);
    }
}

/// <summary>The analytical blocking model and the blocks of this machine.</summary>
public static class GemmBlocking
{
    /// <summary>The environment variable that overrides the model: "MC,KC,NC", 0 keeping the model's value.</summary>
    public const string OverrideVariable = "BACKPROP_GEMM_BLOCKS";

    /// <summary>The blocks of a micro-kernel with <paramref name="mr"/> x <paramref name="nr"/> tiles of <paramref name="elementSize"/>-byte elements for <paramref name="caches"/>.</summary>
    public static GemmBlocks For(int mr, int nr, int elementSize, CpuCaches caches) =>
        Override(Model(mr, nr, elementSize, caches), mr, nr, Environment.GetEnvironmentVariable(OverrideVariable));

    /// <summary>Throws <see cref="ArgumentException"/> naming the variable when <see cref="OverrideVariable"/> is set but malformed or out of range.</summary>
    public static void CheckOverride() => Override(new GemmBlocks(8, 8, 8), 1, 1, Environment.GetEnvironmentVariable(OverrideVariable));

    /// <summary>
    /// The blocks of a micro-kernel whose A and B micro-panels share L1 by capacity: KC = (L1 - one way) / ((MR + NR) * S), the
    /// way-based KC's double or so; MC and NC as in <see cref="Model(int, int, int, CpuCaches)"/>. For the AVX2 kernels (6 x 16); the native bf16 kernel took it
    /// first (on a Zen 4 the way-based KC of 168 ran its GEMMs at 122-175 GFLOP/s where 336 ran them at 153-187, since every K
    /// block stores and reloads the whole of C) and has since moved to <see cref="ForL2Stream"/>.
    /// </summary>
    public static GemmBlocks ForCapacity(int mr, int nr, int elementSize, CpuCaches caches)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(mr, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(nr, 1);
        ArgumentNullException.ThrowIfNull(caches);
        var l1 = caches.L1;
        int kc = (int)Math.Clamp((l1.Bytes - l1.WayBytes) / ((long)(mr + nr) * elementSize), 64, 1024) / 8 * 8;
        var (mc, _, nc) = ModelWith(mr, nr, elementSize, caches, kc);
        return Override(new GemmBlocks(mc, kc, nc), mr, nr, Environment.GetEnvironmentVariable(OverrideVariable));
    }

    /// <summary>
    /// The blocks of a micro-kernel whose B micro-panel streams from L2 rather than staying in L1: KC = the depth at which the
    /// B micro-panel (KC x NR) takes half an L2 way, and never less than the way-based model's; MC and NC as in
    /// <see cref="Model(int, int, int, CpuCaches)"/> for that KC. For the AVX-512 float and double kernels: on an AMD EPYC
    /// Zen 4 (32 KiB 8-way L1d, 1 MiB 8-way L2, 512-bit FMAs issued once a cycle) the way-based KC of 128 stores and reloads
    /// C every 128 steps of K, and KC 512 (this model's) ran the dense kernels against oneDNN at 0.89-0.93 where 128 ran
    /// them at 0.71-0.75 (4096 -> 4096 forward), 1.01-1.05 against 0.86-0.87 (its backward data), and as well or better on
    /// every other benchmark shape (bench dense --versus onednn with BACKPROP_GEMM_BLOCKS, README, kernel section): two
    /// B vectors per 16 FMAs is a rate the L2 sustains there. The native bf16 kernel (12 x 32, 2-byte elements) too: KC 1024,
    /// MC 384 there ran its GEMMs at 0.81-0.88 of oneDNN's bf16 matmul where the L1-capacity KC 320 ran them at 0.76-0.91, and
    /// the 784-1024-1024-10 bf16 step on 2 threads in 8.5-9.2 ms against 9.4-11.5.
    /// </summary>
    public static GemmBlocks ForL2Stream(int mr, int nr, int elementSize, CpuCaches caches)
    {
        int wayBased = Model(mr, nr, elementSize, caches).KC;
        int stream = (int)Math.Clamp(caches.L2.WayBytes / 2 / ((long)nr * elementSize), 64, 1024) / 8 * 8;
        var b = ModelWith(mr, nr, elementSize, caches, Math.Max(wayBased, stream));
        return Override(b, mr, nr, Environment.GetEnvironmentVariable(OverrideVariable));
    }

    /// <summary>The analytical model alone (no override).</summary>
    public static GemmBlocks Model(int mr, int nr, int elementSize, CpuCaches caches) => ModelWith(mr, nr, elementSize, caches, null);

    private static GemmBlocks ModelWith(int mr, int nr, int elementSize, CpuCaches caches, int? kcGiven)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(mr, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(nr, 1);
        ArgumentNullException.ThrowIfNull(caches);
        var (l1, l2, l3) = (caches.L1, caches.L2, caches.L3);
        int caL1 = Math.Max(1, (int)Math.Floor((l1.Ways - 1) / (1.0 + (double)nr / mr)));
        int kc = kcGiven ?? (int)Math.Clamp(caL1 * l1.WayBytes / ((long)mr * elementSize), 64, 1024) / 8 * 8;
        long bPanel = (long)kc * nr * elementSize;
        int caL2 = Math.Max(1, l2.Ways - 1 - (int)((bPanel + l2.WayBytes - 1) / l2.WayBytes));
        int mc = (int)Math.Clamp(caL2 * l2.WayBytes / ((long)kc * elementSize), mr, 4096L) / mr * mr;
        long l3Share = l3.Bytes / Math.Max(1, l3.SharedBy);
        int nc = (int)Math.Clamp(l3Share / 2 / ((long)kc * elementSize), 4L * nr, 4096L) / nr * nr;
        return new GemmBlocks(mc, kc, nc);
    }

    /// <summary><paramref name="model"/> with the values <paramref name="text"/> ("MC,KC,NC") sets, each rounded as the model rounds its own.</summary>
    internal static GemmBlocks Override(GemmBlocks model, int mr, int nr, string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return model;
        var parts = text.Split(',');
        int[] v = new int[3];
        if (parts.Length != 3 || !parts.Select((p, i) => int.TryParse(p.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out v[i])).All(ok => ok))
            throw new ArgumentException($"{OverrideVariable}='{text}': expected three non-negative integers MC,KC,NC (0 keeps the model's value).");
        if (v[0] > 4096 || v[1] > 1024 || v[2] > 4096)
            throw new ArgumentException($"{OverrideVariable}='{text}': expected MC and NC at most 4096 and KC at most 1024 (MC,KC,NC; 0 keeps the model's value).");
        int mc = v[0] == 0 ? model.MC : Math.Max(mr, v[0] / mr * mr);
        int kc = v[1] == 0 ? model.KC : Math.Max(8, v[1] / 8 * 8);
        int nc = v[2] == 0 ? model.NC : Math.Max(nr, v[2] / nr * nr);
        return new GemmBlocks(mc, kc, nc);
    }
}
