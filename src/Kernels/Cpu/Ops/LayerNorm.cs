// Layer normalization over each row's features, forward and backward, on the vector ladder:
//   Forward:  mean = Σx / n;  var = Σ(x − mean)² / n (biased, as torch);  rstd = 1 / sqrt(var + eps)
//             y = (x − mean) · rstd ⊙ weight + bias;  stats[r] = (mean, rstd)
//   Backward: x̂ = (x − mean) · rstd;  g = dy ⊙ weight;  a = Σg / n;  c = Σ(g ⊙ x̂) / n
//             dx = rstd · (g − a − x̂ · c);  dweight = Σ_rows dy ⊙ x̂;  dbias = Σ_rows dy
// Two passes over a row for its variance (not E[x²] − mean²: no cancellation on features with a large
// mean); rows are independent, and the parameter gradients add the rows in order, so the results do not
// depend on how the rows are split over threads. A constant row has var = 0 and x̂ = 0: y = bias, and its
// rstd is 1 / sqrt(eps), as torch computes it.
// On a context: forward and dx split the rows over its threads, dweight and dbias split the features
// (each feature's sum still adds every row in order), so the results are the same on any thread count.
using System.Numerics;
using System.Runtime.Intrinsics;
using Backprop.Kernels.Threading;

namespace Backprop.Kernels.Cpu.Ops;

/// <summary>Layer normalization kernels over [rows, cols] row-major arrays.</summary>
public static unsafe class LayerNorm
{
    /// <summary>y = LayerNorm(x) over rows [0, rows) of <paramref name="cols"/> features; stats receives (mean, rstd) per row.</summary>
    public static void Forward<T>(Isa isa, int rows, int cols, double eps, T* x, T* weight, T* bias, T* y, T* stats) where T : unmanaged, IFloatingPointIeee754<T>
    {
        T n = T.CreateChecked(cols), e = T.CreateChecked(eps);
        for (int r = 0; r < rows; r++)
        {
            T* xr = x + (nint)r * cols;
            var sum = new SumKernel<T> { X = xr };
            VectorLadder.Run<T, SumKernel<T>>(isa, ref sum, cols);
            T mean = sum.Total / n;
            var sq = new SquaredDeviationKernel<T> { X = xr, Mean = mean };
            VectorLadder.Run<T, SquaredDeviationKernel<T>>(isa, ref sq, cols);
            T rstd = T.One / T.Sqrt(sq.Total / n + e);
            var k = new NormalizeKernel<T> { X = xr, Y = y + (nint)r * cols, W = weight, B = bias, Mean = mean, Rstd = rstd };
            VectorLadder.Run<T, NormalizeKernel<T>>(isa, ref k, cols);
            stats[2 * r] = mean;
            stats[2 * r + 1] = rstd;
        }
    }

