// Inverted dropout with the CPU's mask: keep(e) = Philox((e/4, layer, step), seed) word e%4 >= threshold,
// y = keep ? x * scale : 0 (forward, and the same map on dy in backward). Nothing is stored; the step
// is read from the per-step constants so a captured graph replays with the current step.
#include "common.cuh"

extern "C" __global__ void dropout_apply(const float* x, float* y, long long n, bp_u64 seed, const bp_step_consts* sc, bp_u32 layer, bp_u32 threshold, float scale)
{
    long long q = blockIdx.x * (long long)blockDim.x + threadIdx.x; // one thread per group of 4 elements
    long long e0 = q * 4;
    if (e0 >= n) return;
    bp_u64 step = sc->step;
    bp_u32 w[4];
    bp_philox((bp_u32)q, layer, (bp_u32)step, (bp_u32)(step >> 32), (bp_u32)seed, (bp_u32)(seed >> 32), w);
    for (int j = 0; j < 4 && e0 + j < n; j++) y[e0 + j] = w[j] >= threshold ? x[e0 + j] * scale : 0.0f;
}
