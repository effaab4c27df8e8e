// Philox known answers (Random123's kat_vectors), dropout determinism and gradient, initializer statistics.
using Backprop.Kernels;
using Backprop.Kernels.Cpu.Ops;
using NUnit.Framework;

namespace Backprop.Tests.Rng;

[TestFixture]
public class PhiloxDropoutInitTests
{
    [Test]
    public void Philox4x32_10_KnownAnswers()
    {
        Assert.That(Philox.Generate(0, 0, 0, 0, 0, 0), Is.EqualTo((0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u)));
        Assert.That(Philox.Generate(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff),
            Is.EqualTo((0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu)));
        Assert.That(Philox.Generate(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0),
            Is.EqualTo((0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u)));
    }

    [Test]
    public void Dropout_MaskIsAFunctionOfSeedStepLayerElement()
    {
        int n = 1001;
        var x = TestData.Floats(n, 1, 0.5f, 1.5f);
        var y1 = new float[n];
        var y2 = new float[n];
        Dropout.Apply(0.3, 42, 7, 2, x, y1);
        Dropout.Apply(0.3, 42, 7, 2, x, y2);
        Assert.That(y2, Is.EqualTo(y1), "same (seed, step, layer) gives the same mask");
        int kept = 0;
        for (int i = 0; i < n; i++)
        {
            bool keep = Dropout.Keeps(0.3, 42, 7, 2, i);
            Assert.That(y1[i], Is.EqualTo(keep ? x[i] / 0.7f : 0f).Within(1e-6), $"element {i}");
            kept += keep ? 1 : 0;
        }
        Assert.That(kept / (double)n, Is.EqualTo(0.7).Within(0.05), "keep rate");
        Dropout.Apply(0.3, 42, 8, 2, x, y2);
        Assert.That(y2, Is.Not.EqualTo(y1), "another step draws another mask");
        Dropout.Apply(0.3, 42, 7, 3, x, y2);
        Assert.That(y2, Is.Not.EqualTo(y1), "another layer draws another mask");
        Dropout.Apply(0.0, 42, 7, 2, x, y2);
        Assert.That(y2, Is.EqualTo(x), "p = 0 is the identity");
        // float takes the 8-group vector path on AVX2, double the scalar one: the masks must agree, on every ISA.
        foreach (var isa in Enum.GetValues<Backprop.Kernels.Cpu.Isa>().Where(i => i <= Backprop.Kernels.Cpu.CpuIsa.Supported))
        {
            var xf = Enumerable.Repeat(1f, 4099).ToArray();
            var yf = new float[xf.Length];
            var yd = new double[xf.Length];
            Dropout.Apply(0.45, 9, 1234567890123, 5, xf, yf, isa);
            Dropout.Apply(0.45, 9, 1234567890123, 5, Enumerable.Repeat(1.0, xf.Length).ToArray(), yd, isa);
            for (int i = 0; i < xf.Length; i++) Assert.That(yf[i] != 0, Is.EqualTo(yd[i] != 0), $"{isa} element {i}");
            Dropout.Apply(0.45, 9, 1234567890123, 5, xf, xf, isa); // in place
            Assert.That(xf, Is.EqualTo(yf));
        }
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => Dropout.Apply(1.0, 1, 1, 1, x, y2))!.Message, Does.Contain("in [0, 1); got 1"));
    }

    [TestCase(InitScheme.XavierUniform, 300, 100)]
    [TestCase(InitScheme.XavierNormal, 300, 100)]
    [TestCase(InitScheme.HeUniform, 784, 256)]
    [TestCase(InitScheme.HeNormal, 784, 256)]
    [TestCase(InitScheme.PyTorchDefault, 400, 50)]
    public void Initializers_HaveTheVarianceOfTheirFormula(InitScheme scheme, int fanIn, int fanOut)
    {
        var w = new double[fanIn * fanOut];
        var b = new double[fanOut];
        Initializers.Initialize<double>(scheme, 123, 1, fanIn, fanOut, w, b);
        double expectedVar = scheme switch
        {
            InitScheme.XavierUniform or InitScheme.XavierNormal => 2.0 / (fanIn + fanOut),
            InitScheme.HeUniform or InitScheme.HeNormal => 2.0 / fanIn,
            _ => 1.0 / (3 * fanIn),
        };
        double mean = w.Average(), var = w.Select(v => (v - mean) * (v - mean)).Average();
        Assert.That(mean, Is.EqualTo(0).Within(4 * Math.Sqrt(expectedVar / w.Length)));
        Assert.That(var, Is.EqualTo(expectedVar).Within(0.05 * expectedVar));
        if (scheme is InitScheme.XavierUniform or InitScheme.HeUniform or InitScheme.PyTorchDefault)
        {
            double bound = Math.Sqrt(3 * expectedVar);
            Assert.That(w.Max(), Is.LessThanOrEqualTo(bound));
            Assert.That(w.Min(), Is.GreaterThanOrEqualTo(-bound));
        }
        if (scheme == InitScheme.PyTorchDefault) Assert.That(b.Any(v => v != 0) && b.All(v => Math.Abs(v) <= 1 / Math.Sqrt(fanIn)), Is.True);
        else Assert.That(b, Is.All.EqualTo(0.0));
        var w2 = new double[w.Length];
        Initializers.Initialize<double>(scheme, 123, 1, fanIn, fanOut, w2, b);
        Assert.That(w2, Is.EqualTo(w), "deterministic for a seed");
        Initializers.Initialize<double>(scheme, 123, 2, fanIn, fanOut, w2, b);
        Assert.That(w2, Is.Not.EqualTo(w), "another layer, other weights");
    }
}
