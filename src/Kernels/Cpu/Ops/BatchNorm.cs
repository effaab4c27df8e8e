// Batch normalization over the rows of a [rows, cols] row-major array (torch.nn.BatchNorm1d on
// [batch, features]), on the vector ladder across the features:
//   Training:  mean = Σ_r x / n;  var = Σ_r (x − mean)² / n (biased);  rstd = 1 / sqrt(var + eps)
//              y = (x − mean) · rstd ⊙ weight + bias;  stats = [mean; rstd]
//              running_mean ← (1 − m)·running_mean + m·mean;  running_var ← (1 − m)·running_var + m·var·n/(n − 1)
//   Inference: y = (x − running_mean) / sqrt(running_var + eps) ⊙ weight + bias
//   Backward:  x̂ = (x − mean) · rstd;  dbias = Σ_r dy;  dweight = Σ_r dy ⊙ x̂
//              dx = weight · rstd / n · (n·dy − dbias − x̂ ⊙ dweight)
// Rows are added in order, so the results do not depend on a thread split; the variance takes a second
// pass over the rows (no cancellation for features with a large mean). A constant feature has var = 0,
// x̂ = 0 and y = bias, as in torch. On a context the features are split over its threads (each one's
// statistics and gradients still add every row in order), so the results are the same on any thread count.
using System.Numerics;
using System.Runtime.Intrinsics;
using Backprop.Kernels.Threading;

namespace Backprop.Kernels.Cpu.Ops;

/// <summary>Batch normalization kernels over [rows, cols] row-major arrays.</summary>
public static unsafe class BatchNorm
{
    /// <summary>
    /// Training forward: batch statistics into <paramref name="stats"/> [2, cols] (mean, then rstd), y, and — when
    /// <paramref name="runningMean"/> is not null — the running statistics moved by <paramref name="momentum"/> and
    /// <paramref name="tracked"/>[0] incremented.
    /// </summary>
    public static void ForwardTraining<T>(Isa isa, int rows, int cols, double eps, double momentum, T* x, T* weight, T* bias, T* y, T* stats,
        T* runningMean, T* runningVar, T* tracked) where T : unmanaged, IFloatingPointIeee754<T> =>
        Training(isa, rows, cols, cols, eps, momentum, x, weight, bias, y, stats, stats + cols, runningMean, runningVar, tracked);

    /// <summary>Inference forward with the running statistics; <paramref name="stats"/> [2, cols] is scratch (receives them as mean and rstd).</summary>
    public static void ForwardInference<T>(Isa isa, int rows, int cols, double eps, T* x, T* weight, T* bias, T* y, T* stats, T* runningMean, T* runningVar)
        where T : unmanaged, IFloatingPointIeee754<T> =>
        Inference(isa, rows, cols, cols, eps, x, weight, bias, y, stats, stats + cols, runningMean, runningVar);

    /// <summary>dweight and dbias (overwritten) and, when <paramref name="dx"/> is not null, dx, from the training forward's x and stats.</summary>
    public static void Backward<T>(Isa isa, int rows, int cols, T* dy, T* x, T* weight, T* stats, T* dweight, T* dbias, T* dx) where T : unmanaged, IFloatingPointIeee754<T> =>
        Bwd(isa, rows, cols, cols, dy, x, weight, stats, stats + cols, dweight, dbias, dx);

