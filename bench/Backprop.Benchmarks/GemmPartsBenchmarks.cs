// Where a dense layer's GEMM spends its time, one thread, float, on this machine's widest micro-kernel (AVX-512 or
// AVX2): the whole call (Gemm.Run as the dense kernels call it) against its parts run alone, with the driver's own
// loops and blocks:
//   PackB   every B block packed (jc, pc), as the call packs them (a non-transposed B is read in place: only a last
//           panel narrower than NR is packed, so BwdData and BwdWeights have next to nothing here)
//   PackA   every A block packed (jc, pc, ic)
//   Kernel  the micro-kernel over already packed blocks (B in place where the call reads it so): the FMAs, the C tile
//           loads and stores
// Full ~ PackB + PackA + Kernel; Kernel alone against the FMA peak is the micro-kernel's efficiency.
//   ./build.sh BenchSuite --bench-args='--filter *GemmParts* --job short'
using Backprop.Kernels.Cpu;
using BenchmarkDotNet.Attributes;

namespace Backprop.Benchmarks;

public unsafe class GemmPartsBenchmarks
{
    // The three products of a 784 -> 256 layer at batch 128 and of a 1024 -> 1024 layer at batch 256:
    // Fwd  Y = X W^T (M = batch, N = out, K = in; A and B transposed into panels),
    // BwdData  dX = dY W (M = batch, N = in, K = out), BwdWeights  dW = dY^T X (M = out, N = in, K = batch).
    [Params("Fwd 128x784x256", "BwdData 128x784x256", "BwdWeights 128x784x256", "Fwd 256x1024x1024", "BwdData 256x1024x1024", "BwdWeights 256x1024x1024")]
    public string Case { get; set; } = "";

    private bool _ta, _tb;
    private int _m, _n, _k, _lda, _ldb;
    private float* _a, _b, _c, _packA, _packB;
    private CpuContext _ctx = null!;

