// Typed launches of the kernels in native/cuda, one method per kernel: the arguments in the kernel's own
// order and C types (float* → device pointer, long long → long, int → int, …), so a launch cannot pass a
// value of the wrong size or kind. Each returns the prepared launch (function, grid, block, argument
// list built once), which a lowered program replays.
using Backprop.Kernels;
using Backprop.Kernels.Cuda;

namespace Backprop.Engine.Execution.Cuda;

/// <summary>A prepared kernel launch.</summary>
internal sealed record CudaLaunch(string Name, nint Function, uint Grid, uint Block, KernelArgs Args);

/// <summary>One typed launcher per kernel of native/cuda.</summary>
internal static class CudaKernels
{
    private static CudaLaunch Make(IGpuDevice gpu, string source, string name, uint grid, uint block, KernelArgs args) =>
        new(name, gpu.GetFunction(source, name), grid, block, args);

    // activations.cu

    /// <summary>bias_act_fwd(float* y, const float* bias, float* pre, int rows, int cols, int kind, float param).</summary>
    public static CudaLaunch BiasActFwd(IGpuDevice gpu, uint grid, uint block, ulong y, ulong bias, ulong pre, int rows, int cols, Activation act) =>
        Make(gpu, "activations.cu", "bias_act_fwd", grid, block,
            new KernelArgs(7).Address(y).Address(bias).Address(pre).I32(rows).I32(cols).I32(CudaActivationCodes.Code(act)).F32(CudaActivationCodes.Parameter(act)));

    /// <summary>act_bwd(const float* saved, const float* dy, float* dx, long long n, int kind, float param).</summary>
    public static CudaLaunch ActBwd(IGpuDevice gpu, uint grid, uint block, ulong saved, ulong dy, ulong dx, long n, Activation act) =>
        Make(gpu, "activations.cu", "act_bwd", grid, block,
            new KernelArgs(6).Address(saved).Address(dy).Address(dx).I64(n).I32(CudaActivationCodes.Code(act)).F32(CudaActivationCodes.Parameter(act)));

    /// <summary>column_sums(const float* dz, float* db, int rows, int cols, int accumulate).</summary>
    public static CudaLaunch ColumnSums(IGpuDevice gpu, uint grid, uint block, ulong dz, ulong db, int rows, int cols, bool accumulate) =>
        Make(gpu, "activations.cu", "column_sums", grid, block, new KernelArgs(5).Address(dz).Address(db).I32(rows).I32(cols).I32(accumulate ? 1 : 0));

    // dropout.cu

    /// <summary>dropout_apply(const float* x, float* y, long long n, long long offset, bp_u64 seed, const bp_step_consts* sc, bp_u32 layer, bp_u32 threshold, float scale).</summary>
    public static CudaLaunch DropoutApply(IGpuDevice gpu, uint grid, uint block, ulong x, ulong y, long n, long offset, ulong seed, ulong consts, uint layer, uint threshold, float scale) =>
        Make(gpu, "dropout.cu", "dropout_apply", grid, block,
            new KernelArgs(9).Address(x).Address(y).I64(n).I64(offset).U64(seed).Address(consts).U32(layer).U32(threshold).F32(scale));

    // norms.cu

    /// <summary>layer_norm_fwd(const float* x, const float* w, const float* b, float* y, float* stats, int rows, int cols, float eps).</summary>
    public static CudaLaunch LayerNormFwd(IGpuDevice gpu, uint grid, uint block, ulong x, ulong w, ulong b, ulong y, ulong stats, int rows, int cols, float eps) =>
        Make(gpu, "norms.cu", "layer_norm_fwd", grid, block, new KernelArgs(8).Address(x).Address(w).Address(b).Address(y).Address(stats).I32(rows).I32(cols).F32(eps));

    /// <summary>layer_norm_bwd_data(const float* dy, const float* x, const float* w, const float* stats, float* dx, int rows, int cols).</summary>
    public static CudaLaunch LayerNormBwdData(IGpuDevice gpu, uint grid, uint block, ulong dy, ulong x, ulong w, ulong stats, ulong dx, int rows, int cols) =>
        Make(gpu, "norms.cu", "layer_norm_bwd_data", grid, block, new KernelArgs(7).Address(dy).Address(x).Address(w).Address(stats).Address(dx).I32(rows).I32(cols));

