// What a training run was besides its model and options, stored in its checkpoints so that resuming is the
// same run: how long it trains, how it holds out validation data and stops early, how often it saves, and
// where its data came from and how the inputs were scaled (with the statistics, so a resumed or later run
// scales the same way). The data fields are what the command line used; an embedding program may leave
// them empty.
using Backprop.Engine.Data;

namespace Backprop.Engine.Checkpoints;

/// <summary>How the inputs were scaled before training: none, x/255, or (x − mean)/std with the training set's statistics.</summary>
public sealed record Preprocessing(Normalization Kind, float[]? Mean = null, float[]? Std = null)
{
    /// <summary>Throws <see cref="ArgumentException"/> naming what is wrong (unknown kind, statistics missing or of the wrong width, not finite, std not positive).</summary>
    public void Validate(int inputWidth)
    {
        if (!Enum.IsDefined(Kind)) throw new ArgumentException($"normalization must be one of {string.Join(", ", Enum.GetNames<Normalization>())}; got {(int)Kind}.");
        if (Kind != Normalization.Standardize)
        {
            if (Mean is not null || Std is not null) throw new ArgumentException($"normalization {Kind} takes no statistics; got mean and std.");
            return;
        }
        if (Mean is null || Std is null || Mean.Length != inputWidth || Std.Length != inputWidth)
            throw new ArgumentException($"standardization needs {inputWidth} means and {inputWidth} standard deviations; got {Mean?.Length ?? 0} and {Std?.Length ?? 0}.");
        for (int i = 0; i < inputWidth; i++)
            if (!float.IsFinite(Mean[i]) || !(Std[i] > 0) || !float.IsFinite(Std[i]))
                throw new ArgumentException($"standardization statistics of feature {i} are mean {Mean[i]}, std {Std[i]}; expected a finite mean and a finite positive std.");
    }

    /// <summary>Equal kind and statistics.</summary>
    public bool Equals(Preprocessing? other) =>
        other is not null && Kind == other.Kind && (Mean ?? []).AsSpan().SequenceEqual(other.Mean ?? []) && (Std ?? []).AsSpan().SequenceEqual(other.Std ?? []);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Kind, Mean?.Length ?? 0);
}

/// <summary>A training run's settings beyond the model and its options.</summary>
/// <param name="Epochs">Epochs the run trains in all.</param>
/// <param name="ValidationFraction">Fraction of the training set held out for validation.</param>
/// <param name="Patience">Early-stopping patience in epochs (0: none).</param>
/// <param name="CheckpointEvery">Steps between checkpoints (0: none).</param>
/// <param name="Preprocessing">How the inputs were scaled.</param>
/// <param name="Data">The data folder the run read (null: given by the program).</param>
/// <param name="Format">Its format: idx, csv or npy.</param>
/// <param name="LabelColumn">CSV: the label column as given ("" when inferred).</param>
/// <param name="Classes">The number of classes (null: a regression run).</param>
/// <param name="MicroBatches">Micro-batches per step over all processes (accumulate x processes) when the checkpoint was written (null: not recorded).</param>
public sealed record TrainingRun(int Epochs, double ValidationFraction, int Patience, long CheckpointEvery, Preprocessing Preprocessing,
    string? Data = null, string? Format = null, string? LabelColumn = null, int? Classes = null, int? MicroBatches = null)
{
    // A resume with another world size keeps the recorded split (the accumulation it then needs), so it continues bit for bit.
    /// <summary>Throws <see cref="ArgumentException"/> naming the field and the value when a setting is out of range.</summary>
    public void Validate(int inputWidth)
    {
        if (Epochs < 1) throw new ArgumentException($"epochs must be at least 1; got {Epochs}.");
        if (!(ValidationFraction >= 0 && ValidationFraction < 1)) throw new ArgumentException($"validation fraction must be in [0, 1); got {ValidationFraction}.");
        if (Patience < 0) throw new ArgumentException($"patience must be >= 0; got {Patience}.");
        if (CheckpointEvery < 0) throw new ArgumentException($"checkpoint interval must be >= 0; got {CheckpointEvery}.");
        if (Format is not (null or "idx" or "csv" or "npy")) throw new ArgumentException($"data format must be idx, csv or npy; got '{Format}'.");
        if (Classes is < 2) throw new ArgumentException($"classes must be at least 2; got {Classes}.");
        if (MicroBatches is < 1) throw new ArgumentException($"micro-batches per step must be at least 1; got {MicroBatches}.");
        ArgumentNullException.ThrowIfNull(Preprocessing);
        Preprocessing.Validate(inputWidth);
    }
}
