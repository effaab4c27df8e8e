// Optimizer settings, one type per torch.optim algorithm, in that library's words and defaults, so an
// option an algorithm lacks cannot be set on it. Each algorithm states, once, the per-element state it
// keeps (its slots, named as torch.optim's state_dict names them) and its per-step scalars; the CPU
// update, the Cuda launch arguments and the checkpoint tensor names all ask it.
// Clipping (by value, by global norm) and L1 are extensions every algorithm takes: they act on the
// gradient before the algorithm's own formula, in the same pass.
namespace Backprop.Kernels;

/// <summary>The optimizer algorithms (torch.optim classes).</summary>
public enum OptimizerKind
{
    /// <summary>torch.optim.SGD (with momentum, dampening, Nesterov).</summary>
    Sgd,
    /// <summary>torch.optim.Adam (with AMSGrad).</summary>
    Adam,
    /// <summary>torch.optim.AdamW (decoupled weight decay).</summary>
    AdamW,
    /// <summary>torch.optim.RMSprop (with momentum, centered).</summary>
    RMSprop,
    /// <summary>torch.optim.Adagrad.</summary>
    Adagrad,
}

/// <summary>What every optimizer has: a learning rate, weight decay, and the gradient pre-processing extensions.</summary>
public abstract record OptimizerSettings
{
    // The algorithms are the ones below: every consumer (the CPU update, the Cuda launches, checkpoints) knows each of them.
    private protected OptimizerSettings() { }

    /// <summary>The algorithm.</summary>
    public abstract OptimizerKind Kind { get; }
    /// <summary>Base learning rate (a schedule scales it per step).</summary>
    public double LearningRate { get; init; }
    /// <summary>Weight decay: L2 added to the gradient (SGD, Adam, RMSprop, Adagrad) or decoupled (AdamW).</summary>
    public double WeightDecay { get; init; }
    /// <summary>L1 regularization strength: l1·sign(p) is added to the gradient (0 = off).</summary>
    public double L1 { get; init; }
    /// <summary>Clamp each gradient element to [−ClipValue, ClipValue] (0 = off).</summary>
    public double ClipValue { get; init; }
    /// <summary>Scale all gradients so their global 2-norm is at most ClipNorm (0 = off); coefficient max/(norm + 1e-6) as PyTorch.</summary>
    public double ClipNorm { get; init; }

    /// <summary>torch.optim's names of the per-element state this configuration keeps, in slot order (each slot is as long as the parameters).</summary>
    public abstract IReadOnlyList<string> StateNames { get; }

    /// <summary>Per-element state arrays the optimizer needs.</summary>
    public int StateSlots => StateNames.Count;

    /// <summary>The slot holding state <paramref name="name"/> (a torch.optim state name), or −1 when this configuration keeps none.</summary>
    public int SlotOf(string name)
    {
        var names = StateNames;
        for (int k = 0; k < names.Count; k++)
            if (names[k] == name) return k;
        return -1;
    }

    /// <summary>The value state slot <paramref name="slot"/> starts at (0 unless the algorithm says otherwise).</summary>
    public virtual double InitialState(int slot) => 0;

    /// <summary>The defaults of the torch.optim class for <paramref name="kind"/>.</summary>
    public static OptimizerSettings ForKind(OptimizerKind kind) => kind switch
    {
        OptimizerKind.Sgd => new Sgd(),
        OptimizerKind.Adam => new Adam(),
        OptimizerKind.AdamW => new AdamW(),
        OptimizerKind.RMSprop => new RmsProp(),
        OptimizerKind.Adagrad => new Adagrad(),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, $"Unknown optimizer {(int)kind}."),
    };

    /// <summary>Throws with the offending value when a hyper-parameter is out of range.</summary>
    public virtual void Validate()
    {
        Check(LearningRate >= 0 && double.IsFinite(LearningRate), nameof(LearningRate), LearningRate, "a finite number >= 0");
        Check(WeightDecay >= 0 && double.IsFinite(WeightDecay), nameof(WeightDecay), WeightDecay, "a finite number >= 0");
        Check(L1 >= 0, nameof(L1), L1, ">= 0");
        Check(ClipValue >= 0, nameof(ClipValue), ClipValue, ">= 0 (0 = off)");
        Check(ClipNorm >= 0, nameof(ClipNorm), ClipNorm, ">= 0 (0 = off)");
    }

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming <paramref name="name"/>, the value and what was expected.</summary>
    protected static void Check(bool ok, string name, double value, string expected)
    {
        if (!ok) throw new ArgumentOutOfRangeException(name, value, $"{name} must be {expected}; got {value}.");
    }
}