    /// <summary>layer_norm_param_grads(const float* dy, const float* x, const float* stats, float* dw, float* db, int rows, int cols).</summary>
    public static CudaLaunch LayerNormParamGrads(IGpuDevice gpu, uint grid, uint block, ulong dy, ulong x, ulong stats, ulong dw, ulong db, int rows, int cols) =>
        Make(gpu, "norms.cu", "layer_norm_param_grads", grid, block, new KernelArgs(7).Address(dy).Address(x).Address(stats).Address(dw).Address(db).I32(rows).I32(cols));

    /// <summary>batch_norm_stats(const float* x, float* stats, float* running_mean, float* running_var, float* tracked, int rows, int cols, float eps, float momentum, int training, int update).</summary>
    public static CudaLaunch BatchNormStats(IGpuDevice gpu, uint grid, uint block, ulong x, ulong stats, ulong runningMean, ulong runningVar, ulong tracked, int rows, int cols,
        float eps, float momentum, bool training, bool update) =>
        Make(gpu, "norms.cu", "batch_norm_stats", grid, block, new KernelArgs(11).Address(x).Address(stats).Address(runningMean).Address(runningVar).Address(tracked)
            .I32(rows).I32(cols).F32(eps).F32(momentum).I32(training ? 1 : 0).I32(update ? 1 : 0));

    /// <summary>batch_norm_apply(const float* x, const float* stats, const float* w, const float* b, float* y, long long n, int cols).</summary>
    public static CudaLaunch BatchNormApply(IGpuDevice gpu, uint grid, uint block, ulong x, ulong stats, ulong w, ulong b, ulong y, long n, int cols) =>
        Make(gpu, "norms.cu", "batch_norm_apply", grid, block, new KernelArgs(7).Address(x).Address(stats).Address(w).Address(b).Address(y).I64(n).I32(cols));

    /// <summary>batch_norm_param_grads(const float* dy, const float* x, const float* stats, float* dw, float* db, int rows, int cols).</summary>
    public static CudaLaunch BatchNormParamGrads(IGpuDevice gpu, uint grid, uint block, ulong dy, ulong x, ulong stats, ulong dw, ulong db, int rows, int cols) =>
        Make(gpu, "norms.cu", "batch_norm_param_grads", grid, block, new KernelArgs(7).Address(dy).Address(x).Address(stats).Address(dw).Address(db).I32(rows).I32(cols));

    /// <summary>batch_norm_bwd_data(const float* dy, const float* x, const float* stats, const float* w, const float* dw, const float* db, float* dx, long long n, int rows, int cols).</summary>
    public static CudaLaunch BatchNormBwdData(IGpuDevice gpu, uint grid, uint block, ulong dy, ulong x, ulong stats, ulong w, ulong dw, ulong db, ulong dx, long n, int rows, int cols) =>
        Make(gpu, "norms.cu", "batch_norm_bwd_data", grid, block,
            new KernelArgs(10).Address(dy).Address(x).Address(stats).Address(w).Address(dw).Address(db).Address(dx).I64(n).I32(rows).I32(cols));

    /// <summary>add_floats(float* dst, const float* a, const float* b, long long n).</summary>
    public static CudaLaunch AddFloats(IGpuDevice gpu, uint grid, uint block, ulong dst, ulong a, ulong b, long n) =>
        Make(gpu, "norms.cu", "add_floats", grid, block, new KernelArgs(4).Address(dst).Address(a).Address(b).I64(n));

    // losses.cu

    /// <summary>softmax_ce(const float* logits, const int* labels, float* grad, float* loss_rows, int batch, int classes, float smoothing, int grad_rows).</summary>
    public static CudaLaunch SoftmaxCe(IGpuDevice gpu, uint grid, uint block, ulong logits, ulong labels, ulong grad, ulong lossRows, int batch, int classes, float smoothing, int gradRows) =>
        Make(gpu, "losses.cu", "softmax_ce", grid, block,
            new KernelArgs(8).Address(logits).Address(labels).Address(grad).Address(lossRows).I32(batch).I32(classes).F32(smoothing).I32(gradRows));

