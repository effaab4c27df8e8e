// Gradient accumulation and data parallelism in one process: accumulation against one whole batch (the same
// mean), dropout masks that follow the sample, and N ranks (threads with ThreadCollectives) in deterministic
// mode against one process accumulating the same micro-batches, bit for bit, for every optimizer.
using Backprop.Engine;
using Backprop.Engine.Training;
using Backprop.Kernels;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cpu.Ops;
using NUnit.Framework;

namespace Backprop.Tests.Distributed;

[TestFixture]
public class AccumulationTests
{
    private static ModelSpec Spec(double dropout) => new(12, [
        new LayerSpec(24, new Activation(ActivationKind.ReLU), dropout),
        new LayerSpec(9, new Activation(ActivationKind.Tanh), dropout),
        new LayerSpec(5, new Activation(ActivationKind.Identity))], LossKind.CrossEntropy);

    private static (float[] X, int[] Y) Batch(int n, int seed) =>
        (TestData.Floats(n * 12, seed), Enumerable.Range(0, n).Select(i => (i * 7 + seed) % 5).ToArray());

    private static readonly OptimizerSettings[] Optimizers =
    [
        new Sgd(0.05, 0.9, nesterov: true, weightDecay: 1e-3), new Adam { LearningRate = 1e-2 }, new AdamW { LearningRate = 1e-2, WeightDecay = 0.01, ClipNorm = 0.5 },
        new RmsProp(1e-3, momentum: 0.5), new Adagrad(0.05),
    ];

    // Trains `steps` steps on batches of `batch` (the last step smaller) and returns the parameter section.
    private static float[] Train(TrainingOptions options, double dropout, int batch, int steps)
    {
        using var m = new Model(Spec(dropout), options with { MaxBatch = batch, Threads = 1 });
        for (int t = 0; t < steps; t++)
        {
            var (x, y) = Batch(t == steps - 1 ? batch - 3 : batch, 100 + t);
            m.Step(x, y);
        }
        var p = new float[m.ParameterSectionLength];
        m.CopyParametersTo(p);
        return Real(m, p);
    }

    // The parameters without the alignment gaps (whose count depends on the number of processes).
    private static float[] Real(Model m, float[] section) =>
        m.Parameters.SelectMany(p => m.Parameter(p.Name).ToArray()).ToArray();

    [Test]
    public void Accumulating4MicroBatches_MatchesOneWholeBatch_WithinRounding()
    {
        var opt = new TrainingOptions { Optimizer = new Sgd(0.1), Seed = 3 };
        var whole = Train(opt, 0, 40, 6);
        var acc = Train(opt with { Accumulate = 4 }, 0, 40, 6);
        Assert.That(acc, Is.Not.EqualTo(whole).AsCollection, "different sums, so not bit for bit");
        for (int i = 0; i < whole.Length; i++) Assert.That(acc[i], Is.EqualTo(whole[i]).Within(1e-5 + 1e-5 * Math.Abs(whole[i])), $"parameter {i}");
    }

    [Test]
    public void Accumulation_InDouble_MatchesOneWholeBatch_To1e12()
    {
        var spec = Spec(0);
        var options = new TrainingOptions { Optimizer = new Adam { LearningRate = 1e-2 }, MaxBatch = 30, Threads = 1, Seed = 5 };
        using var a = new Model<double>(spec, options, null, false);
        using var b = new Model<double>(spec, options with { Accumulate = 3 }, null, false);
        for (int t = 0; t < 5; t++)
        {
            var (x, y) = Batch(t == 4 ? 29 : 30, t);
            var xd = TestData.ToDouble(x);
            double la = a.Step(xd, y), lb = b.Step(xd, y);
            Assert.That(lb, Is.EqualTo(la).Within(1e-12), $"loss of step {t + 1}");
        }
        foreach (var p in a.Parameters)
        {
            var pa = a.Parameter(p.Name).ToArray();
            var pb = b.Parameter(p.Name).ToArray();
            for (int i = 0; i < pa.Length; i++) Assert.That(pb[i], Is.EqualTo(pa[i]).Within(1e-12), $"{p.Name}[{i}]");
        }
    }

