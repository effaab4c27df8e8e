// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): a
// counter-based generator. The output is a pure function of (key, counter), so a random number is
// addressed, not drawn: dropout masks and initial weights depend on (seed, step, layer, element)
// only, never on thread count or scheduling, and CUDA's curand uses the same algorithm.
//   round:  (hi0, lo0) = M0·c0, (hi1, lo1) = M1·c2   (32x32 -> 64-bit products)
//           c = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0);  k += (W0, W1)
using System.Runtime.CompilerServices;

namespace Backprop.Kernels;

/// <summary>Philox4x32-10: four 32-bit random words per (key, counter).</summary>
public static class Philox
{
    private const uint M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85;

    /// <summary>The four output words for counter (c0, c1, c2, c3) and key (k0, k1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (uint, uint, uint, uint) Generate(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1)
    {
        for (int r = 0; r < 10; r++)
        {
            ulong p0 = (ulong)M0 * c0, p1 = (ulong)M1 * c2;
            uint hi0 = (uint)(p0 >> 32), lo0 = (uint)p0, hi1 = (uint)(p1 >> 32), lo1 = (uint)p1;
            c0 = hi1 ^ c1 ^ k0;
            c1 = lo1;
            c2 = hi0 ^ c3 ^ k1;
            c3 = lo0;
            k0 += W0;
            k1 += W1;
        }
        return (c0, c1, c2, c3);
    }

    /// <summary>Word <paramref name="index"/> of the stream (seed, stream, substream): counter (index/4, stream, substream lo, hi).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Word(ulong seed, uint stream, ulong substream, long index)
    {
        var (a, b, c, d) = Generate((uint)(index >> 2), stream, (uint)substream, (uint)(substream >> 32), (uint)seed, (uint)(seed >> 32));
        return (index & 3) switch { 0 => a, 1 => b, 2 => c, _ => d };
    }

    /// <summary>A uniform number in [0, 1) with 24 random bits (exact in float) from a word.</summary>
    public static double Uniform24(uint word) => (word >> 8) * (1.0 / (1 << 24));

    /// <summary>A uniform number in (0, 1] with 53 random bits from two words.</summary>
    public static double Uniform53(uint w0, uint w1) => (((ulong)w0 << 21 ^ w1 >> 11) + 1) * (1.0 / (1UL << 53));
}
