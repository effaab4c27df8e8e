// NVRTC (CUDA runtime compilation) through P/Invoke: compile CUDA C++ source to PTX (for a virtual
// architecture, compute_XX) or to a cubin (for a real one, sm_XX; NVRTC 11.1+). The library name
// differs by CUDA version, so several are probed. A failed compilation throws NvrtcException with the
// compiler's log.
using System.Runtime.InteropServices;
using System.Text;
using Backprop.Kernels.Native;

namespace Backprop.Kernels.Cuda;

/// <summary>An NVRTC call failed; <see cref="Log"/> holds the compiler log when there is one.</summary>
public sealed class NvrtcException(string call, int result, string resultName, string log)
    : Exception($"{call} failed with {resultName} ({result})" + (log.Length > 0 ? $":\n{log}" : "."))
{
    /// <summary>The NVRTC function that failed.</summary>
    public string Call { get; } = call;
    /// <summary>The nvrtcResult code.</summary>
    public int Result { get; } = result;
    /// <summary>The compiler log (empty when the call was not a compilation).</summary>
    public string Log { get; } = log;
}

/// <summary>What a compilation produced.</summary>
/// <param name="Ptx">PTX text (for compute_XX targets), else null.</param>
/// <param name="Cubin">Cubin bytes (for sm_XX targets), else null.</param>
/// <param name="Log">The compiler log (warnings), possibly empty.</param>
public sealed record NvrtcOutput(string? Ptx, byte[]? Cubin, string Log);

/// <summary>NVRTC bindings.</summary>
public static unsafe partial class Nvrtc
{
    private const string Lib = "backprop-nvrtc";

    /// <summary>File names probed, newest CUDA first.</summary>
    public static readonly string[] LibraryNames =
        ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so", "nvrtc64_130_0.dll", "nvrtc64_120_0.dll", "nvrtc64_112_0.dll"];

    static Nvrtc()
    {
        NativeLibraries.Register(Lib, LibraryNames,
            "install NVRTC (Debian: libnvrtc11.2 from the non-free component; ./build.sh Deps does it as root) or the CUDA toolkit.");
    }

    /// <summary>True when an NVRTC library loads.</summary>
    public static bool IsAvailable => NativeLibraries.Get(Lib).Handle != 0;
    /// <summary>Why NVRTC is not available (null when it is).</summary>
    public static string? UnavailableReason => NativeLibraries.Get(Lib).Error;

    [LibraryImport(Lib)] private static partial int nvrtcVersion(int* major, int* minor);
    [LibraryImport(Lib)] private static partial byte* nvrtcGetErrorString(int result);
    [LibraryImport(Lib)] private static partial int nvrtcCreateProgram(nint* prog, byte* src, byte* name, int numHeaders, byte** headers, byte** includeNames);
    [LibraryImport(Lib)] private static partial int nvrtcDestroyProgram(nint* prog);
    [LibraryImport(Lib)] private static partial int nvrtcCompileProgram(nint prog, int numOptions, byte** options);
    [LibraryImport(Lib)] private static partial int nvrtcGetPTXSize(nint prog, nuint* size);
    [LibraryImport(Lib)] private static partial int nvrtcGetPTX(nint prog, byte* ptx);
    [LibraryImport(Lib)] private static partial int nvrtcGetCUBINSize(nint prog, nuint* size);
    [LibraryImport(Lib)] private static partial int nvrtcGetCUBIN(nint prog, byte* cubin);
    [LibraryImport(Lib)] private static partial int nvrtcGetProgramLogSize(nint prog, nuint* size);
    [LibraryImport(Lib)] private static partial int nvrtcGetProgramLog(nint prog, byte* log);

    /// <summary>The name of an nvrtcResult code (e.g. NVRTC_ERROR_COMPILATION).</summary>
    public static string ResultName(int result) => result switch
    {
        0 => "NVRTC_SUCCESS",
        1 => "NVRTC_ERROR_OUT_OF_MEMORY",
        2 => "NVRTC_ERROR_PROGRAM_CREATION_FAILURE",
        3 => "NVRTC_ERROR_INVALID_INPUT",
        4 => "NVRTC_ERROR_INVALID_PROGRAM",
        5 => "NVRTC_ERROR_INVALID_OPTION",
        6 => "NVRTC_ERROR_COMPILATION",
        7 => "NVRTC_ERROR_BUILTIN_OPERATION_FAILURE",
        8 => "NVRTC_ERROR_NO_NAME_EXPRESSIONS_AFTER_COMPILATION",
        9 => "NVRTC_ERROR_NO_LOWERED_NAMES_BEFORE_COMPILATION",
        10 => "NVRTC_ERROR_NAME_EXPRESSION_NOT_VALID",
        11 => "NVRTC_ERROR_INTERNAL_ERROR",
        _ => $"NVRTC_ERROR_{result}",
    };

