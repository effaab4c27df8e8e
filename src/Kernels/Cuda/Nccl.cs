// Thin P/Invoke to NCCL (libnccl.so.2), the GPU collectives the Cuda backend sums gradients with, behind
// INccl so the communicator's host-side logic runs against a test double on the emulated device:
//   ncclGetUniqueId, ncclCommInitRank(comm*, nranks, ncclUniqueId (128 bytes, by value), rank),
//   ncclAllReduce / ncclAllGather / ncclSend / ncclRecv (float32 = 7, sum = 0) on a CUDA stream,
//   ncclGroupStart / ncclGroupEnd (the sends and receives of an all-to-all as one group), ncclCommDestroy.
// Debian has no NCCL package; NVIDIA's (libnccl2) or a CUDA toolkit's is found on the loader path.
using System.Runtime.InteropServices;
using Backprop.Kernels.Native;

namespace Backprop.Kernels.Cuda;

/// <summary>The NCCL calls the communicator makes (the library, or a test double).</summary>
public interface INccl
{
    /// <summary>The library's version, for display.</summary>
    string Version { get; }
    /// <summary>A new unique id (rank 0 makes it; every rank then passes the same bytes to <see cref="CommInitRank"/>).</summary>
    void GetUniqueId(Span<byte> id);
    /// <summary>This rank's communicator of <paramref name="size"/> ranks (collective: every rank calls it).</summary>
    nint CommInitRank(int size, ReadOnlySpan<byte> id, int rank);
    /// <summary>Sum of float buffers over the ranks, on <paramref name="stream"/>.</summary>
    void AllReduceSum(ulong send, ulong recv, long count, nint comm, nint stream);
    /// <summary>recv [size, count] receives every rank's send [count], in rank order, on <paramref name="stream"/>.</summary>
    void AllGather(ulong send, ulong recv, long count, nint comm, nint stream);
    /// <summary>Opens a group of point-to-point calls, run together at <see cref="GroupEnd"/>.</summary>
    void GroupStart();
    /// <summary>Runs the group's calls.</summary>
    void GroupEnd();
    /// <summary>Sends <paramref name="count"/> floats to <paramref name="peer"/>, on <paramref name="stream"/>.</summary>
    void Send(ulong buffer, long count, int peer, nint comm, nint stream);
    /// <summary>Receives <paramref name="count"/> floats from <paramref name="peer"/>, on <paramref name="stream"/>.</summary>
    void Recv(ulong buffer, long count, int peer, nint comm, nint stream);
    /// <summary>Frees a communicator.</summary>
    void CommDestroy(nint comm);
}

/// <summary>NCCL through its C API.</summary>
public sealed unsafe class NcclLibrary : INccl
{
    /// <summary>The file names probed, in order.</summary>
    public static readonly string[] Candidates = ["libnccl.so.2", "libnccl.so"];
    private const string Hint = "NCCL is not installed (Debian has no package): install NVIDIA's libnccl2 for this CUDA version, or put libnccl.so.2 on the loader path";
    private const int Float32 = 7, Sum = 0, UniqueIdBytes = 128;

    [StructLayout(LayoutKind.Sequential, Size = UniqueIdBytes)]
    private struct UniqueId { private byte _first; }

    private readonly delegate* unmanaged<int*, int> _getVersion;
    private readonly delegate* unmanaged<UniqueId*, int> _getUniqueId;
    private readonly delegate* unmanaged<nint*, int, UniqueId, int, int> _commInitRank;
    private readonly delegate* unmanaged<ulong, ulong, nuint, int, int, nint, nint, int> _allReduce;
    private readonly delegate* unmanaged<ulong, ulong, nuint, int, nint, nint, int> _allGather;
    private readonly delegate* unmanaged<ulong, nuint, int, int, nint, nint, int> _send, _recv;
    private readonly delegate* unmanaged<int> _groupStart, _groupEnd;
    private readonly delegate* unmanaged<nint, int> _commDestroy;
    private readonly delegate* unmanaged<int, byte*> _errorString;

    private static readonly Lazy<(NcclLibrary? Library, string? Error)> s_default = new(() =>
    {
        var (h, error) = NativeLibraries.TryLoad(Candidates, Hint);
        return h == 0 ? (null, error) : (new NcclLibrary(h), null);
    });

    /// <summary>The library, or null and why not.</summary>
    public static (NcclLibrary? Library, string? Error) Default => s_default.Value;