    /// <summary>Forward over the threads of <paramref name="ctx"/> (rows split; the same results as one thread).</summary>
    public static void Forward<T>(CpuContext ctx, int rows, int cols, double eps, T* x, T* weight, T* bias, T* y, T* stats) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var job = new Job<T> { Isa = ctx.Isa, Rows = rows, Cols = cols, Eps = eps, X = x, W = weight, B = bias, Y = y, Stats = stats };
        ctx.Pool.Run(ref job, Parts(ctx, rows, cols, rows));
    }

    /// <summary>
    /// Backward over the threads of <paramref name="ctx"/>: dx with the rows split, then dweight and dbias with the features split
    /// (rows added in order), so the results are the same on any thread count.
    /// </summary>
    public static void Backward<T>(CpuContext ctx, int rows, int cols, T* dy, T* x, T* weight, T* stats, T* dweight, T* dbias, T* dx) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var job = new Job<T> { Isa = ctx.Isa, Rows = rows, Cols = cols, Dy = dy, X = x, W = weight, Stats = stats, Dw = dweight, Db = dbias, Dx = dx, Backward = true };
        if (dx != null) ctx.Pool.Run(ref job, Parts(ctx, rows, cols, rows));
        job.Sums = true;
        ctx.Pool.Run(ref job, Parts(ctx, rows, cols, (cols + 15) / 16));
    }

    // One part per thread when the work is worth a dispatch (at least 16384 elements and one unit of split per part).
    private static int Parts(CpuContext ctx, int rows, int cols, int units) =>
        (long)rows * cols < 16384 ? 1 : Math.Max(1, Math.Min(ctx.Threads, units));

    private struct Job<T> : IParallelJob where T : unmanaged, IFloatingPointIeee754<T>
    {
        public Isa Isa;
        public int Rows, Cols;
        public double Eps;
        public T* X, W, B, Y, Stats, Dy, Dw, Db, Dx;
        public bool Backward, Sums;

        public readonly void Execute(int part, int parts)
        {
            if (!Backward)
            {
                int r0 = (int)((long)Rows * part / parts), r1 = (int)((long)Rows * (part + 1) / parts);
                if (r1 > r0) Forward(Isa, r1 - r0, Cols, Eps, X + (nint)r0 * Cols, W, B, Y + (nint)r0 * Cols, Stats + 2 * r0);
            }
            else if (!Sums)
            {
                int r0 = (int)((long)Rows * part / parts), r1 = (int)((long)Rows * (part + 1) / parts);
                for (int r = r0; r < r1; r++) DataRow(Isa, Cols, Dy + (nint)r * Cols, X + (nint)r * Cols, W, Stats[2 * r], Stats[2 * r + 1], Dx + (nint)r * Cols);
            }
            else
            {
                int units = (Cols + 15) / 16;
                int c0 = Math.Min(Cols, units * part / parts * 16), c1 = Math.Min(Cols, units * (part + 1) / parts * 16);
                if (c1 > c0) ParameterSums(Isa, Rows, Cols, c0, c1, Dy, X, Stats, Dw, Db);
            }
        }
    }

    // dx of one row.
    private static void DataRow<T>(Isa isa, int cols, T* dy, T* x, T* weight, T mean, T rstd, T* dx) where T : unmanaged, IFloatingPointIeee754<T>
    {
        T n = T.CreateChecked(cols);
        var s = new BackwardSumsKernel<T> { X = x, Dy = dy, W = weight, Mean = mean, Rstd = rstd };
        VectorLadder.Run<T, BackwardSumsKernel<T>>(isa, ref s, cols);
        var k = new DataKernel<T> { X = x, Dy = dy, W = weight, Dx = dx, Mean = mean, Rstd = rstd, A = s.TotalG / n, C = s.TotalGx / n };
        VectorLadder.Run<T, DataKernel<T>>(isa, ref k, cols);
    }

    // dweight and dbias of features [c0, c1) (overwritten), every row added in order.
    private static void ParameterSums<T>(Isa isa, int rows, int cols, int c0, int c1, T* dy, T* x, T* stats, T* dweight, T* dbias) where T : unmanaged, IFloatingPointIeee754<T>
    {
        new Span<T>(dweight + c0, c1 - c0).Clear();
        new Span<T>(dbias + c0, c1 - c0).Clear();
        for (int r = 0; r < rows; r++)
        {
            var k = new SumsKernel<T> { X = x + (nint)r * cols + c0, Dy = dy + (nint)r * cols + c0, Dw = dweight + c0, Db = dbias + c0, Mean = stats[2 * r], Rstd = stats[2 * r + 1] };
            VectorLadder.Run<T, SumsKernel<T>>(isa, ref k, c1 - c0);
        }
    }

    /// <summary>
    /// dweight = Σ dy ⊙ x̂ and dbias = Σ dy (overwritten), and dx (when not null) over rows [0, rows); x and stats as forward
    /// saw and wrote them.
    /// </summary>
    public static void Backward<T>(Isa isa, int rows, int cols, T* dy, T* x, T* weight, T* stats, T* dweight, T* dbias, T* dx) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (dx != null)
            for (int r = 0; r < rows; r++) DataRow(isa, cols, dy + (nint)r * cols, x + (nint)r * cols, weight, stats[2 * r], stats[2 * r + 1], dx + (nint)r * cols);
        ParameterSums(isa, rows, cols, 0, cols, dy, x, stats, dweight, dbias);
    }

    private struct SumKernel<T> : IVectorKernel<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public T* X;
        public Vector512<T> S512;
        public Vector256<T> S256;
        public Vector128<T> S128;
        public T S1;
        public readonly T Total => Vector512.Sum(S512) + Vector256.Sum(S256) + Vector128.Sum(S128) + S1;
        public void Step512(nint i) => S512 += Vector512.Load(X + i);
        public void Step256(nint i) => S256 += Vector256.Load(X + i);
        public void Step128(nint i) => S128 += Vector128.Load(X + i);
        public void Step1(nint i) => S1 += X[i];
    }

    private struct SquaredDeviationKernel<T> : IVectorKernel<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public T* X;
        public T Mean;
        public Vector512<T> S512;
        public Vector256<T> S256;
        public Vector128<T> S128;
        public T S1;
        public readonly T Total => Vector512.Sum(S512) + Vector256.Sum(S256) + Vector128.Sum(S128) + S1;
        public void Step512(nint i) { var d = Vector512.Load(X + i) - Vector512.Create(Mean); S512 += d * d; }
        public void Step256(nint i) { var d = Vector256.Load(X + i) - Vector256.Create(Mean); S256 += d * d; }
        public void Step128(nint i) { var d = Vector128.Load(X + i) - Vector128.Create(Mean); S128 += d * d; }
        public void Step1(nint i) { var d = X[i] - Mean; S1 += d * d; }
    }

    private struct NormalizeKernel<T> : IVectorKernel<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public T* X, Y, W, B;
        public T Mean, Rstd;
        public readonly void Step512(nint i) =>
            Vector512.Store((Vector512.Load(X + i) - Vector512.Create(Mean)) * Vector512.Create(Rstd) * Vector512.Load(W + i) + Vector512.Load(B + i), Y + i);
        public readonly void Step256(nint i) =>
            Vector256.Store((Vector256.Load(X + i) - Vector256.Create(Mean)) * Vector256.Create(Rstd) * Vector256.Load(W + i) + Vector256.Load(B + i), Y + i);
        public readonly void Step128(nint i) =>
            Vector128.Store((Vector128.Load(X + i) - Vector128.Create(Mean)) * Vector128.Create(Rstd) * Vector128.Load(W + i) + Vector128.Load(B + i), Y + i);
        public readonly void Step1(nint i) => Y[i] = (X[i] - Mean) * Rstd * W[i] + B[i];
    }

    // Σ g and Σ g ⊙ x̂ of one row, g = dy ⊙ weight.
    private struct BackwardSumsKernel<T> : IVectorKernel<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public T* X, Dy, W;
        public T Mean, Rstd;
        public Vector512<T> G512, Gx512;
        public Vector256<T> G256, Gx256;
        public Vector128<T> G128, Gx128;
        public T G1, Gx1;
        public readonly T TotalG => Vector512.Sum(G512) + Vector256.Sum(G256) + Vector128.Sum(G128) + G1;
        public readonly T TotalGx => Vector512.Sum(Gx512) + Vector256.Sum(Gx256) + Vector128.Sum(Gx128) + Gx1;

        public void Step512(nint i)
        {
            var g = Vector512.Load(Dy + i) * Vector512.Load(W + i);
            G512 += g;
            Gx512 += g * ((Vector512.Load(X + i) - Vector512.Create(Mean)) * Vector512.Create(Rstd));
        }

        public void Step256(nint i)
        {
            var g = Vector256.Load(Dy + i) * Vector256.Load(W + i);
            G256 += g;
            Gx256 += g * ((Vector256.Load(X + i) - Vector256.Create(Mean)) * Vector256.Create(Rstd));
        }

        public void Step128(nint i)
        {
            var g = Vector128.Load(Dy + i) * Vector128.Load(W + i);
            G128 += g;
            Gx128 += g * ((Vector128.Load(X + i) - Vector128.Create(Mean)) * Vector128.Create(Rstd));
        }

        public void Step1(nint i)
        {
            var g = Dy[i] * W[i];
            G1 += g;
            Gx1 += g * ((X[i] - Mean) * Rstd);
        }
    }

    // dx = rstd · (dy ⊙ weight − a − x̂ · c).
    private struct DataKernel<T> : IVectorKernel<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public T* X, Dy, W, Dx;
        public T Mean, Rstd, A, C;
        public readonly void Step512(nint i) =>
            Vector512.Store(Vector512.Create(Rstd) * (Vector512.Load(Dy + i) * Vector512.Load(W + i) - Vector512.Create(A) - (Vector512.Load(X + i) - Vector512.Create(Mean)) * Vector512.Create(Rstd) * Vector512.Create(C)), Dx + i);
        public readonly void Step256(nint i) =>
            Vector256.Store(Vector256.Create(Rstd) * (Vector256.Load(Dy + i) * Vector256.Load(W + i) - Vector256.Create(A) - (Vector256.Load(X + i) - Vector256.Create(Mean)) * Vector256.Create(Rstd) * Vector256.Create(C)), Dx + i);
        public readonly void Step128(nint i) =>
            Vector128.Store(Vector128.Create(Rstd) * (Vector128.Load(Dy + i) * Vector128.Load(W + i) - Vector128.Create(A) - (Vector128.Load(X + i) - Vector128.Create(Mean)) * Vector128.Create(Rstd) * Vector128.Create(C)), Dx + i);
        public readonly void Step1(nint i) => Dx[i] = Rstd * (Dy[i] * W[i] - A - (X[i] - Mean) * Rstd * C);
    }

    // dweight += dy ⊙ x̂ and dbias += dy for one row's features.
    private struct SumsKernel<T> : IVectorKernel<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public T* X, Dy, Dw, Db;
        public T Mean, Rstd;

        public readonly void Step512(nint i)
        {
            var dy = Vector512.Load(Dy + i);
            Vector512.Store(Vector512.Load(Dw + i) + dy * ((Vector512.Load(X + i) - Vector512.Create(Mean)) * Vector512.Create(Rstd)), Dw + i);
            Vector512.Store(Vector512.Load(Db + i) + dy, Db + i);
        }

        public readonly void Step256(nint i)
        {
            var dy = Vector256.Load(Dy + i);
            Vector256.Store(Vector256.Load(Dw + i) + dy * ((Vector256.Load(X + i) - Vector256.Create(Mean)) * Vector256.Create(Rstd)), Dw + i);
            Vector256.Store(Vector256.Load(Db + i) + dy, Db + i);
        }

        public readonly void Step128(nint i)
        {
            var dy = Vector128.Load(Dy + i);
            Vector128.Store(Vector128.Load(Dw + i) + dy * ((Vector128.Load(X + i) - Vector128.Create(Mean)) * Vector128.Create(Rstd)), Dw + i);
            Vector128.Store(Vector128.Load(Db + i) + dy, Db + i);
        }

        public readonly void Step1(nint i)
        {
            Dw[i] += Dy[i] * ((X[i] - Mean) * Rstd);
            Db[i] += Dy[i];
        }
    }
}
