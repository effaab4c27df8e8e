// The contract a gradient check needs: tensors whose values it may perturb, a scalar loss, and the
// analytic gradient of that loss with respect to each tensor, all in double precision.
namespace Backprop.Engine.Gradcheck;

/// <summary>A tensor of a function under check: its values (perturbed in place by the checker) and its analytic gradient.</summary>
public sealed class GradTensor(string name, int[] shape, double[] values, bool check = true)
{
    /// <summary>Name in reports.</summary>
    public string Name { get; } = name;
    /// <summary>Shape.</summary>
    public int[] Shape { get; } = shape;
    /// <summary>Values; the checker perturbs and restores them.</summary>
    public double[] Values { get; } = values;
    /// <summary>d(loss)/d(values), written by <see cref="IGradcheckFunction.ComputeGradients"/>.</summary>
    public double[] Gradient { get; } = new double[values.Length];
    /// <summary>Whether the checker compares this tensor (false for e.g. integer-like targets).</summary>
    public bool Check { get; } = check;
}

/// <summary>A scalar function of some tensors with an analytic gradient.</summary>
public interface IGradcheckFunction
{
    /// <summary>The tensors.</summary>
    IReadOnlyList<GradTensor> Tensors { get; }
    /// <summary>The loss at the current values (forward only).</summary>
    double Loss();
    /// <summary>Fills every tensor's Gradient at the current values.</summary>
    void ComputeGradients();
    /// <summary>Moves inputs away from non-differentiable points (kinks) by more than <paramref name="margin"/>; returns what was moved.</summary>
    IReadOnlyList<string> AvoidKinks(double margin, System.Random rng);
}