/// <summary>torch.optim.SGD(lr, momentum, dampening, nesterov, weight_decay).</summary>
public sealed record Sgd : OptimizerSettings
{
    /// <summary>State name of the momentum buffer.</summary>
    public const string MomentumBuffer = "momentum_buffer";

    /// <summary>SGD with torch's defaults for anything not given (lr 0.01 here, as this project's CLI).</summary>
    public Sgd(double lr = 0.01, double momentum = 0, double dampening = 0, bool nesterov = false, double weightDecay = 0)
    {
        LearningRate = lr;
        Momentum = momentum;
        Dampening = dampening;
        Nesterov = nesterov;
        WeightDecay = weightDecay;
    }

    /// <inheritdoc />
    public override OptimizerKind Kind => OptimizerKind.Sgd;
    /// <summary>Momentum factor μ.</summary>
    public double Momentum { get; init; }
    /// <summary>Dampening of the momentum.</summary>
    public double Dampening { get; init; }
    /// <summary>Nesterov momentum.</summary>
    public bool Nesterov { get; init; }

    /// <inheritdoc />
    public override IReadOnlyList<string> StateNames => Momentum != 0 ? s_momentum : [];
    private static readonly string[] s_momentum = [MomentumBuffer];

    /// <inheritdoc />
    public override void Validate()
    {
        base.Validate();
        Check(Momentum >= 0 && double.IsFinite(Momentum), nameof(Momentum), Momentum, "a finite number >= 0");
        Check(Dampening >= 0 && Dampening <= 1, nameof(Dampening), Dampening, "in [0, 1]");
        if (Nesterov && (Momentum <= 0 || Dampening != 0))
            throw new ArgumentException($"Nesterov momentum requires momentum > 0 and dampening = 0; got momentum {Momentum}, dampening {Dampening}.");
    }
}

/// <summary>torch.optim.Adam(lr, betas, eps, weight_decay, amsgrad): L2 weight decay added to the gradient.</summary>
public record Adam : OptimizerSettings
{
    /// <summary>State name of the first moment.</summary>
    public const string ExpAvg = "exp_avg";
    /// <summary>State name of the second moment.</summary>
    public const string ExpAvgSq = "exp_avg_sq";
    /// <summary>State name of AMSGrad's running maximum of the second moment.</summary>
    public const string MaxExpAvgSq = "max_exp_avg_sq";

    /// <summary>Adam with torch's defaults for anything not given.</summary>
    public Adam(double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0, bool amsgrad = false)
    {
        LearningRate = lr;
        Beta1 = beta1;
        Beta2 = beta2;
        Eps = eps;
        WeightDecay = weightDecay;
        Amsgrad = amsgrad;
    }

    /// <inheritdoc />
    public override OptimizerKind Kind => OptimizerKind.Adam;
    /// <summary>β1, the first moment's decay.</summary>
    public double Beta1 { get; init; }
    /// <summary>β2, the second moment's decay.</summary>
    public double Beta2 { get; init; }
    /// <summary>ε added to the denominator.</summary>
    public double Eps { get; init; }
    /// <summary>The AMSGrad variant.</summary>
    public bool Amsgrad { get; init; }

    /// <inheritdoc />
    public override IReadOnlyList<string> StateNames => Amsgrad ? s_amsgrad : s_plain;
    private static readonly string[] s_plain = [ExpAvg, ExpAvgSq], s_amsgrad = [ExpAvg, ExpAvgSq, MaxExpAvgSq];

    /// <summary>Step size at step <paramref name="t"/> (1-based): lr / (1 − β1^t).</summary>
    public double StepSize(double lr, long t) => lr / (1 - Math.Pow(Beta1, t));

    /// <summary>√(1 − β2^t) at step <paramref name="t"/> (1-based).</summary>
    public double SqrtBiasCorrection2(long t) => Math.Sqrt(1 - Math.Pow(Beta2, t));

    /// <inheritdoc />
    public override void Validate()
    {
        base.Validate();
        Check(Beta1 >= 0 && Beta1 < 1, nameof(Beta1), Beta1, "in [0, 1)");
        Check(Beta2 >= 0 && Beta2 < 1, nameof(Beta2), Beta2, "in [0, 1)");
        Check(Eps >= 0 && double.IsFinite(Eps), nameof(Eps), Eps, "a finite number >= 0");
    }
}

/// <summary>torch.optim.AdamW: Adam with decoupled weight decay p ← p·(1 − lr·wd) (torch's default wd 0.01).</summary>
public sealed record AdamW : Adam
{
    /// <summary>AdamW with torch's defaults for anything not given.</summary>
    public AdamW(double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0.01, bool amsgrad = false)
        : base(lr, beta1, beta2, eps, weightDecay, amsgrad) { }

