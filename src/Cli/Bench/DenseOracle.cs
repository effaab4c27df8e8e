// The correctness oracle of `bench dense --versus onednn`, run before any timing: our three dense kernels
// and oneDNN's primitives on the same inputs must agree element by element within a float32 GEMM
// tolerance, relative to the scale of each element's rounding error, Σ_k |a_k||b_k| (+ |bias|):
//   |ours − oneDNN| ≤ 1e-6 + 4e-7·(k + 2)·scale      (the bound the GEMM tests use against a double reference)
// The scales are GEMMs of the absolute values (computed with our kernels: they only size the tolerance).
// ReLU cannot widen a difference (|relu(a) − relu(b)| ≤ |a − b|) and the ReLU mask comes from the same
// saved values on both sides, so the plain GEMM bound holds for the fused results too.
using System.Globalization;
using System.Runtime.InteropServices;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cpu.Ops;

namespace Backprop.Cli.Bench;

/// <summary>Ours and oneDNN disagree beyond the tolerance: the benchmark's numbers would mean nothing.</summary>
internal sealed class OracleMismatchException(string message) : Exception(message);

/// <summary>The worst |ours − oneDNN| / tolerance of each result (all ≤ 1 when they agree).</summary>
internal readonly record struct OracleResult(double Fwd, double BwdData, double DiffWeights, double DiffBias)
{
    public double Worst => Math.Max(Math.Max(Fwd, BwdData), Math.Max(DiffWeights, DiffBias));
}

/// <summary>The operands and results of one dense layer on both sides, in 64-byte aligned native memory.</summary>
internal sealed unsafe class DenseLayerBuffers : IDisposable
{
    private readonly List<nint> _all = [];

    public DenseLayerBuffers(int batch, int inFeatures, int outFeatures)
    {
        Batch = batch;
        In = inFeatures;
        Out = outFeatures;
        long bi = (long)batch * inFeatures, bo = (long)batch * outFeatures, oi = (long)outFeatures * inFeatures;
        X = Alloc(bi); W = Alloc(oi); B = Alloc(outFeatures); Dy = Alloc(bo); Saved = Alloc(bi);
        YOurs = Alloc(bo); YOneDnn = Alloc(bo); DxOurs = Alloc(bi); DxOneDnn = Alloc(bi);
        DwOurs = Alloc(oi); DwOneDnn = Alloc(oi); DbOurs = Alloc(outFeatures); DbOneDnn = Alloc(outFeatures);
    }

    public int Batch { get; }
    public int In { get; }
    public int Out { get; }

    public float* X { get; }
    public float* W { get; }
    public float* B { get; }
    public float* Dy { get; }
    /// <summary>The previous layer's ReLU output (≥ 0), whose mask BwdData applies.</summary>
    public float* Saved { get; }
    public float* YOurs { get; }
    public float* YOneDnn { get; }
    public float* DxOurs { get; }
    public float* DxOneDnn { get; }
    public float* DwOurs { get; }
    /// <summary>oneDNN's dW reordered to plain [out, in].</summary>
    public float* DwOneDnn { get; }
    public float* DbOurs { get; }
    public float* DbOneDnn { get; }

    /// <summary>Uniform inputs in [-1, 1] (W scaled by 1/√in), bias in [-1, 1] + <paramref name="biasShift"/>, saved = relu(uniform).</summary>
    public static DenseLayerBuffers Random(int batch, int inFeatures, int outFeatures, int seed, float biasShift = 0f)
    {
        var d = new DenseLayerBuffers(batch, inFeatures, outFeatures);
        var r = new Random(seed);
        float ws = 1f / MathF.Sqrt(inFeatures);
        Fill(d.X, (long)batch * inFeatures, r, 1f, 0f);
        Fill(d.W, (long)outFeatures * inFeatures, r, ws, 0f);
        Fill(d.B, outFeatures, r, 1f, biasShift);
        Fill(d.Dy, (long)batch * outFeatures, r, 1f, 0f);
        Fill(d.Saved, (long)batch * inFeatures, r, 1f, 0f);
        for (long i = 0; i < (long)batch * inFeatures; i++) d.Saved[i] = MathF.Max(d.Saved[i], 0f);
        return d;
    }

    private static void Fill(float* p, long n, Random r, float scale, float shift)
    {
        for (long i = 0; i < n; i++) p[i] = (float)(r.NextDouble() * 2 - 1) * scale + shift;
    }

    private float* Alloc(long n)
    {
        nuint bytes = (nuint)Math.Max(n * sizeof(float), 64);
        var p = (float*)NativeMemory.AlignedAlloc(bytes, 64);
        NativeMemory.Clear(p, bytes);
        _all.Add((nint)p);
        return p;
    }

