// GELU, tanh approximation: y = 0.5*x*(1 + tanh(u)), u = k*(x + c*x^3), k = sqrt(2/pi), c = 0.044715.
// Computed through 0.5*(1 + tanh(u)) = s = sigmoid(2u), which keeps full relative precision where
// tanh(u) is near -1 (float would lose it in 1 + tanh): y = x*s,
// dy/dx = s + 2*x*s*(1 - s)*k*(1 + 3c*x^2), from the pre-activation. For |x| ~ 1e4, 2u overflows
// harmlessly: s -> 0 or 1.
using System.Numerics;
using System.Runtime.Intrinsics;

namespace Backprop.Kernels.Cpu.Ops;

/// <summary>y = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).</summary>
public readonly struct GeluTanh<T> : IActivation<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private static readonly T TwoK = T.CreateTruncating(2 * 0.79788456080286536);
    private static readonly T C = T.CreateTruncating(0.044715);
    private static readonly T C3 = T.CreateTruncating(3 * 0.044715);

    /// <inheritdoc />
    public bool GradFromOutput => false;

    private static T S(T x) => T.One / (T.One + T.Exp(-TwoK * (x + C * x * x * x)));
    private static Vector128<T> S(Vector128<T> x) => Vector128<T>.One / (Vector128<T>.One + SpecialFunctions.Exp(-Vector128.Create(TwoK) * (x + Vector128.Create(C) * x * x * x)));
    private static Vector256<T> S(Vector256<T> x) => Vector256<T>.One / (Vector256<T>.One + SpecialFunctions.Exp(-Vector256.Create(TwoK) * (x + Vector256.Create(C) * x * x * x)));
    private static Vector512<T> S(Vector512<T> x) => Vector512<T>.One / (Vector512<T>.One + SpecialFunctions.Exp(-Vector512.Create(TwoK) * (x + Vector512.Create(C) * x * x * x)));

    /// <inheritdoc />
    public T Forward(T x) => x * S(x);
    /// <inheritdoc />
    public Vector128<T> Forward(Vector128<T> x) => x * S(x);
    /// <inheritdoc />
    public Vector256<T> Forward(Vector256<T> x) => x * S(x);
    /// <inheritdoc />
    public Vector512<T> Forward(Vector512<T> x) => x * S(x);

    /// <inheritdoc />
    public T Grad(T x)
    {
        T s = S(x);
        return s + TwoK * x * s * (T.One - s) * (T.One + C3 * x * x);
    }

    /// <inheritdoc />
    public Vector128<T> Grad(Vector128<T> x)
    {
        var s = S(x);
        return s + Vector128.Create(TwoK) * x * s * (Vector128<T>.One - s) * (Vector128<T>.One + Vector128.Create(C3) * x * x);
    }

    /// <inheritdoc />
    public Vector256<T> Grad(Vector256<T> x)
    {
        var s = S(x);
        return s + Vector256.Create(TwoK) * x * s * (Vector256<T>.One - s) * (Vector256<T>.One + Vector256.Create(C3) * x * x);
    }

    /// <inheritdoc />
    public Vector512<T> Grad(Vector512<T> x)
    {
        var s = S(x);
        return s + Vector512.Create(TwoK) * x * s * (Vector512<T>.One - s) * (Vector512<T>.One + Vector512.Create(C3) * x * x);
    }
}
