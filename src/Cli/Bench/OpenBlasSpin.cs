// How long OpenBLAS's pthreads keep spinning after a call, measured once per process. Its idle threads busy-wait
// (sched_yield in a loop) for 2^THREAD_TIMEOUT TSC ticks before they sleep: 2^28 by default, about 100 ms on a
// 2.6 GHz TSC. Measured here: after a 2-thread sgemm the process burned one core for 100-105 ms. A slice of ours
// timed in that window shares the machine with the spinner: on 2 vCPUs the 784-256-10 step at batch 128 on 2
// threads took 1.1 ms right after the Blas step's slice with the 40 ms pause, 0.61-0.66 ms with a longer one
// (and 2.0-3.5 ms with none). The benches that alternate a side of ours with OpenBLAS pause this long after
// OpenBLAS's slices (Measure.Compare's settleAfterB).
using System.Diagnostics;
using Backprop.Kernels.Blas;
using Backprop.Kernels.Cpu;

namespace Backprop.Cli.Bench;

internal static class OpenBlasSpin
{
    private static readonly Lazy<(int Spin, int Settle)> Value = new(Probe);

    /// <summary>Milliseconds the process stayed busy after a 2-thread (or wider) OpenBLAS call; 0 when OpenBLAS is missing or nothing spun.</summary>
    public static int SpinMs => Value.Value.Spin;

    /// <summary>The pause after a slice of OpenBLAS calls: the spin and 20 ms more, and at least <see cref="Measure.SettleMs"/>.</summary>
    public static int SettleMs => Value.Value.Settle;

    // Below this share of one core a 10 ms window counts as idle (the runtime's own threads, the timer).
    private const double IdleCores = 0.25;
    private const int MaxMs = 1000;

    /// <summary>The pause after a slice of OpenBLAS calls on <paramref name="threads"/> threads: one thread leaves nothing spinning.</summary>
    public static int SettleFor(int threads) => threads > 1 ? SettleMs : Measure.SettleMs;

    // Runs 2-thread sgemms, then samples the process's CPU time in 10 ms windows until two windows in a row are idle.
    internal static unsafe (int Spin, int Settle) Probe()
    {
        if (!OpenBlas.IsAvailable) return (0, Measure.SettleMs);
        int saved = OpenBlas.Threads;
        try
        {
            OpenBlas.Threads = Math.Max(2, saved);
            const int n = 256;
            var a = Measure.Random(n * n, 1);
            var c = new float[n * n];
            fixed (float* pa = a) fixed (float* pc = c)
                for (int i = 0; i < 3; i++)
                    OpenBlas.Sgemm(Transpose.N, Transpose.N, n, n, n, 1f, pa, n, pa, n, 0f, pc, n);
            var wall = Stopwatch.StartNew();
            double cpu0 = Environment.CpuUsage.TotalTime.TotalSeconds, t0 = 0, idleSince = -1;
            while (wall.ElapsedMilliseconds < MaxMs)
            {
                Thread.Sleep(10);
                double t1 = wall.Elapsed.TotalSeconds, cpu1 = Environment.CpuUsage.TotalTime.TotalSeconds;
                if ((cpu1 - cpu0) / (t1 - t0) < IdleCores)
                {
                    if (idleSince < 0) idleSince = t0;
                    else
                    {
                        int spin = (int)Math.Round(idleSince * 1000);
                        return (spin, Math.Max(Measure.SettleMs, spin + 20));
                    }
                }
                else idleSince = -1;
                (cpu0, t0) = (cpu1, t1);
            }
            return (MaxMs, MaxMs + 20);
        }
        finally
        {
            OpenBlas.Threads = saved;
        }
    }
}
