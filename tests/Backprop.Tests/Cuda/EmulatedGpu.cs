// IGpuDevice without a GPU, for the tests: "device" memory is host memory (filled with NaN bytes when
// allocated, as device memory is not zeroed), kernels are the real .cu sources run by the host
// emulation in tests/native/emu.cpp, and GEMMs follow the cuBLAS / cuBLASLt definitions column-major
// in double precision (an oracle independent of the CPU GEMM). It enforces what a real stream capture
// would reject: synchronizing while capturing, and captured copies to or from pageable host memory.
// Kernel launches check the argument list against the kernel's signature (count, 4 vs 8 bytes, float vs
// integer, pointer vs value), which a real driver cannot do.
using System.Runtime.InteropServices;
using System.Text;
using Backprop.Kernels.Cuda;

namespace Backprop.Tests.Cuda;

public sealed unsafe partial class EmulatedGpu : IGpuDevice
{
    private const string HostLib = "libbackprop_cuda_host";

    [LibraryImport(HostLib)] private static partial nint bp_emu_signature([MarshalAs(UnmanagedType.LPUTF8Str)] string name);
    [LibraryImport(HostLib)] private static partial int bp_emu_launch(byte* name, uint grid, uint block, nint args, byte* err, int errlen);

    private readonly List<(string Name, string Signature)> _functions = [];
    private readonly List<List<Action>> _graphs = [];
    private readonly HashSet<nint> _device = [], _pinned = [];
    private readonly Dictionary<nint, long> _sizes = [];
    private readonly List<nint> _native = [];
    private readonly Dictionary<(nint, uint, uint, KernelArgs), Action> _launches = [];
    private readonly List<Action> _gemmRuns = [];
    private List<Action>? _capture;

    /// <summary>Kernel launches run so far (eager or replayed).</summary>
    public int Launches { get; private set; }
    /// <summary>Graph replays so far.</summary>
    public int GraphLaunches { get; private set; }
    /// <summary>GEMMs run so far, by epilogue.</summary>
    public Dictionary<LtEpilogue, int> GemmsByEpilogue { get; } = [];

    public string Description => "host emulation of a CUDA device";
    public int Multiprocessors { get; init; } = 2;
    private static int s_streams;
    /// <summary>A handle of its own per device (the emulator runs everything in order at once; the handle is what a caller passes on).</summary>
    public nint Stream { get; } = 0x5_0000 + Interlocked.Increment(ref s_streams);
    /// <summary>Whether [p, p + bytes) lies inside one device allocation of this device.</summary>
    internal bool IsDeviceMemory(ulong p, long bytes) => Within(_device, (nint)p, bytes);

    public ulong Allocate(long bytes)
    {
        var p = (nint)NativeMemory.AlignedAlloc((nuint)Math.Max(1, bytes), 256);
        new Span<byte>((void*)p, checked((int)Math.Max(1, bytes))).Fill(0xFF); // NaN floats: reading what nobody wrote shows
        _device.Add(p);
        _sizes[p] = bytes;
        return (ulong)p;
    }

    public void Free(ulong address)
    {
        if (!_device.Remove((nint)address)) throw new InvalidOperationException($"cuMemFree of 0x{address:x}: not a device allocation.");
        NativeMemory.AlignedFree((void*)address);
    }

    public nint AllocatePinned(long bytes)
    {
        var p = (nint)NativeMemory.AlignedAlloc((nuint)Math.Max(1, bytes), 256);
        new Span<byte>((void*)p, checked((int)Math.Max(1, bytes))).Clear();
        _pinned.Add(p);
        _sizes[p] = bytes;
        return p;
    }

    public void FreePinned(nint address)
    {
        if (!_pinned.Remove(address)) throw new InvalidOperationException($"cuMemFreeHost of 0x{address:x}: not a pinned allocation.");
        NativeMemory.AlignedFree((void*)address);
    }

    private bool Within(HashSet<nint> set, nint p, long bytes)
    {
        foreach (var b in set)
            if (p >= b && p + bytes <= b + _sizes[b]) return true;
        return false;
    }

    private void CheckDevice(ulong p, long bytes, string call)
    {
        if (!Within(_device, (nint)p, bytes)) throw new InvalidOperationException($"{call}: [0x{p:x}, +{bytes}) is not inside a device allocation.");
    }

