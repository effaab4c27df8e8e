// The BLIS loops of the bf16 GEMM (GemmPrecision.Bf16): C = epilogue(alpha * op(A) * op(B) + beta * C) with
// op(A) and op(B) rounded to bf16 while they are packed and float32 accumulation.
//
//   for jc in N by NC:
//     for pc in K by KC:               pack op(B)[pc.., jc..] -> bf16 pairs (native), or read them from B's panels
//       for ic in M by MC:             pack op(A)[ic.., pc..] -> bf16 pairs (native)
//         for jr in NC by NR:          native strip: every MR x NR tile of this NR-wide column strip,
//                                      stored as TileStore does (=, fma with beta, or +=)
//           last K block:              the C# epilogue over the strip just stored (still in L1/L2)
//
// The native side owns the register tile and the packed layout (native/cpu/bf16_gemm.c); the blocks come from
// this machine's caches (GemmBlocking with 2-byte elements). As in the float driver, threads split C into
// static ranges aligned to MR or NR and the K blocks depend on K alone, so 1 and N threads give the same bits.
// Row sums of op(A) (a dense layer's bias gradient) are summed in float32 from A itself, not from bf16 panels.
using System.Numerics;
using System.Runtime.Intrinsics;
using Backprop.Kernels.Native;
using Backprop.Kernels.Threading;

namespace Backprop.Kernels.Cpu;

internal unsafe struct Bf16GemmJob<T, TEpi> : IParallelJob
    where T : unmanaged, IFloatingPointIeee754<T>
    where TEpi : unmanaged, IGemmEpilogue<T>
{
    public bool TransA, TransB, SplitM, Identity;
    public int M, N, K, Lda, Ldb, Ldc, MR, NR;
    public GemmBlocks Blocks;
    public float Alpha, Beta;
    public float* A, B, C;
    // B's whole-K panels of bf16 pairs made beforehand (Gemm.PackPanels; transposed B only), or null to pack B per block.
    public uint* PanelsB;
    public byte** Packs;
    public TEpi Epi;

    public void Execute(int part, int parts)
    {
        var (m0, m1, n0, n1) = GemmDriver.Range(SplitM, M, N, MR, NR, part, parts);
        if (m0 >= m1 || n0 >= n1) return;
        Loops(m0, m1, n0, n1, (uint*)Packs[2 * part], (uint*)Packs[2 * part + 1]);
    }

    private void Loops(int m0, int m1, int n0, int n1, uint* packA, uint* packB)
    {
        int NC = GemmBlocks.Step(n1 - n0, Blocks.NC, NR), KC = GemmBlocks.Step(K, Blocks.KC, 8), MC = GemmBlocks.Step(m1 - m0, Blocks.MC, MR);
        int k2 = (K + 1) / 2; // pairs in a whole-K panel
        for (int jc = n0; jc < n1; jc += NC)
        {
            int nc = Math.Min(NC, n1 - jc);
            for (int pc = 0; pc < K; pc += KC)
            {
                int kc = Math.Min(KC, K - pc), kc2 = (kc + 1) / 2;
                int mode = pc > 0 ? 2 : Beta == 0f ? 0 : 1; // TileStore's Overwrite, ScaleAdd, Accumulate
                bool last = pc + kc == K;
                // A block of the panels: column jc + jr's panel at (jc + jr) * k2 pairs, its K block at pair pc / 2 (pc is even).
                uint* blockB = PanelsB != null ? PanelsB + (nint)jc * k2 + (nint)(pc / 2) * NR : packB;
                int panelStride = PanelsB != null ? k2 : kc2;
                if (PanelsB == null)
                    Bf16Native.PackB(TransB ? 1 : 0, TransB ? B + (nint)jc * Ldb + pc : B + (nint)pc * Ldb + jc, Ldb, nc, kc, packB);
                for (int ic = m0; ic < m1; ic += MC)
                {
                    int mc = Math.Min(MC, m1 - ic);
                    Bf16Native.PackA(TransA ? 1 : 0, TransA ? A + (nint)pc * Lda + ic : A + (nint)ic * Lda + pc, Lda, mc, kc, packA);
                    for (int jr = 0; jr < nc; jr += NR)
                    {
                        int nr = Math.Min(NR, nc - jr);
                        float* c = C + (nint)ic * Ldc + jc + jr;
                        Bf16Native.Strip(kc, mc, nr, packA, blockB + (nint)jr * panelStride, c, Ldc, Alpha, Beta, mode);
                        if (last && !Identity) Epilogue((T*)c, mc, nr, ic, jc + jr);
                    }
                }
            }
        }
    }

    // The epilogue over an mc x nr strip of C that the native kernel has just stored: full 16-float vectors through
    // the vector overload, the valid columns past them one by one (never past column N - 1).
    private void Epilogue(T* c, int mc, int nr, int row, int col)
    {
        int vl = Vector512<T>.Count;
        for (int i = 0; i < mc; i++)
        {
            T* ci = c + (nint)i * Ldc;
            int j = 0;
            for (; j + vl <= nr; j += vl) Vector512.Store(Epi.Apply(Vector512.Load(ci + j), row + i, col + j), ci + j);
            for (; j < nr; j++) ci[j] = Epi.Apply(ci[j], row + i, col + j);
        }
    }
}

internal static unsafe class Bf16Driver
{
    /// <summary>The bf16 path of the GEMM driver (T is float; m, n, k > 0 and alpha != 0, checked by the caller).</summary>
    public static void Run<T, TEpi>(CpuContext ctx, bool transA, bool transB, int m, int n, int k,
        T alpha, T* a, int lda, T* b, int ldb, T beta, T* c, int ldc, ref TEpi epi, T* sumA, bool sumAccumulate, T* panelsB = null)
        where T : unmanaged, IFloatingPointIeee754<T>
        where TEpi : unmanaged, IGemmEpilogue<T>
    {
        if (sumA != null)
        {
            // Σ_k op(A)[i, k] in float32, k in order (the float driver's order too): for a transposed A, column sums.
            if (transA && lda == m) Ops.Elementwise.ColumnSums(ctx.Isa, a, k, m, sumA, sumAccumulate);
            else GemmDriver.RowSumsUnpacked(transA, m, k, a, lda, sumA, sumAccumulate);
        }
        var blocks = Bf16Gemm.Blocks;
        int mr = blocks.MR, nr = blocks.NR;
        var (splitM, parts) = GemmDriver.Split(ctx.Threads, m, n, k, mr, nr);
        var job = new Bf16GemmJob<T, TEpi>
        {
            TransA = transA, TransB = transB, SplitM = splitM, Identity = typeof(TEpi) == typeof(IdentityEpilogue<T>),
            M = m, N = n, K = k, Lda = lda, Ldb = ldb, Ldc = ldc, MR = mr, NR = nr,
            Blocks = new GemmBlocks(blocks.MC, blocks.KC, blocks.NC),
            Alpha = float.CreateTruncating(alpha), Beta = float.CreateTruncating(beta),
            A = (float*)a, B = (float*)b, C = (float*)c, PanelsB = transB ? (uint*)panelsB : null, Packs = ctx.Packs, Epi = epi,
        };
        ctx.Pool.Run(ref job, parts);
    }
}
