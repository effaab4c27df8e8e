// The trainers' options, in ML.NET's shape: public fields with defaults, the column names from ML.NET's own trainer
// input base class. The defaults are the engine's default run (`backprop train`): 512-256 ReLU with dropout 0.2,
// Adam at 1e-3 on a cosine schedule, batch 128, 15 epochs.
using Backprop.Engine;
using Backprop.Engine.Training;
using Backprop.Kernels;
using Microsoft.ML.Trainers;

namespace Backprop.MLNet;

/// <summary>The optimizer a Backprop trainer updates the weights with.</summary>
public enum BackpropOptimizer
{
    /// <summary>Adam (default).</summary>
    Adam,
    /// <summary>AdamW: Adam with decoupled weight decay (default decay 0.01).</summary>
    AdamW,
    /// <summary>Stochastic gradient descent, with optional momentum.</summary>
    Sgd,
    /// <summary>RMSprop.</summary>
    RmsProp,
    /// <summary>Adagrad.</summary>
    Adagrad,
}

/// <summary>How the learning rate moves over the run.</summary>
public enum BackpropLearningRateSchedule
{
    /// <summary>The learning rate throughout.</summary>
    Constant,
    /// <summary>Cosine annealing from the learning rate to 0 over every step of the run (default).</summary>
    Cosine,
}

/// <summary>The loss a Backprop regression trainer minimizes.</summary>
public enum BackpropRegressionLoss
{
    /// <summary>Mean squared error (default).</summary>
    SquaredError,
    /// <summary>Huber loss with δ = 1 (on the standardized label when <see cref="BackpropRegressionTrainer.Options.NormalizeLabel"/> is set).</summary>
    Huber,
    /// <summary>Mean absolute error.</summary>
    AbsoluteError,
}

/// <summary>What every Backprop trainer takes: the network, the optimizer and the run.</summary>
#pragma warning disable CA1051, CA1819 // ML.NET's options are public fields, arrays included (its own trainers' shape)
public abstract class BackpropTrainerOptionsBase : TrainerInputBaseWithLabel
{
    /// <summary>Units of each hidden layer, input side first (may be empty: a linear model).</summary>
    public int[] HiddenLayers = [512, 256];
    /// <summary>The hidden layers' activation: relu, leaky_relu[:slope], elu[:alpha], tanh, sigmoid, gelu, gelu_tanh or silu.</summary>
    public string Activation = "relu";
    /// <summary>Dropout probability after each hidden layer, in [0, 1).</summary>
    public float Dropout = 0.2f;
    /// <summary>The optimizer.</summary>
    public BackpropOptimizer Optimizer = BackpropOptimizer.Adam;
    /// <summary>Base learning rate.</summary>
    public double LearningRate = 1e-3;
    /// <summary>Momentum of SGD and RMSprop.</summary>
    public double Momentum;
    /// <summary>L2 weight decay (decoupled for AdamW); null: the optimizer's default (0, and 0.01 for AdamW).</summary>
    public double? WeightDecay;
    /// <summary>The learning-rate schedule, stepped once per batch.</summary>
    public BackpropLearningRateSchedule LearningRateSchedule = BackpropLearningRateSchedule.Cosine;
    /// <summary>Passes over the training data.</summary>
    public int NumberOfEpochs = 15;
    /// <summary>Samples per optimizer step.</summary>
    public int BatchSize = 128;
    /// <summary>Seed of initialization, dropout and shuffling; null: drawn from the <c>MLContext</c>'s seed, so a seeded context fits the same model twice.</summary>
    public int? Seed;
    /// <summary>Threads of the engine's kernels; null: one per processor. The model does not depend on it, bit for bit.</summary>
    public int? NumberOfThreads;
    /// <summary>Stop after this many epochs without a lower validation loss and keep the best epoch's weights (0: never). Needs a validation set or <see cref="ValidationFraction"/>.</summary>
    public int EarlyStoppingPatience;
    /// <summary>Fraction of the training data held out for validation when <c>Fit</c> is given no validation set (0: none).</summary>
    public double ValidationFraction;
    /// <summary>Cancels the fit at the next batch (it then throws <see cref="OperationCanceledException"/>).</summary>
    public CancellationToken Cancellation;

    private protected BackpropTrainerOptionsBase() { }

    // The engine's hidden stack for these options; throws with the value seen and the range expected.
    internal Activation ParsedActivation()
    {
        try { return Kernels.Activation.Parse(Activation ?? throw new ArgumentNullException(nameof(Activation), "the activation is null; expected a name such as relu.")); }
        catch (ArgumentException e) when (e is not ArgumentNullException)
        {
            throw new ArgumentOutOfRangeException(nameof(Activation), Activation, $"unknown activation '{Activation}'; expected relu, leaky_relu[:slope], elu[:alpha], tanh, sigmoid, gelu, gelu_tanh or silu.");
        }
    }