    /// <summary>The library, or an <see cref="InvalidOperationException"/> saying what to install.</summary>
    public static NcclLibrary Require() => Default.Library ?? throw new InvalidOperationException($"the cuda backend sums gradients across processes with NCCL, and {Default.Error}.");

    private NcclLibrary(nint h)
    {
        nint F(string name) => NativeLibrary.TryGetExport(h, name, out var f) ? f : throw new InvalidOperationException($"the NCCL library has no {name}: it is not NCCL 2.7 or newer.");
        _getVersion = (delegate* unmanaged<int*, int>)F("ncclGetVersion");
        _getUniqueId = (delegate* unmanaged<UniqueId*, int>)F("ncclGetUniqueId");
        _commInitRank = (delegate* unmanaged<nint*, int, UniqueId, int, int>)F("ncclCommInitRank");
        _allReduce = (delegate* unmanaged<ulong, ulong, nuint, int, int, nint, nint, int>)F("ncclAllReduce");
        _allGather = (delegate* unmanaged<ulong, ulong, nuint, int, nint, nint, int>)F("ncclAllGather");
        _send = (delegate* unmanaged<ulong, nuint, int, int, nint, nint, int>)F("ncclSend");
        _recv = (delegate* unmanaged<ulong, nuint, int, int, nint, nint, int>)F("ncclRecv");
        _groupStart = (delegate* unmanaged<int>)F("ncclGroupStart");
        _groupEnd = (delegate* unmanaged<int>)F("ncclGroupEnd");
        _commDestroy = (delegate* unmanaged<nint, int>)F("ncclCommDestroy");
        _errorString = (delegate* unmanaged<int, byte*>)F("ncclGetErrorString");
        int v;
        Check(_getVersion(&v), "ncclGetVersion");
        Version = $"NCCL {v / 10000}.{v / 100 % 100}.{v % 100}";
    }

    /// <inheritdoc />
    public string Version { get; }

    private void Check(int result, string call)
    {
        if (result != 0) throw new InvalidOperationException($"{call} failed: {Marshal.PtrToStringUTF8((nint)_errorString(result))} (ncclResult_t {result}).");
    }

    /// <inheritdoc />
    public void GetUniqueId(Span<byte> id)
    {
        if (id.Length != UniqueIdBytes) throw new ArgumentException($"an NCCL unique id has {UniqueIdBytes} bytes; got a buffer of {id.Length}.", nameof(id));
        UniqueId u;
        Check(_getUniqueId(&u), "ncclGetUniqueId");
        new ReadOnlySpan<byte>(&u, UniqueIdBytes).CopyTo(id);
    }

    /// <inheritdoc />
    public nint CommInitRank(int size, ReadOnlySpan<byte> id, int rank)
    {
        if (id.Length != UniqueIdBytes) throw new ArgumentException($"an NCCL unique id has {UniqueIdBytes} bytes; got {id.Length}.", nameof(id));
        UniqueId u;
        id.CopyTo(new Span<byte>(&u, UniqueIdBytes));
        nint comm;
        Check(_commInitRank(&comm, size, u, rank), $"ncclCommInitRank(rank {rank} of {size})");
        return comm;
    }

    /// <inheritdoc />
    public void AllReduceSum(ulong send, ulong recv, long count, nint comm, nint stream) => Check(_allReduce(send, recv, (nuint)count, Float32, Sum, comm, stream), "ncclAllReduce");
    /// <inheritdoc />
    public void AllGather(ulong send, ulong recv, long count, nint comm, nint stream) => Check(_allGather(send, recv, (nuint)count, Float32, comm, stream), "ncclAllGather");
    /// <inheritdoc />
    public void GroupStart() => Check(_groupStart(), "ncclGroupStart");
    /// <inheritdoc />
    public void GroupEnd() => Check(_groupEnd(), "ncclGroupEnd");
    /// <inheritdoc />
    public void Send(ulong buffer, long count, int peer, nint comm, nint stream) => Check(_send(buffer, (nuint)count, Float32, peer, comm, stream), "ncclSend");
    /// <inheritdoc />
    public void Recv(ulong buffer, long count, int peer, nint comm, nint stream) => Check(_recv(buffer, (nuint)count, Float32, peer, comm, stream), "ncclRecv");
    /// <inheritdoc />
    public void CommDestroy(nint comm) => Check(_commDestroy(comm), "ncclCommDestroy");
}
