// The process's handlers of the signals .NET depends on, saved before an MPI library is loaded and put
// back after it loads and after MPI_Init. .NET turns SIGSEGV, SIGBUS, SIGFPE and SIGILL in managed code
// into exceptions (a null dereference is a NullReferenceException) and SIGINT/SIGTERM into
// PosixSignalRegistration events (the CLI's stop at a step boundary); an MPI library may replace them
// when it loads or initializes. UCX does (MPICH over UCX, Open MPI's UCX PML): its SIGSEGV handler prints
// a backtrace and ends the process, so every NullReferenceException after MPI_Init became a crash
// (seen with Debian's MPICH 4.0.2). Putting the saved handlers back loses the MPI library's crash
// reports and keeps the runtime's exceptions. SIGCHLD is left alone: an Open MPI singleton needs its own.
//
// struct sigaction is treated as opaque bytes (256 is more than its 152 on glibc x86-64 and aarch64);
// only its first field, the handler, is read, to tell which signals were replaced. Linux only.
using System.Runtime.InteropServices;

namespace Backprop.Kernels.Mpi;

/// <summary>A snapshot of the handlers of SIGILL, SIGBUS, SIGFPE, SIGSEGV, SIGINT and SIGTERM, and a way back to it.</summary>
internal sealed unsafe class SignalHandlers
{
    private const int ActionBytes = 256;

    private static readonly (int Number, string Name)[] s_signals =
        [(4, "SIGILL"), (7, "SIGBUS"), (8, "SIGFPE"), (11, "SIGSEGV"), (2, "SIGINT"), (15, "SIGTERM")];   // Linux numbering

    private static readonly delegate* unmanaged<int, void*, void*, int> s_sigaction = FindSigaction();

    private readonly byte[]? _saved;

    private SignalHandlers(byte[]? saved) => _saved = saved;

    /// <summary>The handlers now installed (nothing is saved where sigaction is not available: not Linux).</summary>
    public static SignalHandlers Save()
    {
        if (s_sigaction == null) return new SignalHandlers(null);
        var saved = new byte[s_signals.Length * ActionBytes];
        fixed (byte* p = saved)
        {
            for (int i = 0; i < s_signals.Length; i++)
                if (s_sigaction(s_signals[i].Number, null, p + i * ActionBytes) != 0) return new SignalHandlers(null);
        }
        return new SignalHandlers(saved);
    }

    /// <summary>Puts back every saved handler that was replaced since; returns the names of those signals.</summary>
    public IReadOnlyList<string> Restore()
    {
        if (_saved is null) return [];
        var restored = new List<string>();
        var now = stackalloc byte[ActionBytes];
        fixed (byte* p = _saved)
        {
            for (int i = 0; i < s_signals.Length; i++)
            {
                byte* before = p + i * ActionBytes;
                if (s_sigaction(s_signals[i].Number, null, now) != 0 || *(nint*)now == *(nint*)before) continue;
                if (s_sigaction(s_signals[i].Number, before, null) == 0) restored.Add(s_signals[i].Name);
            }
        }
        return restored;
    }

    private static delegate* unmanaged<int, void*, void*, int> FindSigaction()
    {
        if (!OperatingSystem.IsLinux()) return null;
        if (!NativeLibrary.TryLoad("libc.so.6", out nint libc)) libc = NativeLibrary.GetMainProgramHandle();
        return NativeLibrary.TryGetExport(libc, "sigaction", out nint f) ? (delegate* unmanaged<int, void*, void*, int>)f : null;
    }
}
