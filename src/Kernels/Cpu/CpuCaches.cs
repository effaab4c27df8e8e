// The data caches of the CPU this process runs on, read from the system once: Linux's sysfs
// (/sys/devices/system/cpu/cpu0/cache/index*/: level, type, size, ways, line size, sets, which
// CPUs share it), else CPUID (leaf 4 on Intel, 0x8000001D on AMD: the same deterministic cache
// parameters), else a conservative guess that says so. The GEMM's cache blocks are computed from
// these (GemmBlocking), so the machine the project runs on decides them, not the one it was tuned on.
using System.Globalization;
using System.Runtime.Intrinsics.X86;

namespace Backprop.Kernels.Cpu;

/// <summary>One data (or unified) cache level: size in bytes, associativity, line size, sets, and how many logical CPUs share it.</summary>
public readonly record struct CacheLevel(int Level, long Bytes, int Ways, int LineBytes, int Sets, int SharedBy)
{
    /// <summary>Bytes of one way (sets × line size).</summary>
    public long WayBytes => (long)Sets * LineBytes;
}

/// <summary>The L1 data, L2 and L3 caches of this CPU (as seen by logical CPU 0) and where the figures came from.</summary>
public sealed record CpuCaches(CacheLevel L1, CacheLevel L2, CacheLevel L3, string Source)
{
    /// <summary>This machine's caches, detected once.</summary>
    public static CpuCaches Detected { get; } = Detect();

    /// <summary>The figures used when the system says nothing: 32 KiB 8-way L1d, 1 MiB 16-way L2, 8 MiB 16-way L3, 64-byte lines.</summary>
    public static CpuCaches Fallback { get; } = new(Make(1, 32 << 10, 8, 1), Make(2, 1 << 20, 16, 1), Make(3, 8 << 20, 16, 1), "assumed (no sysfs or CPUID cache data)");

    /// <summary>One line: "L1d 48 KiB 12-way, L2 2 MiB 16-way, L3 260 MiB 20-way shared by 2 (sysfs)".</summary>
    public override string ToString() =>
        $"L1d {Size(L1.Bytes)} {L1.Ways}-way, L2 {Size(L2.Bytes)} {L2.Ways}-way, L3 {Size(L3.Bytes)} {L3.Ways}-way shared by {L3.SharedBy} ({Source})";

    private static string Size(long b) => b >= 1 << 20 && b % (1 << 20) == 0 ? $"{b >> 20} MiB" : $"{b >> 10} KiB";

    private static CacheLevel Make(int level, long bytes, int ways, int sharedBy) => new(level, bytes, ways, 64, (int)(bytes / ways / 64), sharedBy);

    private static CpuCaches Detect()
    {
        try
        {
            if (FromSysfs("/sys/devices/system/cpu/cpu0/cache") is { } s) return s;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or OverflowException)
        {
            // fall through to CPUID
        }
        return FromCpuid() ?? Fallback;
    }

    /// <summary>Reads a sysfs cache folder (index0, index1, …); null when it holds no L1 data cache and L2.</summary>
    internal static CpuCaches? FromSysfs(string folder)
    {
        if (!Directory.Exists(folder)) return null;
        var levels = new Dictionary<int, CacheLevel>();
        foreach (var dir in Directory.GetDirectories(folder, "index*"))
        {
            string Read(string name) => File.ReadAllText(Path.Combine(dir, name)).Trim();
            string type = Read("type");
            if (type is not ("Data" or "Unified")) continue;
            int level = int.Parse(Read("level"), CultureInfo.InvariantCulture);
            long bytes = ParseSize(Read("size"));
            int line = int.Parse(Read("coherency_line_size"), CultureInfo.InvariantCulture);
            int ways = File.Exists(Path.Combine(dir, "ways_of_associativity")) ? int.Parse(Read("ways_of_associativity"), CultureInfo.InvariantCulture) : 0;
            if (bytes <= 0 || line <= 0) continue;
            if (ways <= 0) ways = (int)Math.Max(1, bytes / line / 64); // fully associative or unknown: treat as 64 sets
            int sets = (int)Math.Max(1, bytes / ways / line);
            int shared = File.Exists(Path.Combine(dir, "shared_cpu_list")) ? CountCpus(Read("shared_cpu_list")) : 1;
            levels[level] = new CacheLevel(level, bytes, ways, line, sets, Math.Max(1, shared));
        }
        if (!levels.TryGetValue(1, out var l1) || !levels.TryGetValue(2, out var l2)) return null;
        // No L3 (some small cores): the L2 is the last level.
        var l3 = levels.TryGetValue(3, out var c3) ? c3 : l2 with { Level = 3 };
        return new CpuCaches(l1, l2, l3, "sysfs");
    }

    /// <summary>"48K", "2048K", "260M", or plain bytes.</summary>
    internal static long ParseSize(string s)
    {
        long unit = 1;
        if (s.EndsWith('K')) unit = 1 << 10;
        else if (s.EndsWith('M')) unit = 1 << 20;
        else if (s.EndsWith('G')) unit = 1 << 30;
        return long.Parse(unit == 1 ? s : s[..^1], NumberStyles.None, CultureInfo.InvariantCulture) * unit;
    }

    /// <summary>The number of CPUs in a list such as "0-3,8,10-11".</summary>
    internal static int CountCpus(string list)
    {
        int n = 0;
        foreach (var part in list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int dash = part.IndexOf('-');
            n += dash < 0 ? 1 : int.Parse(part[(dash + 1)..], CultureInfo.InvariantCulture) - int.Parse(part[..dash], CultureInfo.InvariantCulture) + 1;
        }
        return n;
    }

    // CPUID deterministic cache parameters: EAX[4:0] type (1 data, 3 unified), EAX[7:5] level, EAX[25:14] sharing - 1,
    // EBX[11:0] line - 1, EBX[21:12] partitions - 1, EBX[31:22] ways - 1, ECX sets - 1.
    private static CpuCaches? FromCpuid()
    {
        if (!X86Base.IsSupported) return null;
        var (_, vb, vc, vd) = X86Base.CpuId(0, 0);
        bool amd = vb == 0x68747541 && vd == 0x69746E65 && vc == 0x444D4163; // "AuthenticAMD"
        int leaf = amd ? unchecked((int)0x8000001D) : 4;
        if (amd ? (uint)X86Base.CpuId(unchecked((int)0x80000000), 0).Eax < 0x8000001D : X86Base.CpuId(0, 0).Eax < 4) return null;
        var levels = new Dictionary<int, CacheLevel>();
        for (int sub = 0; sub < 16; sub++)
        {
            var (a, b, c, _) = X86Base.CpuId(leaf, sub);
            int type = a & 0x1F;
            if (type == 0) break;
            if (type is not (1 or 3)) continue;
            int level = (a >> 5) & 7;
            int line = (b & 0xFFF) + 1, partitions = ((b >> 12) & 0x3FF) + 1, ways = ((b >> 22) & 0x3FF) + 1, sets = c + 1;
            long bytes = (long)line * partitions * ways * sets;
            levels[level] = new CacheLevel(level, bytes, ways, line * partitions, sets, ((a >> 14) & 0xFFF) + 1);
        }
        if (!levels.TryGetValue(1, out var l1) || !levels.TryGetValue(2, out var l2)) return null;
        var l3 = levels.TryGetValue(3, out var c3) ? c3 : l2 with { Level = 3 };
        return new CpuCaches(l1, l2, l3, "CPUID");
    }
}
