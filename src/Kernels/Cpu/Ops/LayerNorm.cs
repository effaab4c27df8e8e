// Layer normalization over each row's features, forward and backward, on the vector ladder:
//   Forward:  mean = Σx / n;  var = Σ(x − mean)² / n (biased, as torch);  rstd = 1 / sqrt(var + eps)
//             y = (x − mean) · rstd ⊙ weight + bias;  stats[r] = (mean, rstd)
//   Backward: x̂ = (x − mean) · rstd;  g = dy ⊙ weight;  a = Σg / n;  c = Σ(g ⊙ x̂) / n
//             dx = rstd · (g − a − x̂ · c);  dweight = Σ_rows dy ⊙ x̂;  dbias = Σ_rows dy
// Two passes over a row for its variance (not E[x²] − mean²: no cancellation on features with a large
// mean); rows are independent, and the parameter gradients add the rows in order, so the results do not
// depend on how the rows are split over threads. A constant row has var = 0 and x̂ = 0: y = bias, and its
// rstd is 1 / sqrt(eps), as torch computes it.
using System.Numerics;
using System.Runtime.Intrinsics;

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

    /// <summary>
    /// dweight = Σ dy ⊙ x̂ and dbias = Σ dy (overwritten), and dx (when not null) over rows [0, rows); x and stats as forward
    /// saw and wrote them.
    /// </summary>
    public static void Backward<T>(Isa isa, int rows, int cols, T* dy, T* x, T* weight, T* stats, T* dweight, T* dbias, T* dx) where T : unmanaged, IFloatingPointIeee754<T>
    {
        new Span<T>(dweight, cols).Clear();
        new Span<T>(dbias, cols).Clear();
        T n = T.CreateChecked(cols);
        for (int r = 0; r < rows; r++)
        {
            T* xr = x + (nint)r * cols, dyr = dy + (nint)r * cols;
            T mean = stats[2 * r], rstd = stats[2 * r + 1];
            T a = T.Zero, c = T.Zero;
            if (dx != null)
            {
                var s = new BackwardSumsKernel<T> { X = xr, Dy = dyr, W = weight, Mean = mean, Rstd = rstd };
                VectorLadder.Run<T, BackwardSumsKernel<T>>(isa, ref s, cols);
                a = s.TotalG / n;
                c = s.TotalGx / n;
            }
            var k = new BackwardKernel<T> { X = xr, Dy = dyr, W = weight, Dw = dweight, Db = dbias, Dx = dx == null ? null : dx + (nint)r * cols, Mean = mean, Rstd = rstd, A = a, C = c };
            VectorLadder.Run<T, BackwardKernel<T>>(isa, ref k, cols);
        }
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

    // dweight += dy ⊙ x̂, dbias += dy, and dx = rstd · (dy ⊙ weight − a − x̂ · c) when Dx is not null.
    private struct BackwardKernel<T> : IVectorKernel<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public T* X, Dy, W, Dw, Db, Dx;
        public T Mean, Rstd, A, C;

        public readonly void Step512(nint i)
        {
            var xh = (Vector512.Load(X + i) - Vector512.Create(Mean)) * Vector512.Create(Rstd);
            var dy = Vector512.Load(Dy + i);
            Vector512.Store(Vector512.Load(Dw + i) + dy * xh, Dw + i);
            Vector512.Store(Vector512.Load(Db + i) + dy, Db + i);
            if (Dx != null) Vector512.Store(Vector512.Create(Rstd) * (dy * Vector512.Load(W + i) - Vector512.Create(A) - xh * Vector512.Create(C)), Dx + i);
        }

        public readonly void Step256(nint i)
        {
            var xh = (Vector256.Load(X + i) - Vector256.Create(Mean)) * Vector256.Create(Rstd);
            var dy = Vector256.Load(Dy + i);
            Vector256.Store(Vector256.Load(Dw + i) + dy * xh, Dw + i);
            Vector256.Store(Vector256.Load(Db + i) + dy, Db + i);
            if (Dx != null) Vector256.Store(Vector256.Create(Rstd) * (dy * Vector256.Load(W + i) - Vector256.Create(A) - xh * Vector256.Create(C)), Dx + i);
        }

        public readonly void Step128(nint i)
        {
            var xh = (Vector128.Load(X + i) - Vector128.Create(Mean)) * Vector128.Create(Rstd);
            var dy = Vector128.Load(Dy + i);
            Vector128.Store(Vector128.Load(Dw + i) + dy * xh, Dw + i);
            Vector128.Store(Vector128.Load(Db + i) + dy, Db + i);
            if (Dx != null) Vector128.Store(Vector128.Create(Rstd) * (dy * Vector128.Load(W + i) - Vector128.Create(A) - xh * Vector128.Create(C)), Dx + i);
        }

        public readonly void Step1(nint i)
        {
            var xh = (X[i] - Mean) * Rstd;
            var dy = Dy[i];
            Dw[i] += dy * xh;
            Db[i] += dy;
            if (Dx != null) Dx[i] = Rstd * (dy * W[i] - A - xh * C);
        }
    }
}
