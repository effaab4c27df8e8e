// The vector-width ladder every elementwise-shaped kernel walks (activations, the bias pass, column
// sums, dropout, the optimizer update): over elements [0, n), as many steps of the widest rung the
// ISA allows as fit, then the next narrower rung, then one element at a time:
//   Avx512: Step512 (Width512 elements)  →  Avx2: Step256  →  Vector128: Step128  →  Step1
// A kernel states how many elements each of its vector steps covers (by default one vector of T;
// 0 = no such step) and writes the steps; the ladder owns the loop, so every kernel honours the
// context's ISA the same way and every rung can be forced in tests.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Backprop.Kernels.Cpu;

/// <summary>The steps of an elementwise kernel at each vector width; the element index i is the first one the step covers.</summary>
public interface IVectorKernel<T> where T : unmanaged
{
    /// <summary>Elements one <see cref="Step512"/> covers (0: no 512-bit step).</summary>
    static virtual int Width512 => Vector512<T>.Count;
    /// <summary>Elements one <see cref="Step256"/> covers (0: no 256-bit step).</summary>
    static virtual int Width256 => Vector256<T>.Count;
    /// <summary>Elements one <see cref="Step128"/> covers (0: no 128-bit step).</summary>
    static virtual int Width128 => Vector128<T>.Count;

    /// <summary>Elements [i, i + Width512).</summary>
    void Step512(nint i);
    /// <summary>Elements [i, i + Width256).</summary>
    void Step256(nint i);
    /// <summary>Elements [i, i + Width128).</summary>
    void Step128(nint i);
    /// <summary>Element i.</summary>
    void Step1(nint i);
}

/// <summary>Runs an <see cref="IVectorKernel{T}"/> over a range on the rungs an ISA allows.</summary>
public static class VectorLadder
{
    /// <summary>Elements [0, <paramref name="n"/>) on the rungs up to <paramref name="isa"/> (capped at what this CPU supports).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Run<T, TKernel>(Isa isa, ref TKernel kernel, nint n)
        where T : unmanaged
        where TKernel : struct, IVectorKernel<T>
    {
        nint i = 0;
        isa = CpuIsa.Cap(isa);
        if (isa >= Isa.Avx512 && TKernel.Width512 > 0)
            for (; i + TKernel.Width512 <= n; i += TKernel.Width512) kernel.Step512(i);
        if (isa >= Isa.Avx2 && TKernel.Width256 > 0)
            for (; i + TKernel.Width256 <= n; i += TKernel.Width256) kernel.Step256(i);
        if (isa >= Isa.Vector128 && TKernel.Width128 > 0)
            for (; i + TKernel.Width128 <= n; i += TKernel.Width128) kernel.Step128(i);
        for (; i < n; i++) kernel.Step1(i);
    }
}