    /// <summary>mse(const float* x, const float* t, float* grad, float* loss_terms, long long n, long long grad_n).</summary>
    public static CudaLaunch Mse(IGpuDevice gpu, uint grid, uint block, ulong x, ulong t, ulong grad, ulong terms, long n, long gradN) =>
        Make(gpu, "losses.cu", "mse", grid, block, new KernelArgs(6).Address(x).Address(t).Address(grad).Address(terms).I64(n).I64(gradN));

    /// <summary>l1_loss(const float* x, const float* t, float* grad, float* loss_terms, long long n, long long grad_n).</summary>
    public static CudaLaunch L1Loss(IGpuDevice gpu, uint grid, uint block, ulong x, ulong t, ulong grad, ulong terms, long n, long gradN) =>
        Make(gpu, "losses.cu", "l1_loss", grid, block, new KernelArgs(6).Address(x).Address(t).Address(grad).Address(terms).I64(n).I64(gradN));

    /// <summary>huber(const float* x, const float* t, float* grad, float* loss_terms, long long n, float delta, long long grad_n).</summary>
    public static CudaLaunch Huber(IGpuDevice gpu, uint grid, uint block, ulong x, ulong t, ulong grad, ulong terms, long n, float delta, long gradN) =>
        Make(gpu, "losses.cu", "huber", grid, block, new KernelArgs(7).Address(x).Address(t).Address(grad).Address(terms).I64(n).F32(delta).I64(gradN));

    /// <summary>bce_with_logits(const float* x, const float* t, float* grad, float* loss_terms, long long n, long long grad_n).</summary>
    public static CudaLaunch BceWithLogits(IGpuDevice gpu, uint grid, uint block, ulong x, ulong t, ulong grad, ulong terms, long n, long gradN) =>
        Make(gpu, "losses.cu", "bce_with_logits", grid, block, new KernelArgs(6).Address(x).Address(t).Address(grad).Address(terms).I64(n).I64(gradN));

    /// <summary>loss_reduce(const float* terms, long long n, double divisor, bp_step_status* status).</summary>
    public static CudaLaunch LossReduce(IGpuDevice gpu, uint grid, uint block, ulong terms, long n, double divisor, ulong status) =>
        Make(gpu, "losses.cu", "loss_reduce", grid, block, new KernelArgs(4).Address(terms).I64(n).F64(divisor).Address(status));

    /// <summary>count_correct(const float* logits, const int* labels, int batch, int classes, unsigned int* correct).</summary>
    public static CudaLaunch CountCorrect(IGpuDevice gpu, uint grid, uint block, ulong logits, ulong labels, int batch, int classes, ulong correct) =>
        Make(gpu, "losses.cu", "count_correct", grid, block, new KernelArgs(5).Address(logits).Address(labels).I32(batch).I32(classes).Address(correct));

    // optim.cu

    /// <summary>sumsq_partial(const float* g, long long n, float clip_value, float* partial).</summary>
    public static CudaLaunch SumsqPartial(IGpuDevice gpu, uint grid, uint block, ulong g, long n, float clipValue, ulong partial) =>
        Make(gpu, "optim.cu", "sumsq_partial", grid, block, new KernelArgs(4).Address(g).I64(n).F32(clipValue).Address(partial));

    /// <summary>sumsq_final(const float* partial, int parts, float max_norm, bp_step_status* status).</summary>
    public static CudaLaunch SumsqFinal(IGpuDevice gpu, uint grid, uint block, ulong partial, int parts, float maxNorm, ulong status) =>
        Make(gpu, "optim.cu", "sumsq_final", grid, block, new KernelArgs(4).Address(partial).I32(parts).F32(maxNorm).Address(status));

    /// <summary>grad_check(const float* g, long long n, bp_step_status* status).</summary>
    public static CudaLaunch GradCheck(IGpuDevice gpu, uint grid, uint block, ulong g, long n, ulong status) =>
        Make(gpu, "optim.cu", "grad_check", grid, block, new KernelArgs(3).Address(g).I64(n).Address(status));

    /// <summary>to_bf16(const float* x, unsigned short* y, long long n).</summary>
    public static CudaLaunch ToBf16(IGpuDevice gpu, uint grid, uint block, ulong x, ulong y, long n) =>
        Make(gpu, "convert.cu", "to_bf16", grid, block, new KernelArgs(3).Address(x).Address(y).I64(n));