    [Test]
    public void Dropout_FollowsTheSample_SoAccumulationMatchesTheWholeBatch()
    {
        // Were the masks keyed by the row within a micro-batch, micro-batch 1 would reuse micro-batch 0's masks and the
        // result would differ by O(lr), not by rounding.
        var opt = new TrainingOptions { Optimizer = new Sgd(0.1), Seed = 8 };
        var whole = Train(opt, 0.3, 36, 4);
        var acc = Train(opt with { Accumulate = 3 }, 0.3, 36, 4);
        for (int i = 0; i < whole.Length; i++) Assert.That(acc[i], Is.EqualTo(whole[i]).Within(2e-5 + 2e-5 * Math.Abs(whole[i])), $"parameter {i}");
    }

    [Test]
    public void Accumulate1_IsTheUnsplitStep_BitForBit()
    {
        var opt = new TrainingOptions { Optimizer = new Adam { LearningRate = 1e-2 }, Seed = 4 };
        Assert.That(Train(opt with { Accumulate = 1 }, 0.2, 32, 5), Is.EqualTo(Train(opt, 0.2, 32, 5)).AsCollection);
    }

    [Test, TestCaseSource(nameof(Optimizers))]
    public void TwoRanks_Deterministic_EqualOneProcessAccumulating2_BitForBit(OptimizerSettings optimizer)
    {
        var opt = new TrainingOptions { Optimizer = optimizer, Seed = 11 };
        var single = Train(opt with { Accumulate = 2 }, 0.25, 34, 5);
        var ranks = ThreadCollectives.Run(2, (r, c) => Train(opt with { Distributed = new DistributedOptions(c) }, 0.25, 34, 5));
        Assert.That(ranks[0], Is.EqualTo(single).AsCollection, "rank 0");
        Assert.That(ranks[1], Is.EqualTo(single).AsCollection, "rank 1");
    }

    [Test]
    public void TheSameMicroBatches_SpreadAnyWay_GiveTheSameWeights()
    {
        var opt = new TrainingOptions { Optimizer = new Adam { LearningRate = 1e-2 }, Seed = 12 };
        var one = Train(opt with { Accumulate = 4 }, 0.2, 43, 4);
        var twoByTwo = ThreadCollectives.Run(2, (r, c) => Train(opt with { Accumulate = 2, Distributed = new DistributedOptions(c) }, 0.2, 43, 4));
        var four = ThreadCollectives.Run(4, (r, c) => Train(opt with { Distributed = new DistributedOptions(c) }, 0.2, 43, 4));
        Assert.That(twoByTwo[0], Is.EqualTo(one).AsCollection, "2 ranks x accumulate 2");
        Assert.That(twoByTwo[1], Is.EqualTo(one).AsCollection, "2 ranks x accumulate 2, rank 1");
        Assert.That(four[3], Is.EqualTo(one).AsCollection, "4 ranks");
    }

    // An epoch's last batch can be smaller than the number of micro-batches: the empty ones add zeros, the same for every spread.
    [Test]
    public void ALastBatchSmallerThanTheMicroBatchCount_GivesTheSameWeightsForEverySpread()
    {
        var opt = new TrainingOptions { Optimizer = new Adam { LearningRate = 1e-2 }, Seed = 15 };
        float[] Steps(TrainingOptions o)
        {
            using var m = new Model(Spec(0.2), o with { MaxBatch = 16, Threads = 1 });
            foreach (int b in new[] { 16, 3, 16, 1, 2 })
            {
                var (x, y) = Batch(b, 200 + b);
                m.Step(x, y);
            }
            return m.Parameters.SelectMany(p => m.Parameter(p.Name).ToArray()).ToArray();
        }
        var one = Steps(opt with { Accumulate = 4 });
        var twoByTwo = ThreadCollectives.Run(2, (r, c) => Steps(opt with { Accumulate = 2, Distributed = new DistributedOptions(c) }));
        var four = ThreadCollectives.Run(4, (r, c) => Steps(opt with { Distributed = new DistributedOptions(c) }));
        Assert.That(twoByTwo[1], Is.EqualTo(one).AsCollection, "2 ranks x accumulate 2");
        Assert.That(four[3], Is.EqualTo(one).AsCollection, "4 ranks");
        var fast = ThreadCollectives.Run(4, (r, c) => Steps(opt with { Distributed = new DistributedOptions(c, ReductionMode.Fast) { Overlap = true } }));
        Assert.That(fast[2], Is.EqualTo(fast[0]).AsCollection, "fast mode with overlap steps through empty micro-batches too");
    }

