// Gradient accumulation: into[i] += from[i] over a section, and whether every sum is finite.
// The finiteness probe adds (s − s) of each sum s to a running vector: 0 for a finite s, NaN for an
// infinity or a NaN, and NaN sticks; so the check costs a subtract and an add per vector and no branch.
// Elementwise, so the result does not depend on the vector width or the thread split.
using System.Numerics;
using System.Runtime.Intrinsics;

namespace Backprop.Kernels.Cpu.Ops;

/// <summary>Adds one gradient section into another.</summary>
public static unsafe class Accumulate
{
    /// <summary>into[i] += from[i] for i in [0, n) on the vector path up to <paramref name="isa"/>; false when a sum is not finite.</summary>
    public static bool AddInto<T>(Isa isa, T* into, T* from, long n) where T : unmanaged, IFloatingPointIeee754<T> => Sum(isa, into, into, from, n);

    /// <summary>dst[i] = a[i] + b[i] for i in [0, n) (a fold's first two terms in one pass); false when a sum is not finite.</summary>
    public static bool Sum<T>(Isa isa, T* dst, T* a, T* b, long n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        var k = new SumKernel<T>();
        for (long done = 0; done < n; done += int.MaxValue / 2)
        {
            k.Dst = dst + done;
            k.A = a + done;
            k.B = b + done;
            VectorLadder.Run<T, SumKernel<T>>(isa, ref k, (nint)Math.Min(n - done, int.MaxValue / 2));
        }
        return T.IsFinite(k.Probe1) && Vector128.EqualsAll(k.Probe128, Vector128<T>.Zero) && Vector256.EqualsAll(k.Probe256, Vector256<T>.Zero)
               && Vector512.EqualsAll(k.Probe512, Vector512<T>.Zero);
    }

    private struct SumKernel<T> : IVectorKernel<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public T* Dst, A, B;
        public Vector512<T> Probe512;
        public Vector256<T> Probe256;
        public Vector128<T> Probe128;
        public T Probe1;

        public void Step512(nint i)
        {
            var s = Vector512.Load(A + i) + Vector512.Load(B + i);
            s.Store(Dst + i);
            Probe512 += s - s;
        }

        public void Step256(nint i)
        {
            var s = Vector256.Load(A + i) + Vector256.Load(B + i);
            s.Store(Dst + i);
            Probe256 += s - s;
        }

        public void Step128(nint i)
        {
            var s = Vector128.Load(A + i) + Vector128.Load(B + i);
            s.Store(Dst + i);
            Probe128 += s - s;
        }

        public void Step1(nint i)
        {
            T s = A[i] + B[i];
            Dst[i] = s;
            Probe1 += s - s;
        }
    }

    /// <summary>Whether every x[i], i in [0, n), is finite (the same probe as <see cref="AddInto{T}"/>).</summary>
    public static bool AllFinite<T>(Isa isa, T* x, long n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        var probe = Vector512<T>.Zero;
        long i = 0;
        if (CpuIsa.Cap(isa) >= Isa.Avx512)
            for (; i + Vector512<T>.Count <= n; i += Vector512<T>.Count)
            {
                var v = Vector512.Load(x + i);
                probe += v - v;
            }
        T tail = T.Zero;
        for (; i < n; i++) tail += x[i] - x[i];
        return T.IsFinite(tail) && Vector512.EqualsAll(probe, Vector512<T>.Zero);
    }
}
