// LeakyReLU(slope > 0): y = x for x > 0, slope*x otherwise. With slope > 0 the sign of y is the sign
// of x, so dy/dx comes from the output: 1 where y > 0, else slope (leaky'(0) = slope, as PyTorch).
using System.Numerics;
using System.Runtime.Intrinsics;

namespace Backprop.Kernels.Cpu.Ops;

/// <summary>y = x for x &gt; 0, slope·x otherwise.</summary>
public readonly struct LeakyReLU<T> : IActivation<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly T _slope;

    /// <summary>Creates the operator; <paramref name="slope"/> must be positive and finite.</summary>
    public LeakyReLU(T slope)
    {
        if (!(slope > T.Zero) || !T.IsFinite(slope))
            throw new ArgumentOutOfRangeException(nameof(slope), slope, $"LeakyReLU slope must be positive and finite; got {slope}.");
        _slope = slope;
    }

    /// <inheritdoc />
    public bool GradFromOutput => true;
    /// <inheritdoc />
    public T Forward(T x) => x > T.Zero ? x : _slope * x;
    /// <inheritdoc />
    public Vector128<T> Forward(Vector128<T> x) => Vector128.ConditionalSelect(Vector128.GreaterThan(x, Vector128<T>.Zero), x, x * Vector128.Create(_slope));
    /// <inheritdoc />
    public Vector256<T> Forward(Vector256<T> x) => Vector256.ConditionalSelect(Vector256.GreaterThan(x, Vector256<T>.Zero), x, x * Vector256.Create(_slope));
    /// <inheritdoc />
    public Vector512<T> Forward(Vector512<T> x) => Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512<T>.Zero), x, x * Vector512.Create(_slope));
    /// <inheritdoc />
    public T Grad(T y) => y > T.Zero ? T.One : _slope;
    /// <inheritdoc />
    public Vector128<T> Grad(Vector128<T> y) => Vector128.ConditionalSelect(Vector128.GreaterThan(y, Vector128<T>.Zero), Vector128<T>.One, Vector128.Create(_slope));
    /// <inheritdoc />
    public Vector256<T> Grad(Vector256<T> y) => Vector256.ConditionalSelect(Vector256.GreaterThan(y, Vector256<T>.Zero), Vector256<T>.One, Vector256.Create(_slope));
    /// <inheritdoc />
    public Vector512<T> Grad(Vector512<T> y) => Vector512.ConditionalSelect(Vector512.GreaterThan(y, Vector512<T>.Zero), Vector512<T>.One, Vector512.Create(_slope));
}
