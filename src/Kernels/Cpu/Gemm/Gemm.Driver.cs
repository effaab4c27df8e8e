// The BLIS loop driver: C = alpha * op(A) * op(B) + beta * C, row-major, then the epilogue.
//
//   for jc in N by NC:                 B block (KC x NC) packed, lives in L3
//     for pc in K by KC:
//       pack B[pc.., jc..]
//       for ic in M by MC:             A block (MC x KC) packed, lives in L2
//         pack A[ic.., pc..]
//         for jr in NC by NR:          B micro-panel (KC x NR), lives in L1
//           for ir in MC by MR:        micro-kernel: MR x NR register tile of C
//
// Threads split C into static column or row ranges aligned to NR/MR; each thread packs its own
// blocks (or reads a row-major A, or B, in place where GemmDriver says so). The K loop is never split and the block boundaries do not depend on the thread count,
// so every element of C is computed by the same sequence of operations on 1 or on N threads.
using System.Numerics;
using Backprop.Kernels.Threading;

namespace Backprop.Kernels.Cpu;

internal unsafe struct GemmJob<T, TKernel, TEpi> : IParallelJob
    where T : unmanaged, IFloatingPointIeee754<T>
    where TKernel : struct, IMicroKernel<T>
    where TEpi : unmanaged, IGemmEpilogue<T>
{
    public bool TransA, TransB, SplitM, Simd;
    // A (M x K, rows contiguous in K) read in place by the micro-kernel instead of transposed into panels
    // (GemmDriver.StridesA: where the threads split N, and on one AVX-512 thread).
    public bool StridedA;
    // B (K x N, rows contiguous in N) read in place by the micro-kernel instead of copied into panels.
    public bool InPlaceB;
    // op(B) = Bᵀ already in NR-wide panels over the whole of K (Gemm.PackPanels): the micro-kernels read them, nothing is packed.
    public T* PanelsB;
    public int M, N, K, Lda, Ldb, Ldc;
    public T Alpha, Beta;
    public T* A, B, C;
    public byte** Packs;
    public TEpi Epi;
    // Optional fused row sums of op(A): SumA[i] (=, or += when SumAccumulate) sum_k op(A)[i, k],
    // taken from the packed A blocks (the bias gradient of a dense layer, in the same pass as dW).
    public T* SumA;
    public bool SumAccumulate;

    public void Execute(int part, int parts)
    {
        var (m0, m1, n0, n1) = GemmDriver.Range(SplitM, M, N, TKernel.MR, TKernel.NR, part, parts);
        if (m0 >= m1 || n0 >= n1) return;
        Loops(m0, m1, n0, n1, (T*)Packs[2 * part], (T*)Packs[2 * part + 1]);
    }

    // The B micro-panel at column jr of the block (jc, pc) and its row stride: in place for the first fullN columns, else packed
    // (by this call, or beforehand into whole-K panels: rows pc.. of the panel of columns jc + jr..).
    private readonly T* Panel(T* packB, int pc, int jc, int jr, int kc, int fullN, out nint stride)
    {
        stride = jr < fullN ? Ldb : TKernel.NR;
        if (PanelsB != null) return PanelsB + (nint)(jc + jr) * K + (nint)pc * TKernel.NR;
        return jr < fullN ? B + (nint)pc * Ldb + jc + jr : packB + (nint)(jr - fullN) * kc;
    }

    private void Loops(int m0, int m1, int n0, int n1, T* packA, T* packB)
    {
        int MR = TKernel.MR, NR = TKernel.NR;
        var blocks = Blocks<TKernel, T>.Value;
        // Near-equal blocks (784 = 200 + 200 + 200 + 184, not 256 + 256 + 256 + 16). The K steps depend on K alone, so every element of C
        // sums its products in the same blocks on any thread count; MC and NC steps only order the work.
        int NC = GemmBlocks.Step(n1 - n0, blocks.NC, NR), KC = GemmBlocks.Step(K, blocks.KC, 8), MC = GemmBlocks.Step(m1 - m0, blocks.MC, MR);
        for (int jc = n0; jc < n1; jc += NC)
        {
            int nc = Math.Min(NC, n1 - jc);
            for (int pc = 0; pc < K; pc += KC)
            {
                int kc = Math.Min(KC, K - pc);
                var st = new TileStore<T>(Alpha, Beta, first: pc == 0, last: pc + kc == K);
                // op(B)[pc.., jc..]: B is K x N (N) or N x K (T); panels run along N. Read in place (B is N and not
                // transposed), only a last panel narrower than NR is packed, at packB, so that no row is read past N.
                int fullN = InPlaceB ? nc / NR * NR : 0;
                if (PanelsB != null) { }
                else if (TransB) GemmPack.Block(true, B + (nint)jc * Ldb + pc, Ldb, nc, kc, NR, packB, Simd);
                else if (fullN < nc) GemmPack.Block(false, B + (nint)pc * Ldb + jc + fullN, Ldb, nc - fullN, kc, NR, packB, Simd);
                for (int ic = m0; ic < m1; ic += MC)
                {
                    int mc = Math.Min(MC, m1 - ic);
                    // op(A)[ic.., pc..]: A is M x K (N) or K x M (T); panels run along M.
                    if (StridedA)
                    {
                        for (int jr = 0; jr < nc; jr += NR)
                        {
                            int nr = Math.Min(NR, nc - jr);
                            T* bp = Panel(packB, pc, jc, jr, kc, fullN, out nint bK);
                            for (int ir = 0; ir < mc; ir += MR)
                                TKernel.RunStrided(kc, A + (nint)(ic + ir) * Lda + pc, Lda, 1, bp, bK,
                                    C + (nint)(ic + ir) * Ldc + jc + jr, Ldc, Math.Min(MR, mc - ir), nr, in st, ref Epi, ic + ir, jc + jr);
                        }
                        continue;
                    }
                    if (TransA) GemmPack.Block(false, A + (nint)pc * Lda + ic, Lda, mc, kc, MR, packA, Simd);
                    else GemmPack.Block(true, A + (nint)ic * Lda + pc, Lda, mc, kc, MR, packA, Simd);
                    // Only the thread whose columns start at 0 sums (with an N split every thread packs all of A),
                    // once per row: in the first JC block, over every K block in order.
                    if (SumA != null && n0 == 0 && jc == 0)
                        GemmPack.RowSums(packA, mc, kc, MR, SumA + ic, accumulate: pc > 0 || SumAccumulate);
                    for (int jr = 0; jr < nc; jr += NR)
                    {
                        int nr = Math.Min(NR, nc - jr);
                        T* bp = Panel(packB, pc, jc, jr, kc, fullN, out nint bK);
                        for (int ir = 0; ir < mc; ir += MR)
                        {
                            int mr = Math.Min(MR, mc - ir);
                            TKernel.Run(kc, packA + (nint)ir * kc, bp, bK,
                                C + (nint)(ic + ir) * Ldc + jc + jr, Ldc, mr, nr, in st, ref Epi, ic + ir, jc + jr);
                        }
                    }
                }
            }
        }
    }
}

