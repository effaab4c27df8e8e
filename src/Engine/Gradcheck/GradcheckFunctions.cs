// The functions the gradient checker runs: a whole network (through the engine itself, in double), one
// dense layer, one activation, one loss, dropout with a fixed mask. Each computes its gradient with the
// production kernels in double. Losses of elementwise ops are Σ r ⊙ y with fixed random weights r (so
// dL/dy = r is not trivially 1).
using Backprop.Engine.Execution;
using Backprop.Kernels;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cpu.Ops;

namespace Backprop.Engine.Gradcheck;

internal static class Kinks
{
    /// <summary>True for activations whose derivative jumps at 0.</summary>
    public static bool HasKink(Activation a) =>
        a.Kind is ActivationKind.ReLU or ActivationKind.LeakyReLU || a.Kind == ActivationKind.ELU && a.EffectiveParameter != 1.0;
}

/// <summary>The batch a whole-network check runs on: inputs [n, input width] and the labels (cross-entropy) or targets [n, outputs].</summary>
public sealed record GradcheckBatch(double[] X, int[]? Labels = null, double[]? Targets = null);

/// <summary>
/// A whole network, through the engine that trains it: a <see cref="Model{T}"/> of double on the plan and kernels of
/// <c>options</c> (backend, threads, ISA, initialization), its dropout masks fixed (those of the model's next step). The
/// tensors are x and every parameter, named as the model's state_dict names them.
/// </summary>
public sealed class ModelGradcheck : IGradcheckFunction, IDisposable
{
    private readonly Model<double> _model;
    private readonly GradcheckBatch _batch;
    private readonly List<GradTensor> _tensors = [];
    private readonly int _rows;

    /// <summary>Compiles <paramref name="spec"/> with <paramref name="options"/> in double for <paramref name="batch"/> (the initial parameters are the options' initialization).</summary>
    public ModelGradcheck(ModelSpec spec, TrainingOptions options, GradcheckBatch batch)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(batch);
        spec.Validate();
        _rows = batch.X.Length / spec.InputWidth;
        if (_rows < 1 || batch.X.Length != _rows * spec.InputWidth)
            throw new ArgumentException($"x has {batch.X.Length} values; a batch needs a positive multiple of the input width {spec.InputWidth}.", nameof(batch));
        if (spec.Loss == LossKind.CrossEntropy ? batch.Labels?.Length != _rows : batch.Targets?.Length != _rows * spec.OutputWidth)
            throw new ArgumentException(spec.Loss == LossKind.CrossEntropy
                ? $"cross-entropy needs {_rows} labels (one per sample); got {batch.Labels?.Length.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none"}."
                : $"{spec.Loss} needs {_rows * spec.OutputWidth} target values ({_rows} samples x {spec.OutputWidth}); got {batch.Targets?.Length.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none"}.", nameof(batch));
        _batch = batch;
        _model = new Model<double>(spec, options with { MaxBatch = _rows }, null, keepPreActivations: true);
        _tensors.Add(new GradTensor("x", [_rows, spec.InputWidth], batch.X));
        foreach (var p in _model.Parameters) _tensors.Add(new GradTensor(p.Name, p.Shape, _model.Parameter(p.Name).ToArray()));
    }

    /// <summary>The model under check.</summary>
    public Model<double> Model => _model;

    /// <inheritdoc />
    public IReadOnlyList<GradTensor> Tensors => _tensors;

    // The checker perturbs the tensors' values; the model computes from them.
    private void Sync()
    {
        for (int i = 1; i < _tensors.Count; i++) _model.SetParameter(_tensors[i].Name, _tensors[i].Values);
    }

    private double Run(bool gradients)
    {
        Sync();
        return (_model.Spec.Loss == LossKind.CrossEntropy, gradients) switch
        {
            (true, false) => _model.Loss(_batch.X, _batch.Labels),
            (true, true) => _model.Gradients(_batch.X, _batch.Labels),
            (false, false) => _model.Loss(_batch.X, _batch.Targets),
            (false, true) => _model.Gradients(_batch.X, _batch.Targets),
        };
    }

    /// <inheritdoc />
    public double Loss() => Run(gradients: false);

    /// <inheritdoc />
    public void ComputeGradients()
    {
        Run(gradients: true);
        _model.InputGradient.CopyTo(_tensors[0].Gradient);
        for (int i = 1; i < _tensors.Count; i++) _model.Gradient(_tensors[i].Name).CopyTo(_tensors[i].Gradient);
    }

    /// <inheritdoc />
    public IReadOnlyList<string> AvoidKinks(double margin, System.Random rng)
    {
        ArgumentNullException.ThrowIfNull(rng);
        var spec = _model.Spec;
        var moved = new List<string>();
        for (int round = 0; round < 50; round++)
        {
            Run(gradients: false);
            bool clean = true;
            for (int l = 0; l < spec.Layers.Count && clean; l++)
            {
                if (!Kinks.HasKink(spec.Layers[l].Activation)) continue;
                int units = spec.Layers[l].Units;
                var z = _model.PreActivation(l);
                for (int i = 0; i < z.Length; i++)
                {
                    if (Math.Abs(z[i]) >= margin) continue;
                    int unit = i % units;
                    double shift = (rng.Next(2) == 0 ? 1 : -1) * (3 * margin + rng.NextDouble() * margin);
                    _tensors.First(t => t.Name == spec.ParameterNames(l).Bias).Values[unit] += shift;
                    moved.Add($"layer {l} unit {unit}: bias moved by {shift:G3} (pre-activation {z[i]:G3} of sample {i / units} was at the {spec.Layers[l].Activation.Kind} kink)");
                    clean = false;
                    break;
                }
            }
            if (clean && _batch.Targets is { } t && spec.Loss is LossKind.L1 or LossKind.Huber)
            {
                double kink = spec.Loss == LossKind.L1 ? 0 : spec.HuberDelta;
                var output = _model.TrainingOutput;
                for (int i = 0; i < t.Length; i++)
                {
                    double d = Math.Abs(output[i] - t[i]);
                    if (Math.Abs(d - kink) >= margin) continue;
                    t[i] += 4 * margin;
                    moved.Add($"target {i}: moved by {4 * margin:G3} (|output - target| = {d:G3} was at the {spec.Loss} kink)");
                    clean = false;
                }
            }
            if (clean) return moved;
        }
        throw new InvalidOperationException("could not move the inputs away from the kinks in 50 rounds; use another seed.");
    }

    /// <summary>Frees the model.</summary>
    public void Dispose() => _model.Dispose();
}

