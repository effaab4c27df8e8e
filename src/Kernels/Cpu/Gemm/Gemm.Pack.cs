// Packing of GEMM operands into k-major micro-panels:
//   panel p of width W holds, for k = 0..kc-1, the W values dst[p*W*kc + k*W + r] (r = 0..W-1),
//   rows r >= w (past the matrix edge) are zero so the micro-kernel never branches on edges.
// Two source shapes occur:
//   Copy:      the W values of one k are contiguous in the source (op(A)=T for A, op(B)=N for B):
//              src[k*ld + r]  -> vector copies.
//   Transpose: the k values of one row r are contiguous (op(A)=N for A, op(B)=T for B):
//              src[r*ld + k]  -> 8x8 (float) / 4x4 (double) in-register transposes.
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Backprop.Kernels.Cpu;

internal static unsafe class GemmPack
{
    /// <summary>Packs a block of <paramref name="rows"/> x kc into panels of width W (see file header).</summary>
    public static void Block<T>(bool transpose, T* src, int ld, int rows, int kc, int W, T* dst, bool simd)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (!transpose)
        {
            BlockCopy(src, ld, rows, kc, W, dst, simd);
            return;
        }
        for (int r0 = 0; r0 < rows; r0 += W)
            PanelTranspose(src + (nint)r0 * ld, ld, Math.Min(W, rows - r0), W, kc, dst + (nint)r0 * kc, simd);
    }

    // The source is read in chunks of KChunk rows: within a chunk, each panel receives KChunk
    // consecutive k (contiguous writes), and the chunk's source rows stay in L1 while every panel
    // takes its part. Walking a whole panel down k at a time would stride the source by ld (a large
    // power-of-two ld maps every access to one L1 set); walking whole rows would scatter the writes
    // W*kc apart, which conflicts the same way. Wide blocks (whose chunk would not fit in L1) fall
    // back to one row per chunk.
    private const int ChunkBytes = 16 * 1024;

    private static void BlockCopy<T>(T* src, int ld, int rows, int kc, int W, T* dst, bool simd)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int vc = Vector256<T>.Count;
        bool vec = simd && W % vc == 0;
        bool six = simd && typeof(T) == typeof(float) && W == 6;
        int chunk = Math.Clamp(ChunkBytes / (rows * sizeof(T)), 1, 16);
        for (int k0 = 0; k0 < kc; k0 += chunk)
        {
            int k1 = Math.Min(kc, k0 + chunk);
            for (int r0 = 0; r0 < rows; r0 += W)
            {
                int w = Math.Min(W, rows - r0);
                T* panel = dst + (nint)r0 * kc;
                for (int k = k0; k < k1; k++)
                {
                    T* s = src + (nint)k * ld + r0;
                    T* d = panel + (nint)k * W;
                    if (w == W)
                    {
                        if (six)
                        {
                            // The AVX2 kernel's 6-row A panels: 4 + 2 floats per k, not 6 scalar moves.
                            Sse.Store((float*)d, Sse.LoadVector128((float*)s));
                            *(long*)(d + 4) = *(long*)(s + 4);
                        }
                        else if (vec)
                            for (int r = 0; r < W; r += vc) Vector256.Store(Vector256.Load(s + r), d + r);
                        else
                            for (int r = 0; r < W; r++) d[r] = s[r];
                    }
                    else
                    {
                        for (int r = 0; r < w; r++) d[r] = s[r];
                        for (int r = w; r < W; r++) d[r] = T.Zero;
                    }
                }
            }
        }
    }

    /// <summary>
    /// sum[r] (=, or += when accumulate) of the packed rows r = 0..rows-1 over k = 0..kc-1, in k order
    /// (so the result does not depend on how the rows were split between threads).
    /// </summary>
    public static void RowSums<T>(T* packed, int rows, int kc, int W, T* sum, bool accumulate)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        T* acc = stackalloc T[W];
        for (int r0 = 0; r0 < rows; r0 += W)
        {
            int w = Math.Min(W, rows - r0);
            T* p = packed + (nint)r0 * kc;
            for (int r = 0; r < W; r++) acc[r] = accumulate && r < w ? sum[r0 + r] : T.Zero;
            int vc = Vector256<T>.Count;
            if (W % vc == 0)
            {
                for (int r = 0; r < W; r += vc)
                {
                    var v = Vector256.Load(acc + r);
                    for (int k = 0; k < kc; k++) v += Vector256.Load(p + (nint)k * W + r);
                    Vector256.Store(v, acc + r);
                }
            }
            else
            {
                for (int k = 0; k < kc; k++)
                    for (int r = 0; r < W; r++) acc[r] += p[(nint)k * W + r];
            }
            for (int r = 0; r < w; r++) sum[r0 + r] = acc[r];
        }
    }

    private static void PanelTranspose<T>(T* src, int ld, int w, int W, int kc, T* dst, bool simd)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int r = 0;
        if (simd && Avx.IsSupported)
        {
            if (typeof(T) == typeof(float) && W == 6 && w == 6)
            {
                // The AVX2 kernel's 6-row A panels (op(A) = N: the forward's X, the backward's dY): 6 rows x 8 k at a time.
                int k = 0;
                for (; k + 8 <= kc; k += 8)
                    Transpose6x8((float*)src + k, ld, (float*)dst + (nint)k * 6);
                for (; k < kc; k++)
                    for (int i = 0; i < 6; i++) dst[(nint)k * 6 + i] = src[(nint)i * ld + k];
                return;
            }
            if (typeof(T) == typeof(float))
            {
                // Every 8-row block of one k chunk in turn, so that a full panel's k values (the forward's W: 16 or 32) are
                // written whole, one line after the other, rather than in 8-float parts a pass over kc apart.
                int w8 = w / 8 * 8, k = 0;
                for (; k + 8 <= kc; k += 8)
                    for (int r8 = 0; r8 < w8; r8 += 8)
                        Transpose8x8((float*)src + (nint)r8 * ld + k, ld, (float*)dst + (nint)k * W + r8, W);
                for (; k < kc; k++)
                    for (int i = 0; i < w8; i++) dst[(nint)k * W + i] = src[(nint)i * ld + k];
                r = w8;
            }
            else if (typeof(T) == typeof(double))
            {
                for (; r + 4 <= w; r += 4)
                {
                    int k = 0;
                    for (; k + 4 <= kc; k += 4)
                        Transpose4x4((double*)src + (nint)r * ld + k, ld, (double*)dst + (nint)k * W + r, W);
                    for (; k < kc; k++)
                        for (int i = 0; i < 4; i++) dst[(nint)k * W + r + i] = src[(nint)(r + i) * ld + k];
                }
            }
        }
        for (int k = 0; k < kc; k++)
        {
            T* d = dst + (nint)k * W;
            for (int i = r; i < w; i++) d[i] = src[(nint)i * ld + k];
            for (int i = w; i < W; i++) d[i] = T.Zero;
        }
    }

    // Four rows of 8 floats transposed within 128-bit lanes: the low lane of u_j holds column j of the four rows, the high
    // lane column j + 4 (the first two stages of the 8x8 transpose).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float>, Vector256<float>, Vector256<float>, Vector256<float>) FourRows(
        Vector256<float> r0, Vector256<float> r1, Vector256<float> r2, Vector256<float> r3)
    {
        var t0 = Avx.UnpackLow(r0, r1);
        var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3);
        var t3 = Avx.UnpackHigh(r2, r3);
        return (Avx.Shuffle(t0, t2, 0x44), Avx.Shuffle(t0, t2, 0xEE), Avx.Shuffle(t1, t3, 0x44), Avx.Shuffle(t1, t3, 0xEE));
    }

    // out[k*ldd + i] = in[i*lds + k] for an 8x8 block of floats.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(float* s, int lds, float* d, int ldd)
    {
        var r0 = Avx.LoadVector256(s);
        var r1 = Avx.LoadVector256(s + lds);
        var r2 = Avx.LoadVector256(s + 2 * (nint)lds);
        var r3 = Avx.LoadVector256(s + 3 * (nint)lds);
        var r4 = Avx.LoadVector256(s + 4 * (nint)lds);
        var r5 = Avx.LoadVector256(s + 5 * (nint)lds);
        var r6 = Avx.LoadVector256(s + 6 * (nint)lds);
        var r7 = Avx.LoadVector256(s + 7 * (nint)lds);
        var (u0, u1, u2, u3) = FourRows(r0, r1, r2, r3);
        var (u4, u5, u6, u7) = FourRows(r4, r5, r6, r7);
        Avx.Store(d, Avx.Permute2x128(u0, u4, 0x20));
        Avx.Store(d + ldd, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(d + 2 * (nint)ldd, Avx.Permute2x128(u2, u6, 0x20));
        Avx.Store(d + 3 * (nint)ldd, Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(d + 4 * (nint)ldd, Avx.Permute2x128(u0, u4, 0x31));
        Avx.Store(d + 5 * (nint)ldd, Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(d + 6 * (nint)ldd, Avx.Permute2x128(u2, u6, 0x31));
        Avx.Store(d + 7 * (nint)ldd, Avx.Permute2x128(u3, u7, 0x31));
    }

    // out[k*6 + i] = in[i*lds + k] for 6 rows x 8 k of floats: the 8x8 transpose's unpacks and shuffles for rows 0-3,
    // and for rows 4-5 the 64-bit halves of their unpacks; each output row stored as 4 + 2 floats so nothing past the 6
    // is written.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose6x8(float* s, int lds, float* d)
    {
        var r0 = Avx.LoadVector256(s);
        var r1 = Avx.LoadVector256(s + lds);
        var r2 = Avx.LoadVector256(s + 2 * (nint)lds);
        var r3 = Avx.LoadVector256(s + 3 * (nint)lds);
        var r4 = Avx.LoadVector256(s + 4 * (nint)lds);
        var r5 = Avx.LoadVector256(s + 5 * (nint)lds);
        // Rows 0-3 of output k as in the 8x8 transpose; rows 4-5: the 64-bit halves of the unpacks of rows 4 and 5.
        var (u0, u1, u2, u3) = FourRows(r0, r1, r2, r3);
        var t4d = Avx.UnpackLow(r4, r5).AsInt64();
        var t5d = Avx.UnpackHigh(r4, r5).AsInt64();
        StoreSix(d + 0 * 6, u0.GetLower(), t4d.GetLower(), 0);
        StoreSix(d + 1 * 6, u1.GetLower(), t4d.GetLower(), 1);
        StoreSix(d + 2 * 6, u2.GetLower(), t5d.GetLower(), 0);
        StoreSix(d + 3 * 6, u3.GetLower(), t5d.GetLower(), 1);
        StoreSix(d + 4 * 6, u0.GetUpper(), t4d.GetUpper(), 0);
        StoreSix(d + 5 * 6, u1.GetUpper(), t4d.GetUpper(), 1);
        StoreSix(d + 6 * 6, u2.GetUpper(), t5d.GetUpper(), 0);
        StoreSix(d + 7 * 6, u3.GetUpper(), t5d.GetUpper(), 1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreSix(float* d, Vector128<float> first4, Vector128<long> last2, int half)
    {
        Sse.Store(d, first4);
        *(long*)(d + 4) = last2.GetElement(half);
    }

    // out[k*ldd + i] = in[i*lds + k] for a 4x4 block of doubles.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose4x4(double* s, int lds, double* d, int ldd)
    {
        var r0 = Avx.LoadVector256(s);
        var r1 = Avx.LoadVector256(s + lds);
        var r2 = Avx.LoadVector256(s + 2 * (nint)lds);
        var r3 = Avx.LoadVector256(s + 3 * (nint)lds);
        var t0 = Avx.UnpackLow(r0, r1);
        var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3);
        var t3 = Avx.UnpackHigh(r2, r3);
        Avx.Store(d, Avx.Permute2x128(t0, t2, 0x20));
        Avx.Store(d + ldd, Avx.Permute2x128(t1, t3, 0x20));
        Avx.Store(d + 2 * (nint)ldd, Avx.Permute2x128(t0, t2, 0x31));
        Avx.Store(d + 3 * (nint)ldd, Avx.Permute2x128(t1, t3, 0x31));
    }
}
