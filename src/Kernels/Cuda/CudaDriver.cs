// The CUDA driver API through P/Invoke (libcuda.so.1, installed with the NVIDIA driver): init, device
// query, primary context, modules from PTX/cubin, kernel launch, memory, streams, events, stream
// capture into graphs. Every call's CUresult is checked and turned into a CudaException that names
// the call and the CUresult name. Without a driver, Probe() says why instead of throwing at load time.
using System.Runtime.InteropServices;
using System.Text;
using Backprop.Kernels.Native;

namespace Backprop.Kernels.Cuda;

/// <summary>A CUDA driver call failed.</summary>
public sealed class CudaException(string call, int result, string resultName)
    : Exception($"{call} failed with {resultName} ({result}).")
{
    /// <summary>The driver function that failed.</summary>
    public string Call { get; } = call;
    /// <summary>The CUresult code.</summary>
    public int Result { get; } = result;
    /// <summary>The CUresult name (e.g. CUDA_ERROR_OUT_OF_MEMORY).</summary>
    public string ResultName { get; } = resultName;
}

/// <summary>What the CUDA probe found: a device, or the reason there is none.</summary>
public sealed record CudaInfo(bool Available, string? Reason, string? DeviceName = null, int Major = 0, int Minor = 0,
    long TotalMemory = 0, int DriverVersion = 0, int Multiprocessors = 0)
{
    /// <summary>The device's architecture for NVRTC ("sm_90"), when available.</summary>
    public string? Arch => Available ? $"sm_{Major}{Minor}" : null;
}

/// <summary>Thin CUDA driver API bindings.</summary>
public static unsafe partial class CudaDriver
{
    private const string Lib = "backprop-cuda";

    /// <summary>File names probed for the driver library.</summary>
    public static readonly string[] LibraryNames = ["libcuda.so.1", "libcuda.so", "nvcuda.dll"];

    static CudaDriver()
    {
        NativeLibraries.Register(Lib, LibraryNames, "no NVIDIA driver is installed (libcuda.so.1 ships with it), so there is no CUDA device here.");
    }

