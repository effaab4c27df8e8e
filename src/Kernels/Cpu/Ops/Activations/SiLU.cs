// SiLU (swish): y = x*s with s = sigmoid(x); dy/dx = s*(1 + x*(1 - s)) from the pre-activation.
// Large |x| saturates s to 0 or 1 (no NaN: -1e4 * 0 = -0).
using System.Numerics;
using System.Runtime.Intrinsics;

namespace Backprop.Kernels.Cpu.Ops;

/// <summary>y = x·sigmoid(x).</summary>
public readonly struct SiLU<T> : IActivation<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public bool GradFromOutput => false;
    /// <inheritdoc />
    public T Forward(T x) => x / (T.One + T.Exp(-x));
    /// <inheritdoc />
    public Vector128<T> Forward(Vector128<T> x) => x * (Vector128<T>.One / (Vector128<T>.One + SpecialFunctions.Exp(-x)));
    /// <inheritdoc />
    public Vector256<T> Forward(Vector256<T> x) => x * (Vector256<T>.One / (Vector256<T>.One + SpecialFunctions.Exp(-x)));
    /// <inheritdoc />
    public Vector512<T> Forward(Vector512<T> x) => x * (Vector512<T>.One / (Vector512<T>.One + SpecialFunctions.Exp(-x)));

    /// <inheritdoc />
    public T Grad(T x)
    {
        T s = T.One / (T.One + T.Exp(-x));
        return s * (T.One + x * (T.One - s));
    }

    /// <inheritdoc />
    public Vector128<T> Grad(Vector128<T> x)
    {
        var s = Vector128<T>.One / (Vector128<T>.One + SpecialFunctions.Exp(-x));
        return s * (Vector128<T>.One + x * (Vector128<T>.One - s));
    }

    /// <inheritdoc />
    public Vector256<T> Grad(Vector256<T> x)
    {
        var s = Vector256<T>.One / (Vector256<T>.One + SpecialFunctions.Exp(-x));
        return s * (Vector256<T>.One + x * (Vector256<T>.One - s));
    }

    /// <inheritdoc />
    public Vector512<T> Grad(Vector512<T> x)
    {
        var s = Vector512<T>.One / (Vector512<T>.One + SpecialFunctions.Exp(-x));
        return s * (Vector512<T>.One + x * (Vector512<T>.One - s));
    }
}