    [Test]
    public void AJobOfOneRank_AgreesToStop()
    {
        var agreed = ThreadCollectives.Run(1, (r, c) =>
        {
            using var m = new Model(Spec(0), new TrainingOptions { MaxBatch = 8, Threads = 1, Distributed = new DistributedOptions(c) });
            var (x, y) = Batch(8, 1);
            m.StopRequested = true;
            m.Step(x, y);
            return m.StopAgreed;
        });
        Assert.That(agreed[0], Is.True);
    }

    [Test]
    public void FastMode_AgreesAcrossRanks_AndWithDeterministic_WithinRounding()
    {
        var opt = new TrainingOptions { Optimizer = new Sgd(0.1), Seed = 13 };
        var det = Train(opt with { Accumulate = 4 }, 0.2, 40, 4);
        var fast = ThreadCollectives.Run(2, (r, c) => Train(opt with { Accumulate = 2, Distributed = new DistributedOptions(c, ReductionMode.Fast) }, 0.2, 40, 4));
        Assert.That(fast[1], Is.EqualTo(fast[0]).AsCollection, "every rank applies the same update");
        for (int i = 0; i < det.Length; i++) Assert.That(fast[0][i], Is.EqualTo(det[i]).Within(1e-5 + 1e-5 * Math.Abs(det[i])), $"parameter {i}");
    }

    [Test]
    public void FastModeWithOverlap_StartsEachLayersSumDuringBackward_AndGivesTheSameWeights()
    {
        var opt = new TrainingOptions { Optimizer = new Adam { LearningRate = 1e-2 }, Seed = 14 };
        var plain = ThreadCollectives.Run(2, (r, c) => Train(opt with { Distributed = new DistributedOptions(c, ReductionMode.Fast) }, 0.2, 30, 5));
        var counts = new (int Started, int Progressed)[2];
        var overlapped = ThreadCollectives.Run(2, (r, c) =>
        {
            var w = Train(opt with { Distributed = new DistributedOptions(c, ReductionMode.Fast) { Overlap = true } }, 0.2, 30, 5);
            var tc = (ThreadCollectives)c;
            counts[r] = (tc.Started, tc.Progressed);
            return w;
        });
        Assert.That(overlapped[0], Is.EqualTo(plain[0]).AsCollection);
        Assert.That(overlapped[1], Is.EqualTo(overlapped[0]).AsCollection);
        Assert.That(counts[0].Started, Is.EqualTo(3 * 5), "one sum per layer and step");
        Assert.That(counts[0].Progressed, Is.GreaterThan(counts[0].Started), "progressed between the kernels");
        var net = new Sequential(12).Dense(5);
        ThreadCollectives.Run(1, (r, c) =>
        {
            Assert.That(Assert.Throws<ArgumentException>(() => net.Compile(new TrainingOptions { Distributed = new DistributedOptions(c) { Overlap = true } }))!.Message,
                Does.Contain("needs the fast reduction and no accumulation; got deterministic with accumulate 1"));
            Assert.That(Assert.Throws<ArgumentException>(() => net.Compile(new TrainingOptions { Accumulate = 2, Distributed = new DistributedOptions(c, ReductionMode.Fast) { Overlap = true } }))!.Message,
                Does.Contain("got fast with accumulate 2"));
            return 0;
        });
    }

