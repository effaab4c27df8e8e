// The MPI C library of this machine through unmanaged function pointers (no wrapper package). Probed, in
// order: libmpi.so.40 (Open MPI 3 to 5), libmpi.so.12 and libmpich.so.12 (MPICH 3.1+ and its ABI family:
// Intel MPI, MVAPICH, Cray MPICH), then the unversioned names; when $BACKPROP_MPI_LIBRARY is set, only
// that name or path. Each function is resolved once with NativeLibrary.GetExport.
//
// The two ABIs differ in their handles, and this file is the only place that knows:
//   Open MPI  MPI_Comm, MPI_Datatype, MPI_Op, MPI_Errhandler are pointers: the addresses of exported
//             globals (&ompi_mpi_comm_world, &ompi_mpi_float, &ompi_mpi_op_sum, ...); MPI_IN_PLACE is (void*)1.
//   MPICH     they are 32-bit integers fixed in mpi.h (MPI_COMM_WORLD 0x44000000, MPI_FLOAT 0x4c00040a,
//             MPI_SUM 0x58000003, ...); MPI_IN_PLACE is (void*)-1.
// Callers hold every handle as an nint; a function that takes one is called through a pointer typed with
// the ABI's own handle type (pointer or int), so the arguments match the C prototype exactly. The ABI is
// told by the exports (Open MPI's ompi_mpi_comm_world) or else by MPI_Get_library_version, which MPI-3
// allows before MPI_Init; a library of neither kind is refused rather than guessed at. The handlers of the
// signals .NET relies on are saved before the first load and put back after it (and after MPI_Init).
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Backprop.Kernels.Native;

namespace Backprop.Kernels.Mpi;

/// <summary>The handle conventions of an MPI library.</summary>
internal enum MpiAbi
{
    /// <summary>Handles are addresses of exported globals (Open MPI).</summary>
    OpenMpi,
    /// <summary>Handles are 32-bit integers (MPICH, Intel MPI, MVAPICH, Cray MPICH).</summary>
    Mpich,
}

/// <summary>A loaded MPI library: its entry points and the predefined handles of its ABI.</summary>
internal sealed unsafe class MpiLibrary
{
    /// <summary>What to install when no MPI library loads.</summary>
    public const string InstallHint = "install Open MPI with: apt-get install openmpi-bin libopenmpi3";

    /// <summary>The environment variable that names the one library to load instead of the default list.</summary>
    public const string LibraryVariable = "BACKPROP_MPI_LIBRARY";

    /// <summary>File names probed, in order, when <see cref="LibraryVariable"/> is not set.</summary>
    public static readonly IReadOnlyList<string> LibraryNames =
        ["libmpi.so.40", "libmpi.so.12", "libmpich.so.12", "libmpi.so", "libmpich.so"];

    public const int Success = 0;
    public const int ThreadSingle = 0, ThreadFunneled = 1;    // the same in both ABIs' mpi.h

    // Larger than every implementation's MPI_MAX_LIBRARY_VERSION_STRING, MPI_MAX_ERROR_STRING and
    // MPI_MAX_PROCESSOR_NAME (Open MPI 256; MPICH 8192, 512, 128).
    private const int StringCapacity = 8192;

    private static readonly Lazy<(MpiLibrary? Library, string? Error)> s_default =
        new(() => Open(Candidates(Environment.GetEnvironmentVariable(LibraryVariable))));

    private readonly nint _handle;
    private readonly SignalHandlers _handlers;
    private readonly List<string> _restoredSignals = [];

    // Functions without handle arguments: one signature for both ABIs.
    private readonly delegate* unmanaged<int*, int> _initialized, _finalized, _queryThread;
    private readonly delegate* unmanaged<int*, byte***, int, int*, int> _initThread;
    private readonly delegate* unmanaged<int> _finalize;
    private readonly delegate* unmanaged<byte*, int*, int> _getLibraryVersion, _getProcessorName;
    private readonly delegate* unmanaged<int, byte*, int*, int> _errorString;
    private readonly delegate* unmanaged<double> _wtime;

    // Functions with handle arguments: cast at the call to the ABI's signature.
    private readonly void* _iallreduce, _testall, _waitall;
    private readonly void* _commRank, _commSize, _commSetErrhandler, _barrier, _bcast, _allreduce, _alltoall,
        _allgather, _abort, _typeContiguous, _typeCreateResized, _typeCommit, _typeFree;

