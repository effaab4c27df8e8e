// The CUDA side's two tables: ActivationKind → the kernels' activation constants (read back out of
// native/cuda/common.cuh), and the typed launchers (each one's argument list against the parameter list
// of its kernel's C++ signature, as the host emulation reports it), for every kernel in native/cuda.
using System.Text.RegularExpressions;
using Backprop.Engine.Execution.Cuda;
using Backprop.Kernels;
using Backprop.Kernels.Cuda;
using NUnit.Framework;

namespace Backprop.Tests.Cuda;

[TestFixture]
[NonParallelizable]
public partial class CudaLaunchTests
{
    [GeneratedRegex(@"enum\s*\{(?<body>[^}]*BP_IDENTITY[^}]*)\}")]
    private static partial Regex ActivationEnum();

    [Test]
    public void ActivationCodes_AreTheHeadersEnum_ForEveryKind()
    {
        var body = ActivationEnum().Match(CudaSources.Read("common.cuh")).Groups["body"].Value;
        var header = body.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(e => e.Split('=', StringSplitOptions.TrimEntries)).ToDictionary(p => p[0], p => int.Parse(p[1], System.Globalization.CultureInfo.InvariantCulture));
        Assert.That(header, Is.Not.Empty, "common.cuh has no BP_ activation enum");
        Assert.That(CudaActivationCodes.Table.Select(t => t.Kind), Is.EquivalentTo(Enum.GetValues<ActivationKind>()), "one row per activation kind");
        foreach (var (kind, name, code) in CudaActivationCodes.Table)
        {
            Assert.That(header, Does.ContainKey(name), $"{kind}: common.cuh has no {name}");
            Assert.That(header[name], Is.EqualTo(code), $"{kind}: {name} is {header[name]} in common.cuh, {code} in the table");
            Assert.That(CudaActivationCodes.Code(new Activation(kind)), Is.EqualTo(code));
        }
        Assert.That(header.Keys, Is.EquivalentTo(CudaActivationCodes.Table.Select(t => t.Name)), "no constant in the header without a kind");
    }

    // Every launcher with placeholder arguments (pointers are never dereferenced: nothing is launched).
    private static IEnumerable<CudaLaunch> EveryLauncher(IGpuDevice g)
    {
        var relu = new Activation(ActivationKind.ReLU);
        yield return CudaKernels.BiasActFwd(g, 1, 32, 8, 16, 24, 2, 3, relu);
        yield return CudaKernels.ActBwd(g, 1, 32, 8, 16, 24, 6, relu);
        yield return CudaKernels.ColumnSums(g, 1, 32, 8, 16, 2, 3, accumulate: true);
        yield return CudaKernels.DropoutApply(g, 1, 32, 8, 16, 6, 12, 7, 24, 1, 100, 1.5f);
        yield return CudaKernels.SoftmaxCe(g, 1, 32, 8, 16, 24, 32, 2, 3, 0.1f, 4);
        yield return CudaKernels.Mse(g, 1, 32, 8, 16, 24, 32, 6, 12);
        yield return CudaKernels.L1Loss(g, 1, 32, 8, 16, 24, 32, 6, 12);
        yield return CudaKernels.Huber(g, 1, 32, 8, 16, 24, 32, 6, 0.5f, 12);
        yield return CudaKernels.BceWithLogits(g, 1, 32, 8, 16, 24, 32, 6, 12);
        yield return CudaKernels.LossReduce(g, 1, 32, 8, 6, 6, 16);
        yield return CudaKernels.CountCorrect(g, 1, 32, 8, 16, 2, 3, 24);
        yield return CudaKernels.SumsqPartial(g, 1, 32, 8, 6, 0, 16);
        yield return CudaKernels.SumsqFinal(g, 1, 32, 8, 4, 1, 16);
        yield return CudaKernels.GradCheck(g, 1, 32, 8, 6, 16);
        yield return CudaKernels.AddInto(g, 1, 32, 8, 16, 6, 24);
        yield return CudaKernels.CopyFloats(g, 1, 32, 8, 16, 6);
        yield return CudaKernels.ToBf16(g, 1, 32, 8, 16, 6);
        yield return CudaKernels.AdamUpdate(g, 1, 32, 8, 16, 24, 32, 40, 6, new AdamW(amsgrad: true), true, 48, 56);
        yield return CudaKernels.SgdUpdate(g, 1, 32, 8, 16, 24, 6, new Sgd(momentum: 0.9), true, 48, 56);
        yield return CudaKernels.RmspropUpdate(g, 1, 32, 8, 16, 24, 32, 40, 6, new RmsProp(centered: true, momentum: 0.5), false, 48, 56);
        yield return CudaKernels.AdagradUpdate(g, 1, 32, 8, 16, 24, 6, new Adagrad(), false, 48, 56);
        yield return CudaKernels.LayerNormFwd(g, 1, 32, 8, 16, 24, 32, 40, 2, 3, 1e-5f);
        yield return CudaKernels.LayerNormBwdData(g, 1, 32, 8, 16, 24, 32, 40, 2, 3);
        yield return CudaKernels.LayerNormParamGrads(g, 1, 32, 8, 16, 24, 32, 40, 2, 3);
        yield return CudaKernels.BatchNormStats(g, 1, 32, 8, 16, 24, 32, 40, 2, 3, 1e-5f, 0.1f, training: true, update: true);
        yield return CudaKernels.BatchNormApply(g, 1, 32, 8, 16, 24, 32, 40, 6, 3);
        yield return CudaKernels.BatchNormParamGrads(g, 1, 32, 8, 16, 24, 32, 40, 2, 3);
        yield return CudaKernels.BatchNormBwdData(g, 1, 32, 8, 16, 24, 32, 40, 48, 56, 6, 2, 3);
        yield return CudaKernels.AddFloats(g, 1, 32, 8, 16, 24, 6);
    }

    [Test]
    public void EveryTypedLauncher_FitsItsKernelsSignature_AndEveryKernelHasOne()
    {
        using var gpu = new EmulatedGpu();
        var launches = EveryLauncher(gpu).ToList();
        try
        {
            foreach (var l in launches)
            {
                string sig = EmulatedGpu.Signature(l.Name);
                Assert.That(l.Args.Fits(sig), Is.True, $"{l.Name}: arguments ({l.Args.Signature}) do not fit the kernel's parameters ({sig})");
            }
            var kernels = CudaSources.Kernels.SelectMany(file => KernelNames().Matches(CudaSources.Read(file)).Select(m => m.Groups[1].Value)).ToList();
            Assert.That(kernels, Is.Not.Empty);
            Assert.That(launches.Select(l => l.Name), Is.EquivalentTo(kernels), "one typed launcher per kernel of native/cuda");
        }
        finally
        {
            foreach (var l in launches) l.Args.Dispose();
        }
    }

    [GeneratedRegex(@"extern ""C"" __global__ void (\w+)\(")]
    private static partial Regex KernelNames();
}
