// The oneDNN side of one dense layer (batch, in -> out), f32, created once for a shape at the OpenMP
// thread count in force (oneDNN sizes its work split when a primitive descriptor is created):
//   Fwd:        inner product forward_training, bias, ReLU eltwise post-op:  Y = relu(X · Wᵀ + b)
//               (forward_training because the backward primitives take it as their hint; inner product
//               has no workspace, so the work is the same as forward_inference's)
//   BwdData:    inner product backward_data, then eltwise backward ReLU (relu_use_dst_for_bwd: the mask
//               from the saved output, the previous layer's ReLU output) in place on diff_src:
//               dX = (dY · W) ⊙ [S > 0]; oneDNN has no post-ops on backward primitives, so this is the
//               two-primitive sequence a oneDNN user runs
//   BwdWeights: inner product backward_weights with diff_bias: dW = dYᵀ · X, db = Σ_batch dY
// X, Y, dY, dX and S are plain row-major nc ([batch, features], like ours); b and db are x. Weights and
// diff weights take the layout the primitive prefers (format_tag any, e.g. AB16b64a): W is reordered into
// it once, here, and dW is reordered back to plain [out, in] only for the correctness check.
using System.Runtime.InteropServices;

namespace Backprop.Cli.Bench;

internal sealed unsafe class OneDnnDense : IDisposable
{
    private readonly nint _stream;
    private readonly OneDnnOwned _owned = new();
    private readonly List<nint> _attrs = [];
    private readonly nint _fwd, _bwdData, _reluBwd, _bwdWeights, _dwToPlain;
    private readonly DnnlExecArg* _args; // fwd [0..4), bwd data [4..7), relu bwd [7..10), bwd weights [10..14), dW reorder [14..16)
    private bool _disposed;