    [Test]
    public void Ranks_StartFromRank0sParameters_AndEvaluateTheirShares_Combined()
    {
        var (x, y) = Batch(101, 50);
        using var single = new Model(Spec(0), new TrainingOptions { Seed = 21, MaxBatch = 16, Threads = 1 });
        var expected = single.Evaluate(x, y);
        var results = ThreadCollectives.Run(3, (r, c) =>
        {
            // rank 1 and 2 start from another seed; the broadcast from rank 0 makes them equal
            using var m = new Model(Spec(0), new TrainingOptions { Seed = r == 0 ? 21UL : 99UL, MaxBatch = 16, Threads = 1, Distributed = new DistributedOptions(c) });
            return m.Evaluate(x, y);
        });
        foreach (var e in results)
        {
            Assert.That(e.Accuracy, Is.EqualTo(expected.Accuracy));
            Assert.That(e.Confusion, Is.EqualTo(expected.Confusion));
            Assert.That(e.Loss, Is.EqualTo(expected.Loss).Within(1e-6));
        }
        Assert.That(results[1].Loss, Is.EqualTo(results[0].Loss), "every rank gets the same combined loss");
    }

    [Test]
    public void AStopRequestedOnOneRank_StopsEveryRankAfterTheSameStep()
    {
        var stops = ThreadCollectives.Run(2, (r, c) =>
        {
            using var m = new Model(Spec(0), new TrainingOptions { MaxBatch = 8, Threads = 1, Distributed = new DistributedOptions(c) });
            var (x, y) = Batch(8, 1);
            var agreed = new List<bool>();
            for (int t = 0; t < 4; t++)
            {
                m.StopRequested = r == 1 && t == 2;
                m.Step(x, y);
                agreed.Add(m.StopAgreed);
            }
            return agreed;
        });
        Assert.That(stops[0], Is.EqualTo(new[] { false, false, true, false }));
        Assert.That(stops[1], Is.EqualTo(stops[0]));
    }

    [Test]
    public void Divergence_OnOneRank_StopsEveryRank_WithTheSameException()
    {
        var errors = ThreadCollectives.Run(2, (r, c) =>
        {
            using var m = new Model(Spec(0), new TrainingOptions { MaxBatch = 8, Threads = 1, Distributed = new DistributedOptions(c) });
            var (x, y) = Batch(8, 1);
            if (r == 1) x[5 * 12 + 1] = float.NaN; // a sample of rank 1's micro-batch (rows 4 to 7)
            var before = m.Parameter("0.weight").ToArray();
            var e = Assert.Throws<TrainingDivergedException>(() => m.Step(x, y))!;
            Assert.That(m.Parameter("0.weight").ToArray(), Is.EqualTo(before).AsCollection, "no update");
            Assert.That(m.StepCount, Is.EqualTo(0));
            return e.Message;
        });
        Assert.That(errors[0], Does.Contain("step 1"));
        Assert.That(errors[1], Is.EqualTo(errors[0]));
    }

