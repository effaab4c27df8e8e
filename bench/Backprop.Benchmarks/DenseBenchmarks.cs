// Fused dense forward (GEMM + bias + ReLU in the store) against OpenBLAS sgemm + a bias/ReLU pass.
using Backprop.Kernels.Blas;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cpu.Ops;
using BenchmarkDotNet.Attributes;

namespace Backprop.Benchmarks;

[MemoryDiagnoser]
public unsafe class DenseBenchmarks
{
    private float* _x, _w, _b, _y;
    private CpuContext _ctx = null!;

    [Params("128x784x256", "256x1024x1024")]
    public string Shape { get; set; } = "";

    [Params(1, 2)]
    public int Threads { get; set; }

    private int _batch, _in, _out;

    [GlobalSetup]
    public void Setup()
    {
        var d = Shape.Split('x').Select(int.Parse).ToArray();
        (_batch, _in, _out) = (d[0], d[1], d[2]);
        _x = Alloc(_batch * _in);
        _w = Alloc(_out * _in);
        _b = Alloc(_out);
        _y = Alloc(_batch * _out);
        _ctx = new CpuContext(Threads);
        OpenBlas.Threads = Threads;
    }

    private static float* Alloc(int n)
    {
        var p = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)n * 4, 64);
        var r = new Random(n);
        for (int i = 0; i < n; i++) p[i] = (float)(r.NextDouble() * 2 - 1);
        return p;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _ctx.Dispose();
        foreach (var p in new[] { _x, _w, _b, _y }) System.Runtime.InteropServices.NativeMemory.AlignedFree(p);
    }

    [Benchmark(Baseline = true)]
    public void OpenBlasThenBiasRelu()
    {
        OpenBlas.Sgemm(Transpose.N, Transpose.T, _batch, _out, _in, 1f, _x, _in, _w, _in, 0f, _y, _out);
        Elementwise.BiasForward(_ctx.Isa, default(ReLU<float>), _y, _b, _batch, _out, null);
    }

    [Benchmark]
    public void FusedFwd() => Dense.Fwd(_ctx, default(ReLU<float>), _batch, _in, _out, _x, _w, _b, _y, null);
}
