// The host emulation of the CUDA execution model that the backend tests rely on: kernels that the engine
// does not launch (accuracy counting) against the CPU, and the emulator catching what a real device would
// get wrong silently or reject (argument lists that do not fit, copies and synchronization a stream
// capture refuses, reads of memory nobody wrote).
using System.Runtime.InteropServices;
using Backprop.Engine.Execution.Cuda;
using Backprop.Kernels.Cuda;
using NUnit.Framework;

namespace Backprop.Tests.Cuda;

[TestFixture]
[NonParallelizable]
public unsafe class EmulatorTests
{
    [Test]
    public void CountCorrect_MatchesAnArgmaxOnTheHost_FirstMaximumWins()
    {
        using var gpu = new EmulatedGpu();
        const int batch = 300, classes = 7;
        var logits = TestData.Floats(batch * classes, 3);
        logits[5 * classes + 2] = logits[5 * classes + 4] = 9; // a tie: the first maximum is the prediction
        var labels = Enumerable.Range(0, batch).Select(i => (i * 5) % classes).ToArray();
        labels[5] = 2;
        int expected = 0;
        for (int r = 0; r < batch; r++)
        {
            int best = 0;
            for (int c = 1; c < classes; c++) if (logits[r * classes + c] > logits[r * classes + best]) best = c;
            if (best == labels[r]) expected++;
        }
        ulong dl = gpu.Allocate(logits.Length * 4), dy = gpu.Allocate(batch * 4), dc = gpu.Allocate(4);
        fixed (float* l = logits) gpu.CopyToDevice(dl, (nint)l, logits.Length * 4);
        fixed (int* y = labels) gpu.CopyToDevice(dy, (nint)y, batch * 4);
        uint zero = 0;
        gpu.CopyToDevice(dc, (nint)(&zero), 4);
        var k = CudaKernels.CountCorrect(gpu, (batch + 127) / 128, 128, dl, dy, batch, classes, dc);
        using var args = k.Args;
        gpu.Launch(k.Function, k.Grid, k.Block, k.Args);
        uint got;
        gpu.CopyToHost((nint)(&got), dc, 4);
        Assert.That(got, Is.EqualTo(expected));
        Assert.That(expected, Is.GreaterThan(0));
    }

    [Test]
    public void ArgumentListsThatDoNotFitTheKernel_AreRejected()
    {
        using var gpu = new EmulatedGpu();
        var f = gpu.GetFunction("activations.cu", "act_bwd"); // (const float*, const float*, float*, long long, int, float)
        Assert.That(EmulatedGpu.Signature("act_bwd"), Is.EqualTo("pppqif"));
        using var intForLong = new KernelArgs(6).Address(1).Address(2).Address(3).I32(10).I32(1).F32(0);
        Assert.That(Assert.Throws<ArgumentException>(() => gpu.Launch(f, 1, 32, intForLong))!.Message,
            Does.Contain("act_bwd: arguments (uuuiif) do not fit the kernel's parameters (pppqif)"));
        using var tooFew = new KernelArgs(5).Address(1).Address(2).Address(3).I64(10).I32(1);
        Assert.Throws<ArgumentException>(() => gpu.Launch(f, 1, 32, tooFew));
        using var floatForInt = new KernelArgs(6).Address(1).Address(2).Address(3).I64(10).F32(1).F32(0);
        Assert.Throws<ArgumentException>(() => gpu.Launch(f, 1, 32, floatForInt));
        Assert.That(Assert.Throws<InvalidOperationException>(() => gpu.GetFunction("optim.cu", "softmax_ce"))!.Message, Does.Contain("optim.cu has no kernel 'softmax_ce'"));
        Assert.That(Assert.Throws<InvalidOperationException>(() => new KernelArgs(1).Address(1).Address(2))!.Message, Does.Contain("holds 1 arguments; argument 2 does not fit"));
    }

    [Test]
    public void CaptureRules_AndUnwrittenMemory_AreEnforced()
    {
        using var gpu = new EmulatedGpu();
        ulong d = gpu.Allocate(64);
        float read;
        gpu.CopyToHost((nint)(&read), d, 4);
        Assert.That(float.IsNaN(read), "device memory is not zeroed: unwritten floats read as NaN");
        var pageable = Marshal.AllocHGlobal(64);
        try
        {
            gpu.BeginCapture();
            Assert.That(Assert.Throws<InvalidOperationException>(() => gpu.CopyToDevice(d, pageable, 64))!.Message, Does.Contain("pageable host memory cannot be captured"));
            Assert.That(Assert.Throws<InvalidOperationException>(gpu.Synchronize)!.Message, Does.Contain("while the stream is being captured"));
            var pinned = gpu.AllocatePinned(64);
            gpu.CopyToDevice(d, pinned, 64); // recorded, not run
            var graph = gpu.EndCapture();
            *(float*)pinned = 42;
            gpu.LaunchGraph(graph); // a replay reads the pinned source as it is now
            gpu.CopyToHost((nint)(&read), d, 4);
            Assert.That(read, Is.EqualTo(42f));
            gpu.FreePinned(pinned);
        }
        finally { Marshal.FreeHGlobal(pageable); }
        nint host = (nint)(&read);
        Assert.That(Assert.Throws<InvalidOperationException>(() => gpu.CopyToDevice(d + 60, host, 8))!.Message, Does.Contain("is not inside a device allocation"));
        gpu.Free(d);
        Assert.That(gpu.LiveAllocations, Is.EqualTo(0));
    }

    [Test]
    public void GemmDescriptions_AreValidated_AndRowMajorSwapsTheOperands()
    {
        var g = GemmDesc.RowMajor(LtEpilogue.Bias, transA: false, transB: true, m: 5, n: 3, k: 4, a: 0x100, lda: 4, b: 0x200, ldb: 4, c: 0x300, ldc: 3, bias: 0x400);
        Assert.That((g.M, g.N, g.K, g.A, g.B, g.TransA, g.TransB), Is.EqualTo((3, 5, 4, 0x200UL, 0x100UL, true, false)));
        Assert.DoesNotThrow(g.Validate);
        Assert.That(Assert.Throws<ArgumentException>((g with { Lda = 2 }).Validate)!.Message, Does.Contain("lda = 2 is less than op(A)'s stored rows 4"));
        Assert.That(Assert.Throws<ArgumentException>((g with { Bias = 0 }).Validate)!.Message, Does.Contain("epilogue Bias needs a bias pointer"));
        Assert.That(Assert.Throws<ArgumentException>((g with { Epilogue = LtEpilogue.GeluAuxBias }).Validate)!.Message, Does.Contain("needs an aux matrix with ld >= M = 3"));
        Assert.That(Assert.Throws<ArgumentException>((g with { K = 0 }).Validate)!.Message, Does.Contain("GEMM sizes must be positive; got M=3, N=5, K=0"));
    }
}