    [Test]
    public void BadSettings_AreRejected_WithTheValues()
    {
        var net = new Sequential(12).Dense(5);
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => net.Compile(new TrainingOptions { Accumulate = 0 }))!.Message,
            Does.Contain("accumulate must be in [1, 65536] micro-batches; got 0"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => net.Compile(new TrainingOptions { MaxBatch = 4, Accumulate = 5 }))!.Message,
            Does.Contain("a batch of 4 cannot be split into 5 micro-batches (accumulate 5 x 1 process(es))"));
        ThreadCollectives.Run(1, (r, c) =>
        {
            Assert.That(Assert.Throws<ArgumentException>(() => net.Compile(new TrainingOptions { Backend = Backend.Cuda, Distributed = new DistributedOptions(c) }))!.Message,
                Does.Contain("DistributedOptions.DeviceCollectives must make the device's communicator (NcclCommunicator.Create); got none for 1 process(es)"));
            return 0;
        });
        using var m = net.Compile(new TrainingOptions { MaxBatch = 16, Accumulate = 4, Threads = 1 });
        Assert.That(m.Step(new float[3 * 12], new int[3]), Is.GreaterThan(0), "a batch smaller than the micro-batch count steps (an empty micro-batch adds zeros)");
        Assert.That(Assert.Throws<ArgumentException>(() => m.Step(new float[17 * 12], new int[17]))!.Message, Does.Contain("1 to 16 samples"));
        Assert.That(Assert.Throws<ArgumentException>(() => m.Gradients(new float[5 * 12], new int[5]))!.Message,
            Does.Contain("1 to 4 samples (the compiled maximum of one micro-batch: a step's batch of 16 is split into 4)"));
        Assert.That(m.Plan.Rows, Is.EqualTo(4));
    }

    [Test]
    public void AccumulatedSteps_AllocateNothing_OnTheCallingThread()
    {
        using var m = new Model(Spec(0.2), new TrainingOptions { MaxBatch = 32, Accumulate = 4, Threads = 2 });
        var (x, y) = Batch(32, 2);
        var (x2, y2) = Batch(13, 3);
        for (int i = 0; i < 20; i++) { m.Step(x, y); m.Step(x2, y2); }
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++) m.Step(i % 10 == 0 ? x2 : x, i % 10 == 0 ? y2 : y);
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.EqualTo(0));
    }

    [Test]
    public void MicroBatches_AreContiguous_NearEqual_AndCoverTheBatch()
    {
        for (int batch = 1; batch <= 40; batch++)
            for (int m = 1; m <= batch; m++)
            {
                int next = 0;
                for (int i = 0; i < m; i++)
                {
                    var (start, count) = DistributedOptions.MicroBatch(batch, m, i);
                    Assert.That(start, Is.EqualTo(next));
                    Assert.That(count, Is.EqualTo(batch / m).Or.EqualTo(batch / m + 1));
                    next += count;
                }
                Assert.That(next, Is.EqualTo(batch));
            }
        Assert.That(DistributedOptions.MicroBatch(3, 4, 2), Is.EqualTo((2, 1)));
        Assert.That(DistributedOptions.MicroBatch(3, 4, 3), Is.EqualTo((3, 0)), "a batch smaller than M leaves the last micro-batches empty");
        Assert.Throws<ArgumentOutOfRangeException>(() => DistributedOptions.MicroBatch(3, 4, 4));
    }

    [Test]
    public void DropoutWithAnOffset_IsTheSliceOfTheWholeBatchsMask([Values] Isa isa, [Values(0, 4, 7, 36)] int offset)
    {
        if (isa > CpuIsa.Supported) Assert.Ignore($"{isa} is not supported here");
        var x = TestData.Floats(200, 1);
        var whole = new float[200];
        Dropout.Apply(0.4, 5, 9, 2, x, whole, isa);
        var part = new float[200 - offset];
        Dropout.Apply(0.4, 5, 9, 2, x.AsSpan(offset), part, isa, offset);
        Assert.That(part, Is.EqualTo(whole[offset..]).AsCollection);
    }

    [Test]
    public unsafe void AddInto_Sums_AndFlagsANonFiniteSum([Values] Isa isa)
    {
        if (isa > CpuIsa.Supported) Assert.Ignore($"{isa} is not supported here");
        foreach (int n in new[] { 0, 1, 7, 16, 33, 100 })
        {
            var a = TestData.Floats(n, 1);
            var b = TestData.Floats(n, 2);
            var expected = a.Zip(b, (u, v) => u + v).ToArray();
            var sum = new float[n];
            fixed (float* pa = a) fixed (float* pb = b) fixed (float* ps = sum) Assert.That(Accumulate.Sum(isa, ps, pa, pb, n), Is.True);
            Assert.That(sum, Is.EqualTo(expected).AsCollection, "Sum");
            fixed (float* pa = a) fixed (float* pb = b) Assert.That(Accumulate.AddInto(isa, pa, pb, n), Is.True);
            Assert.That(a, Is.EqualTo(expected).AsCollection);
            for (int bad = 0; bad < n; bad += 5)
            {
                var c = TestData.Floats(n, 3);
                var d = new float[n];
                d[bad] = bad % 2 == 0 ? float.MaxValue : float.NaN;
                c[bad] = float.MaxValue;
                fixed (float* pc = c) fixed (float* pd = d)
                {
                    Assert.That(Accumulate.AddInto(isa, pc, pd, n), Is.False, $"n {n}, element {bad}");
                    Assert.That(Accumulate.AllFinite(isa, pc, n), Is.False);
                    var e = new float[n];
                    d[bad] = float.PositiveInfinity;
                    fixed (float* pe = e) Assert.That(Accumulate.Sum(isa, pe, pd, pd, n), Is.False, "Sum");
                }
            }
        }
    }
}
