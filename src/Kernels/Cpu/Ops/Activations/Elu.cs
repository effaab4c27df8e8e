// ELU(alpha > 0): y = x for x > 0, alpha*(e^x - 1) otherwise. From the output: dy/dx = 1 where
// y > 0, else alpha*e^x = y + alpha (elu'(0) = alpha, as PyTorch). e^x underflows to 0 for very
// negative x, so y tends to -alpha without NaN.
// The derivative takes its branch from the sign of y, so forward keeps sign(y) = sign(x) exactly
// on every path: for -0.05 < x <= 0, e^x - 1 is the Taylor series x*(1 + x/2! + ... + x^8/9!)
// (truncation < 1e-18 relative), whose factor is positive, so y = +-0 at x = +-0 and y < 0 below;
// e^x - 1 itself would cancel there, and the BCL's float vector e^x rounds to 1 + 1 ulp at and just
// below 0, which made y positive and f'(0) = 1 instead of alpha on the vector paths. Scalar and
// vector paths evaluate the same series, so near 0 they agree bit for bit. For x <= -0.05, e^x < 0.952.
using System.Numerics;
using System.Runtime.Intrinsics;

namespace Backprop.Kernels.Cpu.Ops;

/// <summary>y = x for x &gt; 0, alpha·(e^x − 1) otherwise.</summary>
public readonly struct Elu<T> : IActivation<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private static readonly T MinusSmall = T.CreateTruncating(-0.05);
    // 1/k! for k = 2..9: e^x - 1 = x*(1 + x*(C2 + x*(C3 + ... + x*C9))).
    private static readonly T C2 = T.CreateTruncating(1.0 / 2), C3 = T.CreateTruncating(1.0 / 6), C4 = T.CreateTruncating(1.0 / 24),
        C5 = T.CreateTruncating(1.0 / 120), C6 = T.CreateTruncating(1.0 / 720), C7 = T.CreateTruncating(1.0 / 5040),
        C8 = T.CreateTruncating(1.0 / 40320), C9 = T.CreateTruncating(1.0 / 362880);

    private readonly T _alpha;

    /// <summary>Creates the operator; <paramref name="alpha"/> must be positive and finite.</summary>
    public Elu(T alpha)
    {
        if (!(alpha > T.Zero) || !T.IsFinite(alpha))
            throw new ArgumentOutOfRangeException(nameof(alpha), alpha, $"ELU alpha must be positive and finite; got {alpha}.");
        _alpha = alpha;
    }

    // e^x - 1 for x <= 0 (NaN takes the e^x branch and stays NaN).
    private static T ExpM1(T x) =>
        x > MinusSmall
            ? x * (T.One + x * (C2 + x * (C3 + x * (C4 + x * (C5 + x * (C6 + x * (C7 + x * (C8 + x * C9))))))))
            : T.Exp(x) - T.One;

    private static Vector128<T> ExpM1(Vector128<T> x)
    {
        var series = x * (Vector128<T>.One + x * (Vector128.Create(C2) + x * (Vector128.Create(C3) + x * (Vector128.Create(C4) + x * (Vector128.Create(C5)
            + x * (Vector128.Create(C6) + x * (Vector128.Create(C7) + x * (Vector128.Create(C8) + x * Vector128.Create(C9)))))))));
        return Vector128.ConditionalSelect(Vector128.GreaterThan(x, Vector128.Create(MinusSmall)), series, SpecialFunctions.Exp(x) - Vector128<T>.One);
    }

    private static Vector256<T> ExpM1(Vector256<T> x)
    {
        var series = x * (Vector256<T>.One + x * (Vector256.Create(C2) + x * (Vector256.Create(C3) + x * (Vector256.Create(C4) + x * (Vector256.Create(C5)
            + x * (Vector256.Create(C6) + x * (Vector256.Create(C7) + x * (Vector256.Create(C8) + x * Vector256.Create(C9)))))))));
        return Vector256.ConditionalSelect(Vector256.GreaterThan(x, Vector256.Create(MinusSmall)), series, SpecialFunctions.Exp(x) - Vector256<T>.One);
    }

    private static Vector512<T> ExpM1(Vector512<T> x)
    {
        var series = x * (Vector512<T>.One + x * (Vector512.Create(C2) + x * (Vector512.Create(C3) + x * (Vector512.Create(C4) + x * (Vector512.Create(C5)
            + x * (Vector512.Create(C6) + x * (Vector512.Create(C7) + x * (Vector512.Create(C8) + x * Vector512.Create(C9)))))))));
        return Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512.Create(MinusSmall)), series, SpecialFunctions.Exp(x) - Vector512<T>.One);
    }

    /// <inheritdoc />
    public bool GradFromOutput => true;
    /// <inheritdoc />
    public T Forward(T x) => x > T.Zero ? x : _alpha * ExpM1(x);
    /// <inheritdoc />
    public Vector128<T> Forward(Vector128<T> x) =>
        Vector128.ConditionalSelect(Vector128.GreaterThan(x, Vector128<T>.Zero), x, Vector128.Create(_alpha) * ExpM1(Vector128.Min(x, Vector128<T>.Zero)));
    /// <inheritdoc />
    public Vector256<T> Forward(Vector256<T> x) =>
        Vector256.ConditionalSelect(Vector256.GreaterThan(x, Vector256<T>.Zero), x, Vector256.Create(_alpha) * ExpM1(Vector256.Min(x, Vector256<T>.Zero)));
    /// <inheritdoc />
    public Vector512<T> Forward(Vector512<T> x) =>
        Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512<T>.Zero), x, Vector512.Create(_alpha) * ExpM1(Vector512.Min(x, Vector512<T>.Zero)));
    /// <inheritdoc />
    public T Grad(T y) => y > T.Zero ? T.One : y + _alpha;
    /// <inheritdoc />
    public Vector128<T> Grad(Vector128<T> y) => Vector128.ConditionalSelect(Vector128.GreaterThan(y, Vector128<T>.Zero), Vector128<T>.One, y + Vector128.Create(_alpha));
    /// <inheritdoc />
    public Vector256<T> Grad(Vector256<T> y) => Vector256.ConditionalSelect(Vector256.GreaterThan(y, Vector256<T>.Zero), Vector256<T>.One, y + Vector256.Create(_alpha));
    /// <inheritdoc />
    public Vector512<T> Grad(Vector512<T> y) => Vector512.ConditionalSelect(Vector512.GreaterThan(y, Vector512<T>.Zero), Vector512<T>.One, y + Vector512.Create(_alpha));
}
