// Elementwise activation passes over caller-owned spans, on the widest vector path the dispatch
// ladder allows (512 -> 256 -> 128 -> scalar), scalar for the tail:
//   Forward:  y[i]  = f(x[i])
//   Backward: dx[i] = dy[i] * f'(saved[i])   (saved = y or x, see IActivation.GradFromOutput)
// dx may alias dy (in-place backward).
using System.Numerics;
using System.Runtime.Intrinsics;

namespace Backprop.Kernels.Cpu.Ops;

/// <summary>Activation forward and backward over whole arrays.</summary>
public static unsafe class Elementwise
{
    /// <summary>y = f(x).</summary>
    public static void Forward<T, TAct>(in TAct act, ReadOnlySpan<T> x, Span<T> y)
        where T : unmanaged, IFloatingPointIeee754<T> where TAct : unmanaged, IActivation<T>
    {
        if (y.Length < x.Length) throw new ArgumentException($"y has {y.Length} elements; x has {x.Length}.", nameof(y));
        fixed (T* px = x) fixed (T* py = y) Forward(act, px, py, x.Length);
    }

    /// <summary>y = f(x) on raw pointers (n elements).</summary>
    public static void Forward<T, TAct>(in TAct act, T* x, T* y, int n)
        where T : unmanaged, IFloatingPointIeee754<T> where TAct : unmanaged, IActivation<T>
    {
        int i = 0;
        var isa = CpuIsa.Active;
        if (isa >= Isa.Avx512)
            for (; i + Vector512<T>.Count <= n; i += Vector512<T>.Count) Vector512.Store(act.Forward(Vector512.Load(x + i)), y + i);
        if (isa >= Isa.Avx2)
            for (; i + Vector256<T>.Count <= n; i += Vector256<T>.Count) Vector256.Store(act.Forward(Vector256.Load(x + i)), y + i);
        if (isa >= Isa.Vector128)
            for (; i + Vector128<T>.Count <= n; i += Vector128<T>.Count) Vector128.Store(act.Forward(Vector128.Load(x + i)), y + i);
        for (; i < n; i++) y[i] = act.Forward(x[i]);
    }

    /// <summary>
    /// The unfused epilogue pass over a GEMM result: for each of <paramref name="rows"/> rows of
    /// <paramref name="cols"/> values, z = y + bias (bias may be null), preact = z when not null, y = f(z).
    /// </summary>
    public static void BiasForward<T, TAct>(in TAct act, T* y, T* bias, int rows, int cols, T* preact)
        where T : unmanaged, IFloatingPointIeee754<T> where TAct : unmanaged, IActivation<T>
    {
        var isa = CpuIsa.Active;
        for (int r = 0; r < rows; r++)
        {
            T* row = y + (nint)r * cols;
            T* pre = preact == null ? null : preact + (nint)r * cols;
            int i = 0;
            if (isa >= Isa.Avx512)
                for (; i + Vector512<T>.Count <= cols; i += Vector512<T>.Count)
                {
                    var z = Vector512.Load(row + i);
                    if (bias != null) z += Vector512.Load(bias + i);
                    if (pre != null) Vector512.Store(z, pre + i);
                    Vector512.Store(act.Forward(z), row + i);
                }
            if (isa >= Isa.Avx2)
                for (; i + Vector256<T>.Count <= cols; i += Vector256<T>.Count)
                {
                    var z = Vector256.Load(row + i);
                    if (bias != null) z += Vector256.Load(bias + i);
                    if (pre != null) Vector256.Store(z, pre + i);
                    Vector256.Store(act.Forward(z), row + i);
                }
            for (; i < cols; i++)
            {
                T z = bias != null ? row[i] + bias[i] : row[i];
                if (pre != null) pre[i] = z;
                row[i] = act.Forward(z);
            }
        }
    }

    /// <summary>sum[c] (=, or += when accumulate) Σ_r x[r, c] over <paramref name="rows"/> rows of <paramref name="cols"/> (a bias gradient, unfused).</summary>
    public static void ColumnSums<T>(T* x, int rows, int cols, T* sum, bool accumulate) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (!accumulate) new Span<T>(sum, cols).Clear();
        for (int r = 0; r < rows; r++)
        {
            T* row = x + (nint)r * cols;
            int i = 0;
            for (; i + Vector256<T>.Count <= cols; i += Vector256<T>.Count) Vector256.Store(Vector256.Load(sum + i) + Vector256.Load(row + i), sum + i);
            for (; i < cols; i++) sum[i] += row[i];
        }
    }

    /// <summary>dx = dy ⊙ f'(saved).</summary>
    public static void Backward<T, TAct>(in TAct act, ReadOnlySpan<T> saved, ReadOnlySpan<T> dy, Span<T> dx)
        where T : unmanaged, IFloatingPointIeee754<T> where TAct : unmanaged, IActivation<T>
    {
        if (dy.Length < saved.Length) throw new ArgumentException($"dy has {dy.Length} elements; saved has {saved.Length}.", nameof(dy));
        if (dx.Length < saved.Length) throw new ArgumentException($"dx has {dx.Length} elements; saved has {saved.Length}.", nameof(dx));
        fixed (T* ps = saved) fixed (T* pdy = dy) fixed (T* pdx = dx) Backward(act, ps, pdy, pdx, saved.Length);
    }

    /// <summary>dx = dy ⊙ f'(saved) on raw pointers (n elements).</summary>
    public static void Backward<T, TAct>(in TAct act, T* saved, T* dy, T* dx, int n)
        where T : unmanaged, IFloatingPointIeee754<T> where TAct : unmanaged, IActivation<T>
    {
        int i = 0;
        var isa = CpuIsa.Active;
        if (isa >= Isa.Avx512)
            for (; i + Vector512<T>.Count <= n; i += Vector512<T>.Count)
                Vector512.Store(Vector512.Load(dy + i) * act.Grad(Vector512.Load(saved + i)), dx + i);
        if (isa >= Isa.Avx2)
            for (; i + Vector256<T>.Count <= n; i += Vector256<T>.Count)
                Vector256.Store(Vector256.Load(dy + i) * act.Grad(Vector256.Load(saved + i)), dx + i);
        if (isa >= Isa.Vector128)
            for (; i + Vector128<T>.Count <= n; i += Vector128<T>.Count)
                Vector128.Store(Vector128.Load(dy + i) * act.Grad(Vector128.Load(saved + i)), dx + i);
        for (; i < n; i++) dx[i] = dy[i] * act.Grad(saved[i]);
    }
}
