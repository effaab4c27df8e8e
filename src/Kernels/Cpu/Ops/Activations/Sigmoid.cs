// Sigmoid: y = 1/(1 + e^-x). For x -> -inf, e^-x -> inf and y -> 0; for x -> +inf, y -> 1: no NaN.
// dy/dx = y*(1 - y) from the output.
using System.Numerics;
using System.Runtime.Intrinsics;

namespace Backprop.Kernels.Cpu.Ops;

/// <summary>y = 1 / (1 + e^−x).</summary>
public readonly struct Sigmoid<T> : IActivation<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public bool GradFromOutput => true;
    /// <inheritdoc />
    public T Forward(T x) => T.One / (T.One + T.Exp(-x));
    /// <inheritdoc />
    public Vector128<T> Forward(Vector128<T> x) => Vector128<T>.One / (Vector128<T>.One + SpecialFunctions.Exp(-x));
    /// <inheritdoc />
    public Vector256<T> Forward(Vector256<T> x) => Vector256<T>.One / (Vector256<T>.One + SpecialFunctions.Exp(-x));
    /// <inheritdoc />
    public Vector512<T> Forward(Vector512<T> x) => Vector512<T>.One / (Vector512<T>.One + SpecialFunctions.Exp(-x));
    /// <inheritdoc />
    public T Grad(T y) => y * (T.One - y);
    /// <inheritdoc />
    public Vector128<T> Grad(Vector128<T> y) => y * (Vector128<T>.One - y);
    /// <inheritdoc />
    public Vector256<T> Grad(Vector256<T> y) => y * (Vector256<T>.One - y);
    /// <inheritdoc />
    public Vector512<T> Grad(Vector512<T> y) => y * (Vector512<T>.One - y);
}
