// Data-parallel training on the Cuda backend without a GPU or NCCL: N emulated devices on N threads, the host
// job as ThreadCollectives and NCCL as FakeNccl, a double that checks what the communicator asks of it: the
// setup order (rank 0 makes the id; every rank joins with the id rank 0 made, so joining before the broadcast
// fails), that every collective runs on the device's own stream, on device memory, and with the buffer layout
// the exchange needs. Against one emulated device accumulating the same micro-batches: bit for bit.
using Backprop.Engine;
using Backprop.Engine.Training;
using Backprop.Kernels;
using Backprop.Kernels.Cuda;
using Backprop.Tests.Distributed;
using NUnit.Framework;

namespace Backprop.Tests.Cuda;

[TestFixture]
[NonParallelizable]
public class NcclTests
{
    internal sealed unsafe class FakeNccl(FakeNccl.Hub hub, EmulatedGpu gpu) : INccl
    {
        internal sealed class Hub(int size)
        {
            public readonly Barrier Barrier = new(size);
            public readonly ulong[] Send = new ulong[size];
            public readonly Dictionary<int, ulong>[] Sends = new Dictionary<int, ulong>[size];
            public byte[]? Id;
            public int IdsMade, Joined;
            public readonly List<string> Calls = [];
            public int Size => size;
            public void Log(string call) { lock (Calls) Calls.Add(call); }
        }

        private int _rank = -1;
        private List<(bool IsSend, ulong Buffer, long Count, int Peer)>? _group;

        public string Version => "fake NCCL";

        public void GetUniqueId(Span<byte> id)
        {
            Random.Shared.NextBytes(id);
            hub.Id = id.ToArray();
            Interlocked.Increment(ref hub.IdsMade);
        }

        public nint CommInitRank(int size, ReadOnlySpan<byte> id, int rank)
        {
            if (hub.Id is null || !id.SequenceEqual(hub.Id)) throw new InvalidOperationException($"rank {rank} joined with an id rank 0 did not make (the broadcast did not reach it).");
            if (size != hub.Size) throw new InvalidOperationException($"rank {rank} joined a communicator of {size}; the job has {hub.Size}.");
            _rank = rank;
            Interlocked.Increment(ref hub.Joined);
            hub.Barrier.SignalAndWait(); // ncclCommInitRank is collective
            return 0x1000 + rank;
        }

        private void Check(string call, nint comm, nint stream, ulong buffer, long count)
        {
            if (comm != 0x1000 + _rank) throw new InvalidOperationException($"{call} on communicator 0x{comm:x}; rank {_rank}'s is 0x{0x1000 + _rank:x}.");
            if (stream != gpu.Stream) throw new InvalidOperationException($"{call} on stream 0x{stream:x}, not the device's own (0x{gpu.Stream:x}).");
            if (!gpu.IsDeviceMemory(buffer, count * 4)) throw new InvalidOperationException($"{call}: [0x{buffer:x}, +{count * 4}) is not device memory.");
            hub.Log(call);
        }

        public void AllReduceSum(ulong send, ulong recv, long count, nint comm, nint stream)
        {
            Check("ncclAllReduce", comm, stream, send, count);
            hub.Send[_rank] = send;
            hub.Barrier.SignalAndWait();
            var sum = new float[count];
            for (int r = 0; r < hub.Size; r++)
                for (long i = 0; i < count; i++) sum[i] += ((float*)hub.Send[r])[i];
            hub.Barrier.SignalAndWait();
            sum.CopyTo(new Span<float>((void*)recv, (int)count));
            hub.Barrier.SignalAndWait();
        }

        public void AllGather(ulong send, ulong recv, long count, nint comm, nint stream)
        {
            Check("ncclAllGather", comm, stream, send, count);
            if (!gpu.IsDeviceMemory(recv, count * 4 * hub.Size)) throw new InvalidOperationException("ncclAllGather: the receive buffer is not [size, count] of device memory.");
            hub.Send[_rank] = send;
            hub.Barrier.SignalAndWait();
            for (int r = 0; r < hub.Size; r++) Buffer.MemoryCopy((void*)hub.Send[r], (float*)recv + r * count, count * 4, count * 4);
            hub.Barrier.SignalAndWait();
        }

