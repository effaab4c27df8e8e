// A thin binding of the oneDNN 2.x C API (Debian libdnnl2 2.6.3: libdnnl.so.2), only what the dense and
// matmul benchmarks need: engine and stream, memory descriptors (f32 and bf16) and memory objects (with
// their data handle settable), inner-product forward / backward-data / backward-weights, matmul, eltwise
// forward (a hint) and backward, reorders (f32 -> bf16 among them), post-ops, queries, version and ISA.
// Entry points are looked up once with NativeLibrary.GetExport and called through unmanaged function
// pointers; every dnnl_status_t is checked (OneDnnException names the function and the status). The
// thread count of oneDNN's OpenMP runtime (libgomp) is set with omp_set_num_threads.
//
// In 2.x the descriptors are plain C structs that the caller allocates and the library fills:
// dnnl_memory_desc_t (696 bytes), dnnl_inner_product_desc_t (5584), dnnl_eltwise_desc_t (1416) and
// dnnl_matmul_desc_t (2800), all 8-byte aligned on x86-64. The sizes and the field offsets used here were
// read from dnnl_types.h 2.6.3 and printed with gcc (sizeof/offsetof); VerifyLayouts checks them against
// the loaded library at load time (a guard region after each struct that the library must leave alone,
// and the fields it fills where we expect them), so a library with other layouts is refused instead of
// corrupting memory.
using System.Runtime.InteropServices;

namespace Backprop.Cli.Bench;

/// <summary>A oneDNN call that returned a status other than dnnl_success.</summary>
internal sealed class OneDnnException(string message) : Exception(message);

/// <summary>dnnl_memory_desc_t of oneDNN 2.6 (696 bytes, 8-byte aligned; opaque here but for the offsets in <see cref="OneDnn"/>).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct DnnlMemoryDesc
{
    public const int Bytes = 696;
    public fixed long Raw[Bytes / 8];
}

/// <summary>dnnl_inner_product_desc_t of oneDNN 2.6 (5584 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct DnnlInnerProductDesc
{
    public const int Bytes = 5584;
    public fixed long Raw[Bytes / 8];
}

/// <summary>dnnl_eltwise_desc_t of oneDNN 2.6 (1416 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct DnnlEltwiseDesc
{
    public const int Bytes = 1416;
    public fixed long Raw[Bytes / 8];
}

/// <summary>dnnl_matmul_desc_t of oneDNN 2.6 (2800 bytes: primitive_kind 0, src_desc 8, weights_desc 704, bias_desc 1400, dst_desc 2096, accum_data_type 2792).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct DnnlMatmulDesc
{
    public const int Bytes = 2800;
    public fixed long Raw[Bytes / 8];
}

/// <summary>dnnl_exec_arg_t: { int arg; dnnl_memory_t memory; } (16 bytes, memory at offset 8).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct DnnlExecArg
{
    public int Arg;
    public nint Memory;
}

/// <summary>The oneDNN 2.x C API entry points the benchmark uses, and libgomp's thread control.</summary>
internal static unsafe class OneDnn
{
    public const string LibraryName = "libdnnl.so.2";
    public const string OpenMpLibraryName = "libgomp.so.1";
    public const string InstallHint = "install it with: apt-get install libdnnl2 (or ./build.sh Deps as root)";

    // dnnl_types.h 2.6.3 enum values.
    public const int Success = 0;
    public const int EngineCpu = 1;                 // dnnl_cpu
    public const uint StreamDefaultFlags = 1;       // dnnl_stream_default_flags
    public const int Bf16 = 2;                      // dnnl_bf16
    public const int F32 = 3;                       // dnnl_f32
    public const int TagAny = 1;                    // dnnl_format_tag_any
    public const int TagA = 2;                      // dnnl_a == dnnl_x
    public const int TagAb = 3;                     // dnnl_ab == dnnl_nc == dnnl_oi
    public const int TagBa = 22;                    // dnnl_ba == dnnl_cn == dnnl_io (2-d, transposed: strides { 1, rows })
    public const int FormatKindBlocked = 2;         // dnnl_blocked
    public const int ForwardTraining = 64;          // dnnl_forward_training
    public const int ForwardInference = 96;         // dnnl_forward_inference
    public const int BackwardData = 160;            // dnnl_backward_data
    public const int BackwardWeights = 192;         // dnnl_backward_weights
    public const int Backward = 128;                // dnnl_backward
    public const int EltwiseRelu = 0x1f;            // dnnl_eltwise_relu
    public const int EltwiseReluUseDstForBwd = 0x100; // dnnl_eltwise_relu_use_dst_for_bwd
    public const int KindEltwise = 7;               // dnnl_eltwise
    public const int KindInnerProduct = 13;         // dnnl_inner_product
    public const int KindMatmul = 18;               // dnnl_matmul
    public const int QueryImplInfoStr = 8;          // dnnl_query_impl_info_str
    public const int QuerySrcMd = 129, QueryDiffSrcMd = 130, QueryWeightsMd = 131, QueryDiffWeightsMd = 132,
        QueryDstMd = 133, QueryDiffDstMd = 134, QueryWorkspaceMd = 135; // dnnl_query_*_md
    public const int ArgSrc = 1, ArgDst = 17, ArgWeights = 33, ArgBias = 41, ArgDiffSrc = 129, ArgDiffDst = 145,
        ArgDiffWeights = 161, ArgDiffBias = 169, ArgFrom = 1, ArgTo = 17; // DNNL_ARG_*
    public const uint RuntimeOmp = 2;               // DNNL_RUNTIME_OMP

