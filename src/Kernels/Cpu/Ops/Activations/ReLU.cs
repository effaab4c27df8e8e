// ReLU: y = max(x, 0); dy/dx from the output: 1 where y > 0, else 0 (so relu'(0) = 0, as PyTorch).
// max is IEEE 754-2019 maximum on every path, scalar included: relu(NaN) = NaN as in PyTorch, whatever the ISA.
using System.Numerics;
using System.Runtime.Intrinsics;

namespace Backprop.Kernels.Cpu.Ops;

/// <summary>y = max(x, 0).</summary>
public readonly struct ReLU<T> : IActivation<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public bool GradFromOutput => true;
    /// <inheritdoc />
    public T Forward(T x) => T.Max(x, T.Zero);
    /// <inheritdoc />
    public Vector128<T> Forward(Vector128<T> x) => Vector128.Max(x, Vector128<T>.Zero);
    /// <inheritdoc />
    public Vector256<T> Forward(Vector256<T> x) => Vector256.Max(x, Vector256<T>.Zero);
    /// <inheritdoc />
    public Vector512<T> Forward(Vector512<T> x) => Vector512.Max(x, Vector512<T>.Zero);
    /// <inheritdoc />
    public T Grad(T y) => y > T.Zero ? T.One : T.Zero;
    /// <inheritdoc />
    public Vector128<T> Grad(Vector128<T> y) => Vector128.GreaterThan(y, Vector128<T>.Zero) & Vector128<T>.One;
    /// <inheritdoc />
    public Vector256<T> Grad(Vector256<T> y) => Vector256.GreaterThan(y, Vector256<T>.Zero) & Vector256<T>.One;
    /// <inheritdoc />
    public Vector512<T> Grad(Vector512<T> y) => Vector512.GreaterThan(y, Vector512<T>.Zero) & Vector512<T>.One;
}
