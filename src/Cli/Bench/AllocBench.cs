// `backprop bench alloc`: trains a small model for N steps after a warm-up and reports the bytes the
// managed heap grew by, on the calling thread and on all threads of the process together
// (GC.GetTotalAllocatedBytes(precise: true)). Exit code 1 when either is not zero. It runs in its own
// process so nothing else (a test runner, a UI) allocates alongside it.
using Backprop.Engine;
using Backprop.Kernels;

namespace Backprop.Cli.Bench;

internal static class AllocBench
{
    public static int Run(int steps, int threads, int accumulate, Engine.Training.DistributedOptions? distributed, TextWriter stdout)
    {
        using var m = new Sequential(64).Dense(128, "relu").Dropout(0.1).Dense(64, "gelu").Dense(10)
            .Compile(new TrainingOptions
            {
                MaxBatch = 32, Threads = threads, Seed = 1, Optimizer = new AdamW(lr: 1e-3) { ClipNorm = 1.0 }, Accumulate = accumulate, Distributed = distributed,
            });
        var x = Measure.Random(32 * 64, 1);
        var y = new int[32];
        for (int i = 0; i < 32; i++) y[i] = i % 10;
        var xSmall = x.AsSpan(0, 7 * 64).ToArray();
        var ySmall = y.AsSpan(0, 7).ToArray();
        var output = new float[7 * 10];
        var one = x.AsSpan(0, 64).ToArray();
        var oneOut = new float[10];
        // Warm-up: long enough for tiered compilation to promote the hot methods (its background work
        // allocates on its own), then a pause so nothing from the warm-up is still in flight.
        var warm = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; distributed is null ? i < 300 || warm.ElapsedMilliseconds < 1000 : i < 1500; i++) { m.Step(x, y); m.Step(xSmall, ySmall); m.Predict(xSmall, output); m.Predict(one, oneOut); }
        Thread.Sleep(300);
        long mine = GC.GetAllocatedBytesForCurrentThread();
        long all = GC.GetTotalAllocatedBytes(precise: true);
        for (int i = 0; i < steps; i++)
        {
            m.Step(x, y);
            if (i % 10 == 0) m.Step(xSmall, ySmall);
            if (i % 10 == 5) m.Predict(xSmall, output);
            if (i % 10 == 7) m.Predict(one, oneOut); // a single sample
        }
        long dMine = GC.GetAllocatedBytesForCurrentThread() - mine;
        long dAll = GC.GetTotalAllocatedBytes(precise: true) - all;
        string who = distributed is null ? "" : $"rank {m.Rank} of {m.WorldSize}: ";
        string split = accumulate > 1 ? $", {accumulate} micro-batches each" : "";
        stdout.WriteLine($"{who}{steps} steps on {threads} thread(s){split}: {dMine} bytes allocated on the calling thread, {dAll} on all threads");
        return dMine == 0 && dAll == 0 ? 0 : 1;
    }
}