    // The options a trainer is made with, checked: the trainers' constructors call it before ML.NET's base constructor.
    internal static T Checked<T>(T options) where T : BackpropTrainerOptionsBase
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return options;
    }

    internal virtual void Validate()
    {
        if (string.IsNullOrWhiteSpace(FeatureColumnName)) throw new ArgumentException($"the feature column name is empty ('{FeatureColumnName}'); expected a column such as Features.", nameof(FeatureColumnName));
        if (string.IsNullOrWhiteSpace(LabelColumnName)) throw new ArgumentException($"the label column name is empty ('{LabelColumnName}'); expected a column such as Label.", nameof(LabelColumnName));
        ArgumentNullException.ThrowIfNull(HiddenLayers);
        for (int i = 0; i < HiddenLayers.Length; i++)
            if (HiddenLayers[i] < 1) throw new ArgumentOutOfRangeException(nameof(HiddenLayers), HiddenLayers[i], $"hidden layer {i} has {HiddenLayers[i]} units; expected at least 1.");
        ParsedActivation();
        if (!(Dropout >= 0 && Dropout < 1)) throw new ArgumentOutOfRangeException(nameof(Dropout), Dropout, $"dropout must be in [0, 1); got {Dropout}.");
        if (!Enum.IsDefined(Optimizer)) throw new ArgumentOutOfRangeException(nameof(Optimizer), Optimizer, $"unknown optimizer {(int)Optimizer}; expected one of {string.Join(", ", Enum.GetNames<BackpropOptimizer>())}.");
        if (!Enum.IsDefined(LearningRateSchedule))
            throw new ArgumentOutOfRangeException(nameof(LearningRateSchedule), LearningRateSchedule, $"unknown schedule {(int)LearningRateSchedule}; expected Constant or Cosine.");
        if (NumberOfEpochs < 1) throw new ArgumentOutOfRangeException(nameof(NumberOfEpochs), NumberOfEpochs, $"the number of epochs must be at least 1; got {NumberOfEpochs}.");
        if (BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, $"the batch size must be at least 1; got {BatchSize}.");
        if (NumberOfThreads is < 1 or > 1024) throw new ArgumentOutOfRangeException(nameof(NumberOfThreads), NumberOfThreads, $"the number of threads must be in [1, 1024]; got {NumberOfThreads}.");
        if (EarlyStoppingPatience < 0) throw new ArgumentOutOfRangeException(nameof(EarlyStoppingPatience), EarlyStoppingPatience, $"the early-stopping patience must be >= 0; got {EarlyStoppingPatience}.");
        if (!(ValidationFraction >= 0 && ValidationFraction < 1)) throw new ArgumentOutOfRangeException(nameof(ValidationFraction), ValidationFraction, $"the validation fraction must be in [0, 1); got {ValidationFraction}.");
        Settings().Validate();
    }

    // The optimizer settings these options name (validated by the engine: the learning rate, momentum and decay ranges).
    internal OptimizerSettings Settings() => Optimizer switch
    {
        BackpropOptimizer.Adam => new Adam(LearningRate, weightDecay: WeightDecay ?? 0),
        BackpropOptimizer.AdamW => new AdamW(LearningRate, weightDecay: WeightDecay ?? 0.01),
        BackpropOptimizer.Sgd => new Sgd(LearningRate, Momentum, weightDecay: WeightDecay ?? 0),
        BackpropOptimizer.RmsProp => new RmsProp(LearningRate, momentum: Momentum, weightDecay: WeightDecay ?? 0),
        BackpropOptimizer.Adagrad => new Adagrad(LearningRate, weightDecay: WeightDecay ?? 0),
        _ => throw new ArgumentOutOfRangeException(nameof(Optimizer), Optimizer, $"unknown optimizer {(int)Optimizer}."),
    };

    // The hidden stack and an output layer of `outputs` linear units.
    internal Sequential Network(int inputs, int outputs)
    {
        var act = ParsedActivation();
        var net = new Sequential(inputs);
        foreach (int h in HiddenLayers)
        {
            net.Dense(h, act);
            if (Dropout > 0) net.Dropout(Dropout);
        }
        return net.Dense(outputs);
    }

    // The engine's options for a run of `batchesPerEpoch` steps per epoch.
    internal TrainingOptions Training(LossKind loss, ulong seed, int batchesPerEpoch) => new()
    {
        Loss = loss,
        Optimizer = Settings(),
        Schedule = LearningRateSchedule == BackpropLearningRateSchedule.Cosine
            ? new LrSchedule { Kind = ScheduleKind.Cosine, TMax = (int)Math.Clamp((long)NumberOfEpochs * batchesPerEpoch, 1, int.MaxValue), EtaMin = 0 }
            : new LrSchedule(),
        MaxBatch = BatchSize,
        Seed = seed,
        Threads = NumberOfThreads ?? Environment.ProcessorCount,
    };
}
#pragma warning restore CA1051, CA1819
