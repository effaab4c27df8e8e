// bf16 GEMM kernels for AVX512_BF16 (VDPBF16PS), loaded by P/Invoke from Backprop.Kernels (Bf16Native.cs).
// .NET 10 has no AVX512_BF16 intrinsics, so this file owns what needs them: the float32 -> bf16 packing
// and the register-blocked micro-kernel. The BLIS loops, the cache blocks and the epilogue stay in C#
// (Gemm.Bf16.cs).
//
// Packed operands hold bf16 *pairs* along k: a uint32 whose low half is k = 2p and high half k = 2p + 1
// (an odd kc pads the last pair's high half with +0).
//   A panel (MR rows):  a[p * MR + r]  = { bf16(op(A)[r, 2p]), bf16(op(A)[r, 2p + 1]) },  p = 0 .. kc2 - 1
//   B panel (NR cols):  b[p * NR + j]  = { bf16(op(B)[2p, j]), bf16(op(B)[2p + 1, j]) }
// Rows of A past the matrix edge and columns of B past it are zero, so the micro-kernel never branches.
// VDPBF16PS then does, per lane in float32, acc = (acc + a.hi * b.hi) + a.lo * b.lo: each bf16 product is exact
// in float32, each of the two additions rounds to nearest even (measured on Zen 4: the high pair first), and
// denormals are flushed, in the bf16 operands and in the float32 accumulator alike.
//
// float32 -> bf16 is VCVTNE2PS2BF16's conversion: round to nearest even (a value that rounds past the largest
// bf16 becomes Inf), zero and denormal inputs become a zero of their sign, Inf stays Inf, NaN stays NaN (quieted).
//
// The store of a tile follows TileStore.cs: mode 0  C = alpha*acc;  mode 1  C = fma(beta, C, alpha*acc);
// mode 2  C = C + alpha*acc. Each element of C sees the same operations whichever tile or thread holds it.
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define BP_MR 12
#define BP_NV 2 // the micro-kernel below is written for two B vectors
#define BP_NR (16 * BP_NV)
#define BP_ABI 1

#define EXPORT __attribute__((visibility("default")))

EXPORT int bp_bf16_abi(void) { return BP_ABI; }
EXPORT int bp_bf16_mr(void) { return BP_MR; }
EXPORT int bp_bf16_nr(void) { return BP_NR; }

// VCVTNE2PS2BF16's rounding, element by element (for the tails the vector code does not cover, and for
// bp_bf16_round): zero and denormal inputs give a zero of the same sign, Inf stays Inf, NaN is truncated with
// its top mantissa bit set (quiet), normal numbers round to nearest even (one that rounds past the largest
// bf16 becomes Inf).
static inline uint32_t bf16_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7f800000u) == 0) return (u >> 16) & 0x8000u;
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
    if ((u & 0x7fffffffu) == 0x7f800000u) return u >> 16;
    u += 0x7fffu + ((u >> 16) & 1u);
    return u >> 16;
}

// dst[i] = float32(bf16(src[i])): the value a packed operand holds (for tests and references).
EXPORT void bp_bf16_round(const float* src, float* dst, long n)
{
    for (long i = 0; i < n; i++)
    {
        uint32_t u = bf16_bits(src[i]) << 16;
        memcpy(&dst[i], &u, sizeof u);
    }
}