    /// <summary>The library named by <see cref="LibraryVariable"/> or else the first of <see cref="LibraryNames"/> that loads (once per process), or why none did.</summary>
    public static (MpiLibrary? Library, string? Error) Default => s_default.Value;

    /// <summary>What is probed: <see cref="LibraryNames"/>, or only <paramref name="variable"/> when it is set.</summary>
    internal static IReadOnlyList<string> Candidates(string? variable) =>
        string.IsNullOrWhiteSpace(variable) ? LibraryNames : [variable.Trim()];

    /// <summary>
    /// Loads the first of <paramref name="candidates"/> that loads and is an MPI library of a known ABI (a library that loads but is
    /// not, is passed over), or says what was tried and what to install.
    /// </summary>
    internal static (MpiLibrary? Library, string? Error) Open(IEnumerable<string> candidates)
    {
        string hint = $"MPI is missing: {InstallHint} (or set {LibraryVariable} to the path of an MPI library).";
        var notLoaded = new List<string>();
        var refused = new List<string>();
        var handlers = SignalHandlers.Save();      // before any library constructor runs
        foreach (var name in candidates)
        {
            var (handle, _) = NativeLibraries.TryLoad([name], hint);
            if (handle == 0)
            {
                notLoaded.Add(name);
                continue;
            }
            try
            {
                var library = new MpiLibrary(handle, name, handlers);
                library.RestoreSignalHandlers();
                return (library, null);
            }
            catch (NotSupportedException e)
            {
                NativeLibrary.Free(handle);
                handlers.Restore();
                refused.Add($"{name} loaded but {e.Message}");
            }
        }
        string? error = notLoaded.Count > 0 ? NativeLibraries.TryLoad(notLoaded, hint).Error : hint;
        return (null, refused.Count == 0 ? error : $"{string.Join("; ", refused)}; {error}");
    }

    private MpiLibrary(nint handle, string name, SignalHandlers handlers)
    {
        _handle = handle;
        _handlers = handlers;
        Name = name;
        _initialized = (delegate* unmanaged<int*, int>)Export("MPI_Initialized");
        _finalized = (delegate* unmanaged<int*, int>)Export("MPI_Finalized");
        _queryThread = (delegate* unmanaged<int*, int>)Export("MPI_Query_thread");
        _initThread = (delegate* unmanaged<int*, byte***, int, int*, int>)Export("MPI_Init_thread");
        _finalize = (delegate* unmanaged<int>)Export("MPI_Finalize");
        _getLibraryVersion = (delegate* unmanaged<byte*, int*, int>)Export("MPI_Get_library_version");
        _getProcessorName = (delegate* unmanaged<byte*, int*, int>)Export("MPI_Get_processor_name");
        _errorString = (delegate* unmanaged<int, byte*, int*, int>)Export("MPI_Error_string");
        _wtime = (delegate* unmanaged<double>)Export("MPI_Wtime");
        _commRank = Export("MPI_Comm_rank");
        _commSize = Export("MPI_Comm_size");
        _commSetErrhandler = Export("MPI_Comm_set_errhandler");
        _barrier = Export("MPI_Barrier");
        _bcast = Export("MPI_Bcast");
        _allreduce = Export("MPI_Allreduce");
        _alltoall = Export("MPI_Alltoall");
        _allgather = Export("MPI_Allgather");
        _iallreduce = Export("MPI_Iallreduce");
        _testall = Export("MPI_Testall");
        _waitall = Export("MPI_Waitall");
        _abort = Export("MPI_Abort");
        _typeContiguous = Export("MPI_Type_contiguous");
        _typeCreateResized = Export("MPI_Type_create_resized");
        _typeCommit = Export("MPI_Type_commit");
        _typeFree = Export("MPI_Type_free");

        if (NativeLibrary.TryGetExport(handle, "ompi_mpi_comm_world", out nint world))
        {
            Abi = MpiAbi.OpenMpi;
            CommWorld = world;
            Byte = (nint)Export("ompi_mpi_byte");
            LongLong = (nint)Export("ompi_mpi_long_long_int");
            Float = (nint)Export("ompi_mpi_float");
            Double = (nint)Export("ompi_mpi_double");
            OpSum = (nint)Export("ompi_mpi_op_sum");
            OpMax = (nint)Export("ompi_mpi_op_max");
            ErrorsReturn = (nint)Export("ompi_mpi_errors_return");
            InPlace = (void*)1;
        }
        else
        {
            string version = FirstLine(QueryLibraryVersion());
            if (!IsMpichFamily(version))
                throw new NotSupportedException($"its MPI_Get_library_version ('{version}') is neither Open MPI (it exports no ompi_mpi_comm_world) " +
                    $"nor of the MPICH ABI (MPICH, Intel MPI, MVAPICH, Cray MPICH), the two ABIs this binding knows (set {LibraryVariable} to an Open MPI or MPICH libmpi.so)");
            Abi = MpiAbi.Mpich;
            CommWorld = 0x44000000;     // values from MPICH's mpi.h, shared by its ABI family
            Byte = 0x4c00010d;
            LongLong = 0x4c000809;
            Float = 0x4c00040a;
            Double = 0x4c00080b;
            OpSum = 0x58000003;
            OpMax = 0x58000001;
            ErrorsReturn = 0x54000001;
            InPlace = (void*)-1;
        }
    }