    /// <summary>copy_floats(float* dst, const float* src, long long n).</summary>
    public static CudaLaunch CopyFloats(IGpuDevice gpu, uint grid, uint block, ulong dst, ulong src, long n) =>
        Make(gpu, "optim.cu", "copy_floats", grid, block, new KernelArgs(3).Address(dst).Address(src).I64(n));

    /// <summary>add_into(float* into, const float* from, long long n, bp_step_status* status).</summary>
    public static CudaLaunch AddInto(IGpuDevice gpu, uint grid, uint block, ulong into, ulong from, long n, ulong status) =>
        Make(gpu, "optim.cu", "add_into", grid, block, new KernelArgs(4).Address(into).Address(from).I64(n).Address(status));

    /// <summary>The prologue every update kernel shares: clip_value, use_scale, l1, step constants, status.</summary>
    private static KernelArgs Tail(KernelArgs a, OptimizerSettings o, bool useScale, ulong consts, ulong status) =>
        a.F32((float)o.ClipValue).I32(useScale ? 1 : 0).F32((float)o.L1).Address(consts).Address(status);

    /// <summary>
    /// adam_update(p, g, m, v, vmax, long long n, beta1, beta2, 1 − beta1, 1 − beta2, eps, wd, int decoupled, int amsgrad, clip_value, int use_scale, l1, sc,
    /// status); the 1 − x coefficients (here and below) are computed in double, as torch.optim does.
    /// </summary>
    public static CudaLaunch AdamUpdate(IGpuDevice gpu, uint grid, uint block, ulong p, ulong g, ulong m, ulong v, ulong vmax, long n, Adam o,
        bool useScale, ulong consts, ulong status) =>
        Make(gpu, "optim.cu", "adam_update", grid, block, Tail(new KernelArgs(19).Address(p).Address(g).Address(m).Address(v).Address(vmax).I64(n)
            .F32((float)o.Beta1).F32((float)o.Beta2).F32((float)(1 - o.Beta1)).F32((float)(1 - o.Beta2)).F32((float)o.Eps).F32((float)o.WeightDecay).I32(o is AdamW ? 1 : 0).I32(vmax != 0 ? 1 : 0), o, useScale, consts, status));

    /// <summary>sgd_update(p, g, buf, long long n, momentum, 1 − dampening, wd, int nesterov, clip_value, int use_scale, l1, sc, status).</summary>
    public static CudaLaunch SgdUpdate(IGpuDevice gpu, uint grid, uint block, ulong p, ulong g, ulong buf, long n, Sgd o, bool useScale, ulong consts, ulong status) =>
        Make(gpu, "optim.cu", "sgd_update", grid, block, Tail(new KernelArgs(13).Address(p).Address(g).Address(buf).I64(n)
            .F32((float)o.Momentum).F32((float)(1 - o.Dampening)).F32((float)o.WeightDecay).I32(o.Nesterov ? 1 : 0), o, useScale, consts, status));

    /// <summary>rmsprop_update(p, g, sq, avg, buf, long long n, alpha, 1 − alpha, eps, wd, momentum, int centered, clip_value, int use_scale, l1, sc, status).</summary>
    public static CudaLaunch RmspropUpdate(IGpuDevice gpu, uint grid, uint block, ulong p, ulong g, ulong sq, ulong avg, ulong buf, long n, RmsProp o,
        bool useScale, ulong consts, ulong status) =>
        Make(gpu, "optim.cu", "rmsprop_update", grid, block, Tail(new KernelArgs(17).Address(p).Address(g).Address(sq).Address(avg).Address(buf).I64(n)
            .F32((float)o.Alpha).F32((float)(1 - o.Alpha)).F32((float)o.Eps).F32((float)o.WeightDecay).F32((float)o.Momentum).I32(avg != 0 ? 1 : 0), o, useScale, consts, status));

    /// <summary>adagrad_update(p, g, sum, long long n, eps, wd, clip_value, int use_scale, l1, sc, status).</summary>
    public static CudaLaunch AdagradUpdate(IGpuDevice gpu, uint grid, uint block, ulong p, ulong g, ulong sum, long n, Adagrad o, bool useScale, ulong consts, ulong status) =>
        Make(gpu, "optim.cu", "adagrad_update", grid, block, Tail(new KernelArgs(11).Address(p).Address(g).Address(sum).I64(n)
            .F32((float)o.Eps).F32((float)o.WeightDecay), o, useScale, consts, status));
}
