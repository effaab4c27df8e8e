// SGEMM: ours (each ISA path) against OpenBLAS on the shapes of the GEMM issue, 1 and 2 threads.
// OpenBLAS is the baseline, so BenchmarkDotNet's Ratio column reads as ours / OpenBLAS time.
using Backprop.Kernels.Blas;
using Backprop.Kernels.Cpu;
using BenchmarkDotNet.Attributes;

namespace Backprop.Benchmarks;

[MemoryDiagnoser]
public unsafe class GemmBenchmarks
{
    private float* _a, _b, _c;
    private CpuContext _ctx = null!, _avx2 = null!;

    [Params("128x784x256 NT", "256x1024x1024 NN", "256x1024x1024 NT", "256x1024x1024 TN", "256x784x128 TN", "512^3 NN", "1024^3 NN")]
    public string Shape { get; set; } = "";

    [Params(1, 2)]
    public int Threads { get; set; }

    private int _m, _n, _k;
    private Transpose _ta, _tb;

    [GlobalSetup]
    public void Setup()
    {
        var parts = Shape.Split(' ');
        var dims = parts[0].Contains('^')
            ? Enumerable.Repeat(int.Parse(parts[0].Split('^')[0]), 3).ToArray()
            : parts[0].Split('x').Select(int.Parse).ToArray();
        (_m, _k, _n) = (dims[0], dims[1], dims[2]);
        _ta = parts[1][0] == 'T' ? Transpose.T : Transpose.N;
        _tb = parts[1][1] == 'T' ? Transpose.T : Transpose.N;
        _a = Alloc(_m * _k, 1);
        _b = Alloc(_k * _n, 2);
        _c = Alloc(_m * _n, 3);
        _ctx = new CpuContext(Threads);
        _avx2 = new CpuContext(Threads, CpuIsa.Cap(Isa.Avx2));
        OpenBlas.Threads = Threads;
    }

    /// <summary>n aligned floats, uniform in [-1, 1) from <paramref name="seed"/>; free with NativeMemory.AlignedFree.</summary>
    internal static float* Alloc(int n, int seed)
    {
        var p = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)n * 4, 64);
        var r = new Random(seed);
        for (int i = 0; i < n; i++) p[i] = (float)(r.NextDouble() * 2 - 1);
        return p;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _ctx.Dispose();
        _avx2.Dispose();
        System.Runtime.InteropServices.NativeMemory.AlignedFree(_a);
        System.Runtime.InteropServices.NativeMemory.AlignedFree(_b);
        System.Runtime.InteropServices.NativeMemory.AlignedFree(_c);
    }

    private int Lda => _ta == Transpose.N ? _k : _m;
    private int Ldb => _tb == Transpose.N ? _n : _k;

    [Benchmark(Baseline = true)]
    public void OpenBlasSgemm() => OpenBlas.Sgemm(_ta, _tb, _m, _n, _k, 1f, _a, Lda, _b, Ldb, 0f, _c, _n);

    [Benchmark]
    public void Ours()
    {
        var epi = default(IdentityEpilogue<float>);
        Gemm.Compute(_ctx, _ta, _tb, _m, _n, _k, 1f, _a, Lda, _b, Ldb, 0f, _c, _n, ref epi);
    }

    [Benchmark]
    public void OursAvx2()
    {
        var epi = default(IdentityEpilogue<float>);
        Gemm.Compute(_avx2, _ta, _tb, _m, _n, _k, 1f, _a, Lda, _b, Ldb, 0f, _c, _n, ref epi);
    }
}