    /// <summary>The candidate name that loaded (e.g. libmpi.so.40).</summary>
    public string Name { get; }

    /// <summary>The signals whose handlers the library replaced (loading, or in MPI_Init) and that were put back, e.g. SIGSEGV.</summary>
    public IReadOnlyList<string> RestoredSignals => _restoredSignals;

    /// <summary>Puts back the signal handlers saved before the library was loaded (see <see cref="SignalHandlers"/>); call after MPI_Init.</summary>
    public void RestoreSignalHandlers()
    {
        foreach (var name in _handlers.Restore())
            if (!_restoredSignals.Contains(name)) _restoredSignals.Add(name);
    }

    /// <summary>Which handle convention the library uses.</summary>
    public MpiAbi Abi { get; }

    /// <summary>MPI_COMM_WORLD.</summary>
    public nint CommWorld { get; }
    /// <summary>MPI_BYTE.</summary>
    public nint Byte { get; }
    /// <summary>MPI_LONG_LONG_INT (64-bit on every platform this runs on).</summary>
    public nint LongLong { get; }
    /// <summary>MPI_FLOAT.</summary>
    public nint Float { get; }
    /// <summary>MPI_DOUBLE.</summary>
    public nint Double { get; }
    /// <summary>MPI_SUM.</summary>
    public nint OpSum { get; }
    /// <summary>MPI_MAX.</summary>
    public nint OpMax { get; }
    /// <summary>MPI_ERRORS_RETURN.</summary>
    public nint ErrorsReturn { get; }
    /// <summary>MPI_IN_PLACE.</summary>
    public void* InPlace { get; }

    /// <summary>Throws <see cref="MpiException"/> naming <paramref name="call"/> when <paramref name="result"/> is not MPI_SUCCESS.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Check(int result, string call)
    {
        if (result != Success) Throw(result, call);
    }

    [DoesNotReturn]
    private void Throw(int result, string call) => throw new MpiException(call, result, ErrorText(result));

    /// <summary>MPI_Error_string's text for <paramref name="code"/> (a fallback when the library cannot say).</summary>
    public string ErrorText(int code)
    {
        var buffer = stackalloc byte[StringCapacity];
        int length = 0;
        return _errorString(code, buffer, &length) == Success ? Text(buffer, length) : $"unknown MPI error {code}";
    }

    /// <summary>MPI_Get_library_version (allowed before MPI_Init).</summary>
    public string QueryLibraryVersion()
    {
        var buffer = stackalloc byte[StringCapacity];
        int length = 0;
        Check(_getLibraryVersion(buffer, &length), "MPI_Get_library_version");
        return Text(buffer, length);
    }

    /// <summary>MPI_Get_processor_name.</summary>
    public string QueryProcessorName()
    {
        var buffer = stackalloc byte[StringCapacity];
        int length = 0;
        Check(_getProcessorName(buffer, &length), "MPI_Get_processor_name");
        return Text(buffer, length);
    }

    public int Initialized(int* flag) => _initialized(flag);
    public int Finalized(int* flag) => _finalized(flag);
    public int QueryThread(int* provided) => _queryThread(provided);
    public int InitThread(int required, int* provided) => _initThread(null, null, required, provided);
    public int Finalize() => _finalize();
    public double Wtime() => _wtime();

