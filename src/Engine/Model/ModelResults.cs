// What a step throws when its loss is not finite: the update was not applied.
namespace Backprop.Engine;

/// <summary>
/// A NaN or infinite loss or gradient: training stopped before the update, the parameters and optimizer state are those
/// from before the step.
/// </summary>
public sealed class TrainingDivergedException : Exception
{
    /// <summary>A step whose loss was not finite.</summary>
    public TrainingDivergedException(long step, double loss, double learningRate)
        : base($"Training diverged at step {step}: the loss is {loss}. The parameters from before this step are kept. " +
               $"Try a lower learning rate (it was {learningRate:G3}), gradient clipping (--clip-norm), or normalized inputs.")
    {
        Step = step;
        Loss = loss;
    }

    /// <summary>A step whose gradient of <paramref name="tensor"/> held <paramref name="value"/> at element <paramref name="index"/>.</summary>
    public TrainingDivergedException(long step, double loss, double learningRate, string tensor, long index, double value)
        : base($"Training diverged at step {step}: the gradient of {tensor} is {value} at element {index} (the loss was {loss}). " +
               "The parameters from before this step are kept. Check the inputs for NaN or infinite values; " +
               $"else try a lower learning rate (it was {learningRate:G3}), gradient clipping (--clip-norm), or normalized inputs.")
    {
        Step = step;
        Loss = loss;
        Tensor = tensor;
    }

    /// <summary>The optimizer step (1-based) that was not taken.</summary>
    public long Step { get; }
    /// <summary>The loss seen.</summary>
    public double Loss { get; }
    /// <summary>The parameter (state_dict name) whose gradient was not finite; null when the loss was not.</summary>
    public string? Tensor { get; }
}

/// <summary>Loss, accuracy and confusion matrix of a model on a dataset.</summary>
public sealed record EvaluationResult(double Loss, double Accuracy, long[,]? Confusion, int Samples);

/// <summary>A parameter tensor of a model: its state_dict name, shape ([out, in] for a weight, [out] for a bias and a LayerNorm's weight) and Dense layer (−1: a LayerNorm's).</summary>
public sealed record ParameterInfo(string Name, int[] Shape, int Layer);