    /// <summary>The forward (training when <paramref name="training"/>, else inference) over the threads of <paramref name="ctx"/>, the features split.</summary>
    public static void Forward<T>(CpuContext ctx, bool training, int rows, int cols, double eps, double momentum, T* x, T* weight, T* bias, T* y, T* stats,
        T* runningMean, T* runningVar, T* tracked) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var job = new Job<T>
        {
            Isa = ctx.Isa, Kind = training ? 0 : 1, Rows = rows, Cols = cols, Eps = eps, Momentum = momentum, X = x, W = weight, B = bias, Y = y, Stats = stats,
            RunningMean = runningMean, RunningVar = runningVar, Tracked = tracked,
        };
        ctx.Pool.Run(ref job, Parts(ctx, rows, cols));
    }

    /// <summary>The backward over the threads of <paramref name="ctx"/>, the features split.</summary>
    public static void Backward<T>(CpuContext ctx, int rows, int cols, T* dy, T* x, T* weight, T* stats, T* dweight, T* dbias, T* dx) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var job = new Job<T> { Isa = ctx.Isa, Kind = 2, Rows = rows, Cols = cols, Dy = dy, X = x, W = weight, Stats = stats, Dw = dweight, Db = dbias, Dx = dx };
        ctx.Pool.Run(ref job, Parts(ctx, rows, cols));
    }

    private static int Parts(CpuContext ctx, int rows, int cols) => (long)rows * cols < 16384 ? 1 : Math.Max(1, Math.Min(ctx.Threads, (cols + 15) / 16));

    private struct Job<T> : IParallelJob where T : unmanaged, IFloatingPointIeee754<T>
    {
        public Isa Isa;
        public int Kind, Rows, Cols;
        public double Eps, Momentum;
        public T* X, W, B, Y, Stats, RunningMean, RunningVar, Tracked, Dy, Dw, Db, Dx;

        public readonly void Execute(int part, int parts)
        {
            int units = (Cols + 15) / 16;
            int c0 = Math.Min(Cols, units * part / parts * 16), c1 = Math.Min(Cols, units * (part + 1) / parts * 16);
            if (c1 <= c0) return;
            T* mean = Stats + c0, rstd = Stats + Cols + c0;
            int w = c1 - c0;
            switch (Kind)
            {
                case 0:
                    Training(Isa, Rows, w, Cols, Eps, Momentum, X + c0, W + c0, B + c0, Y + c0, mean, rstd, RunningMean == null ? null : RunningMean + c0,
                        RunningVar + c0, part == 0 ? Tracked : null);
                    break;
                case 1:
                    Inference(Isa, Rows, w, Cols, Eps, X + c0, W + c0, B + c0, Y + c0, mean, rstd, RunningMean + c0, RunningVar + c0);
                    break;
                default:
                    Bwd(Isa, Rows, w, Cols, Dy + c0, X + c0, W + c0, mean, rstd, Dw + c0, Db + c0, Dx == null ? null : Dx + c0);
                    break;
            }
        }
    }

    // The kernels on `cols` features of rows `ld` apart (a column range of a wider array). runningMean null: no running update;
    // tracked null: no count (the part that is not the first).
    private static void Training<T>(Isa isa, int rows, int cols, int ld, double eps, double momentum, T* x, T* weight, T* bias, T* y, T* mean, T* rstd,
        T* runningMean, T* runningVar, T* tracked) where T : unmanaged, IFloatingPointIeee754<T>
    {
        new Span<T>(mean, cols).Clear();
        new Span<T>(rstd, cols).Clear();
        for (int r = 0; r < rows; r++)
        {
            var k = new AddKernel<T> { Src = x + (nint)r * ld, Dst = mean };
            VectorLadder.Run<T, AddKernel<T>>(isa, ref k, cols);
        }
        T n = T.CreateChecked(rows), e = T.CreateChecked(eps);
        for (int c = 0; c < cols; c++) mean[c] /= n;
        for (int r = 0; r < rows; r++)
        {
            var k = new SquaredDeviationKernel<T> { X = x + (nint)r * ld, Mean = mean, Sum = rstd };
            VectorLadder.Run<T, SquaredDeviationKernel<T>>(isa, ref k, cols);
        }
        if (runningMean != null)
        {
            T m = T.CreateChecked(momentum), keep = T.One - m, unbias = rows > 1 ? n / (n - T.One) : T.One;
            for (int c = 0; c < cols; c++)
            {
                runningMean[c] = keep * runningMean[c] + m * mean[c];
                runningVar[c] = keep * runningVar[c] + m * (rstd[c] / n * unbias);
            }
            if (tracked != null) tracked[0] += T.One;
        }
        for (int c = 0; c < cols; c++) rstd[c] = T.One / T.Sqrt(rstd[c] / n + e);
        Normalize(isa, rows, cols, ld, x, mean, rstd, weight, bias, y);
    }

    private static void Inference<T>(Isa isa, int rows, int cols, int ld, double eps, T* x, T* weight, T* bias, T* y, T* mean, T* rstd, T* runningMean, T* runningVar)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        T e = T.CreateChecked(eps);
        for (int c = 0; c < cols; c++)
        {
            mean[c] = runningMean[c];
            rstd[c] = T.One / T.Sqrt(runningVar[c] + e);
        }
        Normalize(isa, rows, cols, ld, x, mean, rstd, weight, bias, y);
    }

    private static void Normalize<T>(Isa isa, int rows, int cols, int ld, T* x, T* mean, T* rstd, T* weight, T* bias, T* y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int r = 0; r < rows; r++)
        {
            var k = new NormalizeKernel<T> { X = x + (nint)r * ld, Y = y + (nint)r * ld, Mean = mean, Rstd = rstd, W = weight, B = bias };
            VectorLadder.Run<T, NormalizeKernel<T>>(isa, ref k, cols);
        }
    }

    private static void Bwd<T>(Isa isa, int rows, int cols, int ld, T* dy, T* x, T* weight, T* mean, T* rstd, T* dweight, T* dbias, T* dx) where T : unmanaged, IFloatingPointIeee754<T>
    {
        new Span<T>(dweight, cols).Clear();
        new Span<T>(dbias, cols).Clear();
        for (int r = 0; r < rows; r++)
        {
            var k = new SumsKernel<T> { X = x + (nint)r * ld, Dy = dy + (nint)r * ld, Mean = mean, Rstd = rstd, Dw = dweight, Db = dbias };
            VectorLadder.Run<T, SumsKernel<T>>(isa, ref k, cols);
        }
        if (dx == null) return;
        T n = T.CreateChecked(rows), inv = T.One / n;
        for (int r = 0; r < rows; r++)
        {
            var k = new DataKernel<T>
            {
                X = x + (nint)r * ld, Dy = dy + (nint)r * ld, Dx = dx + (nint)r * ld, Mean = mean, Rstd = rstd, W = weight, Dw = dweight, Db = dbias, N = n, Inv = inv,
            };
            VectorLadder.Run<T, DataKernel<T>>(isa, ref k, cols);
        }
    }

    private struct AddKernel<T> : IVectorKernel<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public T* Src, Dst;
        public readonly void Step512(nint i) => Vector512.Store(Vector512.Load(Dst + i) + Vector512.Load(Src + i), Dst + i);
        public readonly void Step256(nint i) => Vector256.Store(Vector256.Load(Dst + i) + Vector256.Load(Src + i), Dst + i);
        public readonly void Step128(nint i) => Vector128.Store(Vector128.Load(Dst + i) + Vector128.Load(Src + i), Dst + i);
        public readonly void Step1(nint i) => Dst[i] += Src[i];
    }

    private struct SquaredDeviationKernel<T> : IVectorKernel<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public T* X, Mean, Sum;
        public readonly void Step512(nint i) { var d = Vector512.Load(X + i) - Vector512.Load(Mean + i); Vector512.Store(Vector512.Load(Sum + i) + d * d, Sum + i); }
        public readonly void Step256(nint i) { var d = Vector256.Load(X + i) - Vector256.Load(Mean + i); Vector256.Store(Vector256.Load(Sum + i) + d * d, Sum + i); }
        public readonly void Step128(nint i) { var d = Vector128.Load(X + i) - Vector128.Load(Mean + i); Vector128.Store(Vector128.Load(Sum + i) + d * d, Sum + i); }
        public readonly void Step1(nint i) { var d = X[i] - Mean[i]; Sum[i] += d * d; }
    }

    private struct NormalizeKernel<T> : IVectorKernel<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public T* X, Y, Mean, Rstd, W, B;
        public readonly void Step512(nint i) =>
            Vector512.Store((Vector512.Load(X + i) - Vector512.Load(Mean + i)) * Vector512.Load(Rstd + i) * Vector512.Load(W + i) + Vector512.Load(B + i), Y + i);
        public readonly void Step256(nint i) =>
            Vector256.Store((Vector256.Load(X + i) - Vector256.Load(Mean + i)) * Vector256.Load(Rstd + i) * Vector256.Load(W + i) + Vector256.Load(B + i), Y + i);
        public readonly void Step128(nint i) =>
            Vector128.Store((Vector128.Load(X + i) - Vector128.Load(Mean + i)) * Vector128.Load(Rstd + i) * Vector128.Load(W + i) + Vector128.Load(B + i), Y + i);
        public readonly void Step1(nint i) => Y[i] = (X[i] - Mean[i]) * Rstd[i] * W[i] + B[i];
    }

    // dbias += dy, dweight += dy ⊙ x̂ for one row.
    private struct SumsKernel<T> : IVectorKernel<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public T* X, Dy, Mean, Rstd, Dw, Db;

        public readonly void Step512(nint i)
        {
            var dy = Vector512.Load(Dy + i);
            Vector512.Store(Vector512.Load(Db + i) + dy, Db + i);
            Vector512.Store(Vector512.Load(Dw + i) + dy * ((Vector512.Load(X + i) - Vector512.Load(Mean + i)) * Vector512.Load(Rstd + i)), Dw + i);
        }

        public readonly void Step256(nint i)
        {
            var dy = Vector256.Load(Dy + i);
            Vector256.Store(Vector256.Load(Db + i) + dy, Db + i);
            Vector256.Store(Vector256.Load(Dw + i) + dy * ((Vector256.Load(X + i) - Vector256.Load(Mean + i)) * Vector256.Load(Rstd + i)), Dw + i);
        }

        public readonly void Step128(nint i)
        {
            var dy = Vector128.Load(Dy + i);
            Vector128.Store(Vector128.Load(Db + i) + dy, Db + i);
            Vector128.Store(Vector128.Load(Dw + i) + dy * ((Vector128.Load(X + i) - Vector128.Load(Mean + i)) * Vector128.Load(Rstd + i)), Dw + i);
        }

        public readonly void Step1(nint i)
        {
            Db[i] += Dy[i];
            Dw[i] += Dy[i] * ((X[i] - Mean[i]) * Rstd[i]);
        }
    }

    // dx = weight · rstd / n · (n·dy − dbias − x̂ ⊙ dweight) for one row.
    private struct DataKernel<T> : IVectorKernel<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public T* X, Dy, Dx, Mean, Rstd, W, Dw, Db;
        public T N, Inv;

        public readonly void Step512(nint i)
        {
            var rstd = Vector512.Load(Rstd + i);
            var xh = (Vector512.Load(X + i) - Vector512.Load(Mean + i)) * rstd;
            Vector512.Store(Vector512.Load(W + i) * rstd * Vector512.Create(Inv) * (Vector512.Create(N) * Vector512.Load(Dy + i) - Vector512.Load(Db + i) - xh * Vector512.Load(Dw + i)), Dx + i);
        }

        public readonly void Step256(nint i)
        {
            var rstd = Vector256.Load(Rstd + i);
            var xh = (Vector256.Load(X + i) - Vector256.Load(Mean + i)) * rstd;
            Vector256.Store(Vector256.Load(W + i) * rstd * Vector256.Create(Inv) * (Vector256.Create(N) * Vector256.Load(Dy + i) - Vector256.Load(Db + i) - xh * Vector256.Load(Dw + i)), Dx + i);
        }

        public readonly void Step128(nint i)
        {
            var rstd = Vector128.Load(Rstd + i);
            var xh = (Vector128.Load(X + i) - Vector128.Load(Mean + i)) * rstd;
            Vector128.Store(Vector128.Load(W + i) * rstd * Vector128.Create(Inv) * (Vector128.Create(N) * Vector128.Load(Dy + i) - Vector128.Load(Db + i) - xh * Vector128.Load(Dw + i)), Dx + i);
        }

        public readonly void Step1(nint i)
        {
            var xh = (X[i] - Mean[i]) * Rstd[i];
            Dx[i] = W[i] * Rstd[i] * Inv * (N * Dy[i] - Db[i] - xh * Dw[i]);
        }
    }
}
