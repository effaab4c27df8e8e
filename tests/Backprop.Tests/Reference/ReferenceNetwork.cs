// A test oracle: a straightforward executor of a ModelSpec on the production kernels, one array per
// tensor, written without the Plan (it allocates its arrays per call), that the planned engine is
// compared with. It lives in the tests: the product checks whole networks through the engine itself.
//   forward:  a_0 = x; z_l = a_{l−1}·W_lᵀ + b_l; h_l = f_l(z_l); a_l = dropout(h_l)   (fused Dense.Fwd)
//   loss:     L(a_L, target) with d(a_L)
//   backward: dW_l, db_l from d(z_l) (Dense.BwdWeights); d(z_{l−1}) = (d(z_l)·W_l) ⊙ mask ⊙ f'_{l−1}
//             (Dense.BwdData with f' fused, then the dropout map); d(x) = d(z_1)·W_1.
using System.Numerics;
using Backprop.Engine;
using Backprop.Kernels;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cpu.Ops;

namespace Backprop.Tests;

/// <summary>Parameters of a model, one W [out, in] and b [out] array per layer.</summary>
public sealed class ModelParameters<T>(T[][] weights, T[][] biases) where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>W_l, [units, width of input], row-major.</summary>
    public T[][] Weights { get; } = weights;
    /// <summary>b_l, [units].</summary>
    public T[][] Biases { get; } = biases;

    /// <summary>Initializes every layer with <paramref name="scheme"/> from <paramref name="seed"/>.</summary>
    public static ModelParameters<T> Initialize(ModelSpec spec, InitScheme scheme, ulong seed)
    {
        int n = spec.Layers.Count;
        var w = new T[n][];
        var b = new T[n][];
        for (int l = 0; l < n; l++)
        {
            w[l] = new T[spec.Width(l) * spec.Layers[l].Units];
            b[l] = new T[spec.Layers[l].Units];
            Initializers.Initialize<T>(scheme, seed, (uint)l, spec.Width(l), spec.Layers[l].Units, w[l], b[l]);
        }
        return new ModelParameters<T>(w, b);
    }
}

/// <summary>Targets: class labels for cross-entropy, values [batch, outputs] otherwise.</summary>
public sealed record Targets<T>(int[]? Labels, T[]? Values) where T : unmanaged, IFloatingPointIeee754<T>;

/// <summary>Everything one forward/backward pass produced.</summary>
public sealed class PassResult<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>The loss.</summary>
    public double Loss { get; init; }
    /// <summary>Pre-activations z_l.</summary>
    public required T[][] PreActivations { get; init; }
    /// <summary>The network output a_L.</summary>
    public required T[] Output { get; init; }
    /// <summary>dL/dW_l (null after a forward-only pass).</summary>
    public T[][]? WeightGradients { get; init; }
    /// <summary>dL/db_l.</summary>
    public T[][]? BiasGradients { get; init; }
    /// <summary>dL/dx.</summary>
    public T[]? InputGradient { get; init; }
}

/// <summary>Runs a <see cref="ModelSpec"/> on the production kernels with plain arrays.</summary>
public static unsafe class ReferenceNetwork
{
    /// <summary>Forward (and, when <paramref name="backward"/>, backward) over a batch. Dropout uses (seed, step) and is on when <paramref name="training"/>.</summary>
    public static PassResult<T> Run<T>(ModelSpec spec, ModelParameters<T> p, T[] x, int batch, Targets<T> targets, CpuContext ctx,
        bool backward, bool training = true, ulong seed = 0, ulong step = 0)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int L = spec.Layers.Count;
        if (x.Length != batch * spec.InputWidth)
            throw new ArgumentException($"x has {x.Length} values; batch {batch} x input width {spec.InputWidth} needs {batch * spec.InputWidth}.", nameof(x));
        var z = new T[L][];
        var h = new T[L][];
        var a = new T[L + 1][];
        a[0] = x;
        for (int l = 0; l < L; l++)
        {
            var s = spec.Layers[l];
            int inW = spec.Width(l), outW = s.Units;
            z[l] = new T[batch * outW];
            h[l] = new T[batch * outW];
            fixed (T* src = a[l]) fixed (T* w = p.Weights[l]) fixed (T* b = p.Biases[l]) fixed (T* dst = h[l]) fixed (T* pre = z[l])
                ActivationDispatch.DenseFwd(s.Activation, ctx, batch, inW, outW, src, w, b, dst, pre);
            if (s.Dropout > 0 && training)
            {
                a[l + 1] = new T[batch * outW];
                Dropout.Apply<T>(s.Dropout, seed, step, (uint)l, h[l], a[l + 1]);
            }
            else a[l + 1] = h[l];
        }
        var dOut = new T[batch * spec.OutputWidth];
        double loss = LossForwardBackward(spec, a[L], targets, dOut);
        if (!backward) return new PassResult<T> { Loss = loss, PreActivations = z, Output = a[L] };

