// Inverted dropout with the CPU's mask: keep(e) = Philox((e/4, layer, step), seed) word e%4 >= threshold,
// y = keep ? x * scale : 0 (forward, and the same map on dy in backward). Nothing is stored; the step
// is read from the per-step constants so a captured graph replays with the current step. e is the
// element's index in the whole batch: x[i] is element offset + i (a micro-batch's first row times the width).
#include "common.cuh"

extern "C" __global__ void dropout_apply(const float* x, float* y, long long n, long long offset, bp_u64 seed, const bp_step_consts* sc, bp_u32 layer, bp_u32 threshold, float scale)
{
    long long q = blockIdx.x * (long long)blockDim.x + threadIdx.x; // one thread per 4 elements of x
    long long e0 = q * 4;
    if (e0 >= n) return;
    bp_u64 step = sc->step;
    bp_u32 w[4];
    long long group = -1;
    for (int j = 0; j < 4 && e0 + j < n; j++)
    {
        long long e = offset + e0 + j; // the element's index in the batch: its Philox group and word
        if ((e >> 2) != group)
        {
            group = e >> 2;
            bp_philox((bp_u32)group, layer, (bp_u32)step, (bp_u32)(step >> 32), (bp_u32)seed, (bp_u32)(seed >> 32), w);
        }
        y[e0 + j] = w[e & 3] >= threshold ? x[e0 + j] * scale : 0.0f;
    }
}
