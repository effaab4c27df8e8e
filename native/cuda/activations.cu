// Bias + activation forward and activation backward, elementwise over [rows, cols] row-major:
//   bias_act_fwd: z = y + b[col]; pre[i] = z (when pre != 0); y = f(z)      (after a cuBLAS GEMM)
//   act_bwd:      dx = dy * f'(saved)
#include "common.cuh"

extern "C" __global__ void bias_act_fwd(float* y, const float* bias, float* pre, int rows, int cols, int kind, float param)
{
    long long n = (long long)rows * cols;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    {
        float z = y[i] + (bias ? bias[i % cols] : 0.0f);
        if (pre) pre[i] = z;
        y[i] = bp_act_forward(kind, param, z);
    }
}

extern "C" __global__ void act_bwd(const float* saved, const float* dy, float* dx, long long n, int kind, float param)
{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        dx[i] = dy[i] * bp_act_grad(kind, param, saved[i]);
}

// db[c] = sum over rows of dz[r, c] (bias gradient), one thread per column, rows in order (deterministic).
extern "C" __global__ void column_sums(const float* dz, float* db, int rows, int cols, int accumulate)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float s = accumulate ? db[c] : 0.0f;
    for (int r = 0; r < rows; r++) s += dz[(long long)r * cols + c];
    db[c] = s;
}