    /// <param name="engine">A CPU engine (dnnl_engine_create).</param>
    /// <param name="stream">A stream on it.</param>
    /// <param name="x">Input [batch, in] (read).</param>
    /// <param name="w">Weights [out, in], PyTorch layout (read once, here, into oneDNN's layout).</param>
    /// <param name="b">Bias [out] (read).</param>
    /// <param name="y">Output of Fwd [batch, out].</param>
    /// <param name="dy">Gradient of the output [batch, out] (read).</param>
    /// <param name="saved">The previous layer's ReLU output [batch, in] whose mask BwdData applies (read).</param>
    /// <param name="dx">Output of BwdData [batch, in].</param>
    /// <param name="dwPlain">Where <see cref="CopyDiffWeightsToPlain"/> writes dW as [out, in].</param>
    /// <param name="db">Output of BwdWeights' bias gradient [out].</param>
    public OneDnnDense(nint engine, nint stream, int batch, int inFeatures, int outFeatures,
        float* x, float* w, float* b, float* y, float* dy, float* saved, float* dx, float* dwPlain, float* db)
    {
        _stream = stream;
        Batch = batch;
        In = inFeatures;
        Out = outFeatures;
        _args = (DnnlExecArg*)NativeMemory.AllocZeroed(16, (nuint)sizeof(DnnlExecArg));
        try
        {
            var srcMd = OneDnn.Md(OneDnn.TagAb, batch, inFeatures);
            var dstMd = OneDnn.Md(OneDnn.TagAb, batch, outFeatures);
            var wPlainMd = OneDnn.Md(OneDnn.TagAb, outFeatures, inFeatures);
            var wAnyMd = OneDnn.Md(OneDnn.TagAny, outFeatures, inFeatures);
            var biasMd = OneDnn.Md(OneDnn.TagA, outFeatures);

            // Forward, bias + ReLU post-op.
            nint attr = OneDnn.AttrWithEltwise(OneDnn.EltwiseRelu, 0f);
            _attrs.Add(attr);
            var fwdDesc = OneDnn.IpForward(OneDnn.ForwardTraining, &srcMd, &wAnyMd, &biasMd, &dstMd);
            nint fwdPd = _owned.Pd(OneDnn.PrimitiveDescCreate(&fwdDesc, attr, engine, 0, "inner product forward_training, bias, ReLU post-op"));
            if (OneDnn.HasWorkspace(fwdPd)) throw new OneDnnException("oneDNN: the inner product forward primitive asks for a workspace; this benchmark passes none.");
            var wMd = OneDnn.QueryMd(fwdPd, OneDnn.QueryWeightsMd);
            WeightsFormat = OneDnn.FormatName(&wMd);
            ForwardImpl = OneDnn.ImplInfo(fwdPd);
            _fwd = _owned.Prim(fwdPd, "inner product forward");

            // Backward data (hint: the forward primitive descriptor), then the ReLU mask.
            var bdDesc = OneDnn.IpBackwardData(&srcMd, &wAnyMd, &dstMd);
            nint bdPd = _owned.Pd(OneDnn.PrimitiveDescCreate(&bdDesc, 0, engine, fwdPd, "inner product backward_data"));
            var wBdMd = OneDnn.QueryMd(bdPd, OneDnn.QueryWeightsMd);
            BackwardDataImpl = OneDnn.ImplInfo(bdPd);
            _bwdData = _owned.Prim(bdPd, "inner product backward_data");

            var eltFwdDesc = OneDnn.EltwiseForward(OneDnn.ForwardTraining, OneDnn.EltwiseReluUseDstForBwd, &srcMd, 0f);
            nint eltFwdPd = _owned.Pd(OneDnn.PrimitiveDescCreate(&eltFwdDesc, 0, engine, 0, "eltwise forward_training relu_use_dst_for_bwd (hint)"));
            var eltBwdDesc = OneDnn.EltwiseBackward(OneDnn.EltwiseReluUseDstForBwd, &srcMd, &srcMd, 0f);
            nint eltBwdPd = _owned.Pd(OneDnn.PrimitiveDescCreate(&eltBwdDesc, 0, engine, eltFwdPd, "eltwise backward relu_use_dst_for_bwd"));
            ReluBackwardImpl = OneDnn.ImplInfo(eltBwdPd);
            _reluBwd = _owned.Prim(eltBwdPd, "eltwise backward ReLU");

            // Backward weights with diff_bias.
            var bwDesc = OneDnn.IpBackwardWeights(&srcMd, &wAnyMd, &biasMd, &dstMd);
            nint bwPd = _owned.Pd(OneDnn.PrimitiveDescCreate(&bwDesc, 0, engine, fwdPd, "inner product backward_weights with diff_bias"));
            var dwMd = OneDnn.QueryMd(bwPd, OneDnn.QueryDiffWeightsMd);
            var dbMd = OneDnn.QueryMd(bwPd, OneDnn.QueryDiffWeightsMd, 1);
            DiffWeightsFormat = OneDnn.FormatName(&dwMd);
            BackwardWeightsImpl = OneDnn.ImplInfo(bwPd);
            _bwdWeights = _owned.Prim(bwPd, "inner product backward_weights");

            // Memory objects on our buffers (plain) and on native buffers of oneDNN's weight layouts.
            nint mX = _owned.Mem(&srcMd, engine, x), mY = _owned.Mem(&dstMd, engine, y), mB = _owned.Mem(&biasMd, engine, b);
            nint mDy = _owned.Mem(&dstMd, engine, dy), mDx = _owned.Mem(&srcMd, engine, dx), mS = _owned.Mem(&srcMd, engine, saved);
            nint mDb = _owned.Mem(&dbMd, engine, db);
            nint mWPlain = _owned.Mem(&wPlainMd, engine, w), mDwPlain = _owned.Mem(&wPlainMd, engine, dwPlain);
            nint mW = _owned.Mem(&wMd, engine, _owned.Buffer(OneDnn.MdSize(&wMd)));
            bool sameWeights = OneDnn.MdEqual(&wMd, &wBdMd);
            nint mWBd = sameWeights ? mW : _owned.Mem(&wBdMd, engine, _owned.Buffer(OneDnn.MdSize(&wBdMd)));
            BackwardDataWeightsFormat = OneDnn.FormatName(&wBdMd);
            nint mDw = _owned.Mem(&dwMd, engine, _owned.Buffer(OneDnn.MdSize(&dwMd)));

            // The weights in oneDNN's layout, once, outside any timing.
            Reorder(&wPlainMd, &wMd, engine, mWPlain, mW);
            if (!sameWeights) Reorder(&wPlainMd, &wBdMd, engine, mWPlain, mWBd);
            nint toPlainPd = _owned.Pd(OneDnn.ReorderDescCreate(&dwMd, &wPlainMd, engine));
            _dwToPlain = _owned.Prim(toPlainPd, "reorder diff weights to oi");

            _args[0] = new() { Arg = OneDnn.ArgSrc, Memory = mX };
            _args[1] = new() { Arg = OneDnn.ArgWeights, Memory = mW };
            _args[2] = new() { Arg = OneDnn.ArgBias, Memory = mB };
            _args[3] = new() { Arg = OneDnn.ArgDst, Memory = mY };
            _args[4] = new() { Arg = OneDnn.ArgDiffDst, Memory = mDy };
            _args[5] = new() { Arg = OneDnn.ArgWeights, Memory = mWBd };
            _args[6] = new() { Arg = OneDnn.ArgDiffSrc, Memory = mDx };
            _args[7] = new() { Arg = OneDnn.ArgDst, Memory = mS };
            _args[8] = new() { Arg = OneDnn.ArgDiffDst, Memory = mDx };
            _args[9] = new() { Arg = OneDnn.ArgDiffSrc, Memory = mDx };
            _args[10] = new() { Arg = OneDnn.ArgSrc, Memory = mX };
            _args[11] = new() { Arg = OneDnn.ArgDiffDst, Memory = mDy };
            _args[12] = new() { Arg = OneDnn.ArgDiffWeights, Memory = mDw };
            _args[13] = new() { Arg = OneDnn.ArgDiffBias, Memory = mDb };
            _args[14] = new() { Arg = OneDnn.ArgFrom, Memory = mDw };
            _args[15] = new() { Arg = OneDnn.ArgTo, Memory = mDwPlain };
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public int Batch { get; }
    public int In { get; }
    public int Out { get; }

    /// <summary>The layout of W the forward primitive chose (oneDNN's notation, e.g. AB16b64a).</summary>
    public string WeightsFormat { get; } = "";
    /// <summary>The layout of W the backward-data primitive chose (a second reorder of W when it differs from the forward one).</summary>
    public string BackwardDataWeightsFormat { get; } = "";
    /// <summary>The layout of dW the backward-weights primitive chose.</summary>
    public string DiffWeightsFormat { get; } = "";
    public string ForwardImpl { get; } = "";
    public string BackwardDataImpl { get; } = "";
    public string ReluBackwardImpl { get; } = "";
    public string BackwardWeightsImpl { get; } = "";

    /// <summary>Y = relu(X · Wᵀ + b).</summary>
    public void Forward() => OneDnn.Execute(_fwd, _stream, 4, _args, "inner product forward");

    /// <summary>dX = dY · W, then dX ⊙= [S > 0].</summary>
    public void BackwardData()
    {
        OneDnn.Execute(_bwdData, _stream, 3, _args + 4, "inner product backward_data");
        OneDnn.Execute(_reluBwd, _stream, 3, _args + 7, "eltwise backward ReLU");
    }

    /// <summary>dW = dYᵀ · X (oneDNN's layout), db = Σ_batch dY.</summary>
    public void BackwardWeights() => OneDnn.Execute(_bwdWeights, _stream, 4, _args + 10, "inner product backward_weights");

    /// <summary>Reorders the last dW into the plain [out, in] buffer given at construction.</summary>
    public void CopyDiffWeightsToPlain() => OneDnn.Execute(_dwToPlain, _stream, 2, _args + 14, "reorder diff weights to oi");





    private void Reorder(DnnlMemoryDesc* from, DnnlMemoryDesc* to, nint engine, nint mFrom, nint mTo)
    {
        nint pd = OneDnn.ReorderDescCreate(from, to, engine);
        nint p = 0;
        try
        {
            p = OneDnn.PrimitiveCreate(pd, "reorder weights");
            var args = stackalloc DnnlExecArg[2];
            args[0] = new() { Arg = OneDnn.ArgFrom, Memory = mFrom };
            args[1] = new() { Arg = OneDnn.ArgTo, Memory = mTo };
            OneDnn.Execute(p, _stream, 2, args, "reorder weights");
        }
        finally
        {
            if (p != 0) OneDnn.PrimitiveDestroy(p);
            OneDnn.PrimitiveDescDestroy(pd);
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _owned.Dispose();
        foreach (var a in _attrs) OneDnn.AttrDestroy(a);
        NativeMemory.Free(_args);
    }
}