    public void Dispose()
    {
        foreach (var p in _all) NativeMemory.AlignedFree((void*)p);
        _all.Clear();
    }
}

internal static unsafe class DenseOracle
{
    /// <summary>The tolerance of one element: 1e-6 + 4e-7·(k + 2)·scale.</summary>
    public static double Tolerance(int k, double scale) => 1e-6 + 4e-7 * (k + 2) * scale;

    /// <summary>Our three kernels into the *Ours buffers.</summary>
    public static void RunOurs(CpuContext ctx, DenseLayerBuffers d)
    {
        var relu = default(ReLU<float>);
        Dense.Fwd(ctx, relu, d.Batch, d.In, d.Out, d.X, d.W, d.B, d.YOurs, null);
        Dense.BwdData(ctx, relu, d.Batch, d.In, d.Out, d.Dy, d.W, d.Saved, d.DxOurs);
        Dense.BwdWeights(ctx, GradientMode.Overwrite, d.Batch, d.In, d.Out, d.Dy, d.X, d.DwOurs, d.DbOurs);
    }

    /// <summary>oneDNN's three into the *OneDnn buffers (dW reordered to plain).</summary>
    public static void RunOneDnn(OneDnnDense dnnl)
    {
        dnnl.Forward();
        dnnl.BackwardData();
        dnnl.BackwardWeights();
        dnnl.CopyDiffWeightsToPlain();
    }

    /// <summary>
    /// Runs both sides once and compares them; throws <see cref="OracleMismatchException"/> naming
    /// <paramref name="label"/>, the result and the element at the first disagreement.
    /// </summary>
    public static OracleResult Check(CpuContext ctx, DenseLayerBuffers d, OneDnnDense dnnl, string label)
    {
        RunOurs(ctx, d);
        RunOneDnn(dnnl);
        return Compare(ctx, d, label);
    }

    /// <summary>Compares the results already in <paramref name="d"/>.</summary>
    public static OracleResult Compare(CpuContext ctx, DenseLayerBuffers d, string label)
    {
        int batch = d.Batch, inF = d.In, outF = d.Out;
        using var abs = new DenseLayerBuffers(batch, inF, outF);
        Abs(d.X, abs.X, (long)batch * inF);
        Abs(d.W, abs.W, (long)outF * inF);
        Abs(d.B, abs.B, outF);
        Abs(d.Dy, abs.Dy, (long)batch * outF);
        // Scales: |X|·|W|ᵀ + |b|, |dY|·|W|, |dY|ᵀ·|X| and Σ|dY|, into abs's result buffers.
        Dense.Fwd(ctx, default(Identity<float>), batch, inF, outF, abs.X, abs.W, abs.B, abs.YOurs, null);
        Dense.BwdData(ctx, batch, inF, outF, abs.Dy, abs.W, abs.DxOurs);
        Dense.BwdWeights(ctx, GradientMode.Overwrite, batch, inF, outF, abs.Dy, abs.X, abs.DwOurs, abs.DbOurs);
        return new OracleResult(
            Worst($"{label} Fwd bias+ReLU Y", d.YOurs, d.YOneDnn, abs.YOurs, batch, outF, inF),
            Worst($"{label} BwdData ReLU mask dX", d.DxOurs, d.DxOneDnn, abs.DxOurs, batch, inF, outF),
            Worst($"{label} BwdWeights dW", d.DwOurs, d.DwOneDnn, abs.DwOurs, outF, inF, batch),
            Worst($"{label} BwdWeights db", d.DbOurs, d.DbOneDnn, abs.DbOurs, 1, outF, batch));
    }

    private static void Abs(float* from, float* to, long n)
    {
        for (long i = 0; i < n; i++) to[i] = MathF.Abs(from[i]);
    }

    /// <summary>The worst |ours − theirs| / tolerance over [rows, cols]; throws at the first element beyond it (or NaN).</summary>
    private static double Worst(string what, float* ours, float* theirs, float* scale, int rows, int cols, int k)
    {
        double worst = 0;
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
            {
                long at = (long)i * cols + j;
                double diff = Math.Abs((double)ours[at] - theirs[at]);
                double tol = Tolerance(k, scale[at]);
                if (!(diff <= tol))
                    throw new OracleMismatchException(string.Create(CultureInfo.InvariantCulture,
                        $"{what}: oneDNN and ours differ at [{i}, {j}]: ours {ours[at]:G9}, oneDNN {theirs[at]:G9}, |difference| {diff:G3} > tolerance {tol:G3} (scale {scale[at]:G4}, k {k})."));
                worst = Math.Max(worst, diff / tol);
            }
        return worst;
    }
}