        public void GroupStart() => _group = [];

        public void Send(ulong buffer, long count, int peer, nint comm, nint stream)
        {
            Check("ncclSend", comm, stream, buffer, count);
            (_group ?? throw new InvalidOperationException("ncclSend outside a group would deadlock an all-to-all.")).Add((true, buffer, count, peer));
        }

        public void Recv(ulong buffer, long count, int peer, nint comm, nint stream)
        {
            Check("ncclRecv", comm, stream, buffer, count);
            (_group ?? throw new InvalidOperationException("ncclRecv outside a group would deadlock an all-to-all.")).Add((false, buffer, count, peer));
        }

        public void GroupEnd()
        {
            var group = _group ?? throw new InvalidOperationException("ncclGroupEnd without ncclGroupStart.");
            _group = null;
            hub.Sends[_rank] = group.Where(g => g.IsSend).ToDictionary(g => g.Peer, g => g.Buffer);
            hub.Barrier.SignalAndWait();
            foreach (var (_, buffer, count, peer) in group.Where(g => !g.IsSend))
                Buffer.MemoryCopy((void*)hub.Sends[peer][_rank], (void*)buffer, count * 4, count * 4);
            hub.Barrier.SignalAndWait();
        }

        public void CommDestroy(nint comm) { }
    }

    private static ModelSpec Spec() => new Sequential(12).Dense(16, "relu").Dropout(0.25).Dense(10, "tanh").Dense(4).ToSpec(LossKind.CrossEntropy);

    private static (float[] X, int[] Y) Batch(int n, int seed)
    {
        var x = TestData.Floats(n * 12, seed);
        return (x, Enumerable.Range(0, n).Select(i => (i * 5 + seed) % 4).ToArray());
    }

    private static TrainingOptions Options() => new() { MaxBatch = 24, Threads = 1, Backend = Backend.Cuda, Seed = 5, Optimizer = new Adam(lr: 1e-2) };

    // Trains 6 steps on batches of 24 (the last 13) and returns the parameters.
    private static float[] Train(Model m)
    {
        for (int t = 0; t < 6; t++)
        {
            var (x, y) = Batch(t == 5 ? 13 : 24, 70 + t);
            m.Step(x, y);
        }
        return m.Parameters.SelectMany(p => m.Parameter(p.Name).ToArray()).ToArray();
    }

    private static unsafe (float[][] Weights, FakeNccl.Hub Hub) Ranks(int size, ReductionMode mode, int accumulate = 1, OptimizerSettings? optimizer = null)
    {
        var hub = new FakeNccl.Hub(size);
        var weights = ThreadCollectives.Run(size, (r, c) =>
        {
            using var gpu = new EmulatedGpu();
            var options = Options() with
            {
                Accumulate = accumulate,
                Optimizer = optimizer ?? Options().Optimizer,
                Distributed = new DistributedOptions(c, mode)
                {
                    DeviceCollectives = g => NcclCommunicator.Create(new FakeNccl(hub, (EmulatedGpu)g), g, c.Rank, c.Size, (p, n) => c.Broadcast((void*)p, n, 0)),
                },
            };
            using var m = new Model(Spec(), options, gpu);
            return Train(m);
        });
        return (weights, hub);
    }

    [Test]
    public void TwoRanks_Deterministic_EqualOneDeviceAccumulating2_BitForBit()
    {
        using var gpu = new EmulatedGpu();
        using var single = new Model(Spec(), Options() with { Accumulate = 2 }, gpu);
        var expected = Train(single);
        var (ranks, hub) = Ranks(2, ReductionMode.Deterministic);
        Assert.That(ranks[0], Is.EqualTo(expected).AsCollection, "rank 0");
        Assert.That(ranks[1], Is.EqualTo(expected).AsCollection, "rank 1");
        Assert.That(hub.IdsMade, Is.EqualTo(1), "rank 0 alone makes the id");
        Assert.That(hub.Joined, Is.EqualTo(2));
        lock (hub.Calls)
        {
            Assert.That(hub.Calls.Count(c => c == "ncclAllGather"), Is.EqualTo(2 * 6), "one all-gather per step and rank");
            Assert.That(hub.Calls.Count(c => c == "ncclSend"), Is.EqualTo(2 * 2 * 6), "an all-to-all per step: a send to each rank");
            Assert.That(hub.Calls, Does.Not.Contain("ncclAllReduce"));
        }
    }

