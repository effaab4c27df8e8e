// The functions the gradient checker runs: a whole network, one dense layer, one activation, one
// loss, dropout with a fixed mask. Each computes its gradient with the production kernels in double.
// Losses of elementwise ops are Σ r ⊙ y with fixed random weights r (so dL/dy = r is not trivially 1).
using Backprop.Engine;
using Backprop.Kernels.Cpu.Gemm;
using Backprop.Kernels.Cpu.Ops;

namespace Backprop.Engine.Gradcheck;

internal static class Kinks
{
    /// <summary>True for activations whose derivative jumps at 0.</summary>
    public static bool HasKink(Activation a) =>
        a.Kind is ActivationKind.ReLU or ActivationKind.LeakyReLU || a.Kind == ActivationKind.ELU && a.EffectiveParameter != 1.0;
}

/// <summary>A whole network: tensors x (input) and every layer's weight and bias, named like a PyTorch state_dict.</summary>
public sealed class NetworkGradcheck : IGradcheckFunction
{
    private readonly ModelSpec _spec;
    private readonly ModelParameters<double> _p;
    private readonly double[] _x;
    private readonly int _batch;
    private readonly Targets<double> _targets;
    private readonly GemmContext _ctx;
    private readonly ulong _seed, _step;
    private readonly List<GradTensor> _tensors = new();

    /// <summary>The check of <paramref name="spec"/> at parameters <paramref name="p"/> on one batch; dropout masks are fixed by (seed, step).</summary>
    public NetworkGradcheck(ModelSpec spec, ModelParameters<double> p, double[] x, int batch, Targets<double> targets, GemmContext ctx, ulong dropoutSeed = 7, ulong dropoutStep = 1)
    {
        spec.Validate();
        (_spec, _p, _x, _batch, _targets, _ctx, _seed, _step) = (spec, p, x, batch, targets, ctx, dropoutSeed, dropoutStep);
        _tensors.Add(new GradTensor("x", [batch, spec.InputWidth], x));
        for (int l = 0; l < spec.Layers.Count; l++)
        {
            int idx = StateDictIndex(spec, l);
            _tensors.Add(new GradTensor($"{idx}.weight", [spec.Layers[l].Units, spec.Width(l)], p.Weights[l]));
            _tensors.Add(new GradTensor($"{idx}.bias", [spec.Layers[l].Units], p.Biases[l]));
        }
    }

    /// <summary>Index of layer l's Linear in the equivalent nn.Sequential (activation and Dropout modules count).</summary>
    public static int StateDictIndex(ModelSpec spec, int l)
    {
        int idx = 0;
        for (int i = 0; i < l; i++)
            idx += 1 + (spec.Layers[i].Activation.Kind != ActivationKind.Identity ? 1 : 0) + (spec.Layers[i].Dropout > 0 ? 1 : 0);
        return idx;
    }

    /// <inheritdoc />
    public IReadOnlyList<GradTensor> Tensors => _tensors;

    /// <inheritdoc />
    public double Loss() => ReferenceNetwork.Run(_spec, _p, _x, _batch, _targets, _ctx, backward: false, training: true, _seed, _step).Loss;

    /// <inheritdoc />
    public void ComputeGradients()
    {
        var r = ReferenceNetwork.Run(_spec, _p, _x, _batch, _targets, _ctx, backward: true, training: true, _seed, _step);
        r.InputGradient!.CopyTo(_tensors[0].Gradient, 0);
        for (int l = 0; l < _spec.Layers.Count; l++)
        {
            r.WeightGradients![l].CopyTo(_tensors[1 + 2 * l].Gradient, 0);
            r.BiasGradients![l].CopyTo(_tensors[2 + 2 * l].Gradient, 0);
        }
    }

    /// <inheritdoc />
    public IReadOnlyList<string> AvoidKinks(double margin, System.Random rng)
    {
        var moved = new List<string>();
        for (int round = 0; round < 50; round++)
        {
            var r = ReferenceNetwork.Run(_spec, _p, _x, _batch, _targets, _ctx, backward: false, training: true, _seed, _step);
            bool clean = true;
            for (int l = 0; l < _spec.Layers.Count && clean; l++)
            {
                if (!Kinks.HasKink(_spec.Layers[l].Activation)) continue;
                int units = _spec.Layers[l].Units;
                var z = r.PreActivations[l];
                for (int i = 0; i < z.Length; i++)
                {
                    if (Math.Abs(z[i]) >= margin) continue;
                    int unit = i % units;
                    double shift = (rng.Next(2) == 0 ? 1 : -1) * (3 * margin + rng.NextDouble() * margin);
                    _p.Biases[l][unit] += shift;
                    moved.Add($"layer {l} unit {unit}: bias moved by {shift:G3} (pre-activation {z[i]:G3} of sample {i / units} was at the {_spec.Layers[l].Activation.Kind} kink)");
                    clean = false;
                    break;
                }
            }
            if (clean && _targets.Values is { } t && _spec.Loss is LossKind.L1 or LossKind.Huber)
            {
                double kink = _spec.Loss == LossKind.L1 ? 0 : _spec.HuberDelta;
                for (int i = 0; i < t.Length; i++)
                {
                    double d = Math.Abs(r.Output[i] - t[i]);
                    if (Math.Abs(d - kink) >= margin) continue;
                    t[i] += 4 * margin;
                    moved.Add($"target {i}: moved by {4 * margin:G3} (|output - target| = {d:G3} was at the {_spec.Loss} kink)");
                    clean = false;
                }
            }
            if (clean) return moved;
        }
        throw new InvalidOperationException("could not move the inputs away from the kinks in 50 rounds; use another seed.");
    }
}

