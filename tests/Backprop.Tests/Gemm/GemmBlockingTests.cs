// The cache detection (sysfs folders written here, sizes and CPU lists as Linux prints them) and the
// analytical blocking model on known machines' caches: the blocks follow the caches, not one CPU.
using Backprop.Kernels.Cpu;
using NUnit.Framework;

namespace Backprop.Tests.Gemm;

[TestFixture]
public class GemmBlockingTests
{
    private static CacheLevel Level(int level, long bytes, int ways, int sharedBy = 1) => new(level, bytes, ways, 64, (int)(bytes / ways / 64), sharedBy);

    // Sapphire/Emerald Rapids core: 48 KiB 12-way L1d, 2 MiB 16-way L2.
    private static readonly CpuCaches GoldenCove = new(Level(1, 48 << 10, 12), Level(2, 2 << 20, 16), Level(3, 105L << 20, 15, 56), "test");
    // Zen 4 core: 32 KiB 8-way L1d, 1 MiB 8-way L2, 32 MiB 16-way L3 per 8 cores.
    private static readonly CpuCaches Zen4 = new(Level(1, 32 << 10, 8), Level(2, 1 << 20, 8), Level(3, 32L << 20, 16, 16), "test");

    [Test]
    public void Model_FollowsTheCaches()
    {
        // 8 x 32 floats: C_A = floor(11 / 5) = 2 of 12 ways of 4 KiB -> KC 256; Zen 4: floor(7 / 5) = 1 of 8 -> KC 128.
        var gc = GemmBlocking.Model(8, 32, 4, GoldenCove);
        var z4 = GemmBlocking.Model(8, 32, 4, Zen4);
        Assert.That(gc.KC, Is.EqualTo(256));
        Assert.That(z4.KC, Is.EqualTo(128));
        // L2: (16 - 1 - 1) ways of 128 KiB for A at KC 256 -> MC 1792; Zen 4: (8 - 1 - 1) ways of 128 KiB at KC 128 -> 1536.
        Assert.That(gc.MC, Is.EqualTo(1792));
        Assert.That(z4.MC, Is.EqualTo(1536));
        // Doubles (8 x 16): C_A = floor(11 / 3) = 3 -> KC 3 * 4096 / 64 = 192.
        Assert.That(GemmBlocking.Model(8, 16, 8, GoldenCove).KC, Is.EqualTo(192));
        foreach (var b in new[] { gc, z4 })
        {
            Assert.That(b.MC % 8, Is.Zero);
            Assert.That(b.NC % 32, Is.Zero);
            Assert.That(b.KC % 8, Is.Zero);
            Assert.That(b.NC, Is.InRange(128, 4096));
        }
        // The packed A block fits the L2 and the B micro-panel with one A micro-panel fits the L1.
        Assert.That((long)z4.MC * z4.KC * 4, Is.LessThan(Zen4.L2.Bytes));
        Assert.That((long)z4.KC * (32 + 8) * 4, Is.LessThan(Zen4.L1.Bytes));
    }

    [Test]
    public void CapacityModel_PutsBothMicroPanelsInL1()
    {
        // 12 x 32 bf16 (2 bytes): (32 KiB - 4 KiB) / (44 * 2) = 325 -> KC 320 on Zen 4; (48 - 4) KiB / 88 = 512 on Golden Cove.
        var z4 = GemmBlocking.ForCapacity(12, 32, 2, Zen4);
        var gc = GemmBlocking.ForCapacity(12, 32, 2, GoldenCove);
        if (Environment.GetEnvironmentVariable(GemmBlocking.OverrideVariable) is { Length: > 0 }) Assert.Ignore("BACKPROP_GEMM_BLOCKS is set");
        Assert.That(z4.KC, Is.EqualTo(320));
        Assert.That(gc.KC, Is.EqualTo(512));
        foreach (var (b, c) in new[] { (z4, Zen4), (gc, GoldenCove) })
        {
            Assert.That((long)b.KC * (12 + 32) * 2, Is.LessThanOrEqualTo(c.L1.Bytes - c.L1.WayBytes), "both micro-panels fit L1 less a way");
            Assert.That(b.MC % 12, Is.Zero);
            Assert.That(b.NC % 32, Is.Zero);
            Assert.That((long)b.MC * b.KC * 2, Is.LessThan(c.L2.Bytes), "the packed A block fits L2");
        }
    }

