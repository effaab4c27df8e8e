// Weight panels made ahead of the GEMMs that read them. A dense layer's forward multiplies by Wᵀ, which the
// driver would otherwise transpose into k-major panels in every call (6-12 % of a 784 -> 256 forward at
// batch 64-128 on a Zen 3). Gemm.PackPanels writes the panels of a whole B once; the optimizer can write
// them in its pass over the weights (Optimizer.UpdateAndPack), panel by panel while each group of rows is
// still in cache. The layout is the driver's own: panel p (rows p·NR .. p·NR + NR − 1 of B, zero past N) holds
// k = 0 .. K − 1 one after the other, NR values each, so that any K block of any column block is a sub-panel.
// With bf16 operands the panels hold the bf16 kernel's pairs (k = 2q and 2q + 1 in one 4-byte element, the last
// pair of an odd K padded with +0) over the whole of K: the bf16 driver's K blocks start at even k, so a block
// of it is again a sub-panel, and the forward skips the float32 -> bf16 conversion of W as well as its transpose.
using System.Numerics;
using Backprop.Kernels.Threading;

namespace Backprop.Kernels.Cpu;

/// <summary>A matrix B (stored <see cref="N"/> x <see cref="K"/>, rows <see cref="Ldb"/> apart) and room for its panels (<see cref="Gemm.PanelsLength{T}"/> elements).</summary>
public readonly unsafe struct PanelMatrix<T> where T : unmanaged
{
    /// <summary>Describes B at <paramref name="b"/> and its panels at <paramref name="panels"/>.</summary>
    public PanelMatrix(T* b, int n, int k, int ldb, T* panels)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        if (ldb < Math.Max(1, k)) throw new ArgumentOutOfRangeException(nameof(ldb), ldb, $"ldb must be at least k = {k}; got {ldb}.");
        if (b == null || panels == null) throw new ArgumentNullException(b == null ? nameof(b) : nameof(panels));
        B = b; N = n; K = k; Ldb = ldb; Panels = panels;
    }

    /// <summary>The matrix.</summary>
    public T* B { get; }
    /// <summary>Rows of B (the GEMM's N).</summary>
    public int N { get; }
    /// <summary>Columns of B (the GEMM's K).</summary>
    public int K { get; }
    /// <summary>Distance between B's rows, in elements.</summary>
    public int Ldb { get; }
    /// <summary>Where the panels go.</summary>
    public T* Panels { get; }
}

public static unsafe partial class Gemm
{
    /// <summary>Packs the panels of every matrix (see <see cref="PackPanels{T}(CpuContext, int, int, T*, int, T*, int, int)"/>), the panels split over the context's threads.</summary>
    public static void PackPanels<T>(CpuContext context, ReadOnlySpan<PanelMatrix<T>> matrices) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var layout = PanelLayout.Of<T>(context);
        int w = layout.Width;
        long work = 0, panels = 0;
        foreach (var m in matrices)
        {
            work += (long)m.N * m.K;
            panels += (m.N + w - 1) / w;
        }
        if (panels == 0) return;
        fixed (PanelMatrix<T>* p = matrices)
        {
            var job = new PanelsJob<T> { Matrices = p, Count = matrices.Length, Layout = layout, Panels = panels };
            context.Pool.Run(ref job, work < 65536 ? 1 : (int)Math.Min(context.Threads, panels));
        }
    }

    // Panel j of all the matrices' panels in order goes to part j * parts / total.
    private struct PanelsJob<T> : IParallelJob where T : unmanaged, IFloatingPointIeee754<T>
    {
        public PanelMatrix<T>* Matrices;
        public int Count;
        public PanelLayout Layout;
        public long Panels;

        public readonly void Execute(int part, int parts)
        {
            long first = Panels * part / parts, end = Panels * (part + 1) / parts, at = 0;
            for (int i = 0; i < Count && at < end; i++)
            {
                var m = Matrices[i];
                int w = Layout.Width;
                long count = (m.N + w - 1) / w;
                long p0 = Math.Max(first, at) - at, p1 = Math.Min(end, at + count) - at;
                if (p1 > p0) PanelRows(Layout, m.B, m.Ldb, m.K, (int)(p0 * w), (int)Math.Min(m.N, p1 * w), m.Panels);
                at += count;
            }
        }
    }

    /// <summary>
    /// Rows [r0, r1) of B (stored n x k, rows <paramref name="ldb"/> apart; r0 a multiple of the width) into their panels, on the
    /// calling thread: as the driver packs Bᵀ, or with bf16 operands as the bf16 kernel's pairs along k (native, the same code
    /// that packs B in a bf16 call, so the panels hold the bits a call would pack).
    /// </summary>
    internal static void PanelRows<T>(in PanelLayout layout, T* b, int ldb, int k, int r0, int r1, T* panels) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (r1 <= r0 || k == 0) return;
        if (layout.Bf16)
            Native.Bf16Native.PackB(1, (float*)(b + (nint)r0 * ldb), ldb, r1 - r0, k, (uint*)(panels + (nint)r0 * layout.Depth(k)));
        else
            GemmPack.Block(true, b + (nint)r0 * ldb, ldb, r1 - r0, k, layout.Width, panels + (nint)r0 * k, layout.Simd);
    }
}

/// <summary>How a context's panels are laid out: their width, whether they hold bf16 pairs, whether the float packing may use vectors.</summary>
internal readonly record struct PanelLayout(int Width, bool Bf16, bool Simd)
{
    public static PanelLayout Of<T>(CpuContext ctx) where T : unmanaged, IFloatingPointIeee754<T> =>
        new(GemmDriver.PanelWidth<T>(ctx), GemmDriver.PanelsBf16<T>(ctx), ctx.Isa >= Isa.Avx2);

    /// <summary>Elements one panel column takes over a K of <paramref name="k"/>: k values, or (k + 1) / 2 bf16 pairs.</summary>
    public int Depth(int k) => Bf16 ? (k + 1) / 2 : k;
}
