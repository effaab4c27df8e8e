// Activation operators: y = f(x) and f'(x), as readonly structs with scalar and 128/256/512-bit
// vector paths. Kernels are generic over the operator, so the JIT inlines it (GEMM epilogues,
// elementwise passes). Backward takes the value the operator saved in forward: the output y when
// GradFromOutput (ReLU, tanh, sigmoid, ...: cheaper, and forward writes one array), else the
// pre-activation x (GELU, SiLU).
using System.Numerics;
using System.Runtime.Intrinsics;

namespace Backprop.Kernels.Cpu.Ops;

/// <summary>An elementwise activation y = f(x) with its derivative.</summary>
public interface IActivation<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>True when <see cref="Grad(T)"/> takes the output y; false when it takes the pre-activation x.</summary>
    bool GradFromOutput { get; }

    /// <summary>f(x).</summary>
    T Forward(T x);
    /// <summary>f(x) lane by lane.</summary>
    Vector128<T> Forward(Vector128<T> x);
    /// <summary>f(x) lane by lane.</summary>
    Vector256<T> Forward(Vector256<T> x);
    /// <summary>f(x) lane by lane.</summary>
    Vector512<T> Forward(Vector512<T> x);

    /// <summary>f'(x), from y when <see cref="GradFromOutput"/>, else from x.</summary>
    T Grad(T saved);
    /// <summary>f'(x) lane by lane.</summary>
    Vector128<T> Grad(Vector128<T> saved);
    /// <summary>f'(x) lane by lane.</summary>
    Vector256<T> Grad(Vector256<T> saved);
    /// <summary>f'(x) lane by lane.</summary>
    Vector512<T> Grad(Vector512<T> saved);
}