internal static unsafe class GemmDriver
{
    // Below this many multiply-adds a second thread costs more to wake than it saves.
    private const long ParallelThreshold = 32L * 32 * 32;

    /// <summary>Whether a row-major A may be read in place where <see cref="StridesA"/> would (false packs it always; for measurements).</summary>
    internal static bool ReadAInPlace { get; set; } = Environment.GetEnvironmentVariable("BACKPROP_GEMM_PACK_A") != "1";

    /// <summary>Whether a non-transposed B may be read in place (false packs it always; for measurements).</summary>
    internal static bool ReadBInPlace { get; set; } = Environment.GetEnvironmentVariable("BACKPROP_GEMM_PACK_B") != "1";

    // Up to this many rows of A or columns of B (N x T case), the dot-product path beats packing
    // (bench dense: a 256 -> 10 output layer's forward ran at 10-14 % of peak through the 8 x 32 tile).
    private const int SmallM = 4, SmallN = 16;

    public static void Run<T, TEpi>(CpuContext ctx, bool transA, bool transB, int m, int n, int k,
        T alpha, T* a, int lda, T* b, int ldb, T beta, T* c, int ldc, ref TEpi epi, T* sumA = null, bool sumAccumulate = false,
        T* panelsB = null, int panelsWidth = 0)
        where T : unmanaged, IFloatingPointIeee754<T>
        where TEpi : unmanaged, IGemmEpilogue<T>
    {
        if (m == 0) return;
        if (n == 0 || k == 0 || alpha == T.Zero)
        {
            // Row sums still need computing when C is empty or alpha is 0; with k == 0 they are 0.
            if (sumA != null) RowSumsUnpacked(transA, m, k, a, lda, sumA, sumAccumulate);
            if (n > 0) ScaleOnly(m, n, beta, c, ldc, ref epi);
            return;
        }
        // A few rows or columns against a transposed B (a forward at batch <= 4, an output layer of <= 16 units): dot products, no packing.
        if (TakesDotProducts(transA, transB, m, n, sumA != null))
        {
            bool splitRows = m > n, wide = SmallMJob<T, TEpi>.PrefersWide(m, n);
            var job = new SmallMJob<T, TEpi>
            {
                M = m, N = n, K = k, Lda = lda, Ldb = ldb, Ldc = ldc, Alpha = alpha, Beta = beta, A = a, B = b, C = c, Epi = epi, Isa = ctx.Isa,
                SplitRows = splitRows, Wide = wide,
            };
            int parts = (long)m * n * k < 4 * ParallelThreshold ? 1 : Math.Min(ctx.Threads, splitRows ? (m + (wide ? SmallMJob<T, TEpi>.Q - 1 : 1)) / (wide ? SmallMJob<T, TEpi>.Q : 2) : n);
            ctx.Pool.Run(ref job, parts);
            return;
        }
        // bf16 operands (GemmPrecision.Bf16): float32 GEMMs only; the dot-product path above stays float32, where bf16 would
        // save nothing (a few rows or columns, bound by reading the operands).
        if (typeof(T) == typeof(float) && ctx.Precision == GemmPrecision.Bf16)
        {
            Bf16Driver.Run(ctx, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ref epi, sumA, sumAccumulate,
                transB && panelsWidth == Bf16Gemm.Blocks.NR ? panelsB : null);
            return;
        }
        switch (ctx.Isa)
        {
            case Isa.Avx512:
                Run<T, MicroKernelAvx512<T>, TEpi>(ctx, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ref epi, sumA, sumAccumulate,
                    transB && panelsWidth == MicroKernelAvx512<T>.NR ? panelsB : null);
                break;
            case Isa.Avx2:
                Run<T, MicroKernelAvx2<T>, TEpi>(ctx, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ref epi, sumA, sumAccumulate,
                    transB && panelsWidth == MicroKernelAvx2<T>.NR ? panelsB : null);
                break;
            default:
                Run<T, MicroKernelScalar<T>, TEpi>(ctx, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ref epi, sumA, sumAccumulate,
                    transB && panelsWidth == MicroKernelScalar<T>.NR ? panelsB : null);
                break;
        }
    }

