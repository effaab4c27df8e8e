// Special functions the activations need, in scalar double precision and as vectors.
//   Erf(x) (double): Maclaurin series for |x| < 2.5 (alternating terms, ~1e-15 relative after the
//     cancellation of at most 3 digits), and 1 - erfc(x) from the Laplace continued fraction beyond
//     (erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...))))), evaluated bottom-up.
//   ErfApprox (float vectors): Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7, below float's
//     resolution of erf near 1; used only by the float vector paths.
//   Exp for any width and T in {float, double}: the BCL's vector Exp (<= 1 ulp in double).
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Backprop.Kernels.Cpu;

/// <summary>Error function and vector exponentials for the activation kernels.</summary>
public static class SpecialFunctions
{
    private const double TwoOverSqrtPi = 1.1283791670955126;
    private const double OneOverSqrtPi = 0.56418958354775628;

    /// <summary>erf(x) in double precision (about 1e-15 relative).</summary>
    public static double Erf(double x)
    {
        if (double.IsNaN(x)) return x;
        double a = Math.Abs(x);
        if (a < 2.5)
        {
            // erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))
            double x2 = x * x, term = x, sum = x;
            for (int n = 1; n < 60; n++)
            {
                term *= -x2 / n;
                double add = term / (2 * n + 1);
                sum += add;
                if (Math.Abs(add) < 1e-17 * Math.Abs(sum)) break;
            }
            return TwoOverSqrtPi * sum;
        }
        if (a >= 6.5) return Math.CopySign(1.0, x);
        // Continued fraction for erfc, 60 levels (plenty for a >= 2.5).
        double f = a;
        for (int k = 60; k >= 1; k--) f = a + k * 0.5 / f;
        double erfc = Math.Exp(-a * a) * OneOverSqrtPi / f;
        return Math.CopySign(1.0 - erfc, x);
    }

    /// <summary>e^x lane by lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<T> Exp<T>(Vector512<T> x)
    {
        if (typeof(T) == typeof(float)) return Vector512.Exp(x.AsSingle()).As<float, T>();
        if (typeof(T) == typeof(double)) return Vector512.Exp(x.AsDouble()).As<double, T>();
        throw new NotSupportedException(typeof(T).Name);
    }

    /// <summary>e^x lane by lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<T> Exp<T>(Vector256<T> x)
    {
        if (typeof(T) == typeof(float)) return Vector256.Exp(x.AsSingle()).As<float, T>();
        if (typeof(T) == typeof(double)) return Vector256.Exp(x.AsDouble()).As<double, T>();
        throw new NotSupportedException(typeof(T).Name);
    }

    /// <summary>e^x lane by lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<T> Exp<T>(Vector128<T> x)
    {
        if (typeof(T) == typeof(float)) return Vector128.Exp(x.AsSingle()).As<float, T>();
        if (typeof(T) == typeof(double)) return Vector128.Exp(x.AsDouble()).As<double, T>();
        throw new NotSupportedException(typeof(T).Name);
    }

    /// <summary>erf lane by lane: A&amp;S 7.1.26 for float, the double-precision series per lane for double.</summary>
    public static Vector512<T> Erf<T>(Vector512<T> x) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float)) return ErfApprox(x.AsSingle()).As<float, T>();
        Unsafe.SkipInit(out Vector512<T> r);
        for (int i = 0; i < Vector512<T>.Count; i++) r = r.WithElement(i, T.CreateTruncating(Erf(double.CreateTruncating(x[i]))));
        return r;
    }

    /// <summary>erf lane by lane: A&amp;S 7.1.26 for float, the double-precision series per lane for double.</summary>
    public static Vector256<T> Erf<T>(Vector256<T> x) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float)) return ErfApprox(x.AsSingle()).As<float, T>();
        Unsafe.SkipInit(out Vector256<T> r);
        for (int i = 0; i < Vector256<T>.Count; i++) r = r.WithElement(i, T.CreateTruncating(Erf(double.CreateTruncating(x[i]))));
        return r;
    }

    /// <summary>erf lane by lane: A&amp;S 7.1.26 for float, the double-precision series per lane for double.</summary>
    public static Vector128<T> Erf<T>(Vector128<T> x) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float)) return ErfApprox(x.AsSingle()).As<float, T>();
        Unsafe.SkipInit(out Vector128<T> r);
        for (int i = 0; i < Vector128<T>.Count; i++) r = r.WithElement(i, T.CreateTruncating(Erf(double.CreateTruncating(x[i]))));
        return r;
    }

    private const float P = 0.3275911f, A1 = 0.254829592f, A2 = -0.284496736f, A3 = 1.421413741f, A4 = -1.453152027f, A5 = 1.061405429f;

    private static Vector512<float> ErfApprox(Vector512<float> x)
    {
        var a = Vector512.Abs(x);
        var t = Vector512<float>.One / Vector512.FusedMultiplyAdd(Vector512.Create(P), a, Vector512<float>.One);
        var poly = Vector512.FusedMultiplyAdd(Vector512.FusedMultiplyAdd(Vector512.FusedMultiplyAdd(Vector512.FusedMultiplyAdd(
            Vector512.Create(A5), t, Vector512.Create(A4)), t, Vector512.Create(A3)), t, Vector512.Create(A2)), t, Vector512.Create(A1)) * t;
        var y = Vector512<float>.One - poly * Vector512.Exp(-(a * a));
        return Vector512.CopySign(y, x);
    }

    private static Vector256<float> ErfApprox(Vector256<float> x)
    {
        var a = Vector256.Abs(x);
        var t = Vector256<float>.One / Vector256.FusedMultiplyAdd(Vector256.Create(P), a, Vector256<float>.One);
        var poly = Vector256.FusedMultiplyAdd(Vector256.FusedMultiplyAdd(Vector256.FusedMultiplyAdd(Vector256.FusedMultiplyAdd(
            Vector256.Create(A5), t, Vector256.Create(A4)), t, Vector256.Create(A3)), t, Vector256.Create(A2)), t, Vector256.Create(A1)) * t;
        var y = Vector256<float>.One - poly * Vector256.Exp(-(a * a));
        return Vector256.CopySign(y, x);
    }

    private static Vector128<float> ErfApprox(Vector128<float> x)
    {
        var a = Vector128.Abs(x);
        var t = Vector128<float>.One / Vector128.FusedMultiplyAdd(Vector128.Create(P), a, Vector128<float>.One);
        var poly = Vector128.FusedMultiplyAdd(Vector128.FusedMultiplyAdd(Vector128.FusedMultiplyAdd(Vector128.FusedMultiplyAdd(
            Vector128.Create(A5), t, Vector128.Create(A4)), t, Vector128.Create(A3)), t, Vector128.Create(A2)), t, Vector128.Create(A1)) * t;
        var y = Vector128<float>.One - poly * Vector128.Exp(-(a * a));
        return Vector128.CopySign(y, x);
    }
}
