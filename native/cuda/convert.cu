// float32 -> bf16 for the bf16 GEMMs of TrainingOptions.Precision = Bf16 (cuBLASLt with CUDA_R_16BF operands and
// float32 accumulation): y[i] = bf16(x[i]) as its 16 bits, the CPU packing's conversion (VCVTNE2PS2BF16's): round to
// nearest even (a value that rounds past the largest bf16 becomes Inf), a denormal input to a zero of its sign, NaN
// stays NaN (quieted). Written with integer operations on the bits: NVRTC has no standard headers, so cuda_bf16.h
// (__float2bfloat16_rn, which would round denormals instead) is not available to it.
#include "common.cuh"

extern "C" __global__ void to_bf16(const float* x, unsigned short* y, long long n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    {
        bp_u32 u = __float_as_uint(x[i]);
        if ((u & 0x7f800000u) == 0) y[i] = (unsigned short)((u >> 16) & 0x8000u);
        else if ((u & 0x7fffffffu) > 0x7f800000u) y[i] = (unsigned short)((u >> 16) | 0x40u);
        else y[i] = (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
}
