// Timing helpers shared by the benchmarks: a measurement is the median seconds per call over at
// least 3 calls and a minimum time; a comparison times two functions back to back in each of
// several rounds (alternating which goes first) and yields one ratio per round.
using System.Diagnostics;

namespace Backprop.Cli.Bench;

internal readonly record struct PairResult(double MedianA, double MedianB, double Ratio, double RatioMin, double RatioMax);

internal static class Measure
{
    /// <summary>Median seconds per call over at least 3 calls and <paramref name="minSeconds"/> in all.</summary>
    public static double Time(Action f, double minSeconds)
    {
        var times = new List<double>(64);
        var total = Stopwatch.StartNew();
        while (times.Count < 3 || (total.Elapsed.TotalSeconds < minSeconds && times.Count < 10_000))
        {
            long t0 = Stopwatch.GetTimestamp();
            f();
            times.Add(Stopwatch.GetElapsedTime(t0).TotalSeconds);
        }
        return Median(times.ToArray());
    }

    public static double Median(double[] x)
    {
        var s = (double[])x.Clone();
        Array.Sort(s);
        return s.Length % 2 == 1 ? s[s.Length / 2] : 0.5 * (s[s.Length / 2 - 1] + s[s.Length / 2]);
    }

    // OpenBLAS's pthreads and libgomp's OpenMP threads (oneDNN) keep spinning for a while after a call
    // (and so, briefly, do ours); a pause between the two measurements of a round lets each side start on idle cores.
    internal const int SettleMs = 120;

    /// <summary>Times a and b in <paramref name="rounds"/> rounds; Ratio = time(b)/time(a) per round (a's speed-up over b), median and spread.</summary>
    public static PairResult Compare(Action a, Action b, int rounds, double minSeconds)
    {
        Time(a, 0.05);
        Time(b, 0.05); // warm-up: JIT, page faults, library threads
        var ta = new double[rounds];
        var tb = new double[rounds];
        var ratio = new double[rounds];
        for (int r = 0; r < rounds; r++)
        {
            Thread.Sleep(SettleMs);
            if (r % 2 == 0) { ta[r] = Time(a, minSeconds); Thread.Sleep(SettleMs); tb[r] = Time(b, minSeconds); }
            else { tb[r] = Time(b, minSeconds); Thread.Sleep(SettleMs); ta[r] = Time(a, minSeconds); }
            ratio[r] = tb[r] / ta[r];
        }
        return new PairResult(Median(ta), Median(tb), Median(ratio), ratio.Min(), ratio.Max());
    }

    public static float[] Random(int n, int seed)
    {
        var r = new System.Random(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(r.NextDouble() * 2 - 1);
        return x;
    }
}
