// Learning-rate schedules in closed form, lr(t) for t = number of scheduler steps taken (PyTorch's
// lr_scheduler semantics: lr(0) is the rate of the first optimizer step):
//   Constant:     base
//   Step:         base · γ^⌊t / step_size⌋
//   Exponential:  base · γ^t
//   Cosine:       η_min + (base − η_min)·(1 + cos(π t / T_max))/2
//   Linear:       base · (f0 + (f1 − f0)·min(t, T)/T)                       (LinearLR)
// and a linear warm-up of W steps in front of any of them (SequentialLR([LinearLR(f0, 1, W), S], [W])):
//   t < W: base·(f0 + (1 − f0)·t/W);  t ≥ W: S(t − W).
namespace Backprop.Engine.Training;

/// <summary>The schedule shapes.</summary>
public enum ScheduleKind
{
    /// <summary>lr = base.</summary>
    Constant,
    /// <summary>StepLR(step_size, gamma).</summary>
    Step,
    /// <summary>ExponentialLR(gamma).</summary>
    Exponential,
    /// <summary>CosineAnnealingLR(T_max, eta_min).</summary>
    Cosine,
    /// <summary>LinearLR(start_factor, end_factor, total_iters).</summary>
    Linear,
}

/// <summary>A learning-rate schedule, optionally behind a linear warm-up.</summary>
public sealed record LrSchedule
{
    /// <summary>The main schedule.</summary>
    public ScheduleKind Kind { get; init; } = ScheduleKind.Constant;
    /// <summary>StepLR step size (scheduler steps).</summary>
    public int StepSize { get; init; } = 1;
    /// <summary>StepLR / ExponentialLR decay factor.</summary>
    public double Gamma { get; init; } = 0.1;
    /// <summary>CosineAnnealingLR period.</summary>
    public int TMax { get; init; } = 1;
    /// <summary>CosineAnnealingLR floor.</summary>
    public double EtaMin { get; init; }
    /// <summary>LinearLR start factor.</summary>
    public double StartFactor { get; init; } = 1.0 / 3;
    /// <summary>LinearLR end factor.</summary>
    public double EndFactor { get; init; } = 1.0;
    /// <summary>LinearLR length (scheduler steps).</summary>
    public int TotalIters { get; init; } = 5;
    /// <summary>Warm-up length in scheduler steps (0 = none).</summary>
    public int WarmupSteps { get; init; }
    /// <summary>Warm-up start factor.</summary>
    public double WarmupStartFactor { get; init; } = 0.1;

    /// <summary>Throws with the offending value when a setting is out of range.</summary>
    public void Validate()
    {
        if (!Enum.IsDefined(Kind)) throw new ArgumentOutOfRangeException(nameof(Kind), Kind, $"unknown schedule {(int)Kind}; expected one of {string.Join(", ", Enum.GetNames<ScheduleKind>())}.");
        if (!double.IsFinite(Gamma) || !double.IsFinite(EtaMin) || !double.IsFinite(StartFactor) || !double.IsFinite(EndFactor))
            throw new ArgumentException($"schedule factors must be finite; got gamma {Gamma}, eta_min {EtaMin}, start {StartFactor}, end {EndFactor}.");
        if (StepSize < 1) throw new ArgumentOutOfRangeException(nameof(StepSize), StepSize, $"step size must be at least 1; got {StepSize}.");
        if (!(Gamma > 0)) throw new ArgumentOutOfRangeException(nameof(Gamma), Gamma, $"gamma must be positive; got {Gamma}.");
        if (TMax < 1) throw new ArgumentOutOfRangeException(nameof(TMax), TMax, $"T_max must be at least 1; got {TMax}.");
        if (TotalIters < 1) throw new ArgumentOutOfRangeException(nameof(TotalIters), TotalIters, $"total iters must be at least 1; got {TotalIters}.");
        if (WarmupSteps < 0) throw new ArgumentOutOfRangeException(nameof(WarmupSteps), WarmupSteps, $"warm-up steps must be >= 0; got {WarmupSteps}.");
        if (!(StartFactor > 0 && StartFactor <= 1)) throw new ArgumentOutOfRangeException(nameof(StartFactor), StartFactor, $"start factor must be in (0, 1]; got {StartFactor}.");
        if (!(WarmupStartFactor > 0 && WarmupStartFactor <= 1)) throw new ArgumentOutOfRangeException(nameof(WarmupStartFactor), WarmupStartFactor, $"warm-up start factor must be in (0, 1]; got {WarmupStartFactor}.");
    }

    /// <summary>The learning rate after <paramref name="t"/> scheduler steps.</summary>
    public double At(double baseLr, long t)
    {
        if (t < 0) throw new ArgumentOutOfRangeException(nameof(t), t, $"schedule position must be >= 0; got {t}.");
        if (WarmupSteps > 0)
        {
            if (t < WarmupSteps) return baseLr * (WarmupStartFactor + (1 - WarmupStartFactor) * t / WarmupSteps);
            t -= WarmupSteps;
        }
        return Kind switch
        {
            ScheduleKind.Constant => baseLr,
            ScheduleKind.Step => baseLr * Math.Pow(Gamma, t / StepSize),
            ScheduleKind.Exponential => baseLr * Math.Pow(Gamma, t),
            ScheduleKind.Cosine => EtaMin + (baseLr - EtaMin) * (1 + Math.Cos(Math.PI * t / TMax)) / 2,
            ScheduleKind.Linear => baseLr * (StartFactor + (EndFactor - StartFactor) * Math.Min(TotalIters, t) / TotalIters),
            _ => throw new InvalidOperationException($"Unknown schedule {(int)Kind}; expected one of {string.Join(", ", Enum.GetNames<ScheduleKind>())}."),
        };
    }
}