/// <summary>One activation: L = Σ r ⊙ f(x), gradient from the kernel's Backward with dy = r.</summary>
public sealed unsafe class ActivationGradcheck<TAct> : IGradcheckFunction where TAct : unmanaged, IActivation<double>
{
    private readonly TAct _act;
    private readonly bool _kink;
    private readonly Isa _isa;
    private readonly double[] _x, _r, _y;
    private readonly GradTensor[] _tensors;

    /// <summary>Checks <paramref name="act"/> at the points <paramref name="x"/>, on the vector path up to <paramref name="isa"/>; <paramref name="hasKink"/> says whether f' jumps at 0.</summary>
    public ActivationGradcheck(TAct act, double[] x, bool hasKink, int seed = 5, Isa isa = Isa.Avx512)
    {
        ArgumentNullException.ThrowIfNull(x);
        _act = act;
        _isa = isa;
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
        Elementwise.Forward<double, TAct>(_act, _x, _y, _isa);
        double s = 0;
        for (int i = 0; i < _y.Length; i++) s += _r[i] * _y[i];
        return s;
    }

    /// <inheritdoc />
    public void ComputeGradients()
    {
        Elementwise.Forward<double, TAct>(_act, _x, _y, _isa);
        Elementwise.Backward<double, TAct>(_act, _act.GradFromOutput ? _y : _x, _r, _tensors[0].Gradient, _isa);
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
    private readonly CpuContext _ctx;
    private readonly double[] _r, _y, _z;
    private readonly GradTensor[] _tensors;

    /// <summary>Random x [batch, in], W [out, in], b [out] from <paramref name="seed"/>.</summary>
    public DenseGradcheck(Activation act, int batch, int inFeatures, int outFeatures, CpuContext ctx, int seed = 3)
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
            ActivationDispatch.Backward(_ctx.Isa, _act, sv, r, d, dz.Length);
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
    private readonly LossKind _kind;
    private readonly double _smoothing, _delta;
    private readonly int _width;
    private readonly int[]? _labels;
    private readonly double[]? _targets;
    private readonly GradTensor[] _tensors;
    private readonly double[] _scratch;

    /// <summary>Checks loss <paramref name="kind"/> at <paramref name="input"/> [batch, width] against <paramref name="labels"/> (cross-entropy) or <paramref name="targets"/>.</summary>
    public LossGradcheck(LossKind kind, double[] input, int width, int[]? labels, double[]? targets, double labelSmoothing = 0, double huberDelta = 1.0)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (width < 1 || input.Length % width != 0) throw new ArgumentException($"input has {input.Length} values, not a multiple of the width {width}.", nameof(input));
        int rows = input.Length / width;
        if (kind == LossKind.CrossEntropy ? labels?.Length != rows : targets?.Length != input.Length)
            throw new ArgumentException(kind == LossKind.CrossEntropy
                ? $"cross-entropy needs {rows} labels (one per row of input); got {labels?.Length.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none"}."
                : $"{kind} needs {input.Length} target values (one per input value); got {targets?.Length.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none"}.",
                kind == LossKind.CrossEntropy ? nameof(labels) : nameof(targets));
        (_kind, _smoothing, _delta, _width, _labels, _targets) = (kind, labelSmoothing, huberDelta, width, labels, targets);
        _tensors = [new GradTensor("input", [rows, width], input)];
        _scratch = new double[input.Length];
    }

    /// <inheritdoc />
    public IReadOnlyList<GradTensor> Tensors => _tensors;

    private double Evaluate(double[] grad) => Losses.ForwardBackward<double>(_kind, _smoothing, _delta, _width, _tensors[0].Values, _labels, _targets, grad);

    /// <inheritdoc />
    public double Loss() => Evaluate(_scratch);

    /// <inheritdoc />
    public void ComputeGradients() => Evaluate(_tensors[0].Gradient);

    /// <inheritdoc />
    public IReadOnlyList<string> AvoidKinks(double margin, System.Random rng)
    {
        var moved = new List<string>();
        if (_kind is not (LossKind.L1 or LossKind.Huber) || _targets is null) return moved;
        double kink = _kind == LossKind.L1 ? 0 : _delta;
        var x = _tensors[0].Values;
        for (int i = 0; i < x.Length; i++)
            if (Math.Abs(Math.Abs(x[i] - _targets[i]) - kink) < margin)
            {
                x[i] += 4 * margin;
                moved.Add($"input[{i}] moved by {4 * margin:G3} (|input - target| at the {_kind} kink)");
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