    public int CommRank(nint comm, int* rank) => Abi == MpiAbi.OpenMpi
        ? ((delegate* unmanaged<nint, int*, int>)_commRank)(comm, rank)
        : ((delegate* unmanaged<int, int*, int>)_commRank)((int)comm, rank);

    public int CommSize(nint comm, int* size) => Abi == MpiAbi.OpenMpi
        ? ((delegate* unmanaged<nint, int*, int>)_commSize)(comm, size)
        : ((delegate* unmanaged<int, int*, int>)_commSize)((int)comm, size);

    public int CommSetErrhandler(nint comm, nint handler) => Abi == MpiAbi.OpenMpi
        ? ((delegate* unmanaged<nint, nint, int>)_commSetErrhandler)(comm, handler)
        : ((delegate* unmanaged<int, int, int>)_commSetErrhandler)((int)comm, (int)handler);

    public int Barrier(nint comm) => Abi == MpiAbi.OpenMpi
        ? ((delegate* unmanaged<nint, int>)_barrier)(comm)
        : ((delegate* unmanaged<int, int>)_barrier)((int)comm);

    public int Bcast(void* buffer, int count, nint type, int root, nint comm) => Abi == MpiAbi.OpenMpi
        ? ((delegate* unmanaged<void*, int, nint, int, nint, int>)_bcast)(buffer, count, type, root, comm)
        : ((delegate* unmanaged<void*, int, int, int, int, int>)_bcast)(buffer, count, (int)type, root, (int)comm);

    public int Allreduce(void* send, void* recv, int count, nint type, nint op, nint comm) => Abi == MpiAbi.OpenMpi
        ? ((delegate* unmanaged<void*, void*, int, nint, nint, nint, int>)_allreduce)(send, recv, count, type, op, comm)
        : ((delegate* unmanaged<void*, void*, int, int, int, int, int>)_allreduce)(send, recv, count, (int)type, (int)op, (int)comm);

    public int Alltoall(void* send, int sendCount, nint sendType, void* recv, int recvCount, nint recvType, nint comm) => Abi == MpiAbi.OpenMpi
        ? ((delegate* unmanaged<void*, int, nint, void*, int, nint, nint, int>)_alltoall)(send, sendCount, sendType, recv, recvCount, recvType, comm)
        : ((delegate* unmanaged<void*, int, int, void*, int, int, int, int>)_alltoall)(send, sendCount, (int)sendType, recv, recvCount, (int)recvType, (int)comm);

    public int Allgather(void* send, int sendCount, nint sendType, void* recv, int recvCount, nint recvType, nint comm) => Abi == MpiAbi.OpenMpi
        ? ((delegate* unmanaged<void*, int, nint, void*, int, nint, nint, int>)_allgather)(send, sendCount, sendType, recv, recvCount, recvType, comm)
        : ((delegate* unmanaged<void*, int, int, void*, int, int, int, int>)_allgather)(send, sendCount, (int)sendType, recv, recvCount, (int)recvType, (int)comm);

    /// <summary>MPI_Iallreduce; the request is a pointer (Open MPI) or an int (MPICH), kept in an nint.</summary>
    public int Iallreduce(void* send, void* recv, int count, nint type, nint op, nint comm, nint* request)
    {
        if (Abi == MpiAbi.OpenMpi)
            return ((delegate* unmanaged<void*, void*, int, nint, nint, nint, nint*, int>)_iallreduce)(send, recv, count, type, op, comm, request);
        int h = 0;
        int r = ((delegate* unmanaged<void*, void*, int, int, int, int, int*, int>)_iallreduce)(send, recv, count, (int)type, (int)op, (int)comm, &h);
        *request = h;
        return r;
    }

    // MPI_STATUSES_IGNORE: (MPI_Status*)0 in Open MPI, (MPI_Status*)1 in MPICH. Completed requests become MPI_REQUEST_NULL.
    /// <summary>MPI_Testall over <paramref name="count"/> requests (at most 256 for MPICH's int handles); flag 1 when all completed.</summary>
    public int Testall(int count, nint* requests, int* flag)
    {
        if (Abi == MpiAbi.OpenMpi) return ((delegate* unmanaged<int, nint*, int*, void*, int>)_testall)(count, requests, flag, null);
        if (count > 256) throw new ArgumentOutOfRangeException(nameof(count), count, "at most 256 requests at once.");
        int* h = stackalloc int[Math.Max(1, count)];
        for (int i = 0; i < count; i++) h[i] = (int)requests[i];
        int r = ((delegate* unmanaged<int, int*, int*, void*, int>)_testall)(count, h, flag, (void*)1);
        for (int i = 0; i < count; i++) requests[i] = h[i];
        return r;
    }

