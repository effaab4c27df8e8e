// ELU(alpha > 0): y = x for x > 0, alpha*(e^x - 1) otherwise. From the output: dy/dx = 1 where
// y > 0, else alpha*e^x = y + alpha (elu'(0) = alpha, as PyTorch). e^x underflows to 0 for very
// negative x, so y tends to -alpha without NaN.
using System.Numerics;
using System.Runtime.Intrinsics;

namespace Backprop.Kernels.Cpu.Ops;

/// <summary>y = x for x &gt; 0, alpha·(e^x − 1) otherwise.</summary>
public readonly struct Elu<T> : IActivation<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly T _alpha;

    /// <summary>Creates the operator; <paramref name="alpha"/> must be positive and finite.</summary>
    public Elu(T alpha)
    {
        if (!(alpha > T.Zero) || !T.IsFinite(alpha))
            throw new ArgumentOutOfRangeException(nameof(alpha), alpha, $"ELU alpha must be positive and finite; got {alpha}.");
        _alpha = alpha;
    }

    /// <inheritdoc />
    public bool GradFromOutput => true;
    /// <inheritdoc />
    public T Forward(T x) => x > T.Zero ? x : _alpha * (T.Exp(x) - T.One);
    /// <inheritdoc />
    public Vector128<T> Forward(Vector128<T> x) =>
        Vector128.ConditionalSelect(Vector128.GreaterThan(x, Vector128<T>.Zero), x, Vector128.Create(_alpha) * (SpecialFunctions.Exp(Vector128.Min(x, Vector128<T>.Zero)) - Vector128<T>.One));
    /// <inheritdoc />
    public Vector256<T> Forward(Vector256<T> x) =>
        Vector256.ConditionalSelect(Vector256.GreaterThan(x, Vector256<T>.Zero), x, Vector256.Create(_alpha) * (SpecialFunctions.Exp(Vector256.Min(x, Vector256<T>.Zero)) - Vector256<T>.One));
    /// <inheritdoc />
    public Vector512<T> Forward(Vector512<T> x) =>
        Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512<T>.Zero), x, Vector512.Create(_alpha) * (SpecialFunctions.Exp(Vector512.Min(x, Vector512<T>.Zero)) - Vector512<T>.One));
    /// <inheritdoc />
    public T Grad(T y) => y > T.Zero ? T.One : y + _alpha;
    /// <inheritdoc />
    public Vector128<T> Grad(Vector128<T> y) => Vector128.ConditionalSelect(Vector128.GreaterThan(y, Vector128<T>.Zero), Vector128<T>.One, y + Vector128.Create(_alpha));
    /// <inheritdoc />
    public Vector256<T> Grad(Vector256<T> y) => Vector256.ConditionalSelect(Vector256.GreaterThan(y, Vector256<T>.Zero), Vector256<T>.One, y + Vector256.Create(_alpha));
    /// <inheritdoc />
    public Vector512<T> Grad(Vector512<T> y) => Vector512.ConditionalSelect(Vector512.GreaterThan(y, Vector512<T>.Zero), Vector512<T>.One, y + Vector512.Create(_alpha));
}