    // dnnl_memory_desc_t field offsets (x86-64, gcc offsetof).
    public const int MdNdims = 0, MdDims = 8, MdDataType = 104, MdPaddedDims = 112, MdFormatKind = 312,
        MdStrides = 320, MdInnerNblks = 416, MdInnerBlks = 424, MdInnerIdxs = 520;
    // dnnl_inner_product_desc_t: primitive_kind 0, prop_kind 4, src_desc 8, accum_data_type 5576.
    public const int IpAccumDataType = 5576;
    // dnnl_eltwise_desc_t: primitive_kind 0, prop_kind 4, alg_kind 8, data_desc 16, diff_data_desc 712, alpha 1408, beta 1412.
    public const int EltwiseAlpha = 1408, EltwiseBeta = 1412;
    // dnnl_matmul_desc_t: primitive_kind 0, src_desc 8, weights_desc 704, bias_desc 1400, dst_desc 2096, accum_data_type 2792.
    public const int MatmulSrcDesc = 8, MatmulWeightsDesc = 704, MatmulBiasDesc = 1400, MatmulDstDesc = 2096, MatmulAccumDataType = 2792;

    private static readonly Lazy<string?> s_load = new(Load);
    private static nint s_lib, s_gomp;

    private static delegate* unmanaged<nint*, int, nuint, int> s_engineCreate;
    private static delegate* unmanaged<nint, int> s_engineDestroy;
    private static delegate* unmanaged<nint*, nint, uint, int> s_streamCreate;
    private static delegate* unmanaged<nint, int> s_streamWait;
    private static delegate* unmanaged<nint, int> s_streamDestroy;
    private static delegate* unmanaged<DnnlMemoryDesc*, int, long*, int, int, int> s_mdInitByTag;
    private static delegate* unmanaged<DnnlMemoryDesc*, nuint> s_mdGetSize;
    private static delegate* unmanaged<DnnlMemoryDesc*, DnnlMemoryDesc*, int> s_mdEqual;
    private static delegate* unmanaged<nint*, DnnlMemoryDesc*, nint, void*, int> s_memoryCreate;
    private static delegate* unmanaged<nint, int> s_memoryDestroy;
    private static delegate* unmanaged<nint, void*, int> s_memorySetDataHandle;
    private static delegate* unmanaged<nint*, int> s_postOpsCreate;
    private static delegate* unmanaged<nint, int> s_postOpsDestroy;
    private static delegate* unmanaged<nint, float, int, float, float, int> s_postOpsAppendEltwise;
    private static delegate* unmanaged<nint*, int> s_attrCreate;
    private static delegate* unmanaged<nint, int> s_attrDestroy;
    private static delegate* unmanaged<nint, nint, int> s_attrSetPostOps;
    private static delegate* unmanaged<DnnlInnerProductDesc*, int, DnnlMemoryDesc*, DnnlMemoryDesc*, DnnlMemoryDesc*, DnnlMemoryDesc*, int> s_ipFwdInit;
    private static delegate* unmanaged<DnnlInnerProductDesc*, DnnlMemoryDesc*, DnnlMemoryDesc*, DnnlMemoryDesc*, int> s_ipBwdDataInit;
    private static delegate* unmanaged<DnnlInnerProductDesc*, DnnlMemoryDesc*, DnnlMemoryDesc*, DnnlMemoryDesc*, DnnlMemoryDesc*, int> s_ipBwdWeightsInit;
    private static delegate* unmanaged<DnnlMatmulDesc*, DnnlMemoryDesc*, DnnlMemoryDesc*, DnnlMemoryDesc*, DnnlMemoryDesc*, int> s_matmulInit;
    private static delegate* unmanaged<DnnlEltwiseDesc*, int, int, DnnlMemoryDesc*, float, float, int> s_eltwiseFwdInit;
    private static delegate* unmanaged<DnnlEltwiseDesc*, int, DnnlMemoryDesc*, DnnlMemoryDesc*, float, float, int> s_eltwiseBwdInit;
    private static delegate* unmanaged<nint*, void*, nint, nint, nint, int> s_pdCreate;
    private static delegate* unmanaged<nint, int> s_pdDestroy;
    private static delegate* unmanaged<nint, int, int, void*, int> s_pdQuery;
    private static delegate* unmanaged<nint, int, int, DnnlMemoryDesc*> s_pdQueryMd;
    private static delegate* unmanaged<nint*, nint, int> s_primitiveCreate;
    private static delegate* unmanaged<nint, int> s_primitiveDestroy;
    private static delegate* unmanaged<nint, nint, int, DnnlExecArg*, int> s_primitiveExecute;
    private static delegate* unmanaged<nint*, DnnlMemoryDesc*, nint, DnnlMemoryDesc*, nint, nint, int> s_reorderPdCreate;
    private static delegate* unmanaged<int*> s_version;
    private static delegate* unmanaged<int> s_effectiveIsa;
    private static delegate* unmanaged<int, void> s_ompSetNumThreads;
    private static delegate* unmanaged<int> s_ompGetMaxThreads;

