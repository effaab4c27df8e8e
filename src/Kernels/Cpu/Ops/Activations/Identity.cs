// Identity: y = x, dy/dx = 1 (an output layer without activation).
using System.Numerics;
using System.Runtime.Intrinsics;

namespace Backprop.Kernels.Cpu.Ops;

/// <summary>y = x.</summary>
public readonly struct Identity<T> : IActivation<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public bool GradFromOutput => true;
    /// <inheritdoc />
    public T Forward(T x) => x;
    /// <inheritdoc />
    public Vector128<T> Forward(Vector128<T> x) => x;
    /// <inheritdoc />
    public Vector256<T> Forward(Vector256<T> x) => x;
    /// <inheritdoc />
    public Vector512<T> Forward(Vector512<T> x) => x;
    /// <inheritdoc />
    public T Grad(T saved) => T.One;
    /// <inheritdoc />
    public Vector128<T> Grad(Vector128<T> saved) => Vector128<T>.One;
    /// <inheritdoc />
    public Vector256<T> Grad(Vector256<T> saved) => Vector256<T>.One;
    /// <inheritdoc />
    public Vector512<T> Grad(Vector512<T> saved) => Vector512<T>.One;
}
