// Hyper-parameters of the optimizers, with torch.optim's names and defaults.
namespace Backprop.Kernels.Cpu.Optim;

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

/// <summary>
/// Optimizer hyper-parameters. Defaults are torch.optim's (AdamW's weight decay default is 0.01 there;
/// use <see cref="ForKind"/> to get each class's defaults). Clipping and L1 are extensions applied to
/// the gradient before the optimizer's own formula, in the same pass.
/// </summary>
public sealed record OptimizerSettings
{
    /// <summary>The algorithm.</summary>
    public OptimizerKind Kind { get; init; } = OptimizerKind.Adam;
    /// <summary>Base learning rate (a schedule scales it per step).</summary>
    public double LearningRate { get; init; } = 1e-3;
    /// <summary>SGD/RMSprop momentum.</summary>
    public double Momentum { get; init; }
    /// <summary>SGD dampening.</summary>
    public double Dampening { get; init; }
    /// <summary>SGD Nesterov momentum.</summary>
    public bool Nesterov { get; init; }
    /// <summary>Adam β1.</summary>
    public double Beta1 { get; init; } = 0.9;
    /// <summary>Adam β2.</summary>
    public double Beta2 { get; init; } = 0.999;
    /// <summary>ε of Adam (1e-8), RMSprop (1e-8), Adagrad (1e-10).</summary>
    public double Eps { get; init; } = 1e-8;
    /// <summary>Weight decay: L2 added to the gradient (SGD, Adam, RMSprop, Adagrad) or decoupled (AdamW).</summary>
    public double WeightDecay { get; init; }
    /// <summary>Adam/AdamW AMSGrad variant.</summary>
    public bool Amsgrad { get; init; }
    /// <summary>RMSprop smoothing constant α.</summary>
    public double Alpha { get; init; } = 0.99;
    /// <summary>RMSprop centered variant.</summary>
    public bool Centered { get; init; }
    /// <summary>Adagrad learning-rate decay.</summary>
    public double LrDecay { get; init; }
    /// <summary>Adagrad initial accumulator value.</summary>
    public double InitialAccumulatorValue { get; init; }
    /// <summary>L1 regularization strength: l1·sign(p) is added to the gradient (0 = off).</summary>
    public double L1 { get; init; }
    /// <summary>Clamp each gradient element to [−ClipValue, ClipValue] (0 = off).</summary>
    public double ClipValue { get; init; }
    /// <summary>Scale all gradients so their global 2-norm is at most ClipNorm (0 = off); coefficient max/(norm + 1e-6) as PyTorch.</summary>
    public double ClipNorm { get; init; }

    /// <summary>The defaults of the torch.optim class for <paramref name="kind"/>.</summary>
    public static OptimizerSettings ForKind(OptimizerKind kind) => kind switch
    {
        OptimizerKind.Sgd => new() { Kind = kind, LearningRate = 0.01 },
        OptimizerKind.Adam => new() { Kind = kind, LearningRate = 1e-3 },
        OptimizerKind.AdamW => new() { Kind = kind, LearningRate = 1e-3, WeightDecay = 0.01 },
        OptimizerKind.RMSprop => new() { Kind = kind, LearningRate = 0.01 },
        OptimizerKind.Adagrad => new() { Kind = kind, LearningRate = 0.01, Eps = 1e-10 },
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, $"Unknown optimizer {(int)kind}."),
    };

    /// <summary>Per-element state arrays the optimizer needs (each as long as the parameters).</summary>
    public int StateSlots => Kind switch
    {
        OptimizerKind.Sgd => Momentum != 0 ? 1 : 0,
        OptimizerKind.Adam or OptimizerKind.AdamW => Amsgrad ? 3 : 2,
        OptimizerKind.RMSprop => 1 + (Centered ? 1 : 0) + (Momentum > 0 ? 1 : 0),
        OptimizerKind.Adagrad => 1,
        _ => 0,
    };

    /// <summary>Throws with the offending value when a hyper-parameter is out of range.</summary>
    public void Validate()
    {
        static void Check(bool ok, string name, double v, string expected)
        {
            if (!ok) throw new ArgumentOutOfRangeException(name, v, $"{name} must be {expected}; got {v}.");
        }
        Check(LearningRate >= 0 && double.IsFinite(LearningRate), nameof(LearningRate), LearningRate, "a finite number >= 0");
        Check(Momentum >= 0 && double.IsFinite(Momentum), nameof(Momentum), Momentum, "a finite number >= 0");
        Check(Dampening >= 0 && Dampening <= 1, nameof(Dampening), Dampening, "in [0, 1]");
        Check(Beta1 >= 0 && Beta1 < 1, nameof(Beta1), Beta1, "in [0, 1)");
        Check(Beta2 >= 0 && Beta2 < 1, nameof(Beta2), Beta2, "in [0, 1)");
        Check(Eps >= 0 && double.IsFinite(Eps), nameof(Eps), Eps, "a finite number >= 0");
        Check(WeightDecay >= 0 && double.IsFinite(WeightDecay), nameof(WeightDecay), WeightDecay, "a finite number >= 0");
        Check(Alpha >= 0 && Alpha < 1, nameof(Alpha), Alpha, "in [0, 1)");
        Check(LrDecay >= 0, nameof(LrDecay), LrDecay, ">= 0");
        Check(InitialAccumulatorValue >= 0, nameof(InitialAccumulatorValue), InitialAccumulatorValue, ">= 0");
        Check(L1 >= 0, nameof(L1), L1, ">= 0");
        Check(ClipValue >= 0, nameof(ClipValue), ClipValue, ">= 0 (0 = off)");
        Check(ClipNorm >= 0, nameof(ClipNorm), ClipNorm, ">= 0 (0 = off)");
        if (Nesterov && (Momentum <= 0 || Dampening != 0))
            throw new ArgumentException($"Nesterov momentum requires momentum > 0 and dampening = 0; got momentum {Momentum}, dampening {Dampening}.");
    }
}