    // Three ranks pad the section to a multiple of 48, which must not move the blocks of the clip-norm's sum of squares.
    [Test]
    public void ThreeRanks_WithClipNorm_EqualOneDeviceAccumulating3_BitForBit()
    {
        var sgd = new Sgd(0.05) { ClipNorm = 0.05 };
        using var gpu = new EmulatedGpu();
        using var single = new Model(Spec(), Options() with { Accumulate = 3, Optimizer = sgd }, gpu);
        var expected = Train(single);
        var (ranks, _) = Ranks(3, ReductionMode.Deterministic, optimizer: sgd);
        Assert.That(ranks[2], Is.EqualTo(expected).AsCollection);
    }

    [Test]
    public void TwoRanksAccumulating2_EqualFourMicroBatchesOnOneDevice_BitForBit()
    {
        using var gpu = new EmulatedGpu();
        using var single = new Model(Spec(), Options() with { Accumulate = 4 }, gpu);
        var expected = Train(single);
        var (ranks, _) = Ranks(2, ReductionMode.Deterministic, accumulate: 2);
        Assert.That(ranks[1], Is.EqualTo(expected).AsCollection);
    }

    [Test]
    public void FastMode_AllReducesOnTheDevice_AndTheRanksAgree()
    {
        using var gpu = new EmulatedGpu();
        using var single = new Model(Spec(), Options() with { Accumulate = 2 }, gpu);
        var expected = Train(single);
        var (ranks, hub) = Ranks(2, ReductionMode.Fast);
        Assert.That(ranks[1], Is.EqualTo(ranks[0]).AsCollection);
        for (int i = 0; i < expected.Length; i++) Assert.That(ranks[0][i], Is.EqualTo(expected[i]).Within(1e-5 * (1 + Math.Abs(expected[i]))));
        lock (hub.Calls) Assert.That(hub.Calls.Count(c => c == "ncclAllReduce"), Is.EqualTo(2 * 6));
    }

    [Test]
    public void JoiningWithoutRank0sId_Fails_SoTheIdIsBroadcastFirst()
    {
        var hub = new FakeNccl.Hub(2);
        var errors = ThreadCollectives.Run(2, (r, c) =>
        {
            using var gpu = new EmulatedGpu();
            try
            {
                using var comm = NcclCommunicator.Create(new FakeNccl(hub, gpu), gpu, r, 2, (p, n) => { }); // no broadcast
                return "joined";
            }
            catch (InvalidOperationException e)
            {
                hub.Barrier.RemoveParticipant(); // the other rank must not wait for this one
                return e.Message;
            }
        });
        Assert.That(errors[1], Does.Contain("rank 1 joined with an id rank 0 did not make"));
    }

    [Test]
    public void WithoutNccl_TheBackendSaysWhatToInstall_AndADistributedCudaModelNeedsACommunicator()
    {
        if (NcclLibrary.Default.Library is not null) Assert.Ignore("NCCL is installed here");
        Assert.That(NcclLibrary.Default.Error, Does.Contain("libnccl.so.2").And.Contain("Debian has no package"));
        Assert.That(Assert.Throws<InvalidOperationException>(() => NcclLibrary.Require())!.Message,
            Does.StartWith("the cuda backend sums gradients across processes with NCCL, and none of libnccl.so.2"));
        ThreadCollectives.Run(1, (r, c) =>
        {
            Assert.That(Assert.Throws<ArgumentException>(() => new Model(Spec(), Options() with { Distributed = new DistributedOptions(c) }, new EmulatedGpu()))!.Message,
                Does.Contain("DistributedOptions.DeviceCollectives must make the device's communicator"));
            return 0;
        });
    }
}
