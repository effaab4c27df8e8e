// GELU, exact form: y = x*Phi(x) = 0.5*x*(1 + erf(x/sqrt 2)); dy/dx = Phi(x) + x*phi(x) with
// phi(x) = e^(-x^2/2)/sqrt(2 pi), from the pre-activation. erf: see SpecialFunctions (double
// precision in scalar and double vectors; A&S 7.1.26 in float vectors).
using System.Numerics;
using System.Runtime.Intrinsics;

namespace Backprop.Kernels.Cpu.Ops;

/// <summary>y = 0.5·x·(1 + erf(x/√2)).</summary>
public readonly struct Gelu<T> : IActivation<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private static readonly T Half = T.CreateTruncating(0.5);
    private static readonly T InvSqrt2 = T.CreateTruncating(0.70710678118654752);
    private static readonly T InvSqrt2Pi = T.CreateTruncating(0.39894228040143268);

    private static T Erf(T x) => T.CreateTruncating(SpecialFunctions.Erf(double.CreateTruncating(x)));

    /// <inheritdoc />
    public bool GradFromOutput => false;
    /// <inheritdoc />
    public T Forward(T x) => Half * x * (T.One + Erf(x * InvSqrt2));
    /// <inheritdoc />
    public Vector128<T> Forward(Vector128<T> x) => Vector128.Create(Half) * x * (Vector128<T>.One + SpecialFunctions.Erf(x * Vector128.Create(InvSqrt2)));
    /// <inheritdoc />
    public Vector256<T> Forward(Vector256<T> x) => Vector256.Create(Half) * x * (Vector256<T>.One + SpecialFunctions.Erf(x * Vector256.Create(InvSqrt2)));
    /// <inheritdoc />
    public Vector512<T> Forward(Vector512<T> x) => Vector512.Create(Half) * x * (Vector512<T>.One + SpecialFunctions.Erf(x * Vector512.Create(InvSqrt2)));

    /// <inheritdoc />
    public T Grad(T x) => Half * (T.One + Erf(x * InvSqrt2)) + x * InvSqrt2Pi * T.Exp(-Half * x * x);
    /// <inheritdoc />
    public Vector128<T> Grad(Vector128<T> x) =>
        Vector128.Create(Half) * (Vector128<T>.One + SpecialFunctions.Erf(x * Vector128.Create(InvSqrt2)))
        + x * Vector128.Create(InvSqrt2Pi) * SpecialFunctions.Exp(-Vector128.Create(Half) * x * x);
    /// <inheritdoc />
    public Vector256<T> Grad(Vector256<T> x) =>
        Vector256.Create(Half) * (Vector256<T>.One + SpecialFunctions.Erf(x * Vector256.Create(InvSqrt2)))
        + x * Vector256.Create(InvSqrt2Pi) * SpecialFunctions.Exp(-Vector256.Create(Half) * x * x);
    /// <inheritdoc />
    public Vector512<T> Grad(Vector512<T> x) =>
        Vector512.Create(Half) * (Vector512<T>.One + SpecialFunctions.Erf(x * Vector512.Create(InvSqrt2)))
        + x * Vector512.Create(InvSqrt2Pi) * SpecialFunctions.Exp(-Vector512.Create(Half) * x * x);
}