    public void CopyToDevice(ulong destination, nint source, long bytes)
    {
        CheckDevice(destination, bytes, "cuMemcpyHtoDAsync");
        if (_capture != null && !Within(_pinned, source, bytes)) throw new InvalidOperationException("cuMemcpyHtoDAsync from pageable host memory cannot be captured into a graph; stage through pinned memory.");
        Copy((nint)destination, source, bytes);
    }

    // A captured copy reads its source when the graph replays, as CUDA does. (The lambda lives in its own
    // method so that an eager copy allocates no closure.)
    private void Copy(nint destination, nint source, long bytes)
    {
        if (_capture != null) Record(destination, source, bytes);
        else Buffer.MemoryCopy((void*)source, (void*)destination, bytes, bytes);
    }

    private void Record(nint destination, nint source, long bytes) =>
        _capture!.Add(() => Buffer.MemoryCopy((void*)source, (void*)destination, bytes, bytes));

    public void CopyToHost(nint destination, ulong source, long bytes)
    {
        CheckDevice(source, bytes, "cuMemcpyDtoHAsync");
        if (_capture != null && !Within(_pinned, destination, bytes)) throw new InvalidOperationException("cuMemcpyDtoHAsync to pageable host memory cannot be captured into a graph; stage through pinned memory.");
        Copy(destination, (nint)source, bytes);
    }

    public void Synchronize()
    {
        if (_capture != null) throw new InvalidOperationException("cuStreamSynchronize while the stream is being captured (CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED).");
    }

    public nint GetFunction(string source, string name)
    {
        if (!CudaSources.Read(source).Contains($"void {name}(", StringComparison.Ordinal))
            throw new InvalidOperationException($"cuModuleGetFunction: {source} has no kernel '{name}'.");
        var sig = bp_emu_signature(name);
        if (sig == 0) throw new InvalidOperationException($"the emulator does not know kernel '{name}' (add it to tests/native/emu.cpp).");
        _functions.Add((name, Marshal.PtrToStringUTF8(sig)!));
        return _functions.Count;
    }

    public void Launch(nint kernel, uint grid, uint block, KernelArgs args)
    {
        // A launch is prepared once per (function, grid, block, argument list) — the engine builds its argument
        // lists once — so that launching again, eagerly or from a graph, allocates nothing.
        var key = (kernel, grid, block, args);
        if (!_launches.TryGetValue(key, out var run)) _launches[key] = run = PrepareLaunch(kernel, grid, block, args);
        if (_capture != null) _capture.Add(run);
        else run();
    }

    private Action PrepareLaunch(nint function, uint grid, uint block, KernelArgs args)
    {
        var (name, sig) = _functions[(int)function - 1];
        if (!args.Fits(sig)) throw new ArgumentException($"{name}: arguments ({args.Signature}) do not fit the kernel's parameters ({sig}).");
        // Copy the argument values now, as cuLaunchKernel (and capture) does.
        var pointers = (void**)args.KernelParams;
        var slots = (ulong*)NativeMemory.AllocZeroed((nuint)Math.Max(1, sig.Length * 8));
        var ptrs = (nint*)NativeMemory.AllocZeroed((nuint)Math.Max(1, sig.Length * sizeof(nint)));
        _native.Add((nint)slots);
        _native.Add((nint)ptrs);
        for (int i = 0; i < sig.Length; i++)
        {
            slots[i] = sig[i] is 'i' or 'f' ? *(uint*)pointers[i] : *(ulong*)pointers[i];
            ptrs[i] = (nint)(slots + i);
        }
        int len = Encoding.UTF8.GetByteCount(name);
        var utf8 = (byte*)NativeMemory.AllocZeroed((nuint)(len + 1));
        _native.Add((nint)utf8);
        Encoding.UTF8.GetBytes(name, new Span<byte>(utf8, len));
        return () =>
        {
            var err = stackalloc byte[512];
            int r = bp_emu_launch(utf8, grid, block, (nint)ptrs, err, 512);
            if (r != 0) throw new InvalidOperationException($"emulated launch of {name} failed: {Marshal.PtrToStringUTF8((nint)err)}");
            Launches++;
        };
    }

    /// <summary>The signature the emulator reports for a kernel (for argument-list checks).</summary>
    public static string Signature(string name) => bp_emu_signature(name) is var p && p != 0 ? Marshal.PtrToStringUTF8(p)! : throw new ArgumentException($"unknown kernel {name}");

