// IGpuDevice over the CUDA driver API, cuBLAS and cuBLASLt: the primary context of one device, one
// non-default stream that every copy, launch and GEMM is ordered on, a fixed cuBLAS/cuBLASLt workspace
// (so capturing allocates nothing), modules compiled by NVRTC for the device's architecture (cubin,
// or PTX for compute_80 that the driver JIT-compiles when this NVRTC does not know the architecture),
// and stream capture into instantiated graphs.
using System.Runtime.InteropServices;

namespace Backprop.Kernels.Cuda;

/// <summary>A CUDA device, its stream, and the cuBLAS/cuBLASLt handles bound to that stream.</summary>
public sealed unsafe class CudaGpu : IGpuDevice
{
    private const nuint WorkspaceBytes = 32u << 20;
    private const int DeviceOrdinal = 0;
    private readonly nint _context, _stream, _blas, _lt;
    private readonly ulong _workspace;
    private readonly bool _tf32;
    private readonly string _arch;
    private readonly Dictionary<string, nint> _modules = new(StringComparer.Ordinal);
    private readonly Dictionary<(string, string), nint> _functions = new();
    private readonly List<object?> _gemms = []; // CuBlas.LtMatmul or GemmDesc (plain cublasSgemm)
    private bool _disposed;

    /// <summary>What the probe found.</summary>
    public CudaInfo Info { get; }

    /// <inheritdoc />
    public string Description => $"{Info.DeviceName} (sm_{Info.Major}{Info.Minor}, {Info.Multiprocessors} SMs, {Info.TotalMemory / (1 << 20)} MiB, driver {Info.DriverVersion / 1000}.{Info.DriverVersion % 1000 / 10})";
    /// <inheritdoc />
    public int Multiprocessors => Info.Multiprocessors;
    /// <inheritdoc />
    public nint Stream => _stream;