/// <summary>One activation: L = Σ r ⊙ f(x), gradient from the kernel's Backward with dy = r.</summary>
public sealed unsafe class ActivationGradcheck<TAct> : IGradcheckFunction where TAct : unmanaged, IActivation<double>
{
    private readonly TAct _act;
    private readonly bool _kink;
    private readonly double[] _x, _r, _y;
    private readonly GradTensor[] _tensors;

    /// <summary>Checks <paramref name="act"/> at the points <paramref name="x"/>; <paramref name="hasKink"/> says whether f' jumps at 0.</summary>
    public ActivationGradcheck(TAct act, double[] x, bool hasKink, int seed = 5)
    {
        _act = act;
        _kink = hasKink;
        _x = x;
        var rng = new System.Random(seed);
        _r = x.Select(_ => rng.NextDouble() * 2 - 1).ToArray();
        _y = new double[x.Length];
        _tensors = [new GradTensor("x", [x.Length], x)];
    }

    /// <inheritdoc />
    public IReadOnlyList<GradTensor> Tensors => _tensors;

    /// <inheritdoc />
    public double Loss()
    {
        Elementwise.Forward<double, TAct>(_act, _x, _y);
        double s = 0;
        for (int i = 0; i < _y.Length; i++) s += _r[i] * _y[i];
        return s;
    }

    /// <inheritdoc />
    public void ComputeGradients()
    {
        Elementwise.Forward<double, TAct>(_act, _x, _y);
        Elementwise.Backward<double, TAct>(_act, _act.GradFromOutput ? _y : _x, _r, _tensors[0].Gradient);
    }

    /// <inheritdoc />
    public IReadOnlyList<string> AvoidKinks(double margin, System.Random rng)
    {
        var moved = new List<string>();
        if (!_kink) return moved;
        for (int i = 0; i < _x.Length; i++)
            if (Math.Abs(_x[i]) < margin)
            {
                double to = (rng.Next(2) == 0 ? 1 : -1) * 4 * margin;
                moved.Add($"x[{i}] = {_x[i]:G3} moved to {to:G3} (kink at 0)");
                _x[i] = to;
            }
        return moved;
    }
}

/// <summary>One dense layer: L = Σ r ⊙ f(x·Wᵀ + b); checks x, W, b through Fwd, BwdWeights and BwdData.</summary>
public sealed unsafe class DenseGradcheck : IGradcheckFunction
{
    private readonly Activation _act;
    private readonly int _batch, _in, _out;
    private readonly GemmContext _ctx;
    private readonly double[] _r, _y, _z;
    private readonly GradTensor[] _tensors;

    /// <summary>Random x [batch, in], W [out, in], b [out] from <paramref name="seed"/>.</summary>
    public DenseGradcheck(Activation act, int batch, int inFeatures, int outFeatures, GemmContext ctx, int seed = 3)
    {
        (_act, _batch, _in, _out, _ctx) = (act, batch, inFeatures, outFeatures, ctx);
        var rng = new System.Random(seed);
        double[] R(int n) => Enumerable.Range(0, n).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
        _tensors = [new GradTensor("x", [batch, inFeatures], R(batch * inFeatures)), new GradTensor("weight", [outFeatures, inFeatures], R(outFeatures * inFeatures)),
                    new GradTensor("bias", [outFeatures], R(outFeatures))];
        _r = R(batch * outFeatures);
        _y = new double[batch * outFeatures];
        _z = new double[batch * outFeatures];
    }

    /// <inheritdoc />
    public IReadOnlyList<GradTensor> Tensors => _tensors;

    private void Forward()
    {
        fixed (double* x = _tensors[0].Values) fixed (double* w = _tensors[1].Values) fixed (double* b = _tensors[2].Values) fixed (double* y = _y) fixed (double* z = _z)
            ActivationDispatch.DenseFwd(_act, _ctx, _batch, _in, _out, x, w, b, y, z);
    }

    /// <inheritdoc />
    public double Loss()
    {
        Forward();
        double s = 0;
        for (int i = 0; i < _y.Length; i++) s += _r[i] * _y[i];
        return s;
    }

