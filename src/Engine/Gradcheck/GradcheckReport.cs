// What a gradient check found, per tensor, in the words of torch.autograd.gradcheck:
// pass iff |analytic − numerical| <= atol + rtol·|numerical| for every element (or direction).
namespace Backprop.Engine.Gradcheck;

/// <summary>Full: every element by central differences. Fast: random directions v, comparing the directional difference with ∇L·v.</summary>
public enum GradcheckMode
{
    /// <summary>Every element of every tensor.</summary>
    Full,
    /// <summary>A few random directions per tensor.</summary>
    Fast,
}

/// <summary>Settings; defaults are torch.autograd.gradcheck's.</summary>
public sealed record GradcheckOptions
{
    /// <summary>Finite-difference step.</summary>
    public double Eps { get; init; } = 1e-6;
    /// <summary>Absolute tolerance.</summary>
    public double Atol { get; init; } = 1e-5;
    /// <summary>Relative tolerance.</summary>
    public double Rtol { get; init; } = 1e-3;
    /// <summary>Full or fast.</summary>
    public GradcheckMode Mode { get; init; } = GradcheckMode.Full;
    /// <summary>Directions per tensor in fast mode.</summary>
    public int Directions { get; init; } = 8;
    /// <summary>Seed of the random directions and of the nudges.</summary>
    public ulong Seed { get; init; } = 1;
}

/// <summary>One tensor's result.</summary>
/// <param name="Name">The tensor (e.g. "0.weight", "x").</param>
/// <param name="Shape">Its shape.</param>
/// <param name="Checked">Elements (full) or directions (fast) compared.</param>
/// <param name="MaxAbsError">Largest |analytic − numerical|.</param>
/// <param name="MaxRelError">Largest |analytic − numerical| / max(|numerical|, tiny).</param>
/// <param name="WorstIndex">Element (full) or direction (fast) with the largest excess over the tolerance.</param>
/// <param name="WorstAnalytic">Analytic value there.</param>
/// <param name="WorstNumerical">Numerical value there.</param>
/// <param name="Passed">Whether every comparison was within tolerance.</param>
public sealed record TensorReport(string Name, int[] Shape, int Checked, double MaxAbsError, double MaxRelError,
    int WorstIndex, double WorstAnalytic, double WorstNumerical, bool Passed);

/// <summary>The whole check.</summary>
/// <param name="Tensors">One report per checked tensor.</param>
/// <param name="Options">The settings used.</param>
/// <param name="Nudges">Inputs moved away from a kink (ReLU at 0, |x − t| = 0 for L1, …) before checking, with what was moved.</param>
public sealed record GradcheckReport(IReadOnlyList<TensorReport> Tensors, GradcheckOptions Options, IReadOnlyList<string> Nudges)
{
    /// <summary>True when every tensor passed.</summary>
    public bool Passed => Tensors.All(t => t.Passed);
}
