// One DllImport resolver for the Kernels assembly (the runtime allows one per assembly): each binding
// registers a logical library name with the file names to probe (CUDA 11/12/13, distribution names)
// and what to install when none loads. The first successful load is cached; a failed probe is
// remembered with its reason, so a missing library costs one probe and yields one clear message.
using System.Collections.Concurrent;
using System.Reflection;
using System.Runtime.InteropServices;

namespace Backprop.Kernels.Native;

/// <summary>Finds native libraries by probing candidate file names.</summary>
public static class NativeLibraries
{
    private sealed record Entry(string[] Candidates, string Hint, Lazy<(nint Handle, string? Error)> Load);

    private static readonly ConcurrentDictionary<string, Entry> s_entries = new();

    static NativeLibraries()
    {
        NativeLibrary.SetDllImportResolver(typeof(NativeLibraries).Assembly, Resolve);
    }

    /// <summary>Registers <paramref name="logicalName"/> (the name used in DllImport/LibraryImport) with its candidates.</summary>
    public static void Register(string logicalName, string[] candidates, string hint) =>
        s_entries.TryAdd(logicalName, new Entry(candidates, hint, new Lazy<(nint, string?)>(() => TryLoad(candidates, hint))));

    /// <summary>Loads the first of <paramref name="candidates"/> that loads, or says which were tried and what to do.</summary>
    public static (nint Handle, string? Error) TryLoad(IEnumerable<string> candidates, string hint)
    {
        var tried = new List<string>();
        foreach (var name in candidates)
        {
            if (NativeLibrary.TryLoad(name, out var h)) return (h, null);
            tried.Add(name);
        }
        return (0, $"none of {string.Join(", ", tried)} could be loaded; {hint}");
    }

    /// <summary>The handle of <paramref name="logicalName"/> (0 when it does not load) and why not.</summary>
    public static (nint Handle, string? Error) Get(string logicalName) =>
        s_entries.TryGetValue(logicalName, out var e) ? e.Load.Value : (0, $"library '{logicalName}' is not registered");

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        if (!s_entries.TryGetValue(name, out var e)) return 0;
        var (handle, error) = e.Load.Value;
        if (handle == 0) throw new DllNotFoundException(error);
        return handle;
    }
}
