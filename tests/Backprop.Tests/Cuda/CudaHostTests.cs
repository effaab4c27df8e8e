// CUDA without a GPU: every .cu source compiles through NVRTC to PTX (compute_80) and to cubins for
// sm_80 and sm_90 with no warnings; the kernels' per-element math, built for the host with g++,
// agrees with the C# kernels; library probing and error translation say what is wrong. GPU tests
// report "skipped: no CUDA device" here.
using System.Runtime.InteropServices;
using Backprop.Kernels;
using Backprop.Kernels.Cpu.Ops;
using Backprop.Kernels.Cpu.Optim;
using Backprop.Kernels.Cuda;
using Backprop.Kernels.Native;
using NUnit.Framework;

namespace Backprop.Tests.Cuda;

[TestFixture]
public unsafe partial class CudaHostTests
{
    public static IEnumerable<string> Sources() => CudaSources.Kernels;

    [Test]
    public void TheKernelSourcesAreEmbedded()
    {
        Assert.That(CudaSources.Kernels, Is.SupersetOf(new[] { "activations.cu", "dropout.cu", "losses.cu", "optim.cu" }));
        Assert.That(CudaSources.Headers.Select(h => h.Name), Does.Contain("common.cuh"));
    }

    [Test]
    public void EverySource_CompilesToPtxAndCubins_WithoutWarnings([ValueSource(nameof(Sources))] string source)
    {
        // Deps installs NVRTC (libnvrtc11.2, non-free), so its absence is a failure here, not a skip.
        Assert.That(Nvrtc.IsAvailable, Is.True, Nvrtc.UnavailableReason);
        var ptx = CudaSources.Compile(source, "compute_80");
        Assert.That(ptx.Ptx, Does.Contain(".target sm_80").And.Contain(".entry"));
        Assert.That(ptx.Log, Does.Not.Contain("warning"), ptx.Log);
        foreach (var arch in new[] { "sm_80", "sm_90" })
        {
            var bin = CudaSources.Compile(source, arch);
            Assert.That(bin.Cubin, Is.Not.Null.And.Not.Empty);
            Assert.That(bin.Cubin![..4], Is.EqualTo(new byte[] { 0x7f, (byte)'E', (byte)'L', (byte)'F' }), "a cubin is an ELF image");
            Assert.That(bin.Log, Does.Not.Contain("warning"), bin.Log);
        }
    }

    [Test]
    public void ACompileError_CarriesTheCompilerLog()
    {
        Assert.That(Nvrtc.IsAvailable, Is.True, Nvrtc.UnavailableReason);
        var e = Assert.Throws<NvrtcException>(() => Nvrtc.Compile("extern \"C\" __global__ void k(float* x) { x[0] = undefined_name; }", "broken.cu", "compute_80"))!;
        Assert.That(e.Message, Does.Contain("NVRTC_ERROR_COMPILATION").And.Contain("undefined_name").And.Contain("broken.cu"));
        Assert.That(e.Log, Does.Contain("undefined"));
        Assert.That(Assert.Throws<ArgumentException>(() => Nvrtc.Compile("", "x.cu", "gfx90a"))!.Message, Does.Contain("arch must be compute_XX (PTX) or sm_XX (cubin); got 'gfx90a'"));
        Assert.That(Nvrtc.Version.Major, Is.GreaterThanOrEqualTo(11));
    }

    [Test]
    public void TheCompiledImageIsCachedByContentAndArch()
    {
        string dir = Path.Combine(Path.GetTempPath(), "backprop-cuda-cache-" + Guid.NewGuid().ToString("N"));
        Environment.SetEnvironmentVariable("BACKPROP_CUDA_CACHE", dir);
        try
        {
            var first = CudaSources.GetImage("dropout.cu", "sm_90");
            var files = Directory.GetFiles(dir);
            Assert.That(files, Has.Length.EqualTo(1));
            Assert.That(Path.GetFileName(files[0]), Does.StartWith("dropout-sm_90-").And.EndWith(".cubin"));
            File.WriteAllBytes(files[0], [1, 2, 3]); // a hit returns the cached bytes without compiling
            Assert.That(CudaSources.GetImage("dropout.cu", "sm_90"), Is.EqualTo(new byte[] { 1, 2, 3 }));
            Assert.That(first[..4], Is.EqualTo(new byte[] { 0x7f, (byte)'E', (byte)'L', (byte)'F' }));
            CudaSources.GetImage("dropout.cu", "compute_80");
            Assert.That(Directory.GetFiles(dir), Has.Length.EqualTo(2));
        }
        finally
        {
            Environment.SetEnvironmentVariable("BACKPROP_CUDA_CACHE", null);
            Directory.Delete(dir, true);
        }
    }

