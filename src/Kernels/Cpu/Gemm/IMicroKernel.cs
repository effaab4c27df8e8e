// The contract between the BLIS loop driver and a per-ISA micro-kernel.
// A micro-kernel owns its register block (MR x NR); the driver owns the five loops, the packing and
// the cache blocks (GemmBlocking: computed from this machine's caches for the kernel's MR and NR).
using System.Numerics;

namespace Backprop.Kernels.Cpu;

internal unsafe interface IMicroKernel<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>Rows of C per register tile.</summary>
    static abstract int MR { get; }
    /// <summary>Columns of C per register tile.</summary>
    static abstract int NR { get; }
    /// <summary>
    /// C[0..mr, 0..nr] (row-major, ldc) receives the product of the packed panel a (kc x MR, k-major)
    /// and the B micro-panel b (kc x NR, element (p, j) at b[p * bK + j]: bK = NR when packed, B's leading
    /// dimension when read in place) through <paramref name="st"/>; row/col locate the tile in the whole C.
    /// All NR columns of b are read, whatever nr.
    /// </summary>
    static abstract void Run<TEpi>(int kc, T* a, T* b, nint bK, T* c, int ldc, int mr, int nr, in TileStore<T> st, ref TEpi epi, int row, int col)
        where TEpi : struct, IGemmEpilogue<T>;

    /// <summary>
    /// As <see cref="Run"/>, with A read where it lies instead of from a packed panel: element (r, p) of the MR x kc
    /// micro-panel at a[r * aRow + p * aK] (rows past mr are not read).
    /// </summary>
    static abstract void RunStrided<TEpi>(int kc, T* a, nint aRow, nint aK, T* b, nint bK, T* c, int ldc, int mr, int nr, in TileStore<T> st, ref TEpi epi, int row, int col)
        where TEpi : struct, IGemmEpilogue<T>;
}