    /// <summary>True when libdnnl.so.2 (a 2.x library with the expected layouts, on OpenMP) and libgomp load.</summary>
    public static bool IsAvailable => s_load.Value is null;

    /// <summary>Why oneDNN cannot be used (null when it can).</summary>
    public static string? UnavailableReason => s_load.Value;

    /// <summary>Throws <see cref="DllNotFoundException"/> (the CLI's exit 2, one line) when oneDNN cannot be used.</summary>
    public static void EnsureAvailable()
    {
        if (s_load.Value is { } why) throw new DllNotFoundException(why);
    }

    private static string? Load()
    {
        if (!NativeLibrary.TryLoad(LibraryName, out s_lib))
            return $"oneDNN is missing: {LibraryName} could not be loaded; {InstallHint}.";
        try
        {
            s_engineCreate = (delegate* unmanaged<nint*, int, nuint, int>)Export("dnnl_engine_create");
            s_engineDestroy = (delegate* unmanaged<nint, int>)Export("dnnl_engine_destroy");
            s_streamCreate = (delegate* unmanaged<nint*, nint, uint, int>)Export("dnnl_stream_create");
            s_streamWait = (delegate* unmanaged<nint, int>)Export("dnnl_stream_wait");
            s_streamDestroy = (delegate* unmanaged<nint, int>)Export("dnnl_stream_destroy");
            s_mdInitByTag = (delegate* unmanaged<DnnlMemoryDesc*, int, long*, int, int, int>)Export("dnnl_memory_desc_init_by_tag");
            s_mdGetSize = (delegate* unmanaged<DnnlMemoryDesc*, nuint>)Export("dnnl_memory_desc_get_size");
            s_mdEqual = (delegate* unmanaged<DnnlMemoryDesc*, DnnlMemoryDesc*, int>)Export("dnnl_memory_desc_equal");
            s_memoryCreate = (delegate* unmanaged<nint*, DnnlMemoryDesc*, nint, void*, int>)Export("dnnl_memory_create");
            s_memoryDestroy = (delegate* unmanaged<nint, int>)Export("dnnl_memory_destroy");
            s_memorySetDataHandle = (delegate* unmanaged<nint, void*, int>)Export("dnnl_memory_set_data_handle");
            s_postOpsCreate = (delegate* unmanaged<nint*, int>)Export("dnnl_post_ops_create");
            s_postOpsDestroy = (delegate* unmanaged<nint, int>)Export("dnnl_post_ops_destroy");
            s_postOpsAppendEltwise = (delegate* unmanaged<nint, float, int, float, float, int>)Export("dnnl_post_ops_append_eltwise");
            s_attrCreate = (delegate* unmanaged<nint*, int>)Export("dnnl_primitive_attr_create");
            s_attrDestroy = (delegate* unmanaged<nint, int>)Export("dnnl_primitive_attr_destroy");
            s_attrSetPostOps = (delegate* unmanaged<nint, nint, int>)Export("dnnl_primitive_attr_set_post_ops");
            s_ipFwdInit = (delegate* unmanaged<DnnlInnerProductDesc*, int, DnnlMemoryDesc*, DnnlMemoryDesc*, DnnlMemoryDesc*, DnnlMemoryDesc*, int>)Export("dnnl_inner_product_forward_desc_init");
            s_ipBwdDataInit = (delegate* unmanaged<DnnlInnerProductDesc*, DnnlMemoryDesc*, DnnlMemoryDesc*, DnnlMemoryDesc*, int>)Export("dnnl_inner_product_backward_data_desc_init");
            s_ipBwdWeightsInit = (delegate* unmanaged<DnnlInnerProductDesc*, DnnlMemoryDesc*, DnnlMemoryDesc*, DnnlMemoryDesc*, DnnlMemoryDesc*, int>)Export("dnnl_inner_product_backward_weights_desc_init");
            s_matmulInit = (delegate* unmanaged<DnnlMatmulDesc*, DnnlMemoryDesc*, DnnlMemoryDesc*, DnnlMemoryDesc*, DnnlMemoryDesc*, int>)Export("dnnl_matmul_desc_init");
            s_eltwiseFwdInit = (delegate* unmanaged<DnnlEltwiseDesc*, int, int, DnnlMemoryDesc*, float, float, int>)Export("dnnl_eltwise_forward_desc_init");
            s_eltwiseBwdInit = (delegate* unmanaged<DnnlEltwiseDesc*, int, DnnlMemoryDesc*, DnnlMemoryDesc*, float, float, int>)Export("dnnl_eltwise_backward_desc_init");
            s_pdCreate = (delegate* unmanaged<nint*, void*, nint, nint, nint, int>)Export("dnnl_primitive_desc_create");
            s_pdDestroy = (delegate* unmanaged<nint, int>)Export("dnnl_primitive_desc_destroy");
            s_pdQuery = (delegate* unmanaged<nint, int, int, void*, int>)Export("dnnl_primitive_desc_query");
            s_pdQueryMd = (delegate* unmanaged<nint, int, int, DnnlMemoryDesc*>)Export("dnnl_primitive_desc_query_md");
            s_primitiveCreate = (delegate* unmanaged<nint*, nint, int>)Export("dnnl_primitive_create");
            s_primitiveDestroy = (delegate* unmanaged<nint, int>)Export("dnnl_primitive_destroy");
            s_primitiveExecute = (delegate* unmanaged<nint, nint, int, DnnlExecArg*, int>)Export("dnnl_primitive_execute");
            s_reorderPdCreate = (delegate* unmanaged<nint*, DnnlMemoryDesc*, nint, DnnlMemoryDesc*, nint, nint, int>)Export("dnnl_reorder_primitive_desc_create");
            s_version = (delegate* unmanaged<int*>)Export("dnnl_version");
            s_effectiveIsa = (delegate* unmanaged<int>)Export("dnnl_get_effective_cpu_isa");
        }
        catch (EntryPointNotFoundException e)
        {
            return $"oneDNN at {LibraryName} lacks an entry point of the 2.x C API ({e.Message}); {InstallHint}.";
        }
        var (major, minor, patch, runtime) = VersionParts();
        if (major != 2)
            return $"{LibraryName} is oneDNN {major}.{minor}.{patch}; this binding is for the 2.x C API (struct memory descriptors); {InstallHint}.";
        if (runtime != RuntimeOmp)
            return $"oneDNN {major}.{minor}.{patch} at {LibraryName} uses CPU runtime {runtime}, not OpenMP; its thread count could not be set per measurement.";
        // oneDNN links libgomp, so this finds the copy it already loaded.
        if (!NativeLibrary.TryLoad(OpenMpLibraryName, out s_gomp)
            || !NativeLibrary.TryGetExport(s_gomp, "omp_set_num_threads", out nint set)
            || !NativeLibrary.TryGetExport(s_gomp, "omp_get_max_threads", out nint get))
            return $"oneDNN loads but {OpenMpLibraryName} (omp_set_num_threads) does not; install it with: apt-get install libgomp1.";
        s_ompSetNumThreads = (delegate* unmanaged<int, void>)set;
        s_ompGetMaxThreads = (delegate* unmanaged<int>)get;
        return VerifyLayouts();
    }

