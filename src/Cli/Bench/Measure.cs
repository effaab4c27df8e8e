// Timing helpers shared by the benchmarks: a measurement is the median seconds per call over at
// least 3 calls and a minimum time; a comparison times two functions in alternating slices in each of
// several rounds and yields one ratio per round.
using System.Diagnostics;

namespace Backprop.Cli.Bench;

internal readonly record struct PairResult(double MedianA, double MedianB, double Ratio, double RatioMin, double RatioMax);

internal static class Measure
{
    /// <summary>Median seconds per call over at least 3 calls and <paramref name="minSeconds"/> in all.</summary>
    public static double Time(Action f, double minSeconds)
    {
        var times = new List<double>(64);
        Calls(f, minSeconds, times, minCalls: 3);
        return Median(times.ToArray());
    }

    public static double Median(double[] x)
    {
        var s = (double[])x.Clone();
        Array.Sort(s);
        return s.Length % 2 == 1 ? s[s.Length / 2] : 0.5 * (s[s.Length / 2 - 1] + s[s.Length / 2]);
    }

    // OpenBLAS's pthreads and libgomp's OpenMP threads (oneDNN) keep spinning for a while after a call (libgomp's for
    // 8-12 ms on an EPYC Zen 3 at its default GOMP_SPINCOUNT, measured with a 2-thread region and the process's CPU time
    // in 5 ms slices after it; ours for microseconds): a pause before each slice lets each side start on idle cores.
    // OpenBLAS's threads spin longer (about 100 ms): after its slices Compare waits settleAfterB (OpenBlasSpin).
    internal const int SettleMs = 40;

    // Slices per round. This machine is shared: a neighbour can slow a core down for a second or more at a time, and
    // one window per side per round let such a spell fall on one side only (ratios of one binary spread 0.4-1.1).
    // Interleaving the two sides slice by slice (a b b a a b b a) puts both under the same spells.
    internal const int Slices = 4;

    /// <summary>
    /// Times a and b in <paramref name="rounds"/> rounds, each of <see cref="Slices"/> alternating slices (a b b a ...) of
    /// <paramref name="minSeconds"/>/<see cref="Slices"/> per side (at least one call); per round, Ratio = median call time of b /
    /// median call time of a (a's speed-up over b), then the median and spread of the rounds' ratios.
    /// </summary>
    /// <remarks>
    /// The pause before a slice that follows one of b is <paramref name="settleAfterB"/> ms (default <see cref="SettleMs"/>):
    /// <see cref="OpenBlasSpin.SettleMs"/> where b calls OpenBLAS, whose threads spin for about 100 ms after a call.
    /// </remarks>
    public static PairResult Compare(Action a, Action b, int rounds, double minSeconds, int settleAfterB = SettleMs)
    {
        Time(a, 0.05);
        Time(b, 0.05); // warm-up: JIT, page faults, library threads
        var ta = new double[rounds];
        var tb = new double[rounds];
        var ratio = new double[rounds];
        var callsA = new List<double>(256);
        var callsB = new List<double>(256);
        for (int r = 0; r < rounds; r++)
        {
            callsA.Clear();
            callsB.Clear();
            for (int s = 0; s < 2 * Slices; s++)
            {
                var (aTurn, pause) = Slice(r, s, settleAfterB);
                Thread.Sleep(pause);
                if (aTurn) Calls(a, minSeconds / Slices, callsA);
                else Calls(b, minSeconds / Slices, callsB);
            }
            ta[r] = Median(callsA.ToArray());
            tb[r] = Median(callsB.ToArray());
            ratio[r] = tb[r] / ta[r];
        }
        return new PairResult(Median(ta), Median(tb), Median(ratio), ratio.Min(), ratio.Max());
    }

    /// <summary>
    /// Slice <paramref name="s"/> of round <paramref name="r"/>: whether it times a (a b b a a b b a, the next round starting
    /// with b) and the pause before it, <paramref name="settleAfterB"/> ms (at least <see cref="SettleMs"/>) where the slice
    /// before it, or the warm-up, timed b.
    /// </summary>
    internal static (bool ATurn, int PauseMs) Slice(int r, int s, int settleAfterB)
    {
        static bool ATurn(int r, int s) => ((s + 1) / 2 + r) % 2 == 0;
        bool lastWasB = s > 0 ? !ATurn(r, s - 1) : r == 0 || !ATurn(r - 1, 2 * Slices - 1);
        return (ATurn(r, s), lastWasB ? Math.Max(SettleMs, settleAfterB) : SettleMs);
    }

    // Calls f for at least minCalls calls and `seconds` (at most 10,000 calls), adding each call's seconds to `into`.
    private static void Calls(Action f, double seconds, List<double> into, int minCalls = 1)
    {
        var total = Stopwatch.StartNew();
        for (int n = 0; n < minCalls || (total.Elapsed.TotalSeconds < seconds && n < 10_000); n++)
        {
            long t0 = Stopwatch.GetTimestamp();
            f();
            into.Add(Stopwatch.GetElapsedTime(t0).TotalSeconds);
        }
    }

    public static float[] Random(int n, int seed)
    {
        var r = new System.Random(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(r.NextDouble() * 2 - 1);
        return x;
    }
}
