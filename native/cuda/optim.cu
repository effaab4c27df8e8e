// Optimizers as one fused pass over the whole parameter block (params, grads and state share offsets,
// as in the CPU plan), and the global gradient norm as a deterministic two-phase reduction:
//   sumsq_partial: block b writes the sum of squares of its fixed slice (tree order inside the block)
//   sumsq_final:   one block adds the partials in index order
// so the norm does not depend on scheduling. The norm also checks the gradients: a NaN or infinite
// gradient (before value clipping, which would hide it) makes the sum non-finite, and sumsq_final then
// sets skip = 2, so the update kernels leave parameters and state as they were. Without clipping by norm,
// grad_check does only that check.
#include "common.cuh"

extern "C" __global__ void sumsq_partial(const float* g, long long n, float clip_value, float* partial)
{
    __shared__ float sh[256];
    long long chunk = (n + gridDim.x - 1) / gridDim.x;
    long long begin = blockIdx.x * chunk, end = begin + chunk < n ? begin + chunk : n;
    float s = 0.0f;
    for (long long i = begin + threadIdx.x; i < end; i += blockDim.x)
    {
        float raw = g[i], v = raw;
        if (clip_value > 0.0f) v = fminf(fmaxf(v, -clip_value), clip_value);
        s += bp_finitef(raw) ? v * v : raw * raw; // Inf or NaN: the sum stays non-finite
    }
    sh[threadIdx.x] = s;
    __syncthreads();
    for (unsigned w = blockDim.x / 2; w > 0; w >>= 1)
    {
        if (threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = sh[0];
}

extern "C" __global__ void sumsq_final(const float* partial, int parts, float max_norm, bp_step_status* status)
{
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    double s = 0.0;
    for (int i = 0; i < parts; i++) s += partial[i];
    double norm = sqrt(s);
    status->clip_scale = max_norm > 0.0f ? (float)fmin(1.0, max_norm / (norm + 1e-6)) : 1.0f;
    status->norm = (float)norm;
    if (!(s == s && s <= 1.7976931348623157e308) && status->skip == 0) status->skip = 2; // a gradient is not finite
}

// skip = 2 when a gradient is NaN or infinite (and the loss was finite): one grid-stride pass, no reduction.
extern "C" __global__ void grad_check(const float* g, long long n, bp_step_status* status)
{
    int bad = 0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        if (!bp_finitef(g[i])) bad = 1;
    if (bad && status->skip == 0) status->skip = 2;
}

// dst = src over n floats (the first rank's chunk that a fold across processes starts from).
extern "C" __global__ void copy_floats(float* dst, const float* src, long long n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) dst[i] = src[i];
}

// Gradient accumulation: into += from over a section; skip = 2 when a sum is NaN or infinite.
extern "C" __global__ void add_into(float* into, const float* from, long long n, bp_step_status* status)
{
    int bad = 0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    {
        float s = into[i] + from[i];
        into[i] = s;
        if (!bp_finitef(s)) bad = 1;
    }
    if (bad && status->skip == 0) status->skip = 2;
}

// The update kernels read the step's values from sc, and return at once when status->skip is set
// (1: a non-finite loss, 2: a non-finite gradient): the parameters and optimizer state stay as they were, as on the CPU.
__device__ __forceinline__ float prepare(float g, float p, float clip_value, const bp_step_status* status, int use_scale, float l1)
{
    if (clip_value > 0.0f) g = fminf(fmaxf(g, -clip_value), clip_value);
    if (use_scale) g *= status->clip_scale;
    if (l1 != 0.0f) g += l1 * (p > 0.0f ? 1.0f : (p < 0.0f ? -1.0f : 0.0f));
    return g;
}

extern "C" __global__ void adam_update(float* p, const float* g, float* m, float* v, float* vmax, long long n,
    float beta1, float beta2, float ob1, float ob2, float eps, float wd, int decoupled, int amsgrad,
    float clip_value, int use_scale, float l1, const bp_step_consts* sc, const bp_step_status* status)
{
    if (status->skip) return;
    float step_size = sc->step_size, sqrt_bc2 = sc->sqrt_bc2, decay = sc->decay;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        bp_adam(p + i, prepare(g[i], p[i], clip_value, status, use_scale, l1), m + i, v + i, amsgrad ? vmax + i : m + i,
                beta1, beta2, ob1, ob2, eps, wd, step_size, sqrt_bc2, decay, decoupled, amsgrad);
}

extern "C" __global__ void sgd_update(float* p, const float* g, float* buf, long long n, float momentum, float keep,
    float wd, int nesterov, float clip_value, int use_scale, float l1, const bp_step_consts* sc, const bp_step_status* status)
{
    if (status->skip) return;
    float lr = sc->lr;
    int first = sc->first;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        bp_sgd(p + i, prepare(g[i], p[i], clip_value, status, use_scale, l1), buf ? buf + i : p + i, lr, momentum, keep, wd, nesterov, first);
}

extern "C" __global__ void rmsprop_update(float* p, const float* g, float* sq, float* avg, float* buf, long long n, float alpha,
    float one_minus_alpha, float eps, float wd, float momentum, int centered, float clip_value, int use_scale, float l1, const bp_step_consts* sc, const bp_step_status* status)
{
    if (status->skip) return;
    float lr = sc->lr;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    {
        float gi = prepare(g[i], p[i], clip_value, status, use_scale, l1) + wd * p[i];
        float s = alpha * sq[i] + one_minus_alpha * gi * gi;
        sq[i] = s;
        float d;
        if (centered) { float a = alpha * avg[i] + one_minus_alpha * gi; avg[i] = a; d = sqrtf(s - a * a) + eps; }
        else d = sqrtf(s) + eps;
        if (momentum > 0.0f) { float b = momentum * buf[i] + gi / d; buf[i] = b; p[i] -= lr * b; }
        else p[i] -= lr * gi / d;
    }
}

extern "C" __global__ void adagrad_update(float* p, const float* g, float* sum, long long n, float eps, float wd,
    float clip_value, int use_scale, float l1, const bp_step_consts* sc, const bp_step_status* status)
{
    if (status->skip) return;
    float clr = sc->step_size;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    {
        float gi = prepare(g[i], p[i], clip_value, status, use_scale, l1) + wd * p[i];
        float s = sum[i] + gi * gi;
        sum[i] = s;
        p[i] -= clr * gi / (sqrtf(s) + eps);
    }
}
