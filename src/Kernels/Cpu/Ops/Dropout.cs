// Inverted dropout with a mask that is computed, not stored:
//   keep(e) = Philox(key = seed, counter = (e/4, layer, step)) word e%4 >= round(p · 2^32)
//   Fwd: y = keep ? x / (1 − p) : 0        Bwd: dx = keep ? dy / (1 − p) : 0
// The same (seed, step, layer) regenerates the mask in backward, on any thread split. p = 0 copies.
using System.Numerics;
using Backprop.Kernels.Cpu.Rng;

namespace Backprop.Kernels.Cpu.Ops;

/// <summary>Inverted dropout whose mask is a function of (seed, step, layer, element).</summary>
public static class Dropout
{
    private static uint Threshold(double p) => p >= 1 ? uint.MaxValue : (uint)Math.Round(p * 4294967296.0);

    /// <summary>Applies the mask: y = keep ? x/(1−p) : 0 (forward; backward is the same map on dy).</summary>
    public static void Apply<T>(double p, ulong seed, ulong step, uint layer, ReadOnlySpan<T> x, Span<T> y)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (!(p >= 0 && p < 1)) throw new ArgumentOutOfRangeException(nameof(p), p, $"dropout probability must be in [0, 1); got {p}.");
        if (y.Length < x.Length) throw new ArgumentException($"y has {y.Length} elements; x has {x.Length}.", nameof(y));
        if (p == 0)
        {
            x.CopyTo(y);
            return;
        }
        uint th = Threshold(p);
        T scale = T.CreateTruncating(1.0 / (1.0 - p));
        uint k0 = (uint)seed, k1 = (uint)(seed >> 32), s0 = (uint)step, s1 = (uint)(step >> 32);
        int n = x.Length;
        for (int e0 = 0; e0 < n; e0 += 4)
        {
            var (a, b, c, d) = Philox.Generate((uint)(e0 >> 2), layer, s0, s1, k0, k1);
            int m = Math.Min(4, n - e0);
            if (m > 0) y[e0] = a >= th ? x[e0] * scale : T.Zero;
            if (m > 1) y[e0 + 1] = b >= th ? x[e0 + 1] * scale : T.Zero;
            if (m > 2) y[e0 + 2] = c >= th ? x[e0 + 2] * scale : T.Zero;
            if (m > 3) y[e0 + 3] = d >= th ? x[e0 + 3] * scale : T.Zero;
        }
    }

    /// <summary>Whether element <paramref name="element"/> is kept (for tests and other backends).</summary>
    public static bool Keeps(double p, ulong seed, ulong step, uint layer, long element) =>
        p == 0 || Philox.Word(seed, layer, step, element) >= Threshold(p);
}
