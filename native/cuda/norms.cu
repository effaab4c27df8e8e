// LayerNorm, BatchNorm (BatchNorm1d on [rows, cols]) and the residual add, as the CPU kernels define them
// (src/Kernels/Cpu/Ops/LayerNorm.cs, BatchNorm.cs); every reduction has a fixed order, so a step gives the
// same bits on every run.
//   layer_norm_fwd:        one warp per row: mean, then Σ(x − mean)² (two passes, as the CPU), y, stats[2r] = (mean, rstd)
//   layer_norm_bwd_data:   one warp per row: g = dy ⊙ w, a = Σg/n, c = Σ g ⊙ x̂ / n, dx = rstd · (g − a − x̂ · c)
//   layer_norm_param_grads: one thread per feature, rows in order: dw = Σ dy ⊙ x̂, db = Σ dy
//   batch_norm_stats:      one thread per feature, rows in order: training: mean, rstd = 1/sqrt(var + eps) into stats
//                          [2, cols] and (update) the running statistics and the count; inference: stats from them
//   batch_norm_apply:      y = (x − mean) · rstd ⊙ w + b, elementwise
//   batch_norm_param_grads: one thread per feature: dw = Σ dy ⊙ x̂, db = Σ dy
//   batch_norm_bwd_data:   dx = w · rstd / n · (n·dy − db − x̂ ⊙ dw), elementwise
//   add_floats:            dst = a + b (a residual block's output, and its input gradient from the two paths)
#include "common.cuh"

__device__ __forceinline__ float norm_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

extern "C" __global__ void layer_norm_fwd(const float* x, const float* w, const float* b, float* y, float* stats, int rows, int cols, float eps)
{
    int row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    if (row >= rows) return;
    const float* xr = x + (long long)row * cols;
    float* yr = y + (long long)row * cols;
    float s = 0.0f;
    for (int c = lane; c < cols; c += 32) s += xr[c];
    float mean = norm_warp_sum(s) / cols;
    float q = 0.0f;
    for (int c = lane; c < cols; c += 32)
    {
        float d = xr[c] - mean;
        q += d * d;
    }
    float rstd = 1.0f / sqrtf(norm_warp_sum(q) / cols + eps);
    for (int c = lane; c < cols; c += 32) yr[c] = (xr[c] - mean) * rstd * w[c] + b[c];
    if (lane == 0)
    {
        stats[2 * (long long)row] = mean;
        stats[2 * (long long)row + 1] = rstd;
    }
}

extern "C" __global__ void layer_norm_bwd_data(const float* dy, const float* x, const float* w, const float* stats, float* dx, int rows, int cols)
{
    int row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    if (row >= rows) return;
    const float* xr = x + (long long)row * cols;
    const float* dyr = dy + (long long)row * cols;
    float* dxr = dx + (long long)row * cols;
    float mean = stats[2 * (long long)row], rstd = stats[2 * (long long)row + 1];
    float sg = 0.0f, sgx = 0.0f;
    for (int c = lane; c < cols; c += 32)
    {
        float g = dyr[c] * w[c];
        sg += g;
        sgx += g * ((xr[c] - mean) * rstd);
    }
    float a = norm_warp_sum(sg) / cols, cc = norm_warp_sum(sgx) / cols;
    for (int c = lane; c < cols; c += 32) dxr[c] = rstd * (dyr[c] * w[c] - a - (xr[c] - mean) * rstd * cc);
}

extern "C" __global__ void layer_norm_param_grads(const float* dy, const float* x, const float* stats, float* dw, float* db, int rows, int cols)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float sw = 0.0f, sb = 0.0f;
    for (int r = 0; r < rows; r++)
    {
        long long i = (long long)r * cols + c;
        sw += dy[i] * ((x[i] - stats[2 * r]) * stats[2 * r + 1]);
        sb += dy[i];
    }
    dw[c] = sw;
    db[c] = sb;
}

extern "C" __global__ void batch_norm_stats(const float* x, float* stats, float* running_mean, float* running_var, float* tracked, int rows, int cols,
    float eps, float momentum, int training, int update)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    if (!training)
    {
        stats[c] = running_mean[c];
        stats[cols + c] = 1.0f / sqrtf(running_var[c] + eps);
        return;
    }
    float s = 0.0f;
    for (int r = 0; r < rows; r++) s += x[(long long)r * cols + c];
    float n = (float)rows, mean = s / n, q = 0.0f;
    for (int r = 0; r < rows; r++)
    {
        float d = x[(long long)r * cols + c] - mean;
        q += d * d;
    }
    if (update)
    {
        float keep = 1.0f - momentum, unbias = rows > 1 ? n / (n - 1.0f) : 1.0f;
        running_mean[c] = keep * running_mean[c] + momentum * mean;
        running_var[c] = keep * running_var[c] + momentum * (q / n * unbias);
        if (c == 0) tracked[0] += 1.0f;
    }
    stats[c] = mean;
    stats[cols + c] = 1.0f / sqrtf(q / n + eps);
}

extern "C" __global__ void batch_norm_apply(const float* x, const float* stats, const float* w, const float* b, float* y, long long n, int cols)
{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    {
        int c = (int)(i % cols);
        y[i] = (x[i] - stats[c]) * stats[cols + c] * w[c] + b[c];
    }
}

extern "C" __global__ void batch_norm_param_grads(const float* dy, const float* x, const float* stats, float* dw, float* db, int rows, int cols)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float mean = stats[c], rstd = stats[cols + c], sw = 0.0f, sb = 0.0f;
    for (int r = 0; r < rows; r++)
    {
        long long i = (long long)r * cols + c;
        sb += dy[i];
        sw += dy[i] * ((x[i] - mean) * rstd);
    }
    dw[c] = sw;
    db[c] = sb;
}

extern "C" __global__ void batch_norm_bwd_data(const float* dy, const float* x, const float* stats, const float* w, const float* dw, const float* db, float* dx,
    long long n, int rows, int cols)
{
    float fn = (float)rows, inv = 1.0f / fn;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    {
        int c = (int)(i % cols);
        float rstd = stats[cols + c], xh = (x[i] - stats[c]) * rstd;
        dx[i] = w[c] * rstd * inv * (fn * dy[i] - db[c] - xh * dw[c]);
    }
}

extern "C" __global__ void add_floats(float* dst, const float* a, const float* b, long long n)
{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) dst[i] = a[i] + b[i];
}
