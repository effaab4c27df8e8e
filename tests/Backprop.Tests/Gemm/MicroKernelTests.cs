// The registered micro-kernels' block sizes: what the packing scratch is sized from. Each block must
// tile its register block exactly (MC % MR == 0, NC % NR == 0), and one thread's scratch must hold the
// largest packed A and B block of any kernel, for float and double.
using Backprop.Kernels.Cpu;
using NUnit.Framework;

namespace Backprop.Tests.Gemm;

[TestFixture]
public class MicroKernelTests
{
    public static IEnumerable<MicroKernelBlocks> Kernels() => MicroKernels.All;

    [TestCaseSource(nameof(Kernels))]
    public void BlockSizes_TileTheRegisterBlock(MicroKernelBlocks k)
    {
        Assert.That(k.MR, Is.Positive, k.Name);
        Assert.That(k.NR, Is.Positive, k.Name);
        Assert.That(k.KC, Is.Positive, k.Name);
        Assert.That(k.MC % k.MR, Is.Zero, $"{k.Name}: MC {k.MC} is not a multiple of MR {k.MR}");
        Assert.That(k.NC % k.NR, Is.Zero, $"{k.Name}: NC {k.NC} is not a multiple of NR {k.NR}");
    }

    [TestCaseSource(nameof(Kernels))]
    public void PackingScratch_HoldsEveryKernelsBlocks(MicroKernelBlocks k)
    {
        Assert.That(MicroKernels.PackABytes, Is.GreaterThanOrEqualTo((long)k.MC * k.KC * k.ElementSize), k.Name);
        Assert.That(MicroKernels.PackBBytes, Is.GreaterThanOrEqualTo((long)k.KC * k.NC * k.ElementSize), k.Name);
    }

    [Test]
    public void EveryRung_AndBothTypes_AreRegistered()
    {
        var expected = new List<string> { "Avx512/single", "Avx512/double", "Avx2/single", "Avx2/double", "Scalar/single", "Scalar/double" };
        if (Bf16Gemm.IsAvailable) expected.Add("Avx512Bf16/bf16"); // the native kernel registers only where it runs
        Assert.That(MicroKernels.All.Select(k => k.Name), Is.EquivalentTo(expected));
        Assert.That(MicroKernels.PackABytes, Is.EqualTo(MicroKernels.All.Max(k => (long)k.MC * k.KC * k.ElementSize)));
        Assert.That(MicroKernels.PackBBytes, Is.EqualTo(MicroKernels.All.Max(k => (long)k.KC * k.NC * k.ElementSize)));
    }

    // The vector kernels' edge path stores the accumulators into a stack tile; zeroing that tile is a call
    // (CORINFO_HELP_MEMZERO) the accumulators would be live across, and the JIT then kept all 16 of them in memory
    // through the K loop before the store (a store per FMA: 40 cycles a step of K instead of 8 on a Sapphire Rapids
    // class Xeon). [SkipLocalsInit] (scripts/gen_microkernels.py) drops the zeroing: the IL says so.
    [TestCase(typeof(MicroKernelAvx512<float>))]
    [TestCase(typeof(MicroKernelAvx512<double>))]
    [TestCase(typeof(MicroKernelAvx2<float>))]
    [TestCase(typeof(MicroKernelAvx2<double>))]
    public void VectorKernels_DoNotZeroTheirStackTile(Type kernel)
    {
        var runs = kernel.GetMethods(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static)
            .Where(m => m.Name is "Run" or "RunStrided").ToList();
        Assert.That(runs.Select(m => m.Name), Is.EquivalentTo(new[] { "Run", "RunStrided" }), kernel.Name);
        foreach (var m in runs)
            Assert.That(m.GetMethodBody()!.InitLocals, Is.False, $"{kernel.Name}.{m.Name} zero-initialises its locals (stack tile)");
    }
}
