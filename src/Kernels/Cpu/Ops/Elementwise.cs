// Elementwise activation passes over caller-owned memory, on the vector ladder (512 -> 256 -> 128 ->
// scalar, up to the ISA asked for):
//   Forward:     y[i]  = f(x[i])
//   Backward:    dx[i] = dy[i] * f'(saved[i])   (saved = y or x, see IActivation.GradFromOutput)
//   BiasForward: the unfused epilogue pass over a GEMM result, row by row: z = y + bias; preact = z; y = f(z)
//   ColumnSums:  sum[c] (=|+=) Σ_r x[r, c]      (an unfused bias gradient; rows added in order)
// dx may alias dy (in-place backward).
using System.Numerics;
using System.Runtime.Intrinsics;

namespace Backprop.Kernels.Cpu.Ops;

/// <summary>Activation forward and backward over whole arrays.</summary>
public static unsafe class Elementwise
{
    /// <summary>y = f(x), on the best vector path up to <paramref name="isa"/>.</summary>
    public static void Forward<T, TAct>(in TAct act, ReadOnlySpan<T> x, Span<T> y, Isa isa = Isa.Avx512)
        where T : unmanaged, IFloatingPointIeee754<T> where TAct : unmanaged, IActivation<T>
    {
        if (y.Length < x.Length) throw new ArgumentException($"y has {y.Length} elements; x has {x.Length}.", nameof(y));
        fixed (T* px = x) fixed (T* py = y) Forward(isa, act, px, py, x.Length);
    }

    /// <summary>y = f(x) on raw pointers (n elements).</summary>
    public static void Forward<T, TAct>(Isa isa, in TAct act, T* x, T* y, int n)
        where T : unmanaged, IFloatingPointIeee754<T> where TAct : unmanaged, IActivation<T>
    {
        var k = new ForwardKernel<T, TAct> { Act = act, X = x, Y = y };
        VectorLadder.Run<T, ForwardKernel<T, TAct>>(isa, ref k, n);
    }

    /// <summary>dx = dy ⊙ f'(saved), on the best vector path up to <paramref name="isa"/>.</summary>
    public static void Backward<T, TAct>(in TAct act, ReadOnlySpan<T> saved, ReadOnlySpan<T> dy, Span<T> dx, Isa isa = Isa.Avx512)
        where T : unmanaged, IFloatingPointIeee754<T> where TAct : unmanaged, IActivation<T>
    {
        if (dy.Length < saved.Length) throw new ArgumentException($"dy has {dy.Length} elements; saved has {saved.Length}.", nameof(dy));
        if (dx.Length < saved.Length) throw new ArgumentException($"dx has {dx.Length} elements; saved has {saved.Length}.", nameof(dx));
        fixed (T* ps = saved) fixed (T* pdy = dy) fixed (T* pdx = dx) Backward(isa, act, ps, pdy, pdx, saved.Length);
    }

    /// <summary>dx = dy ⊙ f'(saved) on raw pointers (n elements).</summary>
    public static void Backward<T, TAct>(Isa isa, in TAct act, T* saved, T* dy, T* dx, int n)
        where T : unmanaged, IFloatingPointIeee754<T> where TAct : unmanaged, IActivation<T>
    {
        var k = new BackwardKernel<T, TAct> { Act = act, Saved = saved, Dy = dy, Dx = dx };
        VectorLadder.Run<T, BackwardKernel<T, TAct>>(isa, ref k, n);
    }

    /// <summary>
    /// The unfused epilogue pass over a GEMM result: for each of <paramref name="rows"/> rows of
    /// <paramref name="cols"/> values, z = y + bias (bias may be null), preact = z when not null, y = f(z).
    /// </summary>
    public static void BiasForward<T, TAct>(Isa isa, in TAct act, T* y, T* bias, int rows, int cols, T* preact)
        where T : unmanaged, IFloatingPointIeee754<T> where TAct : unmanaged, IActivation<T>
    {
        for (int r = 0; r < rows; r++)
        {
            var k = new BiasKernel<T, TAct> { Act = act, Y = y + (nint)r * cols, Bias = bias, Pre = preact == null ? null : preact + (nint)r * cols };
            VectorLadder.Run<T, BiasKernel<T, TAct>>(isa, ref k, cols);
        }
    }

