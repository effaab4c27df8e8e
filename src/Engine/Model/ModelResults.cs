// What a step throws when its loss is not finite: the update was not applied.
namespace Backprop.Engine;

/// <summary>A NaN or infinite loss: training stopped before the update, the parameters are those from before the step.</summary>
public sealed class TrainingDivergedException(long step, double loss, double learningRate)
    : Exception($"Training diverged at step {step}: the loss is {loss}. The parameters from before this step are kept. " +
                $"Try a lower learning rate (it was {learningRate:G3}), gradient clipping (--clip-norm), or normalized inputs.")
{
    /// <summary>The optimizer step (1-based) whose loss was not finite.</summary>
    public long Step { get; } = step;
    /// <summary>The loss seen.</summary>
    public double Loss { get; } = loss;
}

/// <summary>Loss, accuracy and confusion matrix of a model on a dataset.</summary>
public sealed record EvaluationResult(double Loss, double Accuracy, long[,]? Confusion, int Samples);

/// <summary>A parameter tensor of a model: its state_dict name and shape ([out, in] for a weight, [out] for a bias).</summary>
public sealed record ParameterInfo(string Name, int[] Shape, int Layer);
