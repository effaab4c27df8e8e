// Host build of common.cuh (g++): the per-element math the CUDA kernels use, exported for the tests to
// compare with the C# kernels on the CPU.
#include "common.cuh"

extern "C" {
float bp_host_act_forward(int kind, float p, float x) { return bp_act_forward(kind, p, x); }
float bp_host_act_grad(int kind, float p, float s) { return bp_act_grad(kind, p, s); }
void bp_host_philox(bp_u32 c0, bp_u32 c1, bp_u32 c2, bp_u32 c3, bp_u32 k0, bp_u32 k1, bp_u32* out) { bp_philox(c0, c1, c2, c3, k0, k1, out); }
int bp_host_dropout_keep(bp_u64 seed, bp_u64 step, bp_u32 layer, bp_u64 e, bp_u32 threshold) { return bp_dropout_keep(seed, step, layer, e, threshold) ? 1 : 0; }
void bp_host_adam(float* p, float g, float* m, float* v, float* vmax, float beta1, float beta2, float ob1, float ob2, float eps, float wd,
                  float step_size, float sqrt_bc2, float decay, int decoupled, int amsgrad)
{ bp_adam(p, g, m, v, vmax, beta1, beta2, ob1, ob2, eps, wd, step_size, sqrt_bc2, decay, decoupled, amsgrad); }
void bp_host_sgd(float* p, float g, float* buf, float lr, float momentum, float keep, float wd, int nesterov, int first)
{ bp_sgd(p, g, buf, lr, momentum, keep, wd, nesterov, first); }
}
