// Per-element math shared by the CUDA kernels and by a host build (g++) that the tests compare with
// the C# kernels: activations and their derivatives (same formulas and conventions as
// src/Kernels/Cpu/Ops), the Philox4x32-10 generator (as src/Kernels/Philox.cs), and the
// optimizer update formulas (as src/Kernels/Cpu/Optim/Optimizer.cs). NVRTC has no standard headers,
// so only built-in types and math functions are used.
#pragma once

#if defined(__CUDACC__)
#define BP_HD __host__ __device__ __forceinline__
#else
#include <math.h>
#define BP_HD static inline
#endif

typedef unsigned int bp_u32;
typedef unsigned long long bp_u64;

// Per-step values the host writes before every step. The engine's captured CUDA graph copies them
// from pinned host memory at the start of each replay, so one graph serves every step (the schedule's
// learning rate, Adam's bias corrections and the dropout stream all follow the step count).
// Layout shared with Backprop.Kernels.Cuda.StepConstants (32 bytes).
struct bp_step_consts
{
    bp_u64 step;     // t, 1-based
    float lr;        // the schedule's learning rate for this step
    float step_size; // Adam/AdamW: lr / (1 − β1^t); Adagrad: lr / (1 + (t − 1)·lr_decay)
    float sqrt_bc2;  // Adam/AdamW: sqrt(1 − β2^t)
    float decay;     // AdamW: 1 − lr·wd
    int first;       // t == 1 (SGD starts its momentum buffer at g)
    int pad;
};

// What the device reports back after a step (Backprop.Kernels.Cuda.StepStatus, 16 bytes): the mean
// loss, the gradient norm and clip scale (with clip-norm), and skip = 1 when the loss is not finite,
// in which case the update kernels leave every parameter and state untouched.
struct bp_step_status
{
    float loss;
    float norm;
    float clip_scale;
    int skip;
};

// Activation kinds: the constants of src/Engine/Execution/Cuda/CudaActivationCodes.cs (a test compares the two).
enum { BP_IDENTITY = 0, BP_RELU = 1, BP_LEAKY_RELU = 2, BP_ELU = 3, BP_TANH = 4, BP_SIGMOID = 5, BP_GELU = 6, BP_GELU_TANH = 7, BP_SILU = 8 };

// True when the derivative is computed from the output y (else from the pre-activation x).
BP_HD bool bp_grad_from_output(int kind) { return !(kind == BP_GELU || kind == BP_GELU_TANH || kind == BP_SILU); }

BP_HD float bp_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// True when x is neither NaN nor infinite (NVRTC has no <cmath>; comparisons are enough).
BP_HD bool bp_finitef(float x) { return x == x && x <= 3.4028234e38f && x >= -3.4028234e38f; }

BP_HD float bp_act_forward(int kind, float p, float x)
{
    switch (kind)
    {
    case BP_RELU: return x > 0.0f ? x : 0.0f;
    case BP_LEAKY_RELU: return x > 0.0f ? x : p * x;
    case BP_ELU: return x > 0.0f ? x : p * (expf(x) - 1.0f);
    case BP_TANH: return tanhf(x);
    case BP_SIGMOID: return bp_sigmoid(x);
    case BP_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case BP_GELU_TANH: return x * bp_sigmoid(2.0f * 0.79788456080286536f * (x + 0.044715f * x * x * x));
    case BP_SILU: return x * bp_sigmoid(x);
    default: return x;
    }
}

// f'(x) from the saved value: y for output-based kinds, x otherwise (relu'(0) = 0, leaky'(0) = slope, elu'(0) = alpha).
BP_HD float bp_act_grad(int kind, float p, float s)
{
    switch (kind)
    {
    case BP_RELU: return s > 0.0f ? 1.0f : 0.0f;
    case BP_LEAKY_RELU: return s > 0.0f ? 1.0f : p;
    case BP_ELU: return s > 0.0f ? 1.0f : s + p;
    case BP_TANH: return 1.0f - s * s;
    case BP_SIGMOID: return s * (1.0f - s);
    case BP_GELU: return 0.5f * (1.0f + erff(s * 0.70710678118654752f)) + s * 0.39894228040143268f * expf(-0.5f * s * s);
    case BP_GELU_TANH:
    {
        float k2 = 2.0f * 0.79788456080286536f;
        float g = bp_sigmoid(k2 * (s + 0.044715f * s * s * s));
        return g + k2 * s * g * (1.0f - g) * (1.0f + 3.0f * 0.044715f * s * s);
    }
    case BP_SILU: { float g = bp_sigmoid(s); return g * (1.0f + s * (1.0f - g)); }
    default: return 1.0f;
    }
}

// Philox4x32-10: out = Philox(counter c, key k). Same constants and rounds as the C# generator.
BP_HD void bp_philox(bp_u32 c0, bp_u32 c1, bp_u32 c2, bp_u32 c3, bp_u32 k0, bp_u32 k1, bp_u32* out)
{
    for (int r = 0; r < 10; r++)
    {
        bp_u64 p0 = (bp_u64)0xD2511F53u * c0, p1 = (bp_u64)0xCD9E8D57u * c2;
        bp_u32 hi0 = (bp_u32)(p0 >> 32), lo0 = (bp_u32)p0, hi1 = (bp_u32)(p1 >> 32), lo1 = (bp_u32)p1;
        c0 = hi1 ^ c1 ^ k0; c1 = lo1; c2 = hi0 ^ c3 ^ k1; c3 = lo0;
        k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

// Dropout keep decision for element e of (seed, step, layer): word e%4 of Philox((e/4, layer, step), seed) >= threshold.
BP_HD bool bp_dropout_keep(bp_u64 seed, bp_u64 step, bp_u32 layer, bp_u64 e, bp_u32 threshold)
{
    bp_u32 w[4];
    bp_philox((bp_u32)(e >> 2), layer, (bp_u32)step, (bp_u32)(step >> 32), (bp_u32)seed, (bp_u32)(seed >> 32), w);
    return w[e & 3] >= threshold;
}

// Adam / AdamW update of one element (no clipping or L1 here; those are applied to g by the caller).
// step_size = lr / (1 - beta1^t), sqrt_bc2 = sqrt(1 - beta2^t), decay = 1 - lr*wd (AdamW); ob1 = 1 - beta1 and
// ob2 = 1 - beta2 come from the host, computed in double as torch.optim computes them (1 - 0.999f in float is off by 1e-5).
BP_HD void bp_adam(float* p, float g, float* m, float* v, float* vmax, float beta1, float beta2, float ob1, float ob2, float eps, float wd,
                   float step_size, float sqrt_bc2, float decay, int decoupled, int amsgrad)
{
    float pi = *p;
    if (decoupled) pi *= decay; else g += wd * pi;
    float mi = beta1 * *m + ob1 * g;
    float vi = beta2 * *v + ob2 * g * g;
    *m = mi; *v = vi;
    if (amsgrad) { vi = fmaxf(*vmax, vi); *vmax = vi; }
    *p = pi - step_size * mi / (sqrtf(vi) / sqrt_bc2 + eps);
}

// SGD with momentum/dampening/Nesterov; first = (t == 1) starts the buffer at g; keep = 1 - dampening (from the host, in double).
BP_HD void bp_sgd(float* p, float g, float* buf, float lr, float momentum, float keep, float wd, int nesterov, int first)
{
    g += wd * *p;
    if (momentum != 0.0f)
    {
        float b = first ? g : momentum * *buf + keep * g;
        *buf = b;
        g = nesterov ? g + momentum * b : b;
    }
    *p -= lr * g;
}
