using Backprop.Kernels.Threading;
using NUnit.Framework;

namespace Backprop.Tests.Threading;

[TestFixture]
public unsafe class WorkerPoolTests
{
    private struct RecordJob : IParallelJob
    {
        public int* Seen;     // Seen[part] = parts + 1
        public int* ThreadIds;
        public void Execute(int part, int parts)
        {
            Seen[part] = parts + 1;
            ThreadIds[part] = Environment.CurrentManagedThreadId;
        }
    }

    private struct ThrowJob : IParallelJob
    {
        public void Execute(int part, int parts)
        {
            if (part == 1) throw new InvalidOperationException("boom in part 1");
        }
    }

    [Test]
    public void EveryPartRunsOnce_OnDistinctThreads_ManyTimes()
    {
        using var pool = new WorkerPool(3);
        int* seen = stackalloc int[3];
        int* ids = stackalloc int[3];
        for (int round = 0; round < 2000; round++)
        {
            for (int i = 0; i < 3; i++) seen[i] = ids[i] = 0;
            var job = new RecordJob { Seen = seen, ThreadIds = ids };
            int parts = round % 3 + 1;
            pool.Run(ref job, parts);
            for (int i = 0; i < 3; i++) Assert.That(seen[i], Is.EqualTo(i < parts ? parts + 1 : 0), $"round {round} part {i}");
            Assert.That(ids[0], Is.EqualTo(Environment.CurrentManagedThreadId), "part 0 runs on the caller");
            if (parts == 3) Assert.That(new HashSet<int> { ids[0], ids[1], ids[2] }, Has.Count.EqualTo(3));
            if (round == 1000) Thread.Sleep(50); // let the workers fall asleep once; they must wake up again
        }
    }

    [Test]
    public void WorkerException_ReachesTheCaller_AndThePoolStillWorks()
    {
        using var pool = new WorkerPool(2);
        var job = new ThrowJob();
        var e = Assert.Throws<InvalidOperationException>(() => pool.Run(ref job, 2))!;
        Assert.That(e.Message, Is.EqualTo("boom in part 1"));
        int* seen = stackalloc int[2];
        int* ids = stackalloc int[2];
        var ok = new RecordJob { Seen = seen, ThreadIds = ids };
        pool.Run(ref ok, 2);
        Assert.That(seen[1], Is.EqualTo(3));
    }

    [Test]
    public void BadArguments_AndDispose()
    {
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new WorkerPool(0))!.Message, Does.Contain("threads must be at least 1; got 0"));
        var pool = new WorkerPool(2);
        var job = new ThrowJob();
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => pool.Run(ref job, 3))!.Message, Does.Contain("parts must be in [1, 2]; got 3"));
        pool.Dispose();
        Assert.Throws<ObjectDisposedException>(() => pool.Run(ref job, 1));
        pool.Dispose(); // idempotent
    }
}
