// The seam between the Model facade and a backend. An executor owns the memory a plan runs in (the
// parameter block, the activation block, the staging of a batch) and runs the plan's op lists on it;
// the facade stages a batch, calls Run, and reads or writes parameters through explicit access.
//   CpuExecutor<T, TDense>: the host blocks are the live blocks (float or double; fused or OpenBLAS GEMMs)
//   CudaExecutor:           the device holds the live blocks; the host keeps a mirror, brought up to date on
//                           a read and sent back before the next device run after a write
using System.Numerics;
using Backprop.Engine.Planning;
using Backprop.Engine.Training;

namespace Backprop.Engine.Execution;

/// <summary>What a run of an op list found: the loss (NaN without a Loss op) and whether every gradient it computed was finite.</summary>
internal readonly record struct RunResult(double Loss, bool GradientsFinite);

/// <summary>Runs a plan's op lists on a backend's memory.</summary>
internal interface IExecutor<T> : IDisposable where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>The device the executor runs on, for display (null: this CPU).</summary>
    string? DeviceDescription { get; }

    /// <summary>Where a call stages its inputs [Rows, input width] (host memory; Rows is the plan's micro-batch capacity).</summary>
    Span<T> Input { get; }
    /// <summary>Where a call stages class labels [Rows].</summary>
    Span<int> Labels { get; }
    /// <summary>Where a call stages regression targets [Rows, outputs].</summary>
    Span<T> Targets { get; }
    /// <summary>Host scratch of [Rows, outputs] elements (the gradient a host-side loss writes and nobody reads).</summary>
    Span<T> Scratch { get; }

    /// <summary>
    /// Runs <paramref name="ops"/> (one of the plan's lists) on the first <paramref name="batch"/> staged rows, at optimizer step
    /// <paramref name="step"/> (1-based: the schedule position and the dropout masks). When the list updates the parameters
    /// and the loss or a gradient is not finite, the update does not happen: parameters and optimizer state stay.
    /// A micro-batch of a larger batch passes the batch index of its first row (<paramref name="rowOffset"/>: dropout masks follow
    /// the sample, not its place in the micro-batch) and the batch's size (<paramref name="gradientRows"/>: the loss gradient is a share
    /// of the batch's mean); 0 and 0 for a whole batch.
    /// </summary>
    RunResult Run(IReadOnlyList<PlanOp> ops, int batch, long step, int rowOffset = 0, int gradientRows = 0);

    /// <summary>Zeros the grads section (or, with <paramref name="micro"/>, the micro-batch section): the gradients of an empty micro-batch.</summary>
    void ClearGradients(bool micro);

    /// <summary>Data-parallel training, fast mode with overlap: the reducer to hand each layer's gradients to during the next runs (null: none).</summary>
    GradientReducer? Overlap { set; }

    /// <summary>Data-parallel training, deterministic mode: round <paramref name="round"/>'s gradient section exchanged and folded in micro-batch order (see Distributed.cs).</summary>
    void FoldGradients(GradientReducer reducer, int round);

    /// <summary>Data-parallel training: the summed gradients into every process's gradient section; false when the sum is known not to be finite.</summary>
    bool FinishGradients(GradientReducer reducer, bool overlapped);

    /// <summary>Rows [0, <paramref name="batch"/>) of an activation-block slot after a run, on the host.</summary>
    ReadOnlySpan<T> Activations(Slot slot, int batch);

    /// <summary>The network output [batch, outputs] after an inference run, on the host.</summary>
    ReadOnlySpan<T> Output(int batch);

    /// <summary>The whole parameter block (parameters, gradients, optimizer state) on the host, current, for reading.</summary>
    ReadOnlySpan<T> ReadParameters();

    /// <summary>The whole parameter block on the host, current, for writing: what is written reaches the backend before its next run.</summary>
    Span<T> WriteParameters();

    /// <summary>What running <paramref name="ops"/> at <paramref name="batch"/> does, one kernel call or command per line.</summary>
    IReadOnlyList<string> Listing(IReadOnlyList<PlanOp> ops, int batch);
}