    [GlobalSetup]
    public void Setup()
    {
        var parts = Case.Split(' ');
        var d = parts[1].Split('x').Select(int.Parse).ToArray();
        int batch = d[0], inF = d[1], outF = d[2];
        (_m, _n, _k, _ta, _tb) = parts[0] switch
        {
            "Fwd" => (batch, outF, inF, false, true),
            "BwdData" => (batch, inF, outF, false, false),
            _ => (outF, inF, batch, true, false),
        };
        _lda = _ta ? _m : _k;
        _ldb = _tb ? _k : _n;
        _a = GemmBenchmarks.Alloc(_m * _k, 1);
        _b = GemmBenchmarks.Alloc(_k * _n, 2);
        _c = GemmBenchmarks.Alloc(_m * _n, 3);
        _packA = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)MicroKernels.PackABytes, 64);
        _packB = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)MicroKernels.PackBBytes, 64);
        _isa = CpuIsa.Supported >= Isa.Avx512 ? Isa.Avx512 : Isa.Avx2;
        if (CpuIsa.Supported < Isa.Avx2) throw new PlatformNotSupportedException($"GemmParts measures the vector micro-kernels; this CPU's best ISA path is {CpuIsa.Supported}.");
        _ctx = new CpuContext(1, _isa);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _ctx.Dispose();
        foreach (var p in new[] { _a, _b, _c, _packA, _packB }) System.Runtime.InteropServices.NativeMemory.AlignedFree(p);
    }

    private Isa _isa;

    // As the driver decides (GemmJob.InPlaceB): a non-transposed B whose micro-panel stays in L1, or few rows.
    private bool BInPlace<TK>() where TK : struct, IMicroKernel<float> => !_tb && GemmDriver.BInPlaceFits(_b, _ldb, _m, TK.MR);

    [Benchmark(Baseline = true)]
    public void Full()
    {
        var epi = default(IdentityEpilogue<float>);
        GemmDriver.Run(_ctx, _ta, _tb, _m, _n, _k, 1f, _a, _lda, _b, _ldb, 0f, _c, _n, ref epi);
    }

    [Benchmark]
    public void PackB()
    {
        if (_isa == Isa.Avx512) PackB<MicroKernelAvx512<float>>();
        else PackB<MicroKernelAvx2<float>>();
    }

    [Benchmark]
    public void PackA()
    {
        if (_isa == Isa.Avx512) PackA<MicroKernelAvx512<float>>();
        else PackA<MicroKernelAvx2<float>>();
    }

    [Benchmark]
    public void Kernel()
    {
        if (_isa == Isa.Avx512) Kernel<MicroKernelAvx512<float>>();
        else Kernel<MicroKernelAvx2<float>>();
    }

    private void PackB<TK>() where TK : struct, IMicroKernel<float>
    {
        int NR = TK.NR;
        var bl = Blocks<TK, float>.Value;
        int NC = GemmBlocks.Step(_n, bl.NC, NR), KC = GemmBlocks.Step(_k, bl.KC, 8);
        for (int jc = 0; jc < _n; jc += NC)
            for (int pc = 0; pc < _k; pc += KC)
            {
                int nc = Math.Min(NC, _n - jc), kc = Math.Min(KC, _k - pc);
                int fullN = BInPlace<TK>() ? nc / NR * NR : 0;
                if (_tb) GemmPack.Block(true, _b + (nint)jc * _ldb + pc, _ldb, nc, kc, NR, _packB, true);
                else if (fullN < nc) GemmPack.Block(false, _b + (nint)pc * _ldb + jc + fullN, _ldb, nc - fullN, kc, NR, _packB, true);
            }
    }

    private void PackA<TK>() where TK : struct, IMicroKernel<float>
    {
        int MR = TK.MR, NR = TK.NR;
        var bl = Blocks<TK, float>.Value;
        int NC = GemmBlocks.Step(_n, bl.NC, NR), KC = GemmBlocks.Step(_k, bl.KC, 8), MC = GemmBlocks.Step(_m, bl.MC, MR);
        for (int jc = 0; jc < _n; jc += NC)
            for (int pc = 0; pc < _k; pc += KC)
                for (int ic = 0; ic < _m; ic += MC)
                {
                    int mc = Math.Min(MC, _m - ic), kc = Math.Min(KC, _k - pc);
                    if (_ta) GemmPack.Block(false, _a + (nint)pc * _lda + ic, _lda, mc, kc, MR, _packA, true);
                    else GemmPack.Block(true, _a + (nint)ic * _lda + pc, _lda, mc, kc, MR, _packA, true);
                }
    }

    private void Kernel<TK>() where TK : struct, IMicroKernel<float>
    {
        int MR = TK.MR, NR = TK.NR;
        var bl = Blocks<TK, float>.Value;
        var epi = default(IdentityEpilogue<float>);
        int NC = GemmBlocks.Step(_n, bl.NC, NR), KC = GemmBlocks.Step(_k, bl.KC, 8), MC = GemmBlocks.Step(_m, bl.MC, MR);
        for (int jc = 0; jc < _n; jc += NC)
        {
            int nc = Math.Min(NC, _n - jc);
            for (int pc = 0; pc < _k; pc += KC)
            {
                int kc = Math.Min(KC, _k - pc);
                int fullN = BInPlace<TK>() ? nc / NR * NR : 0;
                var st = new TileStore<float>(1f, 0f, first: pc == 0, last: pc + kc == _k);
                for (int ic = 0; ic < _m; ic += MC)
                {
                    int mc = Math.Min(MC, _m - ic);
                    for (int jr = 0; jr < nc; jr += NR)
                    {
                        bool inPlace = jr < fullN;
                        float* bp = inPlace ? _b + (nint)pc * _ldb + jc + jr : _packB + (nint)(jr - fullN) * kc;
                        for (int ir = 0; ir < mc; ir += MR)
                            TK.Run(kc, _packA + (nint)ir * kc, bp, inPlace ? _ldb : NR,
                                _c + (nint)(ic + ir) * _n + jc + jr, _n, Math.Min(MR, mc - ir), Math.Min(NR, nc - jr), in st, ref epi, ic + ir, jc + jr);
                    }
                }
            }
        }
    }
}