    /// <inheritdoc />
    public override OptimizerKind Kind => OptimizerKind.AdamW;
}

/// <summary>torch.optim.RMSprop(lr, alpha, eps, weight_decay, momentum, centered).</summary>
public sealed record RmsProp : OptimizerSettings
{
    /// <summary>State name of the running mean of g².</summary>
    public const string SquareAvg = "square_avg";
    /// <summary>State name of the centered variant's running mean of g.</summary>
    public const string GradAvg = "grad_avg";
    /// <summary>State name of the momentum buffer.</summary>
    public const string MomentumBuffer = "momentum_buffer";

    /// <summary>RMSprop with torch's defaults for anything not given.</summary>
    public RmsProp(double lr = 0.01, double alpha = 0.99, double eps = 1e-8, double weightDecay = 0, double momentum = 0, bool centered = false)
    {
        LearningRate = lr;
        Alpha = alpha;
        Eps = eps;
        WeightDecay = weightDecay;
        Momentum = momentum;
        Centered = centered;
    }

    /// <inheritdoc />
    public override OptimizerKind Kind => OptimizerKind.RMSprop;
    /// <summary>Smoothing constant α.</summary>
    public double Alpha { get; init; }
    /// <summary>ε added to the denominator.</summary>
    public double Eps { get; init; }
    /// <summary>Momentum factor.</summary>
    public double Momentum { get; init; }
    /// <summary>The centered variant (normalize by the estimated variance).</summary>
    public bool Centered { get; init; }

    /// <inheritdoc />
    public override IReadOnlyList<string> StateNames => Centered ? Momentum > 0 ? s_centeredMomentum : s_centered : Momentum > 0 ? s_momentum : s_plain;
    private static readonly string[] s_plain = [SquareAvg], s_centered = [SquareAvg, GradAvg], s_momentum = [SquareAvg, MomentumBuffer],
        s_centeredMomentum = [SquareAvg, GradAvg, MomentumBuffer];

    /// <inheritdoc />
    public override void Validate()
    {
        base.Validate();
        Check(Alpha >= 0 && Alpha < 1, nameof(Alpha), Alpha, "in [0, 1)");
        Check(Eps >= 0 && double.IsFinite(Eps), nameof(Eps), Eps, "a finite number >= 0");
        Check(Momentum >= 0 && double.IsFinite(Momentum), nameof(Momentum), Momentum, "a finite number >= 0");
    }
}

/// <summary>torch.optim.Adagrad(lr, lr_decay, weight_decay, initial_accumulator_value, eps).</summary>
public sealed record Adagrad : OptimizerSettings
{
    /// <summary>State name of the running sum of g².</summary>
    public const string Sum = "sum";

    /// <summary>Adagrad with torch's defaults for anything not given.</summary>
    public Adagrad(double lr = 0.01, double lrDecay = 0, double weightDecay = 0, double initialAccumulatorValue = 0, double eps = 1e-10)
    {
        LearningRate = lr;
        LrDecay = lrDecay;
        WeightDecay = weightDecay;
        InitialAccumulatorValue = initialAccumulatorValue;
        Eps = eps;
    }

    /// <inheritdoc />
    public override OptimizerKind Kind => OptimizerKind.Adagrad;
    /// <summary>Learning-rate decay per step.</summary>
    public double LrDecay { get; init; }
    /// <summary>The value the accumulator starts at.</summary>
    public double InitialAccumulatorValue { get; init; }
    /// <summary>ε added to the denominator.</summary>
    public double Eps { get; init; }

    /// <inheritdoc />
    public override IReadOnlyList<string> StateNames => s_sum;
    private static readonly string[] s_sum = [Sum];

    /// <inheritdoc />
    public override double InitialState(int slot) => InitialAccumulatorValue;

    /// <summary>The decayed learning rate at step <paramref name="t"/> (1-based): lr / (1 + (t − 1)·lr_decay).</summary>
    public double DecayedLearningRate(double lr, long t) => lr / (1 + (t - 1) * LrDecay);

    /// <inheritdoc />
    public override void Validate()
    {
        base.Validate();
        Check(LrDecay >= 0, nameof(LrDecay), LrDecay, ">= 0");
        Check(InitialAccumulatorValue >= 0, nameof(InitialAccumulatorValue), InitialAccumulatorValue, ">= 0");
        Check(Eps >= 0 && double.IsFinite(Eps), nameof(Eps), Eps, "a finite number >= 0");
    }
}