    private static nint Export(string name) => NativeLibrary.GetExport(s_lib, name);

    private static (int Major, int Minor, int Patch, uint CpuRuntime) VersionParts()
    {
        // dnnl_version_t: int major, minor, patch; const char* hash (offset 16); unsigned cpu_runtime (24), gpu_runtime (28).
        int* v = s_version();
        return (v[0], v[1], v[2], *(uint*)((byte*)v + 24));
    }

    /// <summary>The library fills each descriptor within its size and where this binding reads it (null), or says what differs.</summary>
    private static string? VerifyLayouts()
    {
        const int Guard = 256;
        const byte Fill = 0xA5;
        byte* buf = (byte*)NativeMemory.AlignedAlloc(DnnlInnerProductDesc.Bytes + Guard, 64);
        byte* buf2 = (byte*)NativeMemory.AlignedAlloc(DnnlMemoryDesc.Bytes * 4, 64);
        try
        {
            static bool GuardIntact(byte* p, int size)
            {
                for (int i = size; i < size + Guard; i++)
                    if (p[i] != Fill) return false;
                return true;
            }
            NativeMemory.Fill(buf, DnnlMemoryDesc.Bytes + Guard, Fill);
            var md = (DnnlMemoryDesc*)buf;
            long* dims = stackalloc long[] { 7, 5 };
            if (s_mdInitByTag(md, 2, dims, F32, TagAb) != Success) return "dnnl_memory_desc_init_by_tag failed on a 7x5 f32 ab descriptor";
            if (!GuardIntact(buf, DnnlMemoryDesc.Bytes)) return "dnnl_memory_desc_t is larger than the 696 bytes this binding allocates";
            if (*(int*)(buf + MdNdims) != 2 || *(long*)(buf + MdDims) != 7 || *(long*)(buf + MdDims + 8) != 5 || *(int*)(buf + MdDataType) != F32
                || *(int*)(buf + MdFormatKind) != FormatKindBlocked || *(long*)(buf + MdStrides) != 5 || *(long*)(buf + MdStrides + 8) != 1
                || *(int*)(buf + MdInnerNblks) != 0 || s_mdGetSize(md) != 7 * 5 * 4)
                return "dnnl_memory_desc_t's fields are not where this binding reads them";

            var src = (DnnlMemoryDesc*)buf2;
            var w = src + 1;
            var b = src + 2;
            var dst = src + 3;
            long* d2 = stackalloc long[] { 7, 13 };
            long* dw = stackalloc long[] { 5, 13 };
            long* db = stackalloc long[] { 5 };
            if (s_mdInitByTag(src, 2, d2, F32, TagAb) != Success || s_mdInitByTag(w, 2, dw, F32, TagAny) != Success
                || s_mdInitByTag(b, 1, db, F32, TagA) != Success || s_mdInitByTag(dst, 2, dims, F32, TagAb) != Success)
                return "dnnl_memory_desc_init_by_tag failed on the inner-product check's descriptors";
            NativeMemory.Fill(buf, DnnlInnerProductDesc.Bytes + Guard, Fill);
            if (s_ipFwdInit((DnnlInnerProductDesc*)buf, ForwardTraining, src, w, b, dst) != Success)
                return "dnnl_inner_product_forward_desc_init failed on 7x13 -> 5";
            if (!GuardIntact(buf, DnnlInnerProductDesc.Bytes)) return "dnnl_inner_product_desc_t is larger than the 5584 bytes this binding allocates";
            if (*(int*)buf != KindInnerProduct || *(int*)(buf + 4) != ForwardTraining || *(int*)(buf + 8 + MdNdims) != 2
                || *(long*)(buf + 8 + MdDims + 8) != 13 || *(int*)(buf + IpAccumDataType) != F32)
                return "dnnl_inner_product_desc_t's fields are not where this binding expects them";

            NativeMemory.Fill(buf, DnnlEltwiseDesc.Bytes + Guard, Fill);
            if (s_eltwiseFwdInit((DnnlEltwiseDesc*)buf, ForwardTraining, EltwiseRelu, dst, 0.25f, 0.5f) != Success)
                return "dnnl_eltwise_forward_desc_init failed";
            if (!GuardIntact(buf, DnnlEltwiseDesc.Bytes)) return "dnnl_eltwise_desc_t is larger than the 1416 bytes this binding allocates";
            if (*(int*)buf != KindEltwise || *(int*)(buf + 8) != EltwiseRelu || *(float*)(buf + EltwiseAlpha) != 0.25f || *(float*)(buf + EltwiseBeta) != 0.5f)
                return "dnnl_eltwise_desc_t's fields are not where this binding expects them";

            // matmul, bf16 src [7, 13] (ba) · weights [13, 5] (any) -> f32 dst [7, 5], no bias.
            long* dk = stackalloc long[] { 13, 5 };
            if (s_mdInitByTag(src, 2, d2, Bf16, TagBa) != Success || s_mdInitByTag(w, 2, dk, Bf16, TagAny) != Success)
                return "dnnl_memory_desc_init_by_tag failed on the matmul check's bf16 descriptors";
            if (*(int*)((byte*)src + MdDataType) != Bf16 || *(long*)((byte*)src + MdStrides) != 1 || *(long*)((byte*)src + MdStrides + 8) != 7
                || s_mdGetSize(src) != 7 * 13 * 2)
                return "a bf16 ba dnnl_memory_desc_t is not what this binding expects (data type, strides { 1, 7 }, 182 bytes)";
            NativeMemory.Fill(buf, DnnlMatmulDesc.Bytes + Guard, Fill);
            if (s_matmulInit((DnnlMatmulDesc*)buf, src, w, null, dst) != Success)
                return "dnnl_matmul_desc_init failed on bf16 7x13 · 13x5 -> f32";
            if (!GuardIntact(buf, DnnlMatmulDesc.Bytes)) return "dnnl_matmul_desc_t is larger than the 2800 bytes this binding allocates";
            if (*(int*)buf != KindMatmul || *(int*)(buf + MatmulSrcDesc + MdDataType) != Bf16 || *(long*)(buf + MatmulSrcDesc + MdDims + 8) != 13
                || *(long*)(buf + MatmulWeightsDesc + MdDims + 8) != 5 || *(int*)(buf + MatmulBiasDesc + MdNdims) != 0
                || *(int*)(buf + MatmulDstDesc + MdDataType) != F32 || *(int*)(buf + MatmulAccumDataType) != F32)
                return "dnnl_matmul_desc_t's fields are not where this binding expects them";
            return null;
        }
        finally
        {
            NativeMemory.AlignedFree(buf);
            NativeMemory.AlignedFree(buf2);
        }
    }

