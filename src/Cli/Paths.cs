// Whether two paths name the same file: an output must never be written over an input, whichever
// spelling, link or folder link leads to it.
using System.Runtime.InteropServices;

namespace Backprop.Cli;

internal static partial class Paths
{
    /// <summary>True when <paramref name="a"/> and <paramref name="b"/> lead to one file (both existing and the same after links), or are the same full path.</summary>
    public static bool Same(string a, string b)
    {
        string fa = Path.GetFullPath(a), fb = Path.GetFullPath(b);
        if (string.Equals(fa, fb, StringComparison.Ordinal)) return true;
        if (!File.Exists(fa) || !File.Exists(fb)) return false;
        return Real(fa) is { } ra && Real(fb) is { } rb && string.Equals(ra, rb, StringComparison.Ordinal);
    }

    /// <summary>The path with every link resolved (realpath(3)); null where the system cannot say.</summary>
    private static string? Real(string path)
    {
        if (OperatingSystem.IsWindows()) return new FileInfo(path).ResolveLinkTarget(true)?.FullName ?? path;
        nint p = RealPath(path, 0);
        if (p == 0) return null;
        try
        {
            return Marshal.PtrToStringUTF8(p);
        }
        finally
        {
            Free(p);
        }
    }

    [LibraryImport("libc", EntryPoint = "realpath", StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint RealPath(string path, nint resolved);

    [LibraryImport("libc", EntryPoint = "free")]
    private static partial void Free(nint p);
}
