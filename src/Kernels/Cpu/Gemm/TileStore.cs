// How a micro-kernel writes its accumulators into C:
//   first K block:  C = alpha*acc + beta*C   (beta == 0: C is not read, so NaN in C is ignored)
//   later K blocks: C = C + alpha*acc
//   last K block:   then C = epilogue(C)
// The vector and the edge (scalar) paths do the same IEEE operations in the same order, so an
// element's value does not depend on whether it fell in a full or a partial tile.
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Backprop.Kernels.Cpu;

internal enum StoreMode : byte
{
    Overwrite,   // first K block, beta == 0
    ScaleAdd,    // first K block, beta != 0
    Accumulate,  // later K blocks
}

internal readonly unsafe struct TileStore<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public readonly T Alpha;
    public readonly T Beta;
    public readonly StoreMode Mode;
    public readonly bool Last;

    public TileStore(T alpha, T beta, bool first, bool last)
    {
        Alpha = alpha;
        Beta = beta;
        Mode = !first ? StoreMode.Accumulate : beta == T.Zero ? StoreMode.Overwrite : StoreMode.ScaleAdd;
        Last = last;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Store<TEpi>(Vector512<T> acc, T* p, ref TEpi epi, int row, int col) where TEpi : struct, IGemmEpilogue<T>
    {
        var x = acc * Vector512.Create(Alpha);
        if (Mode == StoreMode.ScaleAdd) x = VectorMath.Fma(Vector512.Create(Beta), Vector512.Load(p), x);
        else if (Mode == StoreMode.Accumulate) x = Vector512.Load(p) + x;
        if (Last) x = epi.Apply(x, row, col);
        Vector512.Store(x, p);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Store<TEpi>(Vector256<T> acc, T* p, ref TEpi epi, int row, int col) where TEpi : struct, IGemmEpilogue<T>
    {
        var x = acc * Vector256.Create(Alpha);
        if (Mode == StoreMode.ScaleAdd) x = VectorMath.Fma(Vector256.Create(Beta), Vector256.Load(p), x);
        else if (Mode == StoreMode.Accumulate) x = Vector256.Load(p) + x;
        if (Last) x = epi.Apply(x, row, col);
        Vector256.Store(x, p);
    }

    /// <summary>Stores the valid mr x nr part of the tile t (row stride ldt) into C, element by element.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public void StoreEdge<TEpi>(T* t, int ldt, T* c, int ldc, int mr, int nr, ref TEpi epi, int row, int col) where TEpi : struct, IGemmEpilogue<T>
    {
        for (int i = 0; i < mr; i++)
        {
            T* ci = c + (nint)i * ldc;
            T* ti = t + (nint)i * ldt;
            for (int j = 0; j < nr; j++)
            {
                T x = ti[j] * Alpha;
                if (Mode == StoreMode.ScaleAdd) x = T.FusedMultiplyAdd(Beta, ci[j], x);
                else if (Mode == StoreMode.Accumulate) x = ci[j] + x;
                if (Last) x = epi.Apply(x, row + i, col + j);
                ci[j] = x;
            }
        }
    }
}
