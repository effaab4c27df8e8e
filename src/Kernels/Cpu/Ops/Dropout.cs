// Inverted dropout with a mask that is computed, not stored:
//   keep(e) = Philox(key = seed, counter = (e/4, layer, step)) word e%4 >= round(p · 2^32)
//   Fwd: y = keep ? x / (1 − p) : 0        Bwd: dx = keep ? dy / (1 − p) : 0
// The same (seed, step, layer) regenerates the mask in backward, on any thread split. p = 0 copies.
// e is the element's index in the whole batch: a micro-batch that starts at element offset o (its first
// row times the width) applies the mask of elements o, o + 1, …, so a sample gets the same mask however
// a batch is split into micro-batches or across processes.
// float on AVX2 runs eight Philox groups per iteration (same words, so the same mask as scalar).
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Backprop.Kernels.Cpu.Ops;

/// <summary>Inverted dropout whose mask is a function of (seed, step, layer, element).</summary>
public static class Dropout
{
    /// <summary>The keep threshold for drop probability <paramref name="p"/>: a Philox word at or above it keeps its element (shared with the CUDA kernel).</summary>
    public static uint Threshold(double p) => p >= 1 ? uint.MaxValue : (uint)Math.Round(p * 4294967296.0);

    /// <summary>Applies the mask: y = keep ? x/(1−p) : 0 (forward; backward is the same map on dy), on the vector path up to <paramref name="isa"/>.</summary>
    /// <remarks><paramref name="elementOffset"/> is the batch index of x[0] (a micro-batch's first row times the width): x[i] gets element offset + i's mask.</remarks>
    public static unsafe void Apply<T>(double p, ulong seed, ulong step, uint layer, ReadOnlySpan<T> x, Span<T> y, Isa isa = Isa.Avx512, long elementOffset = 0)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (!(p >= 0 && p < 1)) throw new ArgumentOutOfRangeException(nameof(p), p, $"dropout probability must be in [0, 1); got {p}.");
        if (y.Length < x.Length) throw new ArgumentException($"y has {y.Length} elements; x has {x.Length}.", nameof(y));
        if (elementOffset < 0 || elementOffset + x.Length > 4L * uint.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(elementOffset), elementOffset, $"the element offset must be in [0, {4L * uint.MaxValue - x.Length}] for {x.Length} elements; got {elementOffset}.");
        if (p == 0)
        {
            x.CopyTo(y);
            return;
        }
        if (elementOffset % 4 != 0)
        {
            // Philox groups do not line up with x: one word per element (rare: a micro-batch of odd rows of an odd width).
            uint th = Threshold(p);
            T scale = T.CreateTruncating(1.0 / (1.0 - p));
            for (int i = 0; i < x.Length; i++) y[i] = Philox.Word(seed, layer, step, elementOffset + i) >= th ? x[i] * scale : T.Zero;
            return;
        }
        fixed (T* px = x) fixed (T* py = y)
        {
            var k = new MaskKernel<T>
            {
                Threshold = Threshold(p), Scale = T.CreateTruncating(1.0 / (1.0 - p)), ScaleF = (float)(1.0 / (1.0 - p)),
                K0 = (uint)seed, K1 = (uint)(seed >> 32), S0 = (uint)step, S1 = (uint)(step >> 32), Layer = layer, X = px, Y = py,
                GroupBase = (uint)(elementOffset >> 2),
            };
            VectorLadder.Run<T, MaskKernel<T>>(isa, ref k, x.Length);
        }
    }

    // Element e is kept when word e % 4 of Philox group e / 4 is at or above the threshold. Float on AVX2 takes eight
    // groups (32 elements) per step; then one group (4 elements, scalar code) per step; the last 3 or fewer elements one
    // at a time, from the same words.
    private unsafe struct MaskKernel<T> : IVectorKernel<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public uint Threshold, K0, K1, S0, S1, Layer, GroupBase;
        public T Scale;
        public float ScaleF;
        public T* X, Y;

        static int IVectorKernel<T>.Width512 => 0;
        static int IVectorKernel<T>.Width256 => typeof(T) == typeof(float) && Avx2.IsSupported ? 32 : 0;
        static int IVectorKernel<T>.Width128 => 4;

        public readonly void Step512(nint i) => throw new InvalidOperationException("dropout has no 512-bit step.");

        // One Philox group: the four words of group i / 4 for elements i .. i + 3 (i is a multiple of 4 here).
        public readonly void Step128(nint i)
        {
            var (a, b, c, d) = Philox.Generate((uint)(i >> 2) + GroupBase, Layer, S0, S1, K0, K1);
            Y[i] = a >= Threshold ? X[i] * Scale : T.Zero;
            Y[i + 1] = b >= Threshold ? X[i + 1] * Scale : T.Zero;
            Y[i + 2] = c >= Threshold ? X[i + 2] * Scale : T.Zero;
            Y[i + 3] = d >= Threshold ? X[i + 3] * Scale : T.Zero;
        }
        public readonly void Step256(nint i) => Groups8((int)i, GroupBase, Threshold, ScaleF, K0, K1, S0, S1, Layer, (float*)X, (float*)Y);

        public readonly void Step1(nint i)
        {
            var (a, b, c, d) = Philox.Generate((uint)(i >> 2) + GroupBase, Layer, S0, S1, K0, K1);
            uint w = (i & 3) switch { 0 => a, 1 => b, 2 => c, _ => d };
            Y[i] = w >= Threshold ? X[i] * Scale : T.Zero;
        }
    }

    // Eight Philox groups (32 elements from e0) at once: the same words as the scalar path, so the same mask.
    // (hi, lo) of the 32x32-bit products: vpmulld gives lo; vpmuludq on the even lanes and on the odd
    // lanes shifted down gives hi. The four output words of eight groups are then transposed so that
    // element 4q + j lines up with word j of group q.
    private static unsafe void Groups8(int e0, uint groupBase, uint th, float scale, uint k0, uint k1, uint s0, uint s1, uint layer, float* x, float* y)
    {
        var m0 = Vector256.Create(0xD2511F53u);
        var m1 = Vector256.Create(0xCD9E8D57u);
        var lane = Vector256.Create(0u, 1, 2, 3, 4, 5, 6, 7);
        var vth = Vector256.Create(th);
        var vscale = Vector256.Create(scale);
        var c0 = Vector256.Create((uint)(e0 >> 2) + groupBase) + lane;
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

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<uint> Hi, Vector256<uint> Lo) MulHiLo(Vector256<uint> m, Vector256<uint> c)
    {
        var even = Avx2.Multiply(m, c);                                                    // 64-bit products of lanes 0,2,4,6
        var odd = Avx2.Multiply(Avx2.ShiftRightLogical(m.AsUInt64(), 32).AsUInt32(), Avx2.ShiftRightLogical(c.AsUInt64(), 32).AsUInt32());
        var hi = (Avx2.ShiftRightLogical(even, 32) | (odd & Vector256.Create(0xFFFFFFFF00000000UL))).AsUInt32();
        return (hi, m * c);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Store(Vector256<uint> words, float* x, float* y, int e, Vector256<uint> th, Vector256<float> scale)
    {
        var keep = Vector256.GreaterThanOrEqual(words, th).AsSingle();
        Vector256.Store(Vector256.Load(x + e) * scale & keep, y + e);
    }

    /// <summary>Whether element <paramref name="element"/> is kept (for tests and other backends).</summary>
    public static bool Keeps(double p, ulong seed, ulong step, uint layer, long element) =>
        p == 0 || Philox.Word(seed, layer, step, element) >= Threshold(p);
}