    [LibraryImport(Lib)] private static partial int cuInit(uint flags);
    [LibraryImport(Lib)] private static partial int cuDriverGetVersion(int* version);
    [LibraryImport(Lib)] private static partial int cuDeviceGetCount(int* count);
    [LibraryImport(Lib)] private static partial int cuDeviceGet(int* device, int ordinal);
    [LibraryImport(Lib)] private static partial int cuDeviceGetName(byte* name, int len, int device);
    [LibraryImport(Lib)] private static partial int cuDeviceGetAttribute(int* value, int attribute, int device);
    [LibraryImport(Lib, EntryPoint = "cuDeviceTotalMem_v2")] private static partial int cuDeviceTotalMem(nuint* bytes, int device);
    [LibraryImport(Lib)] private static partial int cuGetErrorName(int result, byte** name);
    [LibraryImport(Lib)] internal static partial int cuDevicePrimaryCtxRetain(nint* ctx, int device);
    [LibraryImport(Lib, EntryPoint = "cuDevicePrimaryCtxRelease_v2")] internal static partial int cuDevicePrimaryCtxRelease(int device);
    [LibraryImport(Lib)] internal static partial int cuCtxSetCurrent(nint ctx);
    [LibraryImport(Lib)] internal static partial int cuModuleLoadData(nint* module, void* image);
    [LibraryImport(Lib)] internal static partial int cuModuleUnload(nint module);
    [LibraryImport(Lib)] internal static partial int cuModuleGetFunction(nint* function, nint module, byte* name);
    [LibraryImport(Lib)] internal static partial int cuLaunchKernel(nint f, uint gx, uint gy, uint gz, uint bx, uint by, uint bz, uint sharedMem, nint stream, void** args, void** extra);
    [LibraryImport(Lib, EntryPoint = "cuMemAlloc_v2")] internal static partial int cuMemAlloc(ulong* ptr, nuint bytes);
    [LibraryImport(Lib, EntryPoint = "cuMemFree_v2")] internal static partial int cuMemFree(ulong ptr);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyHtoD_v2")] internal static partial int cuMemcpyHtoD(ulong dst, void* src, nuint bytes);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoH_v2")] internal static partial int cuMemcpyDtoH(void* dst, ulong src, nuint bytes);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyHtoDAsync_v2")] internal static partial int cuMemcpyHtoDAsync(ulong dst, void* src, nuint bytes, nint stream);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoHAsync_v2")] internal static partial int cuMemcpyDtoHAsync(void* dst, ulong src, nuint bytes, nint stream);
    [LibraryImport(Lib, EntryPoint = "cuMemAllocHost_v2")] internal static partial int cuMemAllocHost(void** ptr, nuint bytes);
    [LibraryImport(Lib)] internal static partial int cuMemFreeHost(void* ptr);
    [LibraryImport(Lib)] internal static partial int cuStreamCreate(nint* stream, uint flags);
    [LibraryImport(Lib, EntryPoint = "cuStreamDestroy_v2")] internal static partial int cuStreamDestroy(nint stream);
    [LibraryImport(Lib)] internal static partial int cuStreamSynchronize(nint stream);
    [LibraryImport(Lib)] internal static partial int cuEventCreate(nint* ev, uint flags);
    [LibraryImport(Lib, EntryPoint = "cuEventDestroy_v2")] internal static partial int cuEventDestroy(nint ev);
    [LibraryImport(Lib)] internal static partial int cuEventRecord(nint ev, nint stream);
    [LibraryImport(Lib)] internal static partial int cuEventSynchronize(nint ev);
    [LibraryImport(Lib)] internal static partial int cuEventElapsedTime(float* ms, nint start, nint end);
    [LibraryImport(Lib, EntryPoint = "cuStreamBeginCapture_v2")] internal static partial int cuStreamBeginCapture(nint stream, int mode);
    [LibraryImport(Lib)] internal static partial int cuStreamEndCapture(nint stream, nint* graph);
    [LibraryImport(Lib, EntryPoint = "cuGraphInstantiateWithFlags")] internal static partial int cuGraphInstantiate(nint* exec, nint graph, ulong flags);
    [LibraryImport(Lib)] internal static partial int cuGraphLaunch(nint exec, nint stream);
    [LibraryImport(Lib)] internal static partial int cuGraphDestroy(nint graph);
    [LibraryImport(Lib)] internal static partial int cuGraphExecDestroy(nint exec);

    private const int AttrMultiprocessors = 16, AttrCcMajor = 75, AttrCcMinor = 76;

    /// <summary>The CUresult's name from the driver when it can say, else a fixed table of the common ones.</summary>
    public static string ResultName(int result)
    {
        if (NativeLibraries.Get(Lib).Handle != 0)
        {
            byte* name;
            if (cuGetErrorName(result, &name) == 0 && name != null) return Marshal.PtrToStringUTF8((nint)name) ?? $"CUresult {result}";
        }
        return result switch
        {
            0 => "CUDA_SUCCESS",
            1 => "CUDA_ERROR_INVALID_VALUE",
            2 => "CUDA_ERROR_OUT_OF_MEMORY",
            3 => "CUDA_ERROR_NOT_INITIALIZED",
            4 => "CUDA_ERROR_DEINITIALIZED",
            100 => "CUDA_ERROR_NO_DEVICE",
            101 => "CUDA_ERROR_INVALID_DEVICE",
            200 => "CUDA_ERROR_INVALID_IMAGE",
            201 => "CUDA_ERROR_INVALID_CONTEXT",
            209 => "CUDA_ERROR_NO_BINARY_FOR_GPU",
            218 => "CUDA_ERROR_INVALID_PTX",
            300 => "CUDA_ERROR_INVALID_SOURCE",
            500 => "CUDA_ERROR_NOT_FOUND",
            700 => "CUDA_ERROR_ILLEGAL_ADDRESS",
            701 => "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
            702 => "CUDA_ERROR_LAUNCH_TIMEOUT",
            719 => "CUDA_ERROR_LAUNCH_FAILED",
            999 => "CUDA_ERROR_UNKNOWN",
            _ => $"CUresult {result}",
        };
    }

    /// <summary>Throws <see cref="CudaException"/> naming <paramref name="call"/> when <paramref name="result"/> is not CUDA_SUCCESS.</summary>
    public static void Check(int result, string call)
    {
        if (result != 0) throw new CudaException(call, result, ResultName(result));
    }

    /// <summary>Looks for a CUDA device: the driver library, cuInit, a device 0. Never throws.</summary>
    public static CudaInfo Probe()
    {
        var (handle, error) = NativeLibraries.Get(Lib);
        if (handle == 0) return new CudaInfo(false, $"no CUDA driver: {error}");
        try
        {
            int r = cuInit(0);
            if (r != 0) return new CudaInfo(false, $"cuInit failed with {ResultName(r)}");
            int version, count, dev;
            Check(cuDriverGetVersion(&version), "cuDriverGetVersion");
            Check(cuDeviceGetCount(&count), "cuDeviceGetCount");
            if (count == 0) return new CudaInfo(false, "the CUDA driver reports no device", DriverVersion: version);
            Check(cuDeviceGet(&dev, 0), "cuDeviceGet");
            var name = stackalloc byte[256];
            Check(cuDeviceGetName(name, 256, dev), "cuDeviceGetName");
            int major, minor, sms;
            nuint mem;
            Check(cuDeviceGetAttribute(&major, AttrCcMajor, dev), "cuDeviceGetAttribute(COMPUTE_CAPABILITY_MAJOR)");
            Check(cuDeviceGetAttribute(&minor, AttrCcMinor, dev), "cuDeviceGetAttribute(COMPUTE_CAPABILITY_MINOR)");
            Check(cuDeviceGetAttribute(&sms, AttrMultiprocessors, dev), "cuDeviceGetAttribute(MULTIPROCESSOR_COUNT)");
            Check(cuDeviceTotalMem(&mem, dev), "cuDeviceTotalMem");
            return new CudaInfo(true, null, Marshal.PtrToStringUTF8((nint)name), major, minor, (long)mem, version, sms);
        }
        catch (Exception e) when (e is CudaException or EntryPointNotFoundException)
        {
            return new CudaInfo(false, e.Message);
        }
    }
}
