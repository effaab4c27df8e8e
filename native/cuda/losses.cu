// Losses, forward and backward in one pass.
//   softmax_ce: one warp per row; warp-shuffle max and sum; loss_rows[r] = lse − (off·Σx + (on−off)·x_label);
//               grad = (softmax − q)/D with q = (1−ε)·onehot + ε/C and D = grad_rows, the rows of the whole batch
//               (B itself, or more for a micro-batch of it). A label outside [0, C) writes NaN to its row's loss.
//   mse / l1 / huber / bce_with_logits: elementwise terms into loss_terms and grad (the gradient of the mean over
//   grad_n elements: n, or the whole batch's count for a micro-batch).
//   loss_reduce: one block sums the per-row or per-element terms in a fixed order (double), writes the
//   mean to the step status and sets its skip flag when the loss is not finite (the update then skips).
#include "common.cuh"

__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

extern "C" __global__ void softmax_ce(const float* logits, const int* labels, float* grad, float* loss_rows, int batch, int classes, float smoothing, int grad_rows)
{
    int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    if (warp >= batch) return;
    const float* x = logits + (long long)warp * classes;
    float* g = grad + (long long)warp * classes;
    int label = labels[warp];
    float m = -3.402823466e38f;
    for (int c = lane; c < classes; c += 32) m = fmaxf(m, x[c]);
    m = warp_max(m);
    float s = 0.0f, sx = 0.0f;
    for (int c = lane; c < classes; c += 32) { s += expf(x[c] - m); sx += x[c]; }
    s = warp_sum(s);
    sx = warp_sum(sx);
    float lse = m + logf(s);
    float off = smoothing / classes, on = 1.0f - smoothing + off, invB = 1.0f / grad_rows;
    bool ok = label >= 0 && label < classes;
    for (int c = lane; c < classes; c += 32) g[c] = (expf(x[c] - lse) - (c == label ? on : off)) * invB;
    if (lane == 0) loss_rows[warp] = ok ? lse - (off * sx + (on - off) * x[label]) : __int_as_float(0x7fc00000);
}

extern "C" __global__ void mse(const float* x, const float* t, float* grad, float* loss_terms, long long n, long long grad_n)
{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    {
        float d = x[i] - t[i];
        loss_terms[i] = d * d;
        grad[i] = 2.0f * d / grad_n;
    }
}

extern "C" __global__ void bce_with_logits(const float* x, const float* t, float* grad, float* loss_terms, long long n, long long grad_n)
{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    {
        float xi = x[i], e = expf(-fabsf(xi));
        loss_terms[i] = fmaxf(xi, 0.0f) - xi * t[i] + log1pf(e);
        float s = xi >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
        grad[i] = (s - t[i]) / grad_n;
    }
}

extern "C" __global__ void l1_loss(const float* x, const float* t, float* grad, float* loss_terms, long long n, long long grad_n)
{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    {
        float d = x[i] - t[i];
        loss_terms[i] = fabsf(d);
        grad[i] = (d > 0.0f ? 1.0f : (d < 0.0f ? -1.0f : 0.0f)) / grad_n;
    }
}

extern "C" __global__ void huber(const float* x, const float* t, float* grad, float* loss_terms, long long n, float delta, long long grad_n)
{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    {
        float d = x[i] - t[i], a = fabsf(d);
        loss_terms[i] = a < delta ? 0.5f * d * d : delta * (a - 0.5f * delta);
        grad[i] = (d > delta ? delta : (d < -delta ? -delta : d)) / grad_n;
    }
}

// One block of 256 threads: thread j sums terms j, j+256, … in order, then a fixed tree; so the result
// does not depend on scheduling.
extern "C" __global__ void loss_reduce(const float* terms, long long n, double divisor, bp_step_status* status)
{
    __shared__ double sh[256];
    double s = 0.0;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) s += terms[i];
    sh[threadIdx.x] = s;
    __syncthreads();
    for (unsigned w = blockDim.x / 2; w > 0; w >>= 1)
    {
        if (threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0)
    {
        float loss = (float)(sh[0] / divisor); // skip is decided on the value the host reads
        status->loss = loss;
        status->skip = (loss == loss && loss <= 3.4028234e38f && loss >= -3.4028234e38f) ? 0 : 1;
    }
}

// correct[0] += number of rows whose argmax equals the label (first maximum wins, as the CPU).
extern "C" __global__ void count_correct(const float* logits, const int* labels, int batch, int classes, unsigned int* correct)
{
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= batch) return;
    const float* x = logits + (long long)r * classes;
    int best = 0;
    for (int c = 1; c < classes; c++) if (x[c] > x[best]) best = c;
    if (best == labels[r]) atomicAdd(correct, 1u);
}
