// Runtime-activation entry points: the kernels are generic over the operator struct, and these
// wrappers pick the instantiation from an Activation value once per call (a switch, no allocation),
// for callers that choose the activation at run time (the engine, gradcheck, the CLI). Visit hands
// the concrete operator to a visitor, so such a caller still ends in fully specialized code (no
// boxing, no virtual call per element).
using System.Numerics;

namespace Backprop.Kernels.Cpu.Ops;

/// <summary>Receives the concrete activation operator for a runtime <see cref="Activation"/>.</summary>
public interface IActivationVisitor<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>Called once with the operator.</summary>
    void Visit<TAct>(TAct act) where TAct : unmanaged, IActivation<T>;
}

/// <summary>Dense and elementwise kernels for an activation chosen at run time.</summary>
public static unsafe class ActivationDispatch
{
    /// <summary>Hands the operator for <paramref name="act"/>, instantiated for T, to <paramref name="visitor"/>.</summary>
    public static void Visit<T, TVisitor>(this Activation act, ref TVisitor visitor)
        where T : unmanaged, IFloatingPointIeee754<T>
        where TVisitor : struct, IActivationVisitor<T>
    {
        switch (act.Kind)
        {
            case ActivationKind.Identity: visitor.Visit(default(Identity<T>)); break;
            case ActivationKind.ReLU: visitor.Visit(default(ReLU<T>)); break;
            case ActivationKind.LeakyReLU: visitor.Visit(new LeakyReLU<T>(T.CreateTruncating(act.EffectiveParameter))); break;
            case ActivationKind.ELU: visitor.Visit(new Elu<T>(T.CreateTruncating(act.EffectiveParameter))); break;
            case ActivationKind.Tanh: visitor.Visit(default(Tanh<T>)); break;
            case ActivationKind.Sigmoid: visitor.Visit(default(Sigmoid<T>)); break;
            case ActivationKind.GELU: visitor.Visit(default(Gelu<T>)); break;
            case ActivationKind.GELUTanh: visitor.Visit(default(GeluTanh<T>)); break;
            case ActivationKind.SiLU: visitor.Visit(default(SiLU<T>)); break;
            default: throw new ArgumentOutOfRangeException(nameof(act), act.Kind, $"Unknown activation kind {(int)act.Kind}.");
        }
    }

    /// <summary><see cref="Dense.Fwd"/> with the operator of <paramref name="act"/>.</summary>
    public static void DenseFwd<T>(Activation act, CpuContext ctx, int batch, int inFeatures, int outFeatures, T* src, T* w, T* b, T* dst, T* preact,
        T* wPanels = null)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var v = new FwdVisitor<T> { Ctx = ctx, Batch = batch, In = inFeatures, Out = outFeatures, Src = src, W = w, B = b, Dst = dst, Pre = preact, Panels = wPanels };
        act.Visit<T, FwdVisitor<T>>(ref v);
    }

    /// <summary><see cref="Dense.FwdResidual{T,TAct}"/> for <paramref name="act"/>.</summary>
    public static void DenseFwdResidual<T>(Activation act, CpuContext ctx, int batch, int inFeatures, int outFeatures, T* src, T* w, T* b, T* dst, T* preact,
        T* hidden, T* skip, T* wPanels = null) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var v = new FwdVisitor<T>
        {
            Ctx = ctx, Batch = batch, In = inFeatures, Out = outFeatures, Src = src, W = w, B = b, Dst = dst, Pre = preact, Hidden = hidden, Skip = skip,
            Panels = wPanels,
        };
        act.Visit<T, FwdVisitor<T>>(ref v);
    }

    /// <summary><see cref="Dense.BwdData{T,TAct}"/> with the derivative of <paramref name="prevAct"/>.</summary>
    public static void DenseBwdData<T>(Activation prevAct, CpuContext ctx, int batch, int inFeatures, int outFeatures, T* diffDst, T* w, T* saved, T* diffSrc,
        GradientMode mode = GradientMode.Overwrite)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var v = new BwdDataVisitor<T> { Ctx = ctx, Batch = batch, In = inFeatures, Out = outFeatures, Diff = diffDst, W = w, Saved = saved, Dst = diffSrc, Mode = mode };
        prevAct.Visit<T, BwdDataVisitor<T>>(ref v);
    }

    /// <summary><see cref="Elementwise.Forward{T,TAct}(Isa,in TAct,T*,T*,int)"/> for <paramref name="act"/>.</summary>
    public static void Forward<T>(Isa isa, Activation act, T* x, T* y, int n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var v = new EwVisitor<T> { Isa = isa, X = x, Y = y, N = n, Backward = false };
        act.Visit<T, EwVisitor<T>>(ref v);
    }

    /// <summary><see cref="Elementwise.Backward{T,TAct}(Isa,in TAct,T*,T*,T*,int)"/> for <paramref name="act"/>.</summary>
    public static void Backward<T>(Isa isa, Activation act, T* saved, T* dy, T* dx, int n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var v = new EwVisitor<T> { Isa = isa, X = saved, Dy = dy, Y = dx, N = n, Backward = true };
        act.Visit<T, EwVisitor<T>>(ref v);
    }

    /// <summary><see cref="Elementwise.BiasForward{T,TAct}"/> (the unfused bias + activation pass) for <paramref name="act"/>.</summary>
    public static void BiasForward<T>(Isa isa, Activation act, T* y, T* bias, int rows, int cols, T* preact) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var v = new BiasVisitor<T> { Isa = isa, Y = y, Bias = bias, Rows = rows, Cols = cols, Pre = preact };
        act.Visit<T, BiasVisitor<T>>(ref v);
    }

    private struct BiasVisitor<T> : IActivationVisitor<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public Isa Isa; public T* Y, Bias, Pre; public int Rows, Cols;
        public void Visit<TAct>(TAct act) where TAct : unmanaged, IActivation<T> => Elementwise.BiasForward(Isa, act, Y, Bias, Rows, Cols, Pre);
    }

    private struct FwdVisitor<T> : IActivationVisitor<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public CpuContext Ctx; public int Batch, In, Out; public T* Src, W, B, Dst, Pre, Hidden, Skip, Panels;
        public void Visit<TAct>(TAct act) where TAct : unmanaged, IActivation<T>
        {
            if (Skip == null) Dense.Fwd(Ctx, act, Batch, In, Out, Src, W, B, Dst, Pre, Panels);
            else Dense.FwdResidual(Ctx, act, Batch, In, Out, Src, W, B, Dst, Pre, Hidden, Skip, Panels);
        }
    }

    private struct BwdDataVisitor<T> : IActivationVisitor<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public CpuContext Ctx; public int Batch, In, Out; public T* Diff, W, Saved, Dst; public GradientMode Mode;
        public void Visit<TAct>(TAct act) where TAct : unmanaged, IActivation<T> => Dense.BwdData(Ctx, act, Batch, In, Out, Diff, W, Saved, Dst, Mode);
    }

    private struct EwVisitor<T> : IActivationVisitor<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public Isa Isa; public T* X, Y, Dy; public int N; public bool Backward;
        public void Visit<TAct>(TAct act) where TAct : unmanaged, IActivation<T>
        {
            if (Backward) Elementwise.Backward(Isa, act, X, Dy, Y, N);
            else Elementwise.Forward(Isa, act, X, Y, N);
        }
    }
}
