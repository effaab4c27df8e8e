// The contract between the BLIS loop driver and a per-ISA micro-kernel.
// A micro-kernel owns its register block (MR x NR) and its cache block sizes (MC, KC, NC);
// the driver owns the five loops and the packing.
using System.Numerics;

namespace Backprop.Kernels.Cpu;

internal unsafe interface IMicroKernel<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>Rows of C per register tile.</summary>
    static abstract int MR { get; }
    /// <summary>Columns of C per register tile.</summary>
    static abstract int NR { get; }
    /// <summary>Rows of A per packed block (a multiple of MR; the block lives in L2).</summary>
    static abstract int MC { get; }
    /// <summary>Depth of a packed block (a B micro-panel of KC x NR is reused from L1).</summary>
    static abstract int KC { get; }
    /// <summary>Columns of B per packed block (a multiple of NR; the block lives in L3).</summary>
    static abstract int NC { get; }

    /// <summary>
    /// C[0..mr, 0..nr] (row-major, ldc) receives the product of the packed panels a (kc x MR, k-major)
    /// and b (kc x NR, k-major) through <paramref name="st"/>; row/col locate the tile in the whole C.
    /// </summary>
    static abstract void Run<TEpi>(int kc, T* a, T* b, T* c, int ldc, int mr, int nr, in TileStore<T> st, ref TEpi epi, int row, int col)
        where TEpi : struct, IGemmEpilogue<T>;
}