    /// <summary>sum[c] (=, or += when accumulate) Σ_r x[r, c] over <paramref name="rows"/> rows of <paramref name="cols"/> (a bias gradient, unfused).</summary>
    public static void ColumnSums<T>(Isa isa, T* x, int rows, int cols, T* sum, bool accumulate) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (!accumulate) new Span<T>(sum, cols).Clear();
        for (int r = 0; r < rows; r++)
        {
            var k = new AddKernel<T> { Src = x + (nint)r * cols, Dst = sum };
            VectorLadder.Run<T, AddKernel<T>>(isa, ref k, cols);
        }
    }

    private struct ForwardKernel<T, TAct> : IVectorKernel<T> where T : unmanaged, IFloatingPointIeee754<T> where TAct : unmanaged, IActivation<T>
    {
        public TAct Act;
        public T* X, Y;
        public readonly void Step512(nint i) => Vector512.Store(Act.Forward(Vector512.Load(X + i)), Y + i);
        public readonly void Step256(nint i) => Vector256.Store(Act.Forward(Vector256.Load(X + i)), Y + i);
        public readonly void Step128(nint i) => Vector128.Store(Act.Forward(Vector128.Load(X + i)), Y + i);
        public readonly void Step1(nint i) => Y[i] = Act.Forward(X[i]);
    }

    private struct BackwardKernel<T, TAct> : IVectorKernel<T> where T : unmanaged, IFloatingPointIeee754<T> where TAct : unmanaged, IActivation<T>
    {
        public TAct Act;
        public T* Saved, Dy, Dx;
        public readonly void Step512(nint i) => Vector512.Store(Vector512.Load(Dy + i) * Act.Grad(Vector512.Load(Saved + i)), Dx + i);
        public readonly void Step256(nint i) => Vector256.Store(Vector256.Load(Dy + i) * Act.Grad(Vector256.Load(Saved + i)), Dx + i);
        public readonly void Step128(nint i) => Vector128.Store(Vector128.Load(Dy + i) * Act.Grad(Vector128.Load(Saved + i)), Dx + i);
        public readonly void Step1(nint i) => Dx[i] = Dy[i] * Act.Grad(Saved[i]);
    }

    // No 128-bit step: the pass keeps the rungs it always had, so the Blas backend's results stay as they were.
    private struct BiasKernel<T, TAct> : IVectorKernel<T> where T : unmanaged, IFloatingPointIeee754<T> where TAct : unmanaged, IActivation<T>
    {
        public TAct Act;
        public T* Y, Bias, Pre;
        static int IVectorKernel<T>.Width128 => 0;

        public readonly void Step512(nint i)
        {
            var z = Vector512.Load(Y + i);
            if (Bias != null) z += Vector512.Load(Bias + i);
            if (Pre != null) Vector512.Store(z, Pre + i);
            Vector512.Store(Act.Forward(z), Y + i);
        }

        public readonly void Step256(nint i)
        {
            var z = Vector256.Load(Y + i);
            if (Bias != null) z += Vector256.Load(Bias + i);
            if (Pre != null) Vector256.Store(z, Pre + i);
            Vector256.Store(Act.Forward(z), Y + i);
        }

        public readonly void Step128(nint i) => throw new InvalidOperationException("BiasKernel has no 128-bit step.");

        public readonly void Step1(nint i)
        {
            T z = Bias != null ? Y[i] + Bias[i] : Y[i];
            if (Pre != null) Pre[i] = z;
            Y[i] = Act.Forward(z);
        }
    }

    private struct AddKernel<T> : IVectorKernel<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public T* Src, Dst;
        public readonly void Step512(nint i) => Vector512.Store(Vector512.Load(Dst + i) + Vector512.Load(Src + i), Dst + i);
        public readonly void Step256(nint i) => Vector256.Store(Vector256.Load(Dst + i) + Vector256.Load(Src + i), Dst + i);
        public readonly void Step128(nint i) => Vector128.Store(Vector128.Load(Dst + i) + Vector128.Load(Src + i), Dst + i);
        public readonly void Step1(nint i) => Dst[i] += Src[i];
    }
}
