// The one table from the device-neutral ActivationKind to the constants the CUDA kernels switch on
// (native/cuda/common.cuh: enum { BP_IDENTITY = 0, BP_RELU = 1, … }). A test reads that enum out of
// the header and compares it with this table, kind by kind.
using Backprop.Kernels;

namespace Backprop.Engine.Execution.Cuda;

/// <summary>ActivationKind → the kernels' activation constants.</summary>
internal static class CudaActivationCodes
{
    /// <summary>Each kind with the name of its constant in common.cuh and the constant's value.</summary>
    public static IReadOnlyList<(ActivationKind Kind, string Name, int Code)> Table { get; } =
    [
        (ActivationKind.Identity, "BP_IDENTITY", 0),
        (ActivationKind.ReLU, "BP_RELU", 1),
        (ActivationKind.LeakyReLU, "BP_LEAKY_RELU", 2),
        (ActivationKind.ELU, "BP_ELU", 3),
        (ActivationKind.Tanh, "BP_TANH", 4),
        (ActivationKind.Sigmoid, "BP_SIGMOID", 5),
        (ActivationKind.GELU, "BP_GELU", 6),
        (ActivationKind.GELUTanh, "BP_GELU_TANH", 7),
        (ActivationKind.SiLU, "BP_SILU", 8),
    ];

    /// <summary>The constant the kernels take for <paramref name="act"/>.</summary>
    public static int Code(Activation act)
    {
        foreach (var (kind, _, code) in Table)
            if (kind == act.Kind) return code;
        throw new NotSupportedException($"activation {act} has no CUDA kernel constant.");
    }

    /// <summary>The activation's parameter as the kernels take it (LeakyReLU's slope, ELU's alpha; NaN for the others).</summary>
    public static float Parameter(Activation act) => (float)act.EffectiveParameter;
}