    /// <summary>Throws <see cref="OneDnnException"/> naming <paramref name="function"/> and the status unless it is dnnl_success.</summary>
    public static void Check(int status, string function)
    {
        if (status != Success) throw new OneDnnException($"oneDNN: {function} failed: {StatusName(status)}.");
    }

    /// <summary>The dnnl_status_t name (dnnl_types.h).</summary>
    public static string StatusName(int status) => status switch
    {
        0 => "dnnl_success",
        1 => "dnnl_out_of_memory",
        2 => "dnnl_invalid_arguments",
        3 => "dnnl_unimplemented",
        4 => "dnnl_iterator_ends",
        5 => "dnnl_runtime_error",
        6 => "dnnl_not_required",
        _ => $"dnnl_status_t {status}",
    };

    /// <summary>"2.6.3" (dnnl_version()).</summary>
    public static string Version
    {
        get
        {
            EnsureAvailable();
            var (major, minor, patch, _) = VersionParts();
            return $"{major}.{minor}.{patch}";
        }
    }

    /// <summary>The ISA oneDNN dispatches to (dnnl_get_effective_cpu_isa), named as in dnnl_cpu_isa_t.</summary>
    public static string EffectiveIsa
    {
        get
        {
            EnsureAvailable();
            int isa = s_effectiveIsa();
            return isa switch
            {
                0x0 => "all",
                0x1 => "sse41",
                0x3 => "avx",
                0x7 => "avx2",
                0xf => "avx512_mic",
                0x1f => "avx512_mic_4ops",
                0x27 => "avx512_core",
                0x67 => "avx512_core_vnni",
                0xe7 => "avx512_core_bf16",
                0x3e7 => "avx512_core_amx",
                0x407 => "avx2_vnni",
                _ => $"0x{isa:x}",
            };
        }
    }

