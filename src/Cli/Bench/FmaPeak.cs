// Measures the FMA peak of this machine in the running process: a loop of independent
// vector FMA chains (enough of them to hide the FMA latency) timed with Stopwatch.
// Used by the benchmarks to report "percent of peak" against what the CPU really reaches now
// (clock boost and other tenants included), not against a datasheet number.
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Threading;

namespace Backprop.Cli.Bench;

/// <summary>Single-precision FMA throughput measured with a register-only loop.</summary>
public static class FmaPeak
{
    /// <summary>GFLOP/s of one thread (2 flops per FMA lane), best of <paramref name="trials"/> runs of about 20 ms.</summary>
    public static double MeasureOneThread(int trials = 5)
    {
        double best = 0;
        for (int t = 0; t < trials; t++)
        {
            const long iters = 2_000_000;
            var sw = Stopwatch.StartNew();
            float sink = Loop(iters);
            sw.Stop();
            GC.KeepAlive(sink);
            double flops = iters * 12.0 * Vector256<float>.Count * 2 * (CpuIsa.Supported == Isa.Avx512 ? 2 : 1);
            best = Math.Max(best, flops / sw.Elapsed.TotalSeconds / 1e9);
        }
        return best;
    }

    /// <summary>
    /// GFLOP/s of <paramref name="threads"/> threads running the loop at once on <paramref name="pool"/>:
    /// each thread times its own loop (so waking the workers is not counted) and the rates add up.
    /// </summary>
    public static unsafe double Measure(WorkerPool pool, int threads, int trials = 5)
    {
        if (threads == 1) return MeasureOneThread(trials);
        double best = 0;
        double* seconds = stackalloc double[threads];
        for (int t = 0; t <= trials; t++) // trial 0 warms the workers up and is not counted
        {
            var job = new PeakJob { Iterations = 2_000_000, Seconds = seconds };
            pool.Run(ref job, threads);
            if (t == 0) continue;
            double flopsPerThread = job.Iterations * 12.0 * Vector256<float>.Count * 2 * (CpuIsa.Supported == Isa.Avx512 ? 2 : 1);
            double rate = 0;
            for (int i = 0; i < threads; i++) rate += flopsPerThread / seconds[i] / 1e9;
            best = Math.Max(best, rate);
        }
        return best;
    }

    private unsafe struct PeakJob : IParallelJob
    {
        public long Iterations;
        public double* Seconds;
        public void Execute(int part, int parts)
        {
            long t0 = Stopwatch.GetTimestamp();
            GC.KeepAlive(Loop(Iterations));
            Seconds[part] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Loop(long iters)
    {
        if (CpuIsa.Supported == Isa.Avx512) return Loop512(iters);
        var m = Vector256.Create(0.999999f);
        var a = Vector256.Create(1e-7f);
        Vector256<float> c0 = Vector256.Create(1f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
        for (long i = 0; i < iters; i++)
        {
            c0 = Vector256.FusedMultiplyAdd(c0, m, a); c1 = Vector256.FusedMultiplyAdd(c1, m, a);
            c2 = Vector256.FusedMultiplyAdd(c2, m, a); c3 = Vector256.FusedMultiplyAdd(c3, m, a);
            c4 = Vector256.FusedMultiplyAdd(c4, m, a); c5 = Vector256.FusedMultiplyAdd(c5, m, a);
            c6 = Vector256.FusedMultiplyAdd(c6, m, a); c7 = Vector256.FusedMultiplyAdd(c7, m, a);
            c8 = Vector256.FusedMultiplyAdd(c8, m, a); c9 = Vector256.FusedMultiplyAdd(c9, m, a);
            c10 = Vector256.FusedMultiplyAdd(c10, m, a); c11 = Vector256.FusedMultiplyAdd(c11, m, a);
        }
        return Vector256.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Loop512(long iters)
    {
        var m = Vector512.Create(0.999999f);
        var a = Vector512.Create(1e-7f);
        Vector512<float> c0 = Vector512.Create(1f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
        for (long i = 0; i < iters; i++)
        {
            c0 = Vector512.FusedMultiplyAdd(c0, m, a); c1 = Vector512.FusedMultiplyAdd(c1, m, a);
            c2 = Vector512.FusedMultiplyAdd(c2, m, a); c3 = Vector512.FusedMultiplyAdd(c3, m, a);
            c4 = Vector512.FusedMultiplyAdd(c4, m, a); c5 = Vector512.FusedMultiplyAdd(c5, m, a);
            c6 = Vector512.FusedMultiplyAdd(c6, m, a); c7 = Vector512.FusedMultiplyAdd(c7, m, a);
            c8 = Vector512.FusedMultiplyAdd(c8, m, a); c9 = Vector512.FusedMultiplyAdd(c9, m, a);
            c10 = Vector512.FusedMultiplyAdd(c10, m, a); c11 = Vector512.FusedMultiplyAdd(c11, m, a);
        }
        return Vector512.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
    }
}

/// <summary>
/// The peak of each thread count of a report (the FMA loop, or another: the bf16 report's VDPBF16PS loop), measured when made and
/// again by <see cref="Remeasure"/> (the gemm, dense-versus-oneDNN and step reports call it after every shape or model, the bf16
/// gemm report at the end; the bf16 step report reads its peaks once),
/// the highest kept: a busy neighbour or a lower clock during one measurement would understate the peak and overstate "% peak"
/// (on a shared Xeon whose one-thread peak read 136 to 219 GFLOP/s within a session, a single reading put oneDNN at 104-106 %).
/// Keyed by the count as text.
/// </summary>
internal sealed class PeakTable
{
    private readonly WorkerPool _pool;
    private readonly Func<WorkerPool, int, double> _measure;

    /// <summary>GFLOP/s by thread count ("1", "2", …), as the reports' JSON holds them.</summary>
    public Dictionary<string, double> ByThreads { get; } = [];

    /// <param name="pool">The workers the loops run on.</param>
    /// <param name="threadCounts">The counts to measure.</param>
    /// <param name="measure">GFLOP/s of a thread count (null: the FMA loop, <see cref="FmaPeak.Measure"/>).</param>
    public PeakTable(WorkerPool pool, IEnumerable<int> threadCounts, Func<WorkerPool, int, double>? measure = null)
    {
        _pool = pool;
        _measure = measure ?? ((p, t) => FmaPeak.Measure(p, t));
        foreach (int t in threadCounts) ByThreads[Key(t)] = _measure(pool, t);
    }

    public double this[int threads] => ByThreads[Key(threads)];

    /// <summary>Measures each count again, keeps the higher figure and rounds it to 0.1 GFLOP/s.</summary>
    public void Remeasure()
    {
        foreach (var key in ByThreads.Keys.ToList())
            ByThreads[key] = Math.Round(Math.Max(ByThreads[key], _measure(_pool, int.Parse(key, System.Globalization.CultureInfo.InvariantCulture))), 1);
    }

    /// <summary><paramref name="gflops"/> as a percent of the peak of <paramref name="threads"/>, to 0.1.</summary>
    public double Percent(double gflops, int threads) => Math.Round(100 * gflops / this[threads], 1);

    private static string Key(int threads) => threads.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