// In place: v[c] lane l = old v[l] lane c (a 16 x 16 transpose of 32-bit elements).
static inline __attribute__((always_inline)) void transpose16(__m512i v[16])
{
    __m512i t[16], r[16];
    for (int i = 0; i < 16; i += 2)
    {
        t[i] = _mm512_unpacklo_epi32(v[i], v[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(v[i], v[i + 1]);
    }
    // r[4q + e], 128-bit lane L: element 4L + e of rows 4q .. 4q + 3.
    for (int q = 0; q < 4; q++)
    {
        r[4 * q + 0] = _mm512_unpacklo_epi64(t[4 * q], t[4 * q + 2]);
        r[4 * q + 1] = _mm512_unpackhi_epi64(t[4 * q], t[4 * q + 2]);
        r[4 * q + 2] = _mm512_unpacklo_epi64(t[4 * q + 1], t[4 * q + 3]);
        r[4 * q + 3] = _mm512_unpackhi_epi64(t[4 * q + 1], t[4 * q + 3]);
    }
    // Column 4L + e gathers lane L of r[e], r[4 + e], r[8 + e], r[12 + e].
    for (int e = 0; e < 4; e++)
    {
        __m512i a0 = _mm512_shuffle_i32x4(r[e], r[4 + e], 0x88), a1 = _mm512_shuffle_i32x4(r[e], r[4 + e], 0xdd);
        __m512i b0 = _mm512_shuffle_i32x4(r[8 + e], r[12 + e], 0x88), b1 = _mm512_shuffle_i32x4(r[8 + e], r[12 + e], 0xdd);
        v[e] = _mm512_shuffle_i32x4(a0, b0, 0x88);
        v[8 + e] = _mm512_shuffle_i32x4(a0, b0, 0xdd);
        v[4 + e] = _mm512_shuffle_i32x4(a1, b1, 0x88);
        v[12 + e] = _mm512_shuffle_i32x4(a1, b1, 0xdd);
    }
}

// Where lanes 0 .. nr - 1 (rows r0 .. r0 + nr - 1) go: the runs of lanes that fall in one panel (w rows a panel; at
// most 3 runs, as w >= 8), computed once per 16 rows so the store loop divides nothing.
typedef struct { long offset; __mmask16 mask; } lane_run;

static inline int lane_runs(int w, int kc2, int r0, int nr, lane_run runs[3])
{
    int n = 0;
    for (int l = 0; l < nr;)
    {
        int g = r0 + l, panel = g / w, rr = g % w;
        int len = w - rr < nr - l ? w - rr : nr - l;
        // Lane l lands at its row's place: the run's base is l elements before it (the masked-off lanes are not written,
        // and AVX-512 suppresses their faults).
        runs[n].offset = (long)panel * w * kc2 + rr - l;
        runs[n].mask = (__mmask16)(((1u << len) - 1) << l);
        n++;
        l += len;
    }
    return n;
}

// Pair p of the rows described by runs: each run's lanes into its panel.
static inline void store_rows(uint32_t* dst, int w, int p, const lane_run* runs, int n, __m512i v)
{
    for (int i = 0; i < n; i++)
        _mm512_mask_storeu_epi32((void*)((uintptr_t)dst + (uintptr_t)(runs[i].offset + (long)p * w) * sizeof(uint32_t)), runs[i].mask, v);
}

// Packs rows x kc of op(X) into panels of width w (w = MR for A, NR for B), as the file header says.
//   inner == 1: the k values of one row are contiguous:   op(X)[r, k] = x[r * ld + k]
//               up to 16 rows x 32 k at a time: VCVTNE2PS2BF16 to pairs (its second operand's 16 values go to the
//               low half, so the 32 words come out in source order), one 16 x 16 transpose, 16 masked stores.
//   inner == 0: the rows of one k are contiguous:          op(X)[r, k] = x[k * ld + r]
//               rows k = 2p and 2p + 1 converted together and their words interleaved (VPERMW).
static void pack(int inner, const float* x, long ld, int rows, int kc, int w, uint32_t* dst)
{
    int kc2 = (kc + 1) / 2, panels = (rows + w - 1) / w;
    if (inner)
    {
        // Rows go through the transpose in groups that never straddle a panel (w rows for w <= 16, else 16, as w is 32):
        // one masked store per transposed vector. The last 32 k of a row may be fewer: masked loads read zeros past kc
        // (an odd kc's padding), and only the pairs below kc2 are stored.
        int group = w <= 16 ? w : 16;
        for (int r0 = 0; r0 < rows; r0 += group)
        {
            int nr = rows - r0 < group ? rows - r0 : group;
            lane_run runs[3];
            int nruns = lane_runs(w, kc2, r0, nr, runs);
            for (int p0 = 0; p0 < kc2; p0 += 16)
            {
                int left = kc - 2 * p0, np = kc2 - p0 < 16 ? kc2 - p0 : 16;
                __mmask16 lo = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
                __mmask16 hi = left >= 32 ? (__mmask16)0xffff : left <= 16 ? (__mmask16)0 : (__mmask16)((1u << (left - 16)) - 1);
                __m512i v[16];
                for (int l = 0; l < 16; l++)
                {
                    const float* src = x + (long)(r0 + l) * ld + 2 * p0;
                    v[l] = l >= nr ? _mm512_setzero_si512()
                        : (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, src + 16), _mm512_maskz_loadu_ps(lo, src));
                }
                transpose16(v);
                for (int q = 0; q < np; q++) store_rows(dst, w, p0 + q, runs, nruns, v[q]);
            }
        }
        if (rows % w)
            for (int p = 0; p < kc2; p++)
                for (int r = rows % w; r < w; r++) dst[(long)(panels - 1) * w * kc2 + (long)p * w + r] = 0;
        return;
    }
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
        23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (int r0 = 0; r0 < rows; r0 += w)
    {
        int wr = rows - r0 < w ? rows - r0 : w;
        uint32_t* panel = dst + (long)r0 * kc2;
        for (int p = 0; p < kc2; p++)
        {
            const float* s0 = x + (long)(2 * p) * ld + r0;
            const float* s1 = s0 + ld;
            int odd = 2 * p + 1 < kc;
            // Lanes past the matrix edge load as zero and store as the panel's zero padding.
            for (int r = 0; r < w; r += 16)
            {
                int n = wr - r < 0 ? 0 : wr - r > 16 ? 16 : wr - r;
                int lanes = w - r < 16 ? w - r : 16;
                __mmask16 lm = (__mmask16)((1u << n) - 1);
                __m512 a = _mm512_maskz_loadu_ps(lm, s0 + r);
                __m512 b = odd ? _mm512_maskz_loadu_ps(lm, s1 + r) : _mm512_setzero_ps();
                __m512i v = _mm512_permutexvar_epi16(interleave, (__m512i)_mm512_cvtne2ps_pbh(b, a));
                _mm512_mask_storeu_epi32(panel + (long)p * w + r, (__mmask16)((1u << lanes) - 1), v);
            }
        }
    }
}

// A block: rows = mc rows of op(A) (M x K), k = kc. trans == 0: A stored M x K (row r's k contiguous);
// trans == 1: A stored K x M.
EXPORT void bp_bf16_pack_a(int trans, const float* a, long lda, int rows, int kc, uint32_t* dst)
{
    pack(!trans, a, lda, rows, kc, BP_MR, dst);
}

// B block: cols = nc columns of op(B) (K x N), k = kc. trans == 0: B stored K x N; trans == 1: B stored N x K.
EXPORT void bp_bf16_pack_b(int trans, const float* b, long ldb, int cols, int kc, uint32_t* dst)
{
    pack(trans, b, ldb, cols, kc, BP_NR, dst);
}

// acc += a . b per lane over bf16 pairs (VDPBF16PS). Inline assembly because gcc 12 moves a vector cast to
// __m512bh through the stack on every use. A is broadcast once per row into a register (one load for both
// B vectors; an embedded {1to16} broadcast would load it once per instruction).
#define DPBF16(acc, a, b) __asm__("vdpbf16ps %2, %1, %0" : "+v"(acc) : "v"(b), "v"(a))

static inline __m512 store_value(__m512 acc, const float* c, __mmask16 m, __m512 alpha, __m512 beta, int mode)
{
    __m512 x = _mm512_mul_ps(acc, alpha);
    if (mode == 1) x = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(m, c), x);
    else if (mode == 2) x = _mm512_add_ps(_mm512_maskz_loadu_ps(m, c), x);
    return x;
}

