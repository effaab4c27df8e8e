// The benches' comparison schedule (alternating slices, the pauses between them) and the probe of how long
// OpenBLAS's threads spin after a call, which sets the pause after its slices.
using System.Text.Json;
using Backprop.Cli.Bench;
using Backprop.Kernels.Blas;
using Backprop.Kernels.Cpu;
using NUnit.Framework;
using static Backprop.Tests.Cli.InProcessCli;

namespace Backprop.Tests.Bench;

[TestFixture]
public class MeasureTests
{
    [Test]
    public void Slices_AlternateAndPauseLongerAfterB()
    {
        Assert.That(Measure.Slices, Is.EqualTo(4));
        var turns = new List<string>();
        var pauses = new List<int>();
        for (int r = 0; r < 2; r++)
            for (int s = 0; s < 2 * Measure.Slices; s++)
            {
                var (aTurn, pause) = Measure.Slice(r, s, settleAfterB: 150);
                turns.Add(aTurn ? "a" : "b");
                pauses.Add(pause);
            }
        Assert.That(string.Concat(turns), Is.EqualTo("abbaabba" + "baabbaab"));
        // Long where the slice before (or the warm-up, which ends with b) timed b.
        int L = 150, S = Measure.SettleMs;
        Assert.That(pauses, Is.EqualTo(new[] { L, S, L, L, S, S, L, L, S, L, S, S, L, L, S, S }));
        Assert.That(Measure.Slice(0, 0, settleAfterB: 1).PauseMs, Is.EqualTo(Measure.SettleMs), "never shorter than the usual pause");
    }

    [Test]
    [NonParallelizable] // OpenBLAS's thread count
    public void OpenBlasSpin_SettlesPastTheSpinAndRestoresTheThreadCount()
    {
        Assert.That(OpenBlas.IsAvailable, Is.True, OpenBlas.UnavailableReason);
        int saved = OpenBlas.Threads;
        try
        {
            OpenBlas.Threads = 1; // the probe runs 2 threads, then puts the count back
            var (spin, settle) = OpenBlasSpin.Probe();
            Assert.That(OpenBlas.Threads, Is.EqualTo(1), "the probe restores the thread count");
            Assert.That(settle, Is.EqualTo(Math.Max(Measure.SettleMs, spin + 20)));
            if (Environment.ProcessorCount >= 2 && Environment.GetEnvironmentVariable("OPENBLAS_THREAD_TIMEOUT") == null)
                Assert.That(spin, Is.GreaterThan(Measure.SettleMs), "at its default timeout OpenBLAS's idle threads spin for 2^28 TSC ticks, about 100 ms");
        }
        finally
        {
            OpenBlas.Threads = saved;
        }
        Assert.That(OpenBlasSpin.SettleFor(1), Is.EqualTo(Measure.SettleMs), "one OpenBLAS thread leaves nothing spinning");
        Assert.That(OpenBlasSpin.SettleFor(2), Is.EqualTo(OpenBlasSpin.SettleMs));
    }

    [Test]
    [NonParallelizable] // the in-process CLI and OpenBLAS's thread count
    public void BenchGemm_ReportsThePauseAfterOpenBlas()
    {
        var dir = Path.Combine(Path.GetTempPath(), "backprop-gemm-" + Guid.NewGuid().ToString("N"));
        try
        {
            var (code, output, err) = Run("bench", "gemm", "--size", "32x32x32:NN", "--threads", "2", "--rounds", "1", "--min-seconds", "0.01", "--output", dir);
            Assert.That(code, Is.EqualTo(0), output + err);
            using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "gemm.json")));
            Assert.That(json.RootElement.GetProperty("openblas_spin_ms").GetInt32(), Is.EqualTo(OpenBlasSpin.SpinMs));
            Assert.That(json.RootElement.GetProperty("openblas_settle_ms").GetInt32(), Is.EqualTo(OpenBlasSpin.SettleMs));
            Assert.That(File.ReadAllText(Path.Combine(dir, "gemm.md")), Does.Contain($"{OpenBlasSpin.SettleMs} ms after OpenBLAS's"));
            // The note on OpenBLAS's kernels: in the JSON as this process computes it, and in the table's header when there is one.
            string? note = OpenBlasCore.Current;
            string? jsonNote = json.RootElement.TryGetProperty("openblas_note", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString() : null;
            Assert.That(jsonNote, Is.EqualTo(note));
            if (note != null) Assert.That(File.ReadAllText(Path.Combine(dir, "gemm.md")), Does.Contain(note));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }

    [TestCase("Prescott", Isa.Avx512, null, "its Prescott (pre-AVX2) kernels on this Avx512 CPU (this OpenBLAS did not recognise the CPU and fell back to them); OPENBLAS_CORETYPE=SkylakeX selects its AVX-512 kernels")]
    [TestCase("Haswell", Isa.Avx512, "Haswell", "its Haswell (AVX2) kernels on this Avx512 CPU (OPENBLAS_CORETYPE=Haswell chose them); OPENBLAS_CORETYPE=SkylakeX selects its AVX-512 kernels")]
    [TestCase("Sandybridge", Isa.Avx2, null, "its Sandybridge (pre-AVX2) kernels on this Avx2 CPU (this OpenBLAS did not recognise the CPU and fell back to them); OPENBLAS_CORETYPE=Haswell selects its AVX2 kernels")]
    public void OpenBlasCoreNote_SaysWhenItsKernelsAreNarrowerThanTheCpu(string core, Isa isa, string? coretype, string expected)
    {
        string? note = OpenBlasCore.Note(core, isa, coretype);
        Assert.That(note, Does.Contain(expected));
        Assert.That(note, Does.EndWith("so ratios against it here say little about ours."));
    }

    [TestCase("Cooperlake", Isa.Avx512, null)]
    [TestCase("skylakex", Isa.Avx512, "SkylakeX")] // names compare without case
    [TestCase("SapphireRapids", Isa.Avx512, null)]
    [TestCase("Zen", Isa.Avx2, null)]
    [TestCase("Haswell", Isa.Avx2, "Haswell")]
    [TestCase("Prescott", Isa.Scalar, null)] // no vector ISA to fall short of
    public void OpenBlasCoreNote_IsNullWhereItRunsTheWidestKernels(string core, Isa isa, string? coretype) =>
        Assert.That(OpenBlasCore.Note(core, isa, coretype), Is.Null);

    [Test]
    public void PeakTable_KeepsTheHighestReadingOfEachThreadCount()
    {
        // Readings by thread count, in the order the table takes them: made, then three remeasures (a slow minute in the middle).
        var readings = new Dictionary<int, Queue<double>> { [1] = new([150.0, 210.04, 140.0, 180.0]), [2] = new([300.0, 290.0, 320.06, 100.0]) };
        using var pool = new Backprop.Kernels.Threading.WorkerPool(1);
        var peaks = new PeakTable(pool, [1, 2], (_, t) => readings[t].Dequeue());
        Assert.That(peaks[1], Is.EqualTo(150.0));
        for (int i = 0; i < 3; i++) peaks.Remeasure();
        Assert.That(readings.Values.All(q => q.Count == 0), "every remeasure reads every count once");
        Assert.That(peaks[1], Is.EqualTo(210.0));
        Assert.That(peaks[2], Is.EqualTo(320.1));
        Assert.That(peaks.ByThreads.Keys, Is.EquivalentTo(new[] { "1", "2" }));
        Assert.That(peaks.Percent(105.0, 1), Is.EqualTo(50.0));
    }
}