    /// <summary>omp_get_max_threads(): the threads oneDNN's next parallel region on this thread uses.</summary>
    public static int MaxThreads
    {
        get
        {
            EnsureAvailable();
            return s_ompGetMaxThreads();
        }
    }

    /// <summary>omp_set_num_threads for the calling thread (oneDNN's OpenMP regions started from it), checked with omp_get_max_threads.</summary>
    public static void SetThreads(int threads)
    {
        EnsureAvailable();
        s_ompSetNumThreads(threads);
        int now = s_ompGetMaxThreads();
        if (now != threads) throw new OneDnnException($"oneDNN: omp_set_num_threads({threads}) left omp_get_max_threads() at {now}.");
    }

    public static nint EngineCreate()
    {
        EnsureAvailable();
        nint e;
        Check(s_engineCreate(&e, EngineCpu, 0), "dnnl_engine_create");
        return e;
    }

    public static void EngineDestroy(nint e) => Check(s_engineDestroy(e), "dnnl_engine_destroy");

    public static nint StreamCreate(nint engine)
    {
        nint s;
        Check(s_streamCreate(&s, engine, StreamDefaultFlags), "dnnl_stream_create");
        return s;
    }

    public static void StreamWait(nint s) => Check(s_streamWait(s), "dnnl_stream_wait");

    public static void StreamDestroy(nint s) => Check(s_streamDestroy(s), "dnnl_stream_destroy");