// One MR x NR tile: acc = sum over kc2 pairs of the A and B micro-panels, stored into the valid mr x nr part of C.
static inline __attribute__((always_inline)) void tile(int kc2, const uint32_t* a, const uint32_t* b, float* c, long ldc,
    int mr, int nr, __m512 alpha, __m512 beta, int mode)
{
    // C's rows are needed only after the K loop, but a C that does not fit in the caches (a large N) costs a miss per
    // line then, one pass of all of C per K block: ask for them now, while the K loop runs.
#pragma GCC unroll 16
    for (int r = 0; r < BP_MR; r++)
    {
        if (r >= mr) break;
        _mm_prefetch((const char*)(c + (long)r * ldc), _MM_HINT_T0);
        _mm_prefetch((const char*)(c + (long)r * ldc + 16), _MM_HINT_T0);
    }
    __m512 acc[BP_MR][BP_NV];
#pragma GCC unroll 16
    for (int r = 0; r < BP_MR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < BP_NV; v++) acc[r][v] = _mm512_setzero_ps();
    for (int p = 0; p < kc2; p++)
    {
        __m512i b0 = _mm512_loadu_si512((const void*)(b + (long)p * BP_NR));
        __m512i b1 = _mm512_loadu_si512((const void*)(b + (long)p * BP_NR + 16));
        const uint32_t* ap = a + (long)p * BP_MR;
#pragma GCC unroll 16
        for (int r = 0; r < BP_MR; r++)
        {
            __m512i av = _mm512_set1_epi32((int)ap[r]);
            DPBF16(acc[r][0], av, b0);
            DPBF16(acc[r][1], av, b1);
        }
    }
    __mmask16 masks[BP_NV];
#pragma GCC unroll 4
    for (int v = 0; v < BP_NV; v++)
    {
        int left = nr - 16 * v;
        masks[v] = left >= 16 ? (__mmask16)0xffff : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
    }
#pragma GCC unroll 16
    for (int r = 0; r < BP_MR; r++)
    {
        if (r >= mr) break;
        float* cr = c + (long)r * ldc;
#pragma GCC unroll 4
        for (int v = 0; v < BP_NV; v++)
            _mm512_mask_storeu_ps(cr + 16 * v, masks[v], store_value(acc[r][v], cr + 16 * v, masks[v], alpha, beta, mode));
    }
}

