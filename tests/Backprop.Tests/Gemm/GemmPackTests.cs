// The packing routines' vector paths (8x8 transposes, the AVX2 kernel's 6-row panels) against their scalar paths:
// the same panels bit for bit, rows past the edge zero, and nothing written past the packed block.
using Backprop.Kernels.Cpu;
using NUnit.Framework;

namespace Backprop.Tests.Gemm;

[TestFixture]
public unsafe class GemmPackTests
{
    [Test]
    public void VectorPacking_MatchesScalarPacking([Values(false, true)] bool transpose, [Values(4, 6, 8, 16, 32)] int width)
    {
        if (CpuIsa.Supported < Isa.Avx2) Assert.Ignore("the vector packing paths need AVX2");
        const int Guard = 32;
        foreach (int rows in new[] { 1, 5, 6, 7, 12, 13, 16, 17, 32, 33 })
            foreach (int kc in new[] { 1, 7, 8, 9, 16, 23 })
            {
                int ld = (transpose ? kc : rows) + 3;
                var src = TestData.Floats((transpose ? rows : kc) * ld, rows * 31 + kc);
                int panels = (rows + width - 1) / width, packed = panels * width * kc;
                var vec = new float[packed + Guard];
                var sca = new float[packed + Guard];
                Array.Fill(vec, float.NaN);
                Array.Fill(sca, float.NaN);
                fixed (float* s = src, v = vec, c = sca)
                {
                    GemmPack.Block(transpose, s, ld, rows, kc, width, v, simd: true);
                    GemmPack.Block(transpose, s, ld, rows, kc, width, c, simd: false);
                }
                string at = $"transpose {transpose}, width {width}, rows {rows}, kc {kc}";
                for (int i = 0; i < packed; i++)
                    Assert.That(BitConverter.SingleToInt32Bits(vec[i]), Is.EqualTo(BitConverter.SingleToInt32Bits(sca[i])), $"{at}: packed[{i}]");
                for (int i = packed; i < packed + Guard; i++)
                    Assert.That(vec[i], Is.NaN, $"{at}: written past the block at {i}");
                // The scalar path is itself checked against the definition: panel p, k, r = op(src)[p*W + r, k], 0 past the edge.
                for (int p = 0; p < panels; p++)
                    for (int k = 0; k < kc; k++)
                        for (int r = 0; r < width; r++)
                        {
                            int row = p * width + r;
                            float want = row >= rows ? 0f : transpose ? src[row * ld + k] : src[k * ld + row];
                            Assert.That(sca[p * width * kc + k * width + r], Is.EqualTo(want), $"{at}: panel {p}, k {k}, r {r}");
                        }
            }
    }
}
