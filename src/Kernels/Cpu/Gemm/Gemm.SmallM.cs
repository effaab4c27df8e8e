// GEMM for a few rows of A against a transposed B (C = op(A)·Bᵀ with A rows and B rows contiguous
// along K): a dense layer's forward pass at batch 1..4, i.e. inference latency. Packing B (the
// weights) would cost more than the products, so each C[i, j] is a dot product of row i of A with
// row j of B, on vectors with four accumulators, summed in a fixed order. Threads split the columns
// j into static ranges; each element is computed by one thread the same way on any thread count.
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Backprop.Kernels.Threading;

namespace Backprop.Kernels.Cpu;

internal unsafe struct SmallMJob<T, TEpi> : IParallelJob
    where T : unmanaged, IFloatingPointIeee754<T>
    where TEpi : unmanaged, IGemmEpilogue<T>
{
    public int M, N, K, Lda, Ldb, Ldc;
    public T Alpha, Beta;
    public T* A, B, C;
    public TEpi Epi;
    public Isa Isa;

    public void Execute(int part, int parts)
    {
        int j0 = (int)((long)N * part / parts), j1 = (int)((long)N * (part + 1) / parts);
        for (int j = j0; j < j1; j++)
        {
            T* b = B + (nint)j * Ldb;
            for (int i = 0; i < M; i++)
            {
                T dot = Dot(A + (nint)i * Lda, b, K, Isa);
                T* c = C + (nint)i * Ldc + j;
                T x = dot * Alpha;
                if (Beta != T.Zero) x = T.FusedMultiplyAdd(Beta, *c, x);
                *c = Epi.Apply(x, i, j);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static T Dot(T* a, T* b, int k, Isa isa)
    {
        int p = 0;
        T s = T.Zero;
        if (isa >= Isa.Avx512)
        {
            int w = Vector512<T>.Count;
            Vector512<T> s0 = default, s1 = default, s2 = default, s3 = default;
            for (; p + 4 * w <= k; p += 4 * w)
            {
                s0 = VectorMath.Fma(Vector512.Load(a + p), Vector512.Load(b + p), s0);
                s1 = VectorMath.Fma(Vector512.Load(a + p + w), Vector512.Load(b + p + w), s1);
                s2 = VectorMath.Fma(Vector512.Load(a + p + 2 * w), Vector512.Load(b + p + 2 * w), s2);
                s3 = VectorMath.Fma(Vector512.Load(a + p + 3 * w), Vector512.Load(b + p + 3 * w), s3);
            }
            for (; p + w <= k; p += w) s0 = VectorMath.Fma(Vector512.Load(a + p), Vector512.Load(b + p), s0);
            s = Vector512.Sum((s0 + s1) + (s2 + s3));
        }
        else if (isa >= Isa.Avx2)
        {
            int w = Vector256<T>.Count;
            Vector256<T> s0 = default, s1 = default, s2 = default, s3 = default;
            for (; p + 4 * w <= k; p += 4 * w)
            {
                s0 = VectorMath.Fma(Vector256.Load(a + p), Vector256.Load(b + p), s0);
                s1 = VectorMath.Fma(Vector256.Load(a + p + w), Vector256.Load(b + p + w), s1);
                s2 = VectorMath.Fma(Vector256.Load(a + p + 2 * w), Vector256.Load(b + p + 2 * w), s2);
                s3 = VectorMath.Fma(Vector256.Load(a + p + 3 * w), Vector256.Load(b + p + 3 * w), s3);
            }
            for (; p + w <= k; p += w) s0 = VectorMath.Fma(Vector256.Load(a + p), Vector256.Load(b + p), s0);
            s = Vector256.Sum((s0 + s1) + (s2 + s3));
        }
        for (; p < k; p++) s = T.FusedMultiplyAdd(a[p], b[p], s);
        return s;
    }
}
