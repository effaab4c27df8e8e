// Inverted dropout with a mask that is computed, not stored:
//   keep(e) = Philox(key = seed, counter = (e/4, layer, step)) word e%4 >= round(p · 2^32)
//   Fwd: y = keep ? x / (1 − p) : 0        Bwd: dx = keep ? dy / (1 − p) : 0
// The same (seed, step, layer) regenerates the mask in backward, on any thread split. p = 0 copies.
// float on AVX2 runs eight Philox groups per iteration (same words, so the same mask as scalar).
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Backprop.Kernels.Cpu.Rng;

namespace Backprop.Kernels.Cpu.Ops;

/// <summary>Inverted dropout whose mask is a function of (seed, step, layer, element).</summary>
public static class Dropout
{
    /// <summary>The keep threshold for drop probability <paramref name="p"/>: a Philox word at or above it keeps its element (shared with the CUDA kernel).</summary>
    public static uint Threshold(double p) => p >= 1 ? uint.MaxValue : (uint)Math.Round(p * 4294967296.0);

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
        int start = 0;
        if (typeof(T) == typeof(float) && Avx2.IsSupported && CpuIsa.Active >= Isa.Avx2)
            start = ApplyAvx2(th, (float)(1.0 / (1.0 - p)), k0, k1, s0, s1, layer,
                MemoryMarshal.Cast<T, float>(x), MemoryMarshal.Cast<T, float>(y));
        for (int e0 = start; e0 < n; e0 += 4)
        {
            var (a, b, c, d) = Philox.Generate((uint)(e0 >> 2), layer, s0, s1, k0, k1);
            int m = Math.Min(4, n - e0);
            if (m > 0) y[e0] = a >= th ? x[e0] * scale : T.Zero;
            if (m > 1) y[e0 + 1] = b >= th ? x[e0 + 1] * scale : T.Zero;
            if (m > 2) y[e0 + 2] = c >= th ? x[e0 + 2] * scale : T.Zero;
            if (m > 3) y[e0 + 3] = d >= th ? x[e0 + 3] * scale : T.Zero;
        }
    }

    // Eight Philox groups (32 elements) at a time: the same words as the scalar loop, so the same mask.
    // (hi, lo) of the 32x32-bit products: vpmulld gives lo; vpmuludq on the even lanes and on the odd
    // lanes shifted down gives hi. The four output words of eight groups are then transposed so that
    // element 4q + j lines up with word j of group q.
    private static int ApplyAvx2(uint th, float scale, uint k0, uint k1, uint s0, uint s1, uint layer, ReadOnlySpan<float> x, Span<float> y)
    {
        int n = x.Length, e0 = 0;
        var m0 = Vector256.Create(0xD2511F53u);
        var m1 = Vector256.Create(0xCD9E8D57u);
        var lane = Vector256.Create(0u, 1, 2, 3, 4, 5, 6, 7);
        var vth = Vector256.Create(th);
        var vscale = Vector256.Create(scale);
        for (; e0 + 32 <= n; e0 += 32)
        {
            var c0 = Vector256.Create((uint)(e0 >> 2)) + lane;
            var c1 = Vector256.Create(layer);
            var c2 = Vector256.Create(s0);
            var c3 = Vector256.Create(s1);
            uint key0 = k0, key1 = k1;
            for (int r = 0; r < 10; r++)
            {
                var (hi0, lo0) = MulHiLo(m0, c0);
                var (hi1, lo1) = MulHiLo(m1, c2);
                c0 = hi1 ^ c1 ^ Vector256.Create(key0);
                c1 = lo1;
                c2 = hi0 ^ c3 ^ Vector256.Create(key1);
                c3 = lo0;
                key0 += 0x9E3779B9u;
                key1 += 0xBB67AE85u;
            }
            // transpose 4 words x 8 groups into element order
            var t0 = Avx2.UnpackLow(c0, c1);
            var t1 = Avx2.UnpackHigh(c0, c1);
            var t2 = Avx2.UnpackLow(c2, c3);
            var t3 = Avx2.UnpackHigh(c2, c3);
            var u0 = Avx2.UnpackLow(t0.AsUInt64(), t2.AsUInt64()).AsUInt32();
            var u1 = Avx2.UnpackHigh(t0.AsUInt64(), t2.AsUInt64()).AsUInt32();
            var u2 = Avx2.UnpackLow(t1.AsUInt64(), t3.AsUInt64()).AsUInt32();
            var u3 = Avx2.UnpackHigh(t1.AsUInt64(), t3.AsUInt64()).AsUInt32();
            Store(Avx2.Permute2x128(u0, u1, 0x20), x, y, e0, vth, vscale);
            Store(Avx2.Permute2x128(u2, u3, 0x20), x, y, e0 + 8, vth, vscale);
            Store(Avx2.Permute2x128(u0, u1, 0x31), x, y, e0 + 16, vth, vscale);
            Store(Avx2.Permute2x128(u2, u3, 0x31), x, y, e0 + 24, vth, vscale);
        }
        return e0;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<uint> Hi, Vector256<uint> Lo) MulHiLo(Vector256<uint> m, Vector256<uint> c)
    {
        var even = Avx2.Multiply(m, c);                                                    // 64-bit products of lanes 0,2,4,6
        var odd = Avx2.Multiply(Avx2.ShiftRightLogical(m.AsUInt64(), 32).AsUInt32(), Avx2.ShiftRightLogical(c.AsUInt64(), 32).AsUInt32());
        var hi = (Avx2.ShiftRightLogical(even, 32) | (odd & Vector256.Create(0xFFFFFFFF00000000UL))).AsUInt32();
        return (hi, m * c);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(Vector256<uint> words, ReadOnlySpan<float> x, Span<float> y, int e, Vector256<uint> th, Vector256<float> scale)
    {
        var keep = Vector256.GreaterThanOrEqual(words, th).AsSingle();
        (Vector256.Create(x.Slice(e, 8)) * scale & keep).CopyTo(y.Slice(e, 8));
    }

    /// <summary>Whether element <paramref name="element"/> is kept (for tests and other backends).</summary>
    public static bool Keeps(double p, ulong seed, ulong step, uint layer, long element) =>
        p == 0 || Philox.Word(seed, layer, step, element) >= Threshold(p);
}