    [Test]
    public void Probing_SaysWhatIsMissing_AndErrorsNameTheCall()
    {
        var (handle, error) = NativeLibraries.TryLoad(["libcublas.so.99", "libcublas.so.98"], "install the CUDA toolkit.");
        Assert.That(handle, Is.EqualTo((nint)0));
        Assert.That(error, Does.Contain("libcublas.so.99, libcublas.so.98").And.Contain("install the CUDA toolkit"));
        var e = Assert.Throws<CudaException>(() => CudaDriver.Check(2, "cuMemAlloc(1 GiB)"))!;
        Assert.That(e.Message, Is.EqualTo("cuMemAlloc(1 GiB) failed with CUDA_ERROR_OUT_OF_MEMORY (2)."));
        Assert.That(e.ResultName, Is.EqualTo("CUDA_ERROR_OUT_OF_MEMORY"));
        Assert.DoesNotThrow(() => CudaDriver.Check(0, "cuInit"));
        var info = CudaDriver.Probe(); // never throws
        if (!info.Available) Assert.That(info.Reason, Is.Not.Empty);
        else Assert.That(info.Arch, Does.StartWith("sm_"));
        Assert.That(Nvrtc.ResultName(6), Is.EqualTo("NVRTC_ERROR_COMPILATION"));
        var (blas, why) = CuBlas.Probe(); // never throws
        if (!blas) Assert.That(why, Does.Contain("libcublas"));
        Assert.That(new CuBlasException("cublasSgemm_v2", 13).Message, Is.EqualTo("cublasSgemm_v2 failed with CUBLAS_STATUS_EXECUTION_FAILED (13)."));
        Assert.DoesNotThrow(() => CuBlas.Check(0, "cublasCreate_v2"));
    }