    public nint PrepareGemm(in GemmDesc desc)
    {
        desc.Validate();
        if (desc.Epilogue is LtEpilogue.ReluAuxBias or LtEpilogue.DReluBGrad or LtEpilogue.DGeluBGrad)
            throw new NotSupportedException($"the emulator does not model epilogue {desc.Epilogue}.");
        var g = desc;
        GemmsByEpilogue.TryAdd(g.Epilogue, 0);
        _gemmRuns.Add(() =>
        {
            RunGemm(g);
            GemmsByEpilogue[g.Epilogue]++;
        });
        return _gemmRuns.Count;
    }

    public void Gemm(nint prepared)
    {
        var run = _gemmRuns[(int)prepared - 1];
        if (_capture != null) _capture.Add(run);
        else run();
    }

    // cuBLAS column-major: op(A)[i, p] = TransA ? A[p + i·lda] : A[i + p·lda]; D[i + j·ldd]. Bf16: A and B hold bf16 bits (ushort),
    // widened exactly (the products and the sum in double, as for float operands).
    private static void RunGemm(GemmDesc g)
    {
        if (g.Bf16)
        {
            RunGemm(g, (ushort*)g.A, (ushort*)g.B);
            return;
        }
        RunGemm(g, (float*)g.A, (float*)g.B);
    }

    private static double Value(float x) => x;

    private static double Value(ushort bf16) => BitConverter.Int32BitsToSingle(bf16 << 16);

    private static void RunGemm<TOperand>(GemmDesc g, TOperand* a, TOperand* b) where TOperand : unmanaged
    {
        float* d = (float*)g.D, bias = (float*)g.Bias, aux = (float*)g.Aux;
        for (int j = 0; j < g.N; j++)
            for (int i = 0; i < g.M; i++)
            {
                double s = 0;
                for (int p = 0; p < g.K; p++)
                {
                    double av = At(g.TransA ? a + p + (long)i * g.Lda : a + i + (long)p * g.Lda);
                    double bv = At(g.TransB ? b + j + (long)p * g.Ldb : b + p + (long)j * g.Ldb);
                    s += av * bv;
                }
                if (g.Accumulate) s += d[i + (long)j * g.Ldd];
                float z = (float)(s + (bias != null ? bias[i] : 0));
                float y = g.Epilogue switch
                {
                    LtEpilogue.ReluBias => z > 0 ? z : 0,
                    LtEpilogue.GeluBias or LtEpilogue.GeluAuxBias => GeluTanh(z),
                    _ => z,
                };
                if (g.Epilogue == LtEpilogue.GeluAuxBias) aux[i + (long)j * g.AuxLd] = z;
                d[i + (long)j * g.Ldd] = y;
            }
    }

    private static double At<TOperand>(TOperand* x) where TOperand : unmanaged =>
        typeof(TOperand) == typeof(ushort) ? Value(*(ushort*)x) : Value(*(float*)x);

    private static float GeluTanh(float x) => (float)(0.5 * x * (1 + Math.Tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))));

    public void BeginCapture()
    {
        if (_capture != null) throw new InvalidOperationException("cuStreamBeginCapture: the stream is already capturing.");
        _capture = [];
    }

    public nint EndCapture()
    {
        var c = _capture ?? throw new InvalidOperationException("cuStreamEndCapture: the stream is not capturing.");
        _capture = null;
        _graphs.Add(c);
        return _graphs.Count;
    }

    public void LaunchGraph(nint graph)
    {
        if (_capture != null) throw new InvalidOperationException("cuGraphLaunch on a capturing stream.");
        foreach (var a in _graphs[(int)graph - 1]) a();
        GraphLaunches++;
    }

    public void DestroyGraph(nint graph) => _graphs[(int)graph - 1].Clear();

    /// <summary>Allocations not yet freed (device and pinned).</summary>
    public int LiveAllocations => _device.Count + _pinned.Count;

    public void Dispose()
    {
        foreach (var p in _device) NativeMemory.AlignedFree((void*)p);
        foreach (var p in _pinned) NativeMemory.AlignedFree((void*)p);
        foreach (var p in _native) NativeMemory.Free((void*)p);
        _device.Clear();
        _pinned.Clear();
        _native.Clear();
    }
}
