// The native bf16 GEMM kernels (native/cpu/bf16_gemm.c, built by the Kernels project with gcc into
// libbackprop_cpu.so next to this assembly): float32 -> bf16-pair packing, the VDPBF16PS micro-kernel and
// its peak loop. .NET 10 has no AVX512_BF16 intrinsics, so these are the only native CPU kernels.
// Availability is decided once: the CPU must report AVX512_BF16 (CPUID leaf 7 sub-leaf 1, EAX bit 5) with
// AVX-512 F/BW enabled by the OS and the runtime on the Avx512 rung, and the library must load with the ABI this
// binding was written for.
// Calls use ordinary P/Invoke transitions: a strip call runs for microseconds to milliseconds, far too long
// for SuppressGCTransition, and its ~20 ns transition is lost against that.
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace Backprop.Kernels.Native;

/// <summary>Function pointers into libbackprop_cpu.so and whether bf16 kernels can run here.</summary>
internal static unsafe class Bf16Native
{
    /// <summary>The ABI version of native/cpu/bf16_gemm.c this binding matches (its BP_ABI).</summary>
    private const int Abi = 1;
    public const string FileName = "libbackprop_cpu.so";

    public static readonly delegate* unmanaged<int, float*, nint, int, int, uint*, void> PackA;
    public static readonly delegate* unmanaged<int, float*, nint, int, int, uint*, void> PackB;
    public static readonly delegate* unmanaged<int, int, int, uint*, uint*, float*, nint, float, float, int, void> Strip;
    public static readonly delegate* unmanaged<long, float> Peak;
    public static readonly delegate* unmanaged<float*, float*, long, void> Round;

    /// <summary>Rows and columns of the native micro-kernel's register tile.</summary>
    public static readonly int MR, NR;

    /// <summary>Null when the bf16 kernels can run on this machine; otherwise why not, with what to do.</summary>
    public static readonly string? Unavailable;

    static Bf16Native()
    {
        Unavailable = CpuReason();
        if (Unavailable is not null) return;
        string dir = Path.GetDirectoryName(typeof(Bf16Native).Assembly.Location) ?? "";
        // Beside the app or this assembly (a project build or a RID-specific publish), in the package's runtime folder (a portable
        // app that references the NuGet package), or wherever the loader looks.
        var candidates = new[]
        {
            Path.Combine(AppContext.BaseDirectory, FileName), Path.Combine(dir, FileName),
            Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", FileName), FileName,
        }.Distinct().ToArray();
        var (handle, error) = NativeLibraries.TryLoad(candidates,
            "the build compiles native/cpu/bf16_gemm.c into it when gcc is installed (apt-get install gcc, then rebuild: ./build.sh build)");
        if (handle == 0)
        {
            Unavailable = $"the native bf16 kernels are not built: {error}";
            return;
        }
        try
        {
            var abi = (delegate* unmanaged<int>)NativeLibrary.GetExport(handle, "bp_bf16_abi");
            int seen = abi();
            if (seen != Abi)
            {
                Unavailable = $"{FileName} has ABI {seen}, this assembly expects {Abi}: rebuild the solution so both come from the same sources.";
                return;
            }
            MR = ((delegate* unmanaged<int>)NativeLibrary.GetExport(handle, "bp_bf16_mr"))();
            NR = ((delegate* unmanaged<int>)NativeLibrary.GetExport(handle, "bp_bf16_nr"))();
            PackA = (delegate* unmanaged<int, float*, nint, int, int, uint*, void>)NativeLibrary.GetExport(handle, "bp_bf16_pack_a");
            PackB = (delegate* unmanaged<int, float*, nint, int, int, uint*, void>)NativeLibrary.GetExport(handle, "bp_bf16_pack_b");
            Strip = (delegate* unmanaged<int, int, int, uint*, uint*, float*, nint, float, float, int, void>)NativeLibrary.GetExport(handle, "bp_bf16_strip");
            Peak = (delegate* unmanaged<long, float>)NativeLibrary.GetExport(handle, "bp_bf16_peak");
            Round = (delegate* unmanaged<float*, float*, long, void>)NativeLibrary.GetExport(handle, "bp_bf16_round");
        }
        catch (EntryPointNotFoundException e)
        {
            Unavailable = $"{FileName} lacks an entry point ({e.Message}): rebuild the solution.";
        }
    }

    /// <summary>Why this CPU cannot run VDPBF16PS (null when it can).</summary>
    private static string? CpuReason()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
            return $"the native bf16 kernels are built for Linux x64 only; this is {RuntimeInformation.OSDescription} on {RuntimeInformation.ProcessArchitecture}.";
        if (!Avx512F.IsSupported || !Avx512BW.IsSupported)
            return "this CPU (or the runtime: DOTNET_EnableAVX512F=0?) has no AVX-512 F/BW, which AVX512_BF16 needs; bf16 GEMMs need avx512_bf16 (lscpu flags).";
        bool bf16 = (X86Base.CpuId(7, 1).Eax & (1 << 5)) != 0;
        if (!bf16) return "this CPU lacks AVX512_BF16 (CPUID leaf 7.1 EAX bit 5; lscpu shows no avx512_bf16 flag): VDPBF16PS is needed for bf16 GEMMs.";
        // The strips' epilogue and the contexts run on the Avx512 rung, which also needs the runtime to accelerate Vector512 (it does
        // not by default on Skylake-X-class CPUs such as Cooper Lake, nor under DOTNET_PreferredVectorBitWidth=256).
        if (Cpu.CpuIsa.Supported != Cpu.Isa.Avx512)
            return $"the runtime does not accelerate Vector512 on this CPU (the kernels' rung is {Cpu.CpuIsa.Supported}); bf16 GEMMs run on the Avx512 rung: set DOTNET_PreferredVectorBitWidth=512.";
        return null;
    }
}
