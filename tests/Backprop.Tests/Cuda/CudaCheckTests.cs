// `backprop check cuda`'s comparisons (CudaCheck) on the emulated device: they pass on a correct
// backend and report the case, with the differences, when the device computes something wrong.
using Backprop.Cli.Diagnostics;
using Backprop.Engine.Execution.Cuda;
using Backprop.Kernels.Cuda;
using NUnit.Framework;

namespace Backprop.Tests.Cuda;

[TestFixture]
[NonParallelizable]
public class CudaCheckTests
{
    [Test]
    public void EveryCheck_PassesOnTheEmulatedDevice()
    {
        var log = new StringWriter();
        var results = CudaCheck.Run(() => new EmulatedGpu(), log);
        Assert.That(results, Has.Count.EqualTo(CudaCheck.Cases.Count + 1));
        Assert.That(results.Where(r => !r.Passed).Select(r => r.Case), Is.Empty, log.ToString());
        Assert.That(log.ToString(), Does.Contain("ok   activation gelu_tanh").And.Contain("ok   graph replay vs eager launches, bit for bit"));
    }

    [Test]
    public void ADeviceThatSkipsAKernel_FailsTheChecksThatNeedIt()
    {
        var log = new StringWriter();
        var results = CudaCheck.Run(() => new SkippingGpu(new EmulatedGpu(), "column_sums"), log, filter: "activation relu");
        Assert.That(results, Has.Count.EqualTo(1));
        Assert.That(results[0].Passed, Is.False, log.ToString());
        Assert.That(log.ToString(), Does.StartWith("FAIL activation relu, dropout 0.25 and 0.1, cross-entropy (smoothing 0.1): 20 steps, max loss difference"));
        var broken = CudaCheck.Run(() => new SkippingGpu(new EmulatedGpu(), "adam_update"), TextWriter.Null, filter: "graph");
        Assert.That(broken.Single().Passed, Is.True, "graph and eager skip the same kernel: still bit-identical to each other");
    }

    // A device that silently never runs one kernel.
    private sealed class SkippingGpu(EmulatedGpu inner, string skip) : DelegatingGpu(inner)
    {
        private readonly HashSet<nint> _skipped = [];
        public override nint GetFunction(string source, string name)
        {
            var f = base.GetFunction(source, name);
            if (name == skip) _skipped.Add(f);
            return f;
        }
        public override void Launch(nint kernel, uint grid, uint block, KernelArgs args)
        {
            if (!_skipped.Contains(kernel)) base.Launch(kernel, grid, block, args);
        }
    }
}