        var dW = new T[L][];
        var dB = new T[L][];
        // d(z_L): the output layer's activation derivative (identity for a plain output layer) and its dropout.
        var dz = ApplyOutputLayerBackward(spec, ctx, L - 1, h, z, dOut, training, seed, step);
        T[] dx = [];
        for (int l = L - 1; l >= 0; l--)
        {
            int inW = spec.Width(l), outW = spec.Layers[l].Units;
            dW[l] = new T[outW * inW];
            dB[l] = new T[outW];
            fixed (T* d = dz) fixed (T* src = a[l]) fixed (T* gw = dW[l]) fixed (T* gb = dB[l])
                Dense.BwdWeights(ctx, GradientMode.Overwrite, batch, inW, outW, d, src, gw, gb);
            var prev = new T[batch * inW];
            if (l > 0)
            {
                var pa = spec.Layers[l - 1].Activation;
                fixed (T* d = dz) fixed (T* w = p.Weights[l]) fixed (T* sv = pa.GradFromOutput ? h[l - 1] : z[l - 1]) fixed (T* o = prev)
                    ActivationDispatch.DenseBwdData(pa, ctx, batch, inW, outW, d, w, sv, o);
                if (spec.Layers[l - 1].Dropout > 0 && training) Dropout.Apply<T>(spec.Layers[l - 1].Dropout, seed, step, (uint)(l - 1), prev, prev);
            }
            else
            {
                fixed (T* d = dz) fixed (T* w = p.Weights[l]) fixed (T* o = prev)
                    Dense.BwdData(ctx, batch, inW, outW, d, w, o);
                dx = prev;
            }
            dz = prev;
        }
        return new PassResult<T> { Loss = loss, PreActivations = z, Output = a[L], WeightGradients = dW, BiasGradients = dB, InputGradient = dx };
    }

    private static T[] ApplyOutputLayerBackward<T>(ModelSpec spec, CpuContext ctx, int l, T[][] h, T[][] z, T[] dOut, bool training, ulong seed, ulong step)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var s = spec.Layers[l];
        var d = (T[])dOut.Clone();
        if (s.Dropout > 0 && training) Dropout.Apply<T>(s.Dropout, seed, step, (uint)l, d, d);
        fixed (T* sv = s.Activation.GradFromOutput ? h[l] : z[l]) fixed (T* pd = d)
            ActivationDispatch.Backward(ctx.Isa, s.Activation, sv, pd, pd, d.Length);
        return d;
    }

    /// <summary>The spec's loss on <paramref name="output"/>, writing d(loss)/d(output).</summary>
    public static double LossForwardBackward<T>(ModelSpec spec, T[] output, Targets<T> targets, T[] grad)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        return spec.Loss switch
        {
            LossKind.CrossEntropy => SoftmaxCrossEntropy.ForwardBackward<T>(output, targets.Labels ?? throw new ArgumentException("cross-entropy needs class labels."),
                spec.OutputWidth, grad, spec.LabelSmoothing),
            LossKind.Mse => RegressionLosses.ForwardBackward<T>(RegressionLossKind.Mse, output, Values(targets), grad),
            LossKind.L1 => RegressionLosses.ForwardBackward<T>(RegressionLossKind.L1, output, Values(targets), grad),
            LossKind.Huber => RegressionLosses.ForwardBackward<T>(RegressionLossKind.Huber, output, Values(targets), grad, spec.HuberDelta),
            LossKind.BceWithLogits => RegressionLosses.ForwardBackward<T>(RegressionLossKind.BceWithLogits, output, Values(targets), grad),
            _ => throw new ArgumentOutOfRangeException(nameof(spec), spec.Loss, $"Unknown loss {(int)spec.Loss}."),
        };

        static T[] Values(Targets<T> t) => t.Values ?? throw new ArgumentException("this loss needs target values.");
    }
}