    /// <summary>MPI_Waitall over <paramref name="count"/> requests (at most 256 for MPICH's int handles).</summary>
    public int Waitall(int count, nint* requests)
    {
        if (Abi == MpiAbi.OpenMpi) return ((delegate* unmanaged<int, nint*, void*, int>)_waitall)(count, requests, null);
        if (count > 256) throw new ArgumentOutOfRangeException(nameof(count), count, "at most 256 requests at once.");
        int* h = stackalloc int[Math.Max(1, count)];
        for (int i = 0; i < count; i++) h[i] = (int)requests[i];
        int r = ((delegate* unmanaged<int, int*, void*, int>)_waitall)(count, h, (void*)1);
        for (int i = 0; i < count; i++) requests[i] = h[i];
        return r;
    }

    public int Abort(nint comm, int errorCode) => Abi == MpiAbi.OpenMpi
        ? ((delegate* unmanaged<nint, int, int>)_abort)(comm, errorCode)
        : ((delegate* unmanaged<int, int, int>)_abort)((int)comm, errorCode);

    /// <summary>MPI_Type_contiguous(count, old, &amp;result).</summary>
    public int TypeContiguous(int count, nint old, nint* result)
    {
        if (Abi == MpiAbi.OpenMpi) return ((delegate* unmanaged<int, nint, nint*, int>)_typeContiguous)(count, old, result);
        int h = 0;
        int r = ((delegate* unmanaged<int, int, int*, int>)_typeContiguous)(count, (int)old, &h);
        *result = h;
        return r;
    }

    /// <summary>MPI_Type_create_resized(old, lb, extent, &amp;result); MPI_Aint is pointer-sized in both ABIs.</summary>
    public int TypeCreateResized(nint old, nint lowerBound, nint extent, nint* result)
    {
        if (Abi == MpiAbi.OpenMpi) return ((delegate* unmanaged<nint, nint, nint, nint*, int>)_typeCreateResized)(old, lowerBound, extent, result);
        int h = 0;
        int r = ((delegate* unmanaged<int, nint, nint, int*, int>)_typeCreateResized)((int)old, lowerBound, extent, &h);
        *result = h;
        return r;
    }

    /// <summary>MPI_Type_commit(&amp;type).</summary>
    public int TypeCommit(nint* type)
    {
        if (Abi == MpiAbi.OpenMpi) return ((delegate* unmanaged<nint*, int>)_typeCommit)(type);
        int h = (int)*type;
        return ((delegate* unmanaged<int*, int>)_typeCommit)(&h);
    }

    /// <summary>MPI_Type_free(&amp;type); the handle is set to 0 afterwards.</summary>
    public int TypeFree(nint* type)
    {
        int r;
        if (Abi == MpiAbi.OpenMpi) r = ((delegate* unmanaged<nint*, int>)_typeFree)(type);
        else
        {
            int h = (int)*type;
            r = ((delegate* unmanaged<int*, int>)_typeFree)(&h);
        }
        *type = 0;
        return r;
    }

    /// <summary>Whether a library version string is of the MPICH ABI family.</summary>
    internal static bool IsMpichFamily(string version) =>
        version.Contains("MPICH", StringComparison.OrdinalIgnoreCase)
        || version.Contains("Intel(R) MPI", StringComparison.OrdinalIgnoreCase)
        || version.Contains("MVAPICH", StringComparison.OrdinalIgnoreCase);

    /// <summary>The first non-empty line of <paramref name="text"/>, trimmed.</summary>
    internal static string FirstLine(string text)
    {
        foreach (var line in text.Split('\n'))
        {
            var t = line.Replace('\t', ' ').Trim();
            if (t.Length > 0) return t;
        }
        return "";
    }

    private void* Export(string name) => NativeLibrary.TryGetExport(_handle, name, out nint address)
        ? (void*)address
        : throw new NotSupportedException($"exports no {name}, so it is not an MPI-3 library (Open MPI 3+ or MPICH 3.1+)");

    private static string Text(byte* buffer, int length) =>
        Encoding.UTF8.GetString(buffer, Math.Clamp(length, 0, StringCapacity)).TrimEnd('\0', ' ', '\n');
}
