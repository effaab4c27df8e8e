// Sums the gradient section across the ranks of a data-parallel job (see Distributed.cs for the two modes),
// with buffers allocated once, so a step allocates nothing:
//   deterministic: after round k every rank's section [N chunks of S/N] goes through an all-to-all; rank r
//                  folds chunk r of ranks 0, 1, …, N − 1 onto its running chunk (round 0 starts from rank 0's
//                  chunk itself, as a lone process starts from its first micro-batch's gradients); after the
//                  last round an all-gather of the folded chunks writes the sum into every rank's section.
//   fast:          one in-place all-reduce of the locally accumulated section.
// The step's scalars (loss sum, whether every gradient was finite, whether any rank asks to stop) are
// gathered as doubles and combined in rank order, so every rank sees the same numbers and takes the same
// decisions (diverged, stop), and no rank waits in a collective the others skip.
using System.Diagnostics;
using System.Runtime.InteropServices;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cpu.Ops;

namespace Backprop.Engine.Training;

internal sealed unsafe class GradientReducer : IDisposable
{
    private readonly ICollectives _c;
    private readonly Isa _isa;
    private readonly long _section, _chunk;
    private float* _recv, _acc;
    private double* _send, _gathered;
    private bool _foldFinite = true;

    /// <remarks><paramref name="hostExchange"/> false: a device backend exchanges the gradients itself; only the scalars go through here.</remarks>
    public GradientReducer(DistributedOptions options, long section, Isa isa, bool hostExchange = true)
    {
        _c = options.Collectives;
        Mode = options.Mode;
        _isa = isa;
        _section = section;
        int n = _c.Size;
        if (section % n != 0) throw new ArgumentException($"the gradient section of {section} elements does not split into {n} equal chunks.", nameof(section));
        _chunk = section / n;
        if (Mode == ReductionMode.Deterministic && hostExchange)
        {
            _recv = (float*)NativeMemory.AlignedAlloc((nuint)(Math.Max(1, section) * sizeof(float)), 64);
            _acc = (float*)NativeMemory.AlignedAlloc((nuint)(Math.Max(1, _chunk) * sizeof(float)), 64);
        }
        _send = (double*)NativeMemory.AlignedAlloc(4 * sizeof(double), 64);
        _gathered = (double*)NativeMemory.AlignedAlloc((nuint)(4 * n * sizeof(double)), 64);
    }

    public ReductionMode Mode { get; }
    /// <summary>Stopwatch ticks spent in the step's collectives and folds (waiting for the slowest rank included).</summary>
    public long Ticks { get; private set; }

    /// <summary>Whether each layer's sum starts during the backward pass (fast mode, DistributedOptions.Overlap).</summary>
    public bool Overlaps { get; init; }

    /// <summary>Overlap: layer gradients [p, p + n) are final; start their sum.</summary>
    public void LayerReady(float* p, long n)
    {
        long t0 = Stopwatch.GetTimestamp();
        _c.StartAllreduceSum(p, n);
        Ticks += Stopwatch.GetTimestamp() - t0;
    }

    /// <summary>Overlap: lets the started sums progress (called between kernels).</summary>
    public void Progress()
    {
        long t0 = Stopwatch.GetTimestamp();
        _c.Progress();
        Ticks += Stopwatch.GetTimestamp() - t0;
    }

    /// <summary>Counts time spent in an exchange run elsewhere (a device backend's).</summary>
    public void AddTicks(long ticks) => Ticks += ticks;
    public int Rank => _c.Rank;
    public int Size => _c.Size;

    /// <summary>Deterministic mode, after round <paramref name="round"/>: this round's gradients of every rank folded into this rank's chunk.</summary>
    public void Fold(float* grads, int round)
    {
        _c.Alltoall(grads, _recv, _chunk);
        int first = 0;
        if (round == 0)
        {
            // The fold starts from rank 0's chunk: acc = r0 + r1 in one pass (the same sums as a copy and an add).
            _foldFinite = true;
            if (_c.Size > 1) _foldFinite = Accumulate.Sum(_isa, _acc, _recv, _recv + _chunk, _chunk);
            else new ReadOnlySpan<float>(_recv, checked((int)_chunk)).CopyTo(new Span<float>(_acc, checked((int)_chunk)));
            first = Math.Min(2, _c.Size);
        }
        for (int r = first; r < _c.Size; r++)
            if (!Accumulate.AddInto(_isa, _acc, _recv + r * _chunk, _chunk)) _foldFinite = false;
    }

    /// <summary>The summed gradients into <paramref name="grads"/>; false when a sum is not finite. <paramref name="overlapped"/>: the layers' sums were started during the backward pass.</summary>
    public bool Finish(float* grads, bool overlapped)
    {
        bool finite;
        if (Mode == ReductionMode.Deterministic)
        {
            _c.Allgather(_acc, grads, _chunk);
            finite = _foldFinite;
        }
        else
        {
            if (overlapped) _c.WaitAll(); // the layers' sums started during the backward pass
            else _c.AllreduceSum(grads, _section);
            finite = Accumulate.AllFinite(_isa, grads, _section);
        }
        return finite;
    }

    /// <summary>Every rank's (loss sum, finite, stop) combined in rank order: the sum of the loss sums, all finite, any stop.</summary>
    public (double LossSum, bool Finite, bool Stop) Combine(double lossSum, bool finite, bool stop)
    {
        long t0 = Stopwatch.GetTimestamp();
        _send[0] = lossSum;
        _send[1] = finite ? 0 : 1;
        _send[2] = stop ? 1 : 0;
        _send[3] = 0;
        _c.Allgather(_send, _gathered, 4);
        double sum = 0;
        bool allFinite = true, anyStop = false;
        for (int r = 0; r < _c.Size; r++)
        {
            sum += _gathered[4 * r];
            allFinite &= _gathered[4 * r + 1] == 0;
            anyStop |= _gathered[4 * r + 2] != 0;
        }
        Ticks += Stopwatch.GetTimestamp() - t0;
        return (sum, allFinite, anyStop);
    }

    /// <summary>Every rank's <paramref name="values"/> summed elementwise in rank order into <paramref name="values"/> (small vectors: evaluation's sums and counts).</summary>
    public void SumInRankOrder(double[] values)
    {
        int n = values.Length, size = _c.Size;
        var all = new double[(long)n * size];
        fixed (double* v = values) fixed (double* a = all) _c.Allgather(v, a, n);
        for (int i = 0; i < n; i++)
        {
            double s = 0;
            for (int r = 0; r < size; r++) s += all[(long)r * n + i];
            values[i] = s;
        }
    }

    /// <summary>Rank 0's <paramref name="bytes"/> at <paramref name="p"/> into every rank's.</summary>
    public void Broadcast(void* p, long bytes) => _c.Broadcast(p, bytes, 0);

    public void Dispose()
    {
        NativeMemory.AlignedFree(_recv);
        NativeMemory.AlignedFree(_acc);
        NativeMemory.AlignedFree(_send);
        NativeMemory.AlignedFree(_gathered);
        _recv = _acc = null;
        _send = _gathered = null;
    }
}
