// The dense (fully connected) layer, fused: weights W [out, in] (PyTorch nn.Linear), bias b [out],
// activations [batch, features] row-major.
//   Fwd:        dst = f(src · Wᵀ + b)        one GEMM (N x T); bias and f in its final store;
//               preact = src · Wᵀ + b is kept only when f' needs it (GELU, SiLU).
//   BwdWeights: dW (=|+=) diff_dstᵀ · src     one GEMM (T x N) whose A packing also sums the rows of
//               db (=|+=) Σ_batch diff_dst    diff_dstᵀ: db comes out of the same pass over diff_dst.
//   BwdData:    diff_src = (diff_dst · W) ⊙ g'(saved)   one GEMM (N x N) with the previous layer's
//               derivative g' in the store (saved = its output or pre-activation), so the previous
//               layer's diff_dst comes out directly. Identity g gives the plain input gradient.
//               Accumulate: diff_src = (diff_dst · W + diff_src) ⊙ g'(saved) (a residual block's skip
//               gradient already in diff_src: the block's join in the GEMM's store).
using System.Numerics;
using Backprop.Kernels.Cpu;

namespace Backprop.Kernels.Cpu.Ops;

/// <summary>Whether a backward kernel overwrites its gradient or adds to it (tiny-cuda-nn's GradientMode).</summary>
public enum GradientMode
{
    /// <summary>gradient = new value.</summary>
    Overwrite,
    /// <summary>gradient += new value.</summary>
    Accumulate,
}

/// <summary>Fused dense-layer kernels (float and double).</summary>
public static unsafe class Dense
{
    /// <summary>
    /// dst[batch, out] = f(src[batch, in] · W[out, in]ᵀ + b[out]); preact (null or [batch, out]) receives the pre-activation.
    /// <paramref name="wPanels"/> (null, or W packed by <see cref="Gemm.PackPanels{T}(CpuContext, int, int, T*, int, T*, int, int)"/> for <paramref name="ctx"/>) spares the call
    /// its transpose of W into panels; the result is the same bit for bit.
    /// </summary>
    public static void Fwd<T, TAct>(CpuContext ctx, in TAct act, int batch, int inFeatures, int outFeatures,
        T* src, T* w, T* b, T* dst, T* preact, T* wPanels = null)
        where T : unmanaged, IFloatingPointIeee754<T>
        where TAct : unmanaged, IActivation<T>
    {
        var epi = new BiasActivationEpilogue<T, TAct>(act, b, preact, outFeatures);
        Gemm.ComputeWithPanels(ctx, batch, outFeatures, inFeatures, T.One, src, inFeatures, w, inFeatures, wPanels, T.Zero, dst, outFeatures, ref epi);
    }

    /// <summary>
    /// dst[batch, out] = f(src · Wᵀ + b) + skip[batch, out] (a residual block's add in the store); preact and hidden (each null
    /// or [batch, out]) receive the pre-activation and f of it.
    /// </summary>
    public static void FwdResidual<T, TAct>(CpuContext ctx, in TAct act, int batch, int inFeatures, int outFeatures,
        T* src, T* w, T* b, T* dst, T* preact, T* hidden, T* skip, T* wPanels = null)
        where T : unmanaged, IFloatingPointIeee754<T>
        where TAct : unmanaged, IActivation<T>
    {
        var epi = new ResidualEpilogue<T, TAct>(act, b, preact, hidden, skip, outFeatures);
        Gemm.ComputeWithPanels(ctx, batch, outFeatures, inFeatures, T.One, src, inFeatures, w, inFeatures, wPanels, T.Zero, dst, outFeatures, ref epi);
    }

    /// <summary>
    /// dW[out, in] and db[out] (db may be null) from diff_dst[batch, out] and src[batch, in]. With <paramref name="nonFinite"/>,
    /// sets it to 1 when a value of dW or db is NaN or infinite (checked in the store and over db: no pass over dW).
    /// </summary>
    public static void BwdWeights<T>(CpuContext ctx, GradientMode mode, int batch, int inFeatures, int outFeatures,
        T* diffDst, T* src, T* diffW, T* diffB, int* nonFinite = null)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        bool acc = mode == GradientMode.Accumulate;
        if (nonFinite == null)
        {
            var epi = default(IdentityEpilogue<T>);
            Gemm.ComputeWithRowSums(ctx, Transpose.T, Transpose.N, outFeatures, inFeatures, batch, T.One,
                diffDst, outFeatures, src, inFeatures, acc ? T.One : T.Zero, diffW, inFeatures, ref epi, diffB, acc);
            return;
        }
        var check = new FiniteCheckEpilogue<T>(nonFinite);
        Gemm.ComputeWithRowSums(ctx, Transpose.T, Transpose.N, outFeatures, inFeatures, batch, T.One,
            diffDst, outFeatures, src, inFeatures, acc ? T.One : T.Zero, diffW, inFeatures, ref check, diffB, acc);
        if (diffB != null && !AllFinite(diffB, outFeatures)) *nonFinite = 1;
    }

    /// <summary>True when none of the n values at <paramref name="x"/> is NaN or infinite.</summary>
    public static bool AllFinite<T>(T* x, long n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (long i = 0; i < n; i++)
            if (!T.IsFinite(x[i])) return false;
        return true;
    }

    /// <summary>diff_src[batch, in] = (diff_dst[batch, out] · W[out, in]) ⊙ g'(saved[batch, in]).</summary>
    public static void BwdData<T, TAct>(CpuContext ctx, in TAct prevAct, int batch, int inFeatures, int outFeatures,
        T* diffDst, T* w, T* saved, T* diffSrc, GradientMode mode = GradientMode.Overwrite)
        where T : unmanaged, IFloatingPointIeee754<T>
        where TAct : unmanaged, IActivation<T>
    {
        var epi = new ActivationGradEpilogue<T, TAct>(prevAct, saved, inFeatures);
        Gemm.Compute(ctx, Transpose.N, Transpose.N, batch, inFeatures, outFeatures, T.One, diffDst, outFeatures, w, inFeatures,
            mode == GradientMode.Accumulate ? T.One : T.Zero, diffSrc, inFeatures, ref epi);
    }

    /// <summary>diff_src (=|+=) diff_dst · W with no activation derivative (the gradient with respect to the layer's input).</summary>
    public static void BwdData<T>(CpuContext ctx, int batch, int inFeatures, int outFeatures, T* diffDst, T* w, T* diffSrc, GradientMode mode = GradientMode.Overwrite)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var epi = default(IdentityEpilogue<T>);
        Gemm.Compute(ctx, Transpose.N, Transpose.N, batch, inFeatures, outFeatures, T.One, diffDst, outFeatures, w, inFeatures,
            mode == GradientMode.Accumulate ? T.One : T.Zero, diffSrc, inFeatures, ref epi);
    }
}