    /// <summary>The width of the B panels that <paramref name="ctx"/>'s GEMM reads: its micro-kernel's NR (the bf16 kernel's with bf16 operands).</summary>
    internal static int PanelWidth<T>(CpuContext ctx) where T : unmanaged, IFloatingPointIeee754<T> =>
        PanelsBf16<T>(ctx) ? Bf16Gemm.Blocks.NR
        : ctx.Isa switch { Isa.Avx512 => MicroKernelAvx512<T>.NR, Isa.Avx2 => MicroKernelAvx2<T>.NR, _ => MicroKernelScalar<T>.NR };

    /// <summary>Whether <paramref name="ctx"/>'s panels hold bf16 pairs along K (one 4-byte element per pair) rather than values of T.</summary>
    internal static bool PanelsBf16<T>(CpuContext ctx) where T : unmanaged, IFloatingPointIeee754<T> =>
        typeof(T) == typeof(float) && ctx.Precision == GemmPrecision.Bf16;

    /// <summary>Whether a call goes to the dot-product path (float32 operands whatever the context's precision).</summary>
    internal static bool TakesDotProducts(bool transA, bool transB, int m, int n, bool rowSums) =>
        (m <= SmallM || n <= SmallN) && !transA && transB && !rowSums;

    internal static void RowSumsUnpacked<T>(bool transA, int m, int k, T* a, int lda, T* sum, bool accumulate)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int i = 0; i < m; i++)
        {
            T s = accumulate ? sum[i] : T.Zero;
            for (int p = 0; p < k; p++) s += transA ? a[(nint)p * lda + i] : a[(nint)i * lda + p];
            sum[i] = s;
        }
    }

    private static void Run<T, TKernel, TEpi>(CpuContext ctx, bool transA, bool transB, int m, int n, int k,
        T alpha, T* a, int lda, T* b, int ldb, T beta, T* c, int ldc, ref TEpi epi, T* sumA, bool sumAccumulate, T* panelsB)
        where T : unmanaged, IFloatingPointIeee754<T>
        where TKernel : struct, IMicroKernel<T>
        where TEpi : unmanaged, IGemmEpilogue<T>
    {
        bool aInPlace = ReadAInPlace && AInPlaceFits(ctx.Isa, transA, sumA != null, (long)lda * sizeof(T));
        var (splitM, parts) = Split(ctx.Threads, m, n, k, TKernel.MR, TKernel.NR, nSplitIsFree: aInPlace);
        var job = new GemmJob<T, TKernel, TEpi>
        {
            TransA = transA, TransB = transB, SplitM = splitM, Simd = ctx.Isa >= Isa.Avx2,
            StridedA = StridesA(ctx.Isa, aInPlace, splitM, parts),
            InPlaceB = !transB && ctx.Isa >= Isa.Avx2 && ReadBInPlace && BInPlaceFits(b, ldb, m, TKernel.MR),
            M = m, N = n, K = k, Lda = lda, Ldb = ldb, Ldc = ldc,
            Alpha = alpha, Beta = beta, A = a, B = b, C = c,
            Packs = ctx.Packs, Epi = epi, SumA = sumA, SumAccumulate = sumAccumulate, PanelsB = panelsB,
        };
        ctx.Pool.Run(ref job, parts);
    }

    /// <summary>
    /// Whether a row-major A (not transposed, no row sums to take from its packing) can be read in place by the
    /// micro-kernels: not where its rows lie a multiple of 4 KiB apart, as then the 8 rows a micro-kernel reads share one
    /// L1 set (on a Zen 4, the batch 256 x 1024 -> 1024 and 512 x 4096 -> 4096 forwards with W in panels ran at 0.92-0.94 of
    /// oneDNN in place against 0.97-0.99 packed, in the same runs).
    /// </summary>
    internal static bool AInPlaceFits(Isa isa, bool transA, bool rowSums, long ldaBytes) =>
        !transA && !rowSums && isa >= Isa.Avx2 && ldaBytes % 4096 != 0;

    /// <summary>
    /// Whether a call whose A <paramref name="fits"/> in place reads it so. When the threads split N, always: every thread
    /// would otherwise pack the whole of A again (2 threads, batch 128, 784 -> 256: forward 8 % and backward-data 7 %
    /// faster). On one thread, with the AVX-512 kernel: on a Zen 4 the batch 64-256, 784 -> 256 forwards with W in panels went
    /// from 0.93-0.97 of oneDNN to 0.97-0.99 (98 % of the FMA peak at batch 64 and 128), no slower elsewhere; double
    /// GEMMs 2-4 % faster too (Gemm.Dgemm NN and NT, 64-256 x 784 x 256 and 256 x 300 x 512, alternating, best of 5); with AVX2 (a Zen 3) in place
    /// measured no better than packing there, so that rung keeps packing.
    /// </summary>
    internal static bool StridesA(Isa isa, bool fits, bool splitM, int parts) =>
        fits && (parts == 1 ? isa == Isa.Avx512 : !splitM);

    /// <summary>
    /// Whether a non-transposed B is read in place: its micro-panel (kc rows of one 64-byte line) then stays in L1 only when
    /// the rows are line-aligned and their stride is an odd number of lines, so that they fall in every L1 set (784 floats:
    /// 49 lines). A stride of 256 or 512 floats puts them in 4 or 2 sets: on a Zen 3 that ran 128x784x256 and 512^3 NN
    /// products at 0.57-0.83 of OpenBLAS's speed, against 0.89-1.01 packed. With at most two row tiles each panel is read
    /// once or twice, and packing it would cost more than the misses (a 10-output layer's weight gradient).
    /// </summary>
    internal static bool BInPlaceFits<T>(T* b, int ldb, int m, int mr) where T : unmanaged
    {
        if (m <= 2 * mr) return true;
        long stride = (long)ldb * sizeof(T);
        return stride % 64 == 0 && stride / 64 % 2 == 1 && (nint)b % 64 == 0;
    }

    /// <summary>
    /// How a call is split over threads: along M or N in whole MR or NR tiles, into this many parts (1 below the threshold). The
    /// larger side is split: each thread re-packs the whole of the other operand's block, so splitting M costs an extra K x N pack
    /// of B, splitting N an extra M x K pack of A. When A is read in place (<paramref name="nSplitIsFree"/>) an N split packs
    /// nothing twice, so N is split whenever it has four tiles per thread or more (fewer would leave the threads' shares
    /// uneven; batch 256, 784 -> 256 forward on 2 threads of a Zen 3: 6 % faster than splitting M, where each thread
    /// transposed the whole of W).
    /// </summary>
    internal static (bool SplitM, int Parts) Split(int threads, int m, int n, int k, int mr, int nr, bool nSplitIsFree = false)
    {
        int mTiles = (m + mr - 1) / mr, nTiles = (n + nr - 1) / nr;
        bool splitM = nSplitIsFree && nTiles >= 4 * threads ? false
            : m >= n ? mTiles >= threads || mTiles >= nTiles : nTiles < threads && mTiles > nTiles;
        int parts = (long)m * n * k < ParallelThreshold ? 1 : Math.Min(threads, splitM ? mTiles : nTiles);
        return (splitM, parts);
    }

    /// <summary>The rows [m0, m1) and columns [n0, n1) of C that part <paramref name="part"/> of <paramref name="parts"/> computes.</summary>
    internal static (int M0, int M1, int N0, int N1) Range(bool splitM, int m, int n, int mr, int nr, int part, int parts)
    {
        if (splitM)
        {
            int tiles = (m + mr - 1) / mr;
            return ((int)((long)tiles * part / parts) * mr, Math.Min(m, (int)((long)tiles * (part + 1) / parts) * mr), 0, n);
        }
        int nt = (n + nr - 1) / nr;
        return (0, m, (int)((long)nt * part / parts) * nr, Math.Min(n, (int)((long)nt * (part + 1) / parts) * nr));
    }

    // k == 0 or alpha == 0: C = beta * C (beta == 0: C = 0 whatever it held), then the epilogue.
    private static void ScaleOnly<T, TEpi>(int m, int n, T beta, T* c, int ldc, ref TEpi epi)
        where T : unmanaged, IFloatingPointIeee754<T>
        where TEpi : unmanaged, IGemmEpilogue<T>
    {
        for (int i = 0; i < m; i++)
        {
            T* ci = c + (nint)i * ldc;
            for (int j = 0; j < n; j++)
                ci[j] = epi.Apply(beta == T.Zero ? T.Zero : beta * ci[j], i, j);
        }
    }
}
