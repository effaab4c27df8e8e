// The model facade's parameter access: every tensor of the parameter block by state_dict name or by layer
// (parameters, their gradients, the optimizer state for checkpoints), through the executor's explicit
// read and write access, so a Cuda model downloads once after the device ran and uploads only what was
// written. Spans returned are valid until the model's next call.
using System.Numerics;
using Backprop.Engine.Planning;

namespace Backprop.Engine;

public partial class Model<T>
{
    private (Slot Value, Slot Grad) Named(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _byName.TryGetValue(name, out var s) ? s
            : throw new KeyNotFoundException($"this model has no parameter '{name}'; it has {string.Join(", ", _byName.Keys)}.");
    }

    /// <summary>The parameter tensor <paramref name="name"/> (a state_dict name such as "0.weight"), read-only, valid until the next call.</summary>
    public ReadOnlySpan<T> Parameter(string name) => Read(Named(name).Value);
    /// <summary>
    /// d(loss)/d(parameter) as the last Step or Gradients call left it (a step that diverged leaves what it had computed when it
    /// stopped), read-only, valid until the next call.
    /// </summary>
    public ReadOnlySpan<T> Gradient(string name) => Read(Named(name).Grad);

    /// <summary>Overwrites parameter tensor <paramref name="name"/>.</summary>
    public void SetParameter(string name, ReadOnlySpan<T> values)
    {
        var slot = Named(name).Value;
        if (values.Length != slot.Length) throw new ArgumentException($"{name}: got {values.Length} values; its shape needs {slot.Length}.", nameof(values));
        values.CopyTo(Write(slot));
    }

    /// <summary>The buffers (BatchNorm running_mean, running_var, num_batches_tracked) by state_dict name and shape, in block order.</summary>
    public IReadOnlyList<ParameterInfo> Buffers { get; }

    /// <summary>Buffer <paramref name="name"/>'s values (a BatchNorm's running statistics or its count).</summary>
    public ReadOnlySpan<T> Buffer(string name) => Read(_buffers.TryGetValue(name, out var s) ? s
        : throw new KeyNotFoundException($"no buffer '{name}'; the model has {(_buffers.Count == 0 ? "none" : string.Join(", ", _buffers.Keys))}."));

    /// <summary>A copy of layer <paramref name="layer"/>'s weights [units, inputs].</summary>
    public T[] GetWeights(int layer) => Read(Plan.Layers[layer].Weight).ToArray();
    /// <summary>A copy of layer <paramref name="layer"/>'s bias [units].</summary>
    public T[] GetBias(int layer) => Read(Plan.Layers[layer].Bias).ToArray();

    /// <summary>Overwrites layer <paramref name="layer"/>'s weights and bias (shapes must match the plan).</summary>
    public void SetParameters(int layer, ReadOnlySpan<T> weights, ReadOnlySpan<T> bias)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var s = Plan.Layers[layer];
        if (weights.Length != s.Weight.Length) throw new ArgumentException($"layer {layer}: weights has {weights.Length} values; [{s.Weight.Rows}, {s.Weight.Cols}] needs {s.Weight.Length}.", nameof(weights));
        if (bias.Length != s.Bias.Length) throw new ArgumentException($"layer {layer}: bias has {bias.Length} values; [{s.Bias.Cols}] needs {s.Bias.Length}.", nameof(bias));
        weights.CopyTo(Write(s.Weight));
        bias.CopyTo(Write(s.Bias));
    }

    /// <summary>
    /// A tensor of the parameter block, for reading (a Cuda model downloads once after the device ran). It takes the model
    /// like a call does, so a read on one thread cannot race a step on another.
    /// </summary>
    internal ReadOnlySpan<T> Read(Slot slot)
    {
        Enter();
        try { return ReadHeld(slot); }
        finally { Exit(); }
    }

    /// <summary>A tensor of the parameter block, for writing (a Cuda model uploads before its next run); takes the model like a call.</summary>
    internal Span<T> Write(Slot slot)
    {
        Enter();
        try { return View(_exec.WriteParameters(), slot); }
        finally { Exit(); }
    }

    // For a caller that already holds the model.
    private ReadOnlySpan<T> ReadHeld(Slot slot) => _exec.ReadParameters().Slice(checked((int)slot.Offset), checked((int)slot.Length));

    /// <summary>Optimizer state slot <paramref name="k"/> of the tensor at <paramref name="slot"/>, for reading.</summary>
    internal ReadOnlySpan<T> ReadState(int k, Slot slot) => Read(StateSlot(k, slot));
    /// <summary>Optimizer state slot <paramref name="k"/> of the tensor at <paramref name="slot"/>, for writing.</summary>
    internal Span<T> WriteState(int k, Slot slot) => Write(StateSlot(k, slot));

    private Slot StateSlot(int k, Slot slot) =>
        k >= 0 && k < Plan.StateSlots ? slot with { Offset = (2 + k) * Plan.ParameterSection + slot.Offset }
            : throw new ArgumentOutOfRangeException(nameof(k), k, $"the optimizer has {Plan.StateSlots} state slot(s).");

    /// <summary>Sets the optimizer step count (the schedule position and the dropout stream follow it), for checkpoints.</summary>
    internal void RestoreStepCount(long step)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), step, $"step count must be >= 0; got {step}.");
        _step = step;
    }

    /// <summary>Length of the parameter section (all layers' W and b with alignment gaps) for <see cref="CopyParametersTo"/>.</summary>
    public int ParameterSectionLength => checked((int)Plan.ParameterSection);

    /// <summary>Copies every parameter (the whole parameter section) into <paramref name="destination"/>.</summary>
    public void CopyParametersTo(Span<T> destination) => Read(new Slot(0, Plan.ParameterSection, 1, ParameterSectionLength)).CopyTo(destination);

    /// <summary>Overwrites every parameter from a copy made by <see cref="CopyParametersTo"/>.</summary>
    public void CopyParametersFrom(ReadOnlySpan<T> source)
    {
        if (source.Length != Plan.ParameterSection)
            throw new ArgumentException($"source has {source.Length} values; the parameter section has {Plan.ParameterSection}.", nameof(source));
        source.CopyTo(Write(new Slot(0, Plan.ParameterSection, 1, ParameterSectionLength)));
    }

    /// <summary>Length of the buffer section (BatchNorm running statistics and counts; 0 without BatchNorm) for <see cref="CopyBuffersTo"/>.</summary>
    public int BufferSectionLength => checked((int)Plan.BufferSection);

    private Slot BufferSlot => new(Plan.ParameterBlock - Plan.BufferSection, Plan.BufferSection, 1, BufferSectionLength);

    /// <summary>Copies every buffer (the running statistics and counts) into <paramref name="destination"/>: with <see cref="CopyParametersTo"/>, all a model's state but the optimizer's.</summary>
    public void CopyBuffersTo(Span<T> destination)
    {
        if (Plan.BufferSection > 0) Read(BufferSlot).CopyTo(destination);
    }

    /// <summary>Overwrites every buffer from a copy made by <see cref="CopyBuffersTo"/>.</summary>
    public void CopyBuffersFrom(ReadOnlySpan<T> source)
    {
        if (source.Length != Plan.BufferSection)
            throw new ArgumentException($"source has {source.Length} values; the buffer section has {Plan.BufferSection}.", nameof(source));
        if (Plan.BufferSection > 0) source.CopyTo(Write(BufferSlot));
    }
}