    /// <inheritdoc />
    public void ComputeGradients()
    {
        Forward();
        var dz = new double[_y.Length];
        fixed (double* sv = _act.GradFromOutput ? _y : _z) fixed (double* r = _r) fixed (double* d = dz)
            ActivationDispatch.Backward(_act, sv, r, d, dz.Length);
        fixed (double* d = dz) fixed (double* x = _tensors[0].Values) fixed (double* w = _tensors[1].Values)
        fixed (double* gx = _tensors[0].Gradient) fixed (double* gw = _tensors[1].Gradient) fixed (double* gb = _tensors[2].Gradient)
        {
            Dense.BwdWeights(_ctx, GradientMode.Overwrite, _batch, _in, _out, d, x, gw, gb);
            Dense.BwdData(_ctx, _batch, _in, _out, d, w, gx);
        }
    }

    /// <inheritdoc />
    public IReadOnlyList<string> AvoidKinks(double margin, System.Random rng)
    {
        var moved = new List<string>();
        if (!Kinks.HasKink(_act)) return moved;
        for (int round = 0; round < 50; round++)
        {
            Forward();
            int bad = Array.FindIndex(_z, v => Math.Abs(v) < margin);
            if (bad < 0) return moved;
            double shift = 4 * margin;
            _tensors[2].Values[bad % _out] += shift;
            moved.Add($"bias[{bad % _out}] moved by {shift:G3} (pre-activation {_z[bad]:G3} at the kink)");
        }
        throw new InvalidOperationException("could not move the pre-activations away from the kink in 50 rounds.");
    }
}

/// <summary>One loss: its value as a function of the input (logits or predictions).</summary>
public sealed class LossGradcheck : IGradcheckFunction
{
    private readonly ModelSpec _spec;
    private readonly Targets<double> _targets;
    private readonly GradTensor[] _tensors;
    private readonly double[] _scratch;

    /// <summary>Checks loss <paramref name="kind"/> at <paramref name="input"/> [batch, width] against the targets.</summary>
    public LossGradcheck(LossKind kind, double[] input, int width, Targets<double> targets, double labelSmoothing = 0, double huberDelta = 1.0)
    {
        _spec = new ModelSpec(width, [new LayerSpec(width, new Activation(ActivationKind.Identity))], kind, labelSmoothing, huberDelta);
        _targets = targets;
        _tensors = [new GradTensor("input", [input.Length / width, width], input)];
        _scratch = new double[input.Length];
    }

    /// <inheritdoc />
    public IReadOnlyList<GradTensor> Tensors => _tensors;

    /// <inheritdoc />
    public double Loss() => ReferenceNetwork.LossForwardBackward(_spec, _tensors[0].Values, _targets, _scratch);

    /// <inheritdoc />
    public void ComputeGradients() => ReferenceNetwork.LossForwardBackward(_spec, _tensors[0].Values, _targets, _tensors[0].Gradient);

    /// <inheritdoc />
    public IReadOnlyList<string> AvoidKinks(double margin, System.Random rng)
    {
        var moved = new List<string>();
        if (_spec.Loss is not (LossKind.L1 or LossKind.Huber) || _targets.Values is null) return moved;
        double kink = _spec.Loss == LossKind.L1 ? 0 : _spec.HuberDelta;
        var x = _tensors[0].Values;
        for (int i = 0; i < x.Length; i++)
            if (Math.Abs(Math.Abs(x[i] - _targets.Values[i]) - kink) < margin)
            {
                x[i] += 4 * margin;
                moved.Add($"input[{i}] moved by {4 * margin:G3} (|input - target| at the {_spec.Loss} kink)");
            }
        return moved;
    }
}

/// <summary>Dropout with a fixed mask (seed, step, layer): L = Σ r ⊙ dropout(x).</summary>
public sealed class DropoutGradcheck : IGradcheckFunction
{
    private readonly double _p;
    private readonly ulong _seed, _step;
    private readonly double[] _r, _y;
    private readonly GradTensor[] _tensors;

    /// <summary>Checks dropout with probability <paramref name="p"/> on <paramref name="x"/>.</summary>
    public DropoutGradcheck(double p, double[] x, ulong seed = 11, ulong step = 3)
    {
        (_p, _seed, _step) = (p, seed, step);
        var rng = new System.Random(9);
        _r = x.Select(_ => rng.NextDouble() * 2 - 1).ToArray();
        _y = new double[x.Length];
        _tensors = [new GradTensor("x", [x.Length], x)];
    }

    /// <inheritdoc />
    public IReadOnlyList<GradTensor> Tensors => _tensors;

    /// <inheritdoc />
    public double Loss()
    {
        Dropout.Apply<double>(_p, _seed, _step, 0, _tensors[0].Values, _y);
        double s = 0;
        for (int i = 0; i < _y.Length; i++) s += _r[i] * _y[i];
        return s;
    }

    /// <inheritdoc />
    public void ComputeGradients() => Dropout.Apply<double>(_p, _seed, _step, 0, _r, _tensors[0].Gradient);

    /// <inheritdoc />
    public IReadOnlyList<string> AvoidKinks(double margin, System.Random rng) => [];
}