    private CudaGpu(CudaInfo info, bool allowTf32)
    {
        Info = info;
        _tf32 = allowTf32;
        _arch = info.Arch!;
        nint ctx, stream;
        CudaDriver.Check(CudaDriver.cuDevicePrimaryCtxRetain(&ctx, DeviceOrdinal), "cuDevicePrimaryCtxRetain");
        _context = ctx;
        CudaDriver.Check(CudaDriver.cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
        CudaDriver.Check(CudaDriver.cuStreamCreate(&stream, 1 /* CU_STREAM_NON_BLOCKING */), "cuStreamCreate");
        _stream = stream;
        ulong ws;
        CudaDriver.Check(CudaDriver.cuMemAlloc(&ws, WorkspaceBytes), $"cuMemAlloc({WorkspaceBytes} bytes of GEMM workspace)");
        _workspace = ws;
        _blas = CuBlas.Create(stream, allowTf32 ? CuBlas.MathMode.Tf32 : CuBlas.MathMode.Default);
        try { CuBlas.SetWorkspace(_blas, _workspace, WorkspaceBytes); }
        catch (EntryPointNotFoundException) { } // cuBLAS before 11.4 has no cublasSetWorkspace and keeps its own workspace
        _lt = CuBlas.CreateLt();
    }

    /// <summary>
    /// Opens device 0, or throws <see cref="InvalidOperationException"/> saying why CUDA is not available (no driver, no device,
    /// no cuBLAS). FP32 GEMMs unless <paramref name="allowTf32"/>.
    /// </summary>
    public static CudaGpu Open(bool allowTf32 = false)
    {
        var info = CudaDriver.Probe();
        if (!info.Available) throw new InvalidOperationException($"CUDA is not available: {info.Reason}");
        var (blas, why) = CuBlas.Probe();
        if (!blas) throw new InvalidOperationException($"CUDA is available ({info.DeviceName}) but cuBLAS is not: {why}");
        if (!Nvrtc.IsAvailable) throw new InvalidOperationException($"CUDA is available ({info.DeviceName}) but NVRTC is not: {Nvrtc.UnavailableReason}");
        return new CudaGpu(info, allowTf32);
    }

    private void Current() => CudaDriver.Check(CudaDriver.cuCtxSetCurrent(_context), "cuCtxSetCurrent");

    /// <inheritdoc />
    public ulong Allocate(long bytes)
    {
        Current();
        ulong p;
        CudaDriver.Check(CudaDriver.cuMemAlloc(&p, (nuint)Math.Max(1, bytes)), $"cuMemAlloc({bytes} bytes)");
        return p;
    }

    /// <inheritdoc />
    public void Free(ulong address) => CudaDriver.Check(CudaDriver.cuMemFree(address), "cuMemFree");

    /// <inheritdoc />
    public nint AllocatePinned(long bytes)
    {
        Current();
        void* p;
        CudaDriver.Check(CudaDriver.cuMemAllocHost(&p, (nuint)Math.Max(1, bytes)), $"cuMemAllocHost({bytes} bytes)");
        return (nint)p;
    }

    /// <inheritdoc />
    public void FreePinned(nint address) => CudaDriver.Check(CudaDriver.cuMemFreeHost((void*)address), "cuMemFreeHost");

    /// <inheritdoc />
    public void CopyToDevice(ulong destination, nint source, long bytes) =>
        CudaDriver.Check(CudaDriver.cuMemcpyHtoDAsync(destination, (void*)source, (nuint)bytes, _stream), "cuMemcpyHtoDAsync");

    /// <inheritdoc />
    public void CopyToHost(nint destination, ulong source, long bytes) =>
        CudaDriver.Check(CudaDriver.cuMemcpyDtoHAsync((void*)destination, source, (nuint)bytes, _stream), "cuMemcpyDtoHAsync");

    /// <inheritdoc />
    public void Synchronize() => CudaDriver.Check(CudaDriver.cuStreamSynchronize(_stream), "cuStreamSynchronize");

    /// <inheritdoc />
    public nint GetFunction(string source, string name)
    {
        if (_functions.TryGetValue((source, name), out var f)) return f;
        Current();
        if (!_modules.TryGetValue(source, out var module))
        {
            byte[] image;
            try { image = CudaSources.GetImage(source, _arch); }
            catch (NvrtcException e) when (e.Log.Contains("arch", StringComparison.OrdinalIgnoreCase) || e.Result == 5 /* NVRTC_ERROR_INVALID_OPTION */)
            {
                image = CudaSources.GetImage(source, "compute_80"); // this NVRTC predates the device: PTX, JIT-compiled by the driver
            }
            fixed (byte* p = image) CudaDriver.Check(CudaDriver.cuModuleLoadData(&module, p), $"cuModuleLoadData({source})");
            _modules[source] = module;
        }
        var utf8 = System.Text.Encoding.UTF8.GetBytes(name + "\0");
        fixed (byte* n = utf8) CudaDriver.Check(CudaDriver.cuModuleGetFunction(&f, module, n), $"cuModuleGetFunction({source}: {name})");
        _functions[(source, name)] = f;
        return f;
    }

    /// <inheritdoc />
    public void Launch(nint kernel, uint grid, uint block, KernelArgs args) =>
        CudaDriver.Check(CudaDriver.cuLaunchKernel(kernel, grid, 1, 1, block, 1, 1, 0, _stream, (void**)args.KernelParams, null), "cuLaunchKernel");

    /// <inheritdoc />
    public nint PrepareGemm(in GemmDesc desc)
    {
        desc.Validate();
        Current();
        _gemms.Add(desc.NeedsLt ? new CuBlas.LtMatmul(_lt, desc, WorkspaceBytes, _tf32) : desc);
        return _gemms.Count; // 1-based handle
    }

    /// <inheritdoc />
    public void Gemm(nint prepared)
    {
        switch (_gemms[(int)prepared - 1])
        {
            case CuBlas.LtMatmul lt: lt.Run(_lt, _stream, _workspace, WorkspaceBytes); break;
            case GemmDesc g: CuBlas.Sgemm(_blas, g); break;
            default: throw new ArgumentException($"GEMM handle {prepared} was not prepared on this device.");
        }
    }

    /// <inheritdoc />
    public void BeginCapture()
    {
        Current();
        CudaDriver.Check(CudaDriver.cuStreamBeginCapture(_stream, 1 /* CU_STREAM_CAPTURE_MODE_THREAD_LOCAL */), "cuStreamBeginCapture");
    }

    /// <inheritdoc />
    public nint EndCapture()
    {
        nint graph, exec;
        CudaDriver.Check(CudaDriver.cuStreamEndCapture(_stream, &graph), "cuStreamEndCapture");
        try { CudaDriver.Check(CudaDriver.cuGraphInstantiate(&exec, graph, 0), "cuGraphInstantiateWithFlags"); }
        catch
        {
            _ = CudaDriver.cuGraphDestroy(graph); // the instantiation error is the one to report
            throw;
        }
        CudaDriver.Check(CudaDriver.cuGraphDestroy(graph), "cuGraphDestroy");
        return exec;
    }

    /// <inheritdoc />
    public void LaunchGraph(nint graph) => CudaDriver.Check(CudaDriver.cuGraphLaunch(graph, _stream), "cuGraphLaunch");

    /// <inheritdoc />
    public void DestroyGraph(nint graph) => CudaDriver.Check(CudaDriver.cuGraphExecDestroy(graph), "cuGraphExecDestroy");

    /// <summary>
    /// Releases the prepared GEMMs, the handles, workspace, modules, stream and the primary context: every one of them, and
    /// then, when a release failed (a device in an error state), throws the first failure.
    /// </summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Exception? first = null;
        void Release(Action release)
        {
            try { release(); }
            catch (Exception e) when (e is CudaException or CuBlasException) { first ??= e; }
        }
        Release(Current);
        foreach (var g in _gemms) Release(() => (g as IDisposable)?.Dispose());
        Release(() => CuBlas.DestroyLt(_lt));
        Release(() => CuBlas.Destroy(_blas));
        foreach (var m in _modules.Values) Release(() => CudaDriver.Check(CudaDriver.cuModuleUnload(m), "cuModuleUnload"));
        Release(() => CudaDriver.Check(CudaDriver.cuMemFree(_workspace), "cuMemFree(workspace)"));
        Release(() => CudaDriver.Check(CudaDriver.cuStreamDestroy(_stream), "cuStreamDestroy"));
        Release(() => CudaDriver.Check(CudaDriver.cuDevicePrimaryCtxRelease(DeviceOrdinal), "cuDevicePrimaryCtxRelease"));
        if (first is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(first);
    }
}