    [Test]
    public void Override_SetsWhatItNames_AndRefusesMalformedText()
    {
        var model = new GemmBlocks(1792, 256, 4096);
        Assert.That(GemmBlocking.Override(model, 8, 32, null), Is.EqualTo(model));
        Assert.That(GemmBlocking.Override(model, 8, 32, "0,192,0"), Is.EqualTo(new GemmBlocks(1792, 192, 4096)));
        Assert.That(GemmBlocking.Override(model, 8, 32, "100, 130, 1000"), Is.EqualTo(new GemmBlocks(96, 128, 992)), "rounded to MR, 8 and NR");
        foreach (var bad in new[] { "256", "1,2", "a,b,c", "-8,256,1024", "1,2,3,4", "100000,100000,100000", "0,2048,0" })
        {
            var e = Assert.Throws<ArgumentException>(() => GemmBlocking.Override(model, 8, 32, bad))!;
            Assert.That(e.Message, Does.Contain($"'{bad}'").And.Contain("MC,KC,NC"));
        }
    }

    [TestCase(784, 256, 8, 200)]   // 4 blocks: 200, 200, 200, 184 (not 256, 256, 256, 16)
    [TestCase(1024, 256, 8, 256)]
    [TestCase(100, 256, 8, 100)]   // one block: the extent
    [TestCase(257, 256, 8, 136)]
    [TestCase(4096, 1792, 8, 1368)]
    public void Step_SplitsIntoNearEqualBlocks(int extent, int block, int multiple, int expected)
    {
        int step = GemmBlocks.Step(extent, block, multiple);
        Assert.That(step, Is.EqualTo(expected));
        Assert.That(step, Is.LessThanOrEqualTo(block));
        Assert.That((extent + step - 1) / step, Is.EqualTo((extent + block - 1) / block), "no more blocks than the block size needs");
    }