// One NR-wide strip of C: the packed A block (mc rows, panels of MR) times one packed B micro-panel (kc x NR),
// stored into C[0 .. mc, 0 .. nr] (row-major, ldc) with the given mode.
EXPORT void bp_bf16_strip(int kc, int mc, int nr, const uint32_t* pa, const uint32_t* pb, float* c, long ldc,
    float alpha, float beta, int mode)
{
    int kc2 = (kc + 1) / 2;
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int ir = 0; ir < mc; ir += BP_MR)
    {
        int mr = mc - ir < BP_MR ? mc - ir : BP_MR;
        const uint32_t* a = pa + (long)ir * kc2;
        float* ct = c + (long)ir * ldc;
        if (mode == 0) tile(kc2, a, pb, ct, ldc, mr, nr, va, vb, 0);
        else if (mode == 1) tile(kc2, a, pb, ct, ldc, mr, nr, va, vb, 1);
        else tile(kc2, a, pb, ct, ldc, mr, nr, va, vb, 2);
    }
}

// The VDPBF16PS peak: 24 independent accumulator chains on registers, iters x 24 instructions of 16 lanes x
// 2 multiply-adds (64 flops each). Returns a value depending on every chain so none is optimized away.
EXPORT float bp_bf16_peak(long iters)
{
    __m512 acc[24];
#pragma GCC unroll 24
    for (int i = 0; i < 24; i++) acc[i] = _mm512_set1_ps((float)i * 1e-3f);
    __m512i x = _mm512_set1_epi32(0x3f803f80), y = _mm512_set1_epi32(0x3a803a80); // pairs of 1.0 and 2^-10
    for (long it = 0; it < iters; it++)
    {
#pragma GCC unroll 24
        for (int i = 0; i < 24; i++) DPBF16(acc[i], x, y);
    }
    __m512 s = acc[0];
#pragma GCC unroll 24
    for (int i = 1; i < 24; i++) s = _mm512_add_ps(s, acc[i]);
    return _mm512_reduce_add_ps(s);
}
