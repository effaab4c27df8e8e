namespace Backprop.Kernels.Cpu;

/// <summary>Whether a GEMM operand is used as stored (N) or transposed (T), as in BLAS.</summary>
public enum Transpose
{
    /// <summary>op(X) = X.</summary>
    N = 0,
    /// <summary>op(X) = Xᵀ.</summary>
    T = 1,
}