    [Test]
    public void Sysfs_IsReadAsLinuxWritesIt()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"bp-cache-{Guid.NewGuid():N}");
        try
        {
            void Index(int i, int level, string type, string size, int ways, string shared)
            {
                string d = Path.Combine(dir, $"index{i}");
                Directory.CreateDirectory(d);
                File.WriteAllText(Path.Combine(d, "level"), $"{level}\n");
                File.WriteAllText(Path.Combine(d, "type"), $"{type}\n");
                File.WriteAllText(Path.Combine(d, "size"), $"{size}\n");
                File.WriteAllText(Path.Combine(d, "ways_of_associativity"), $"{ways}\n");
                File.WriteAllText(Path.Combine(d, "coherency_line_size"), "64\n");
                File.WriteAllText(Path.Combine(d, "shared_cpu_list"), $"{shared}\n");
            }
            Index(0, 1, "Data", "32K", 8, "0,16");
            Index(1, 1, "Instruction", "32K", 8, "0,16");
            Index(2, 2, "Unified", "1024K", 8, "0,16");
            Index(3, 3, "Unified", "32768K", 16, "0-7,16-23");
            var c = CpuCaches.FromSysfs(dir)!;
            Assert.That(c.L1, Is.EqualTo(Level(1, 32 << 10, 8, 2)));
            Assert.That(c.L2, Is.EqualTo(Level(2, 1 << 20, 8, 2)));
            Assert.That(c.L3, Is.EqualTo(Level(3, 32L << 20, 16, 16)));
            Assert.That(c.ToString(), Is.EqualTo("L1d 32 KiB 8-way, L2 1 MiB 8-way, L3 32 MiB 16-way shared by 16 (sysfs)"));
            Assert.That(GemmBlocking.Model(8, 32, 4, c).KC, Is.EqualTo(128));
            // No L3: the L2 is the last level. No L2: nothing to go on.
            Directory.Delete(Path.Combine(dir, "index3"), true);
            Assert.That(CpuCaches.FromSysfs(dir)!.L3.Bytes, Is.EqualTo(1 << 20));
            Directory.Delete(Path.Combine(dir, "index2"), true);
            Assert.That(CpuCaches.FromSysfs(dir), Is.Null);
            Assert.That(CpuCaches.FromSysfs(Path.Combine(dir, "missing")), Is.Null);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [TestCase("48K", 48L << 10)]
    [TestCase("2048K", 2L << 20)]
    [TestCase("260M", 260L << 20)]
    [TestCase("512", 512L)]
    public void Sizes_Parse(string text, long bytes) => Assert.That(CpuCaches.ParseSize(text), Is.EqualTo(bytes));

    [Test]
    public void L2StreamModel_PutsTheBMicroPanelInHalfAnL2Way_NeverShorterThanTheWayModel()
    {
        if (Environment.GetEnvironmentVariable(GemmBlocking.OverrideVariable) is { Length: > 0 }) Assert.Ignore("BACKPROP_GEMM_BLOCKS is set");
        // 8 x 32 floats: Zen 4's 128 KiB L2 way / 2 / (32 * 4) = 512 (the way model's 128); Golden Cove's too (its 256).
        var z4 = GemmBlocking.ForL2Stream(8, 32, 4, Zen4);
        var gc = GemmBlocking.ForL2Stream(8, 32, 4, GoldenCove);
        Assert.That(z4.KC, Is.EqualTo(512));
        Assert.That(gc.KC, Is.EqualTo(512));
        // MC from the L2 left beside the B micro-panel's way: (8 - 1 - 1) ways of 128 KiB / (512 * 4) = 384 on Zen 4.
        Assert.That(z4.MC, Is.EqualTo(384));
        // The bf16 kernel (12 x 32 pairs of 2-byte values): 128 KiB / 2 / (32 * 2) = 1024, MC 6 ways / (1024 * 2) = 384.
        var bf = GemmBlocking.ForL2Stream(12, 32, 2, Zen4);
        Assert.That((bf.KC, bf.MC), Is.EqualTo((1024, 384)));
        // A small L2 (128 KiB 4-way: 32 KiB ways) would give 128, below the way model of 256 on a 48 KiB 12-way L1d: that one stays.
        var smallL2 = new CpuCaches(Level(1, 48 << 10, 12), Level(2, 128 << 10, 4), Level(3, 8L << 20, 16, 4), "test");
        Assert.That(GemmBlocking.Model(8, 32, 4, smallL2).KC, Is.EqualTo(256));
        Assert.That(GemmBlocking.ForL2Stream(8, 32, 4, smallL2).KC, Is.EqualTo(256));
        foreach (var (b, c) in new[] { (z4, Zen4), (gc, GoldenCove) })
        {
            Assert.That((long)b.KC * 32 * 4, Is.LessThanOrEqualTo(c.L2.WayBytes / 2), "the B micro-panel in half an L2 way");
            Assert.That((long)b.MC * b.KC * 4, Is.LessThan(c.L2.Bytes), "the packed A block fits L2");
            Assert.That(b.MC % 8, Is.Zero);
            Assert.That(b.NC % 32, Is.Zero);
        }
    }

    [TestCase("0", 1)]
    [TestCase("0-1", 2)]
    [TestCase("0,16", 2)]
    [TestCase("0-7,16-23", 16)]
    public void CpuLists_Count(string list, int n) => Assert.That(CpuCaches.CountCpus(list), Is.EqualTo(n));

    [Test]
    public void ThisMachine_HasCaches_AndTheRegisteredKernelsUseTheirBlocks()
    {
        var c = CpuCaches.Detected;
        Assert.That(c.L1.Bytes, Is.InRange(8L << 10, 4L << 20), c.ToString());
        Assert.That(c.L2.Bytes, Is.GreaterThanOrEqualTo(c.L1.Bytes), c.ToString());
        foreach (var k in MicroKernels.All)
        {
            // The model and BACKPROP_GEMM_BLOCKS when set; the AVX2 kernels size KC by L1 capacity, the AVX-512 float and double
            // kernels and the native bf16 kernel by an L2-streamed B micro-panel.
            var b = k.Isa == Isa.Avx2 ? GemmBlocking.ForCapacity(k.MR, k.NR, k.ElementSize, c)
                : k.Isa == Isa.Avx512 ? GemmBlocking.ForL2Stream(k.MR, k.NR, k.ElementSize, c)
                : GemmBlocking.For(k.MR, k.NR, k.ElementSize, c);
            Assert.That((k.MC, k.KC, k.NC), Is.EqualTo((b.MC, b.KC, b.NC)), k.Name);
            var (packA, packB) = MicroKernels.PackBytes(k.Isa);
            Assert.That(packA, Is.GreaterThanOrEqualTo((long)k.MC * k.KC * k.ElementSize), k.Name);
            Assert.That(packB, Is.GreaterThanOrEqualTo((long)k.KC * k.NC * k.ElementSize), k.Name);
        }
    }
}
