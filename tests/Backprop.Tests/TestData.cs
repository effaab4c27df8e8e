// Deterministic test inputs: a seeded generator so failures reproduce.
namespace Backprop.Tests;

internal static class TestData
{
    public static float[] Floats(int n, int seed, float lo = -1f, float hi = 1f)
    {
        var r = new Random(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)r.NextDouble();
        return x;
    }

    public static double[] Doubles(int n, int seed, double lo = -1, double hi = 1)
    {
        var r = new Random(seed);
        var x = new double[n];
        for (int i = 0; i < n; i++) x[i] = lo + (hi - lo) * r.NextDouble();
        return x;
    }

    public static double[] ToDouble(float[] x) => Array.ConvertAll(x, v => (double)v);
}