    private static void Check(int r, string call, string log = "")
    {
        if (r != 0) throw new NvrtcException(call, r, ResultName(r), log);
    }

    /// <summary>The NVRTC version (major, minor).</summary>
    public static (int Major, int Minor) Version
    {
        get
        {
            int major, minor;
            Check(nvrtcVersion(&major, &minor), "nvrtcVersion");
            return (major, minor);
        }
    }

    /// <summary>
    /// Compiles <paramref name="source"/> for <paramref name="arch"/>: "compute_80" gives PTX, "sm_80"/"sm_90" a cubin.
    /// Extra <paramref name="options"/> are passed through (e.g. "-default-device", "--use_fast_math").
    /// </summary>
    public static NvrtcOutput Compile(string source, string name, string arch, params string[] options) =>
        Compile(source, name, arch, [], options);

    /// <summary>As <see cref="Compile(string, string, string, string[])"/>, with headers (include name, text) the source may #include.</summary>
    public static NvrtcOutput Compile(string source, string name, string arch, IReadOnlyList<(string Name, string Text)> headers, params string[] options)
    {
        if (!arch.StartsWith("compute_", StringComparison.Ordinal) && !arch.StartsWith("sm_", StringComparison.Ordinal))
            throw new ArgumentException($"arch must be compute_XX (PTX) or sm_XX (cubin); got '{arch}'.", nameof(arch));
        var all = new List<string> { $"--gpu-architecture={arch}", "--std=c++14" };
        all.AddRange(options);
        nint prog = 0;
        var srcBytes = Encoding.UTF8.GetBytes(source + "\0");
        var nameBytes = Encoding.UTF8.GetBytes(name + "\0");
        var headerHandles = headers.SelectMany(h => new[] { h.Text, h.Name })
            .Select(t => GCHandle.Alloc(Encoding.UTF8.GetBytes(t + "\0"), GCHandleType.Pinned)).ToArray();
        try
        {
            var texts = stackalloc byte*[Math.Max(1, headers.Count)];
            var names = stackalloc byte*[Math.Max(1, headers.Count)];
            for (int i = 0; i < headers.Count; i++)
            {
                texts[i] = (byte*)headerHandles[2 * i].AddrOfPinnedObject();
                names[i] = (byte*)headerHandles[2 * i + 1].AddrOfPinnedObject();
            }
            fixed (byte* s = srcBytes) fixed (byte* n = nameBytes)
                Check(nvrtcCreateProgram(&prog, s, n, headers.Count, headers.Count > 0 ? texts : null, headers.Count > 0 ? names : null), "nvrtcCreateProgram");
        }
        finally
        {
            foreach (var h in headerHandles) h.Free();
        }
        NvrtcOutput output;
        try
        {
            output = CompileProgram(prog, all, name, arch);
        }
        catch
        {
            _ = nvrtcDestroyProgram(&prog); // the compile error is the one to report
            throw;
        }
        Check(nvrtcDestroyProgram(&prog), "nvrtcDestroyProgram");
        return output;
    }

    private static NvrtcOutput CompileProgram(nint prog, List<string> all, string name, string arch)
    {
        var handles = all.Select(o => GCHandle.Alloc(Encoding.UTF8.GetBytes(o + "\0"), GCHandleType.Pinned)).ToArray();
        try
        {
            var ptrs = stackalloc byte*[handles.Length];
            for (int i = 0; i < handles.Length; i++) ptrs[i] = (byte*)handles[i].AddrOfPinnedObject();
            int r = nvrtcCompileProgram(prog, handles.Length, ptrs);
            string log = GetLog(prog);
            Check(r, $"nvrtcCompileProgram({name}, {arch})", log);
            if (arch.StartsWith("compute_", StringComparison.Ordinal))
            {
                nuint size;
                Check(nvrtcGetPTXSize(prog, &size), "nvrtcGetPTXSize");
                var buf = new byte[(int)size];
                fixed (byte* b = buf) Check(nvrtcGetPTX(prog, b), "nvrtcGetPTX");
                return new NvrtcOutput(Encoding.ASCII.GetString(buf).TrimEnd('\0'), null, log);
            }
            else
            {
                nuint size;
                Check(nvrtcGetCUBINSize(prog, &size), "nvrtcGetCUBINSize");
                var buf = new byte[(int)size];
                fixed (byte* b = buf) Check(nvrtcGetCUBIN(prog, b), "nvrtcGetCUBIN");
                return new NvrtcOutput(null, buf, log);
            }
        }
        finally
        {
            foreach (var h in handles) h.Free();
        }
    }

    private static string GetLog(nint prog)
    {
        nuint size;
        if (nvrtcGetProgramLogSize(prog, &size) != 0 || size <= 1) return "";
        var buf = new byte[(int)size];
        fixed (byte* b = buf) if (nvrtcGetProgramLog(prog, b) != 0) return "";
        return Encoding.UTF8.GetString(buf).TrimEnd('\0').Trim();
    }
}