    [Test]
    public void GpuKernels_RunOnTheDevice()
    {
        var info = CudaDriver.Probe();
        if (!info.Available) Assert.Ignore($"no CUDA device: {info.Reason}");
        // With a device: load every module for its architecture (the kernels' numerical checks against
        // the CPU are in CudaBackendTests).
        nint ctx;
        CudaDriver.Check(CudaDriver.cuDevicePrimaryCtxRetain(&ctx, 0), "cuDevicePrimaryCtxRetain");
        CudaDriver.Check(CudaDriver.cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
        foreach (var k in CudaSources.Kernels)
        {
            var image = CudaSources.GetImage(k, info.Arch!);
            nint module;
            fixed (byte* p = image) CudaDriver.Check(CudaDriver.cuModuleLoadData(&module, p), $"cuModuleLoadData({k})");
            CudaDriver.Check(CudaDriver.cuModuleUnload(module), "cuModuleUnload");
        }
    }

    // ---- the host build of the kernels' per-element math (native/cuda/common.cuh via g++) ----

    private const string HostLib = "libbackprop_cuda_host";

    [LibraryImport(HostLib)] private static partial float bp_host_act_forward(int kind, float p, float x);
    [LibraryImport(HostLib)] private static partial float bp_host_act_grad(int kind, float p, float s);
    [LibraryImport(HostLib)] private static partial void bp_host_philox(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1, uint* output);
    [LibraryImport(HostLib)] private static partial int bp_host_dropout_keep(ulong seed, ulong step, uint layer, ulong e, uint threshold);
    [LibraryImport(HostLib)]
    private static partial void bp_host_adam(float* p, float g, float* m, float* v, float* vmax, float beta1, float beta2, float ob1, float ob2, float eps, float wd,
        float stepSize, float sqrtBc2, float decay, int decoupled, int amsgrad);
    [LibraryImport(HostLib)] private static partial void bp_host_sgd(float* p, float g, float* buf, float lr, float momentum, float keep, float wd, int nesterov, int first);

    private struct Ref : IActivationVisitor<float>
    {
        public float[] X, Y, D;
        public void Visit<TAct>(TAct act) where TAct : unmanaged, IActivation<float>
        {
            for (int i = 0; i < X.Length; i++)
            {
                Y[i] = act.Forward(X[i]);
                D[i] = act.Grad(act.GradFromOutput ? Y[i] : X[i]);
            }
        }
    }

    [Test]
    public void HostBuiltActivations_AgreeWithTheCSharpKernels([Values] ActivationKind kind)
    {
        var a = new Activation(kind, kind == ActivationKind.LeakyReLU ? 0.1 : kind == ActivationKind.ELU ? 0.7 : double.NaN);
        var x = TestData.Floats(301, 6, -8, 8);
        x[0] = 0; x[1] = 1e4f; x[2] = -1e4f; x[3] = 1e-6f;
        var r = new Ref { X = x, Y = new float[x.Length], D = new float[x.Length] };
        a.Visit<float, Ref>(ref r);
        float p = (float)a.EffectiveParameter;
        for (int i = 0; i < x.Length; i++)
        {
            float y = bp_host_act_forward((int)kind, p, x[i]);
            float d = bp_host_act_grad((int)kind, p, a.GradFromOutput ? y : x[i]);
            Assert.That(y, Is.EqualTo(r.Y[i]).Within(2e-6 + 2e-6 * Math.Abs(r.Y[i])), $"{kind}({x[i]:R})");
            Assert.That(d, Is.EqualTo(r.D[i]).Within(2e-6 + 2e-5 * Math.Abs(r.D[i])), $"{kind}'({x[i]:R})");
        }
    }

    [Test]
    public void HostBuiltPhilox_AndDropoutMask_AreBitIdenticalToCSharp()
    {
        var rng = new System.Random(5);
        uint* o = stackalloc uint[4];
        for (int t = 0; t < 1000; t++)
        {
            uint c0 = (uint)rng.Next(), c1 = (uint)rng.Next(), c2 = (uint)rng.Next(), c3 = (uint)rng.Next(), k0 = (uint)rng.Next(), k1 = (uint)rng.Next();
            bp_host_philox(c0, c1, c2, c3, k0, k1, o);
            Assert.That((o[0], o[1], o[2], o[3]), Is.EqualTo(Philox.Generate(c0, c1, c2, c3, k0, k1)));
        }
        uint threshold = (uint)Math.Round(0.3 * 4294967296.0);
        for (long e = 0; e < 2000; e++)
            Assert.That(bp_host_dropout_keep(42, 7, 2, (ulong)e, threshold) == 1, Is.EqualTo(Dropout.Keeps(0.3, 42, 7, 2, e)), $"element {e}");
    }

    [Test]
    public void HostBuiltOptimizerUpdates_AgreeWithTheCSharpKernels()
    {
        int n = 50;
        var g = TestData.Floats(n * 5, 2);
        foreach (var s in new OptimizerSettings[]
                 {
                     new Adam() { LearningRate = 0.01, WeightDecay = 0.05, Amsgrad = true },
                     new AdamW() { LearningRate = 0.01, WeightDecay = 0.1 },
                     new Sgd() { LearningRate = 0.1, Momentum = 0.9, Nesterov = true, WeightDecay = 0.01 },
                 })
        {
            var p = TestData.Floats(n, 1);
            var hp = (float[])p.Clone();
            var st = new[] { new float[n], new float[n], new float[n] };
            var hs = new[] { new float[n], new float[n], new float[n] };
            for (int t = 1; t <= 5; t++)
            {
                var gt = g.AsSpan((t - 1) * n, n).ToArray();
                Optimizer.Update<float>(s, new OptimizerStep(s.LearningRate, t), p, gt, st[0], s.StateSlots > 1 ? st[1] : [], s.StateSlots > 2 ? st[2] : []);
                float decay = (float)(1 - s.LearningRate * s.WeightDecay);
                fixed (float* pp = hp) fixed (float* s0 = hs[0]) fixed (float* s1 = hs[1]) fixed (float* s2 = hs[2])
                    for (int i = 0; i < n; i++)
                    {
                        if (s is Sgd sgd)
                            bp_host_sgd(pp + i, gt[i], s0 + i, (float)s.LearningRate, (float)sgd.Momentum, (float)(1 - sgd.Dampening), (float)s.WeightDecay, sgd.Nesterov ? 1 : 0, t == 1 ? 1 : 0);
                        else if (s is Adam a)
                        {
                            float stepSize = (float)(s.LearningRate / (1 - Math.Pow(a.Beta1, t))), sqrtBc2 = (float)Math.Sqrt(1 - Math.Pow(a.Beta2, t));
                            bp_host_adam(pp + i, gt[i], s0 + i, s1 + i, s2 + i, (float)a.Beta1, (float)a.Beta2, (float)(1 - a.Beta1), (float)(1 - a.Beta2), (float)a.Eps, (float)s.WeightDecay,
                                stepSize, sqrtBc2, decay, s.Kind == OptimizerKind.AdamW ? 1 : 0, a.Amsgrad ? 1 : 0);
                        }
                    }
                for (int i = 0; i < n; i++) Assert.That(hp[i], Is.EqualTo(p[i]).Within(1e-6 + 1e-6 * Math.Abs(p[i])), $"{s.Kind} step {t} element {i}");
            }
        }
    }
}
