// The precision of a float32 GEMM's operands. Fp32 is the plain SGEMM. Bf16 rounds op(A) and op(B) to bf16
// (round to nearest even) while they are packed and multiplies them with VDPBF16PS, accumulating in float32;
// alpha, beta, C and the epilogue stay float32 (mixed precision as in torch.autocast's bf16 matmuls). Double
// GEMMs ignore it. Bf16 needs AVX512_BF16 and the native kernels (Bf16Gemm.Unavailable says why not).
namespace Backprop.Kernels.Cpu;

/// <summary>The operand precision of the float32 GEMMs a <see cref="CpuContext"/> runs.</summary>
public enum GemmPrecision
{
    /// <summary>float32 operands (the default).</summary>
    Fp32,
    /// <summary>bf16 operands, float32 accumulation, alpha, beta, C and epilogue.</summary>
    Bf16,
}
