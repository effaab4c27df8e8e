// The GEMM epilogue hook: a struct applied to each output value in the micro-kernel's final
// store (after the last K block), as y = Apply(alpha*sum + beta*c, row, col).
// It is generic so the JIT inlines it into the store: bias + activation costs no extra pass.
// Full register tiles call the vector overloads (lanes are columns col..col+Count-1 of row `row`);
// edge tiles call the scalar overload for the valid elements only, so an epilogue never reads
// past column N-1 or row M-1 of its own operands.
using System.Runtime.Intrinsics;

namespace Backprop.Kernels.Cpu;

/// <summary>Transforms GEMM output values in the final store. Row/column indices are those of C.</summary>
public interface IGemmEpilogue<T> where T : unmanaged
{
    /// <summary>Transforms one value at (row, col).</summary>
    T Apply(T value, int row, int col);

    /// <summary>Transforms the 256-bit vector of values at (row, col .. col + Vector256&lt;T&gt;.Count - 1).</summary>
    Vector256<T> Apply(Vector256<T> value, int row, int col);

    /// <summary>Transforms the 512-bit vector of values at (row, col .. col + Vector512&lt;T&gt;.Count - 1).</summary>
    Vector512<T> Apply(Vector512<T> value, int row, int col);
}

/// <summary>The identity epilogue: plain GEMM.</summary>
public readonly struct IdentityEpilogue<T> : IGemmEpilogue<T> where T : unmanaged
{
    /// <inheritdoc />
    public T Apply(T value, int row, int col) => value;

    /// <inheritdoc />
    public Vector256<T> Apply(Vector256<T> value, int row, int col) => value;

    /// <inheritdoc />
    public Vector512<T> Apply(Vector512<T> value, int row, int col) => value;
}