    /// <summary>A 1-d (tag x) or 2-d (tag ab / any) f32 descriptor.</summary>
    public static DnnlMemoryDesc Md(int tag, long d0, long d1 = -1)
    {
        var md = default(DnnlMemoryDesc);
        long* dims = stackalloc long[2] { d0, d1 };
        Check(s_mdInitByTag(&md, d1 < 0 ? 1 : 2, dims, F32, tag), "dnnl_memory_desc_init_by_tag");
        return md;
    }

    /// <summary>A 2-d descriptor of data type <paramref name="dataType"/> (<see cref="F32"/> or <see cref="Bf16"/>) and tag ab, ba or any.</summary>
    public static DnnlMemoryDesc Md2(int dataType, int tag, long rows, long cols)
    {
        var md = default(DnnlMemoryDesc);
        long* dims = stackalloc long[2] { rows, cols };
        Check(s_mdInitByTag(&md, 2, dims, dataType, tag), "dnnl_memory_desc_init_by_tag");
        return md;
    }

    public static long MdSize(DnnlMemoryDesc* md) => (long)s_mdGetSize(md);

    public static bool MdEqual(DnnlMemoryDesc* a, DnnlMemoryDesc* b) => s_mdEqual(a, b) != 0;

    /// <summary>The layout of a blocked descriptor in oneDNN's notation (ab, AB16b64a, …): outer dimensions by falling stride, uppercase when blocked, then the inner blocks.</summary>
    public static string FormatName(DnnlMemoryDesc* md)
    {
        byte* p = (byte*)md;
        if (*(int*)(p + MdFormatKind) != FormatKindBlocked) return $"format_kind {*(int*)(p + MdFormatKind)}";
        int nd = *(int*)(p + MdNdims), nblks = *(int*)(p + MdInnerNblks);
        long* strides = (long*)(p + MdStrides);
        long* blks = (long*)(p + MdInnerBlks);
        long* idxs = (long*)(p + MdInnerIdxs);
        var order = Enumerable.Range(0, nd).OrderByDescending(i => strides[i]).ThenBy(i => i).ToArray();
        var sb = new System.Text.StringBuilder();
        foreach (int i in order)
        {
            bool blocked = false;
            for (int k = 0; k < nblks; k++) blocked |= idxs[k] == i;
            sb.Append((char)((blocked ? 'A' : 'a') + i));
        }
        for (int k = 0; k < nblks; k++) sb.Append(System.Globalization.CultureInfo.InvariantCulture, $"{blks[k]}{(char)('a' + idxs[k])}");
        return sb.ToString();
    }

    public static nint MemoryCreate(DnnlMemoryDesc* md, nint engine, void* handle)
    {
        nint m;
        Check(s_memoryCreate(&m, md, engine, handle), "dnnl_memory_create");
        return m;
    }

    public static void MemoryDestroy(nint m) => Check(s_memoryDestroy(m), "dnnl_memory_destroy");

    /// <summary>Points a memory object at another buffer (null: none), which the caller keeps alive while the memory uses it.</summary>
    public static void MemorySetDataHandle(nint m, void* handle) => Check(s_memorySetDataHandle(m, handle), "dnnl_memory_set_data_handle");

    /// <summary>Primitive attributes with one eltwise post-op (scale 1, alpha, beta 0).</summary>
    public static nint AttrWithEltwise(int alg, float alpha)
    {
        nint po, attr;
        Check(s_postOpsCreate(&po), "dnnl_post_ops_create");
        try
        {
            Check(s_postOpsAppendEltwise(po, 1f, alg, alpha, 0f), "dnnl_post_ops_append_eltwise");
            Check(s_attrCreate(&attr), "dnnl_primitive_attr_create");
            Check(s_attrSetPostOps(attr, po), "dnnl_primitive_attr_set_post_ops"); // the attribute keeps its own copy
        }
        finally
        {
            Check(s_postOpsDestroy(po), "dnnl_post_ops_destroy");
        }
        return attr;
    }

    public static void AttrDestroy(nint attr) => Check(s_attrDestroy(attr), "dnnl_primitive_attr_destroy");

    public static DnnlInnerProductDesc IpForward(int prop, DnnlMemoryDesc* src, DnnlMemoryDesc* w, DnnlMemoryDesc* b, DnnlMemoryDesc* dst)
    {
        var d = default(DnnlInnerProductDesc);
        Check(s_ipFwdInit(&d, prop, src, w, b, dst), "dnnl_inner_product_forward_desc_init");
        return d;
    }

    public static DnnlInnerProductDesc IpBackwardData(DnnlMemoryDesc* diffSrc, DnnlMemoryDesc* w, DnnlMemoryDesc* diffDst)
    {
        var d = default(DnnlInnerProductDesc);
        Check(s_ipBwdDataInit(&d, diffSrc, w, diffDst), "dnnl_inner_product_backward_data_desc_init");
        return d;
    }

