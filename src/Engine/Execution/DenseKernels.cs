// How the CPU executor computes a dense layer's three products: the strategy is a type parameter of
// the executor, so each choice compiles to direct calls.
//   FusedDense: the project's GEMM with the bias, activation and derivative epilogues in its final store,
//               db summed from the packed dZ blocks of the dW GEMM, and the forward reading Wᵀ from panels
//               the executor keeps (written by the optimizer pass; Backend.Cpu).
//   BlasDense:  OpenBLAS's GEMM, then a separate pass for bias + activation, the derivative mask, or the
//               column sums of dZ (Backend.Blas: the unfused reference, and a check of our GEMM).
// Both: Fwd     dst = f(src·Wᵀ + b)        (pre ← src·Wᵀ + b when pre is not null)
//       FwdRes  dst = f(src·Wᵀ + b) + skip (hidden ← f(src·Wᵀ + b) when hidden is not null: a residual block's add)
//       BwdW    dW = dZᵀ·src, db = Σ_batch dZ; *nonFinite = 1 when a value of dW or db is NaN or infinite
//       BwdData dX = (dZ·W) ⊙ g'(saved)    (saved null: dX = dZ·W; accumulate: dX = (dZ·W + dX) ⊙ g'(saved))
using System.Numerics;
using Backprop.Kernels;
using Backprop.Kernels.Blas;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cpu.Ops;

namespace Backprop.Engine.Execution;

/// <summary>A dense layer's forward, weight-gradient and data-gradient products on the CPU.</summary>
internal unsafe interface IDenseKernels<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    // wPanels: null, or W as Gemm.PackPanels wrote it for ctx (a strategy may ignore it: W holds the same values).
    static abstract void Fwd(CpuContext ctx, Activation act, int batch, int inW, int outW, T* src, T* w, T* b, T* dst, T* pre, T* wPanels);
    static abstract void FwdResidual(CpuContext ctx, Activation act, int batch, int inW, int outW, T* src, T* w, T* b, T* dst, T* pre, T* hidden, T* skip, T* wPanels);
    /// <summary>Whether the forward reads the panels of W (the executor then keeps them).</summary>
    static abstract bool ReadsPanels { get; }
    static abstract void BwdWeights(CpuContext ctx, int batch, int inW, int outW, T* dz, T* src, T* dw, T* db, int* nonFinite);
    static abstract void BwdData(CpuContext ctx, Activation prevAct, int batch, int inW, int outW, T* dz, T* w, T* saved, T* dx, bool accumulate);
}

/// <summary>The fused kernels (Backend.Cpu).</summary>
internal readonly unsafe struct FusedDense<T> : IDenseKernels<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static bool ReadsPanels => true;

    public static void Fwd(CpuContext ctx, Activation act, int batch, int inW, int outW, T* src, T* w, T* b, T* dst, T* pre, T* wPanels) =>
        ActivationDispatch.DenseFwd(act, ctx, batch, inW, outW, src, w, b, dst, pre, wPanels);

    public static void FwdResidual(CpuContext ctx, Activation act, int batch, int inW, int outW, T* src, T* w, T* b, T* dst, T* pre, T* hidden, T* skip, T* wPanels) =>
        ActivationDispatch.DenseFwdResidual(act, ctx, batch, inW, outW, src, w, b, dst, pre, hidden, skip, wPanels);

    public static void BwdWeights(CpuContext ctx, int batch, int inW, int outW, T* dz, T* src, T* dw, T* db, int* nonFinite) =>
        Dense.BwdWeights(ctx, GradientMode.Overwrite, batch, inW, outW, dz, src, dw, db, nonFinite);

    public static void BwdData(CpuContext ctx, Activation prevAct, int batch, int inW, int outW, T* dz, T* w, T* saved, T* dx, bool accumulate)
    {
        var mode = accumulate ? GradientMode.Accumulate : GradientMode.Overwrite;
        if (saved == null) Dense.BwdData(ctx, batch, inW, outW, dz, w, dx, mode);
        else ActivationDispatch.DenseBwdData(prevAct, ctx, batch, inW, outW, dz, w, saved, dx, mode);
    }
}

/// <summary>OpenBLAS GEMMs and separate elementwise passes (Backend.Blas).</summary>
internal readonly unsafe struct BlasDense<T> : IDenseKernels<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static bool ReadsPanels => false;

    public static void Fwd(CpuContext ctx, Activation act, int batch, int inW, int outW, T* src, T* w, T* b, T* dst, T* pre, T* wPanels)
    {
        OpenBlas.Gemm(Transpose.N, Transpose.T, batch, outW, inW, T.One, src, inW, w, inW, T.Zero, dst, outW);
        ActivationDispatch.BiasForward(ctx.Isa, act, dst, b, batch, outW, pre);
    }

    public static void FwdResidual(CpuContext ctx, Activation act, int batch, int inW, int outW, T* src, T* w, T* b, T* dst, T* pre, T* hidden, T* skip, T* wPanels)
    {
        Fwd(ctx, act, batch, inW, outW, src, w, b, dst, pre, null);
        long n = (long)batch * outW;
        if (hidden != null) new Span<T>(dst, checked((int)n)).CopyTo(new Span<T>(hidden, checked((int)n)));
        Accumulate.Sum(ctx.Isa, dst, dst, skip, n); // the unfused reference: the add a pass of its own
    }

    public static void BwdWeights(CpuContext ctx, int batch, int inW, int outW, T* dz, T* src, T* dw, T* db, int* nonFinite)
    {
        OpenBlas.Gemm(Transpose.T, Transpose.N, outW, inW, batch, T.One, dz, outW, src, inW, T.Zero, dw, inW);
        Elementwise.ColumnSums(ctx.Isa, dz, batch, outW, db, accumulate: false);
        if (!Dense.AllFinite(dw, (long)outW * inW) || !Dense.AllFinite(db, outW)) *nonFinite = 1; // the unfused reference: a pass of its own
    }

    public static void BwdData(CpuContext ctx, Activation prevAct, int batch, int inW, int outW, T* dz, T* w, T* saved, T* dx, bool accumulate)
    {
        OpenBlas.Gemm(Transpose.N, Transpose.N, batch, inW, outW, T.One, dz, outW, w, inW, accumulate ? T.One : T.Zero, dx, inW);
        if (saved != null) ActivationDispatch.Backward(ctx.Isa, prevAct, saved, dx, dx, batch * inW);
    }
}