    public static DnnlInnerProductDesc IpBackwardWeights(DnnlMemoryDesc* src, DnnlMemoryDesc* diffW, DnnlMemoryDesc* diffB, DnnlMemoryDesc* diffDst)
    {
        var d = default(DnnlInnerProductDesc);
        Check(s_ipBwdWeightsInit(&d, src, diffW, diffB, diffDst), "dnnl_inner_product_backward_weights_desc_init");
        return d;
    }

    /// <summary>dnnl_matmul_desc_init: dst = src · weights (+ bias unless <paramref name="bias"/> is null).</summary>
    public static DnnlMatmulDesc Matmul(DnnlMemoryDesc* src, DnnlMemoryDesc* weights, DnnlMemoryDesc* bias, DnnlMemoryDesc* dst)
    {
        var d = default(DnnlMatmulDesc);
        Check(s_matmulInit(&d, src, weights, bias, dst), "dnnl_matmul_desc_init");
        return d;
    }

    public static DnnlEltwiseDesc EltwiseForward(int prop, int alg, DnnlMemoryDesc* data, float alpha)
    {
        var d = default(DnnlEltwiseDesc);
        Check(s_eltwiseFwdInit(&d, prop, alg, data, alpha, 0f), "dnnl_eltwise_forward_desc_init");
        return d;
    }

    public static DnnlEltwiseDesc EltwiseBackward(int alg, DnnlMemoryDesc* diffData, DnnlMemoryDesc* data, float alpha)
    {
        var d = default(DnnlEltwiseDesc);
        Check(s_eltwiseBwdInit(&d, alg, diffData, data, alpha, 0f), "dnnl_eltwise_backward_desc_init");
        return d;
    }

    /// <summary>dnnl_primitive_desc_create for an operation descriptor; <paramref name="what"/> names it in an error.</summary>
    public static nint PrimitiveDescCreate(void* opDesc, nint attr, nint engine, nint hint, string what)
    {
        nint pd;
        Check(s_pdCreate(&pd, opDesc, attr, engine, hint), $"dnnl_primitive_desc_create ({what})");
        return pd;
    }

    public static nint ReorderDescCreate(DnnlMemoryDesc* src, DnnlMemoryDesc* dst, nint engine)
    {
        nint pd;
        Check(s_reorderPdCreate(&pd, src, engine, dst, engine, 0), "dnnl_reorder_primitive_desc_create");
        return pd;
    }

    public static void PrimitiveDescDestroy(nint pd) => Check(s_pdDestroy(pd), "dnnl_primitive_desc_destroy");

    /// <summary>A copy of the memory descriptor the primitive descriptor chose for <paramref name="query"/> (index 0 unless given).</summary>
    public static DnnlMemoryDesc QueryMd(nint pd, int query, int index = 0)
    {
        var md = s_pdQueryMd(pd, query, index);
        if (md == null) throw new OneDnnException($"oneDNN: dnnl_primitive_desc_query_md({query}, {index}) returned no descriptor.");
        return *md;
    }

    /// <summary>True when the primitive descriptor has a non-empty workspace (inner product has none).</summary>
    public static bool HasWorkspace(nint pd)
    {
        var md = s_pdQueryMd(pd, QueryWorkspaceMd, 0);
        return md != null && *(int*)md != 0;
    }

    /// <summary>The implementation oneDNN picked ("brgemm:avx512_core", "gemm:jit", …).</summary>
    public static string ImplInfo(nint pd)
    {
        byte* s = null;
        Check(s_pdQuery(pd, QueryImplInfoStr, 0, &s), "dnnl_primitive_desc_query (impl_info_str)");
        return Marshal.PtrToStringUTF8((nint)s) ?? "";
    }

    public static nint PrimitiveCreate(nint pd, string what)
    {
        nint p;
        Check(s_primitiveCreate(&p, pd), $"dnnl_primitive_create ({what})");
        return p;
    }

    public static void PrimitiveDestroy(nint p) => Check(s_primitiveDestroy(p), "dnnl_primitive_destroy");

    /// <summary>dnnl_primitive_execute then dnnl_stream_wait; <paramref name="what"/> names the primitive in an error.</summary>
    public static void Execute(nint primitive, nint stream, int nargs, DnnlExecArg* args, string what)
    {
        int status = s_primitiveExecute(primitive, stream, nargs, args);
        if (status != Success) throw new OneDnnException($"oneDNN: dnnl_primitive_execute ({what}) failed: {StatusName(status)}.");
        status = s_streamWait(stream);
        if (status != Success) throw new OneDnnException($"oneDNN: dnnl_stream_wait ({what}) failed: {StatusName(status)}.");
    }
}
