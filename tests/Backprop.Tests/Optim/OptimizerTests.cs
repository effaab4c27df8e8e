// Optimizers against libtorch trajectories (golden/optimizers.json), clipping (golden/clipping.json),
// schedules (golden/schedules.json), and a 5-step sequence with every option on computed here from
// the written formulas.
using System.Text.Json;
using Backprop.Engine.Training;
using Backprop.Kernels;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cpu.Optim;
using NUnit.Framework;

namespace Backprop.Tests.Optim;

[TestFixture]
public class OptimizerTests
{
    private static OptimizerSettings FromGolden(JsonElement c)
    {
        var h = c.GetProperty("hyperparameters");
        double D(string k, double def = 0) => h.TryGetProperty(k, out var v) ? v.GetDouble() : def;
        bool B(string k) => h.TryGetProperty(k, out var v) && v.GetBoolean();
        var kind = c.GetProperty("optimizer").GetString() switch
        {
            "SGD" => OptimizerKind.Sgd,
            "Adam" => OptimizerKind.Adam,
            "AdamW" => OptimizerKind.AdamW,
            "RMSprop" => OptimizerKind.RMSprop,
            "Adagrad" => OptimizerKind.Adagrad,
            var o => throw new ArgumentException(o),
        };
        double lr = D("lr"), wd = D("weight_decay");
        return kind switch
        {
            OptimizerKind.Sgd => new Sgd(lr, D("momentum"), D("dampening"), B("nesterov"), wd),
            OptimizerKind.Adam => new Adam(lr, D("beta1", 0.9), D("beta2", 0.999), D("eps", 1e-8), wd, B("amsgrad")),
            OptimizerKind.AdamW => new AdamW(lr, D("beta1", 0.9), D("beta2", 0.999), D("eps", 1e-8), wd, B("amsgrad")),
            OptimizerKind.RMSprop => new RmsProp(lr, D("alpha", 0.99), D("eps", 1e-8), wd, D("momentum"), B("centered")),
            _ => new Adagrad(lr, D("lr_decay"), wd, D("initial_accumulator_value"), D("eps", 1e-10)),
        };
    }

    public static IEnumerable<string> Cases() =>
        Golden.Load("optimizers").GetProperty("cases").EnumerateObject().Select(p => p.Name).ToArray();

    [Test]
    public void MatchesLibtorch([ValueSource(nameof(Cases))] string name, [Values(false, true)] bool useFloat)
    {
        var g = Golden.Load("optimizers");
        var c = g.GetProperty("cases").GetProperty(name);
        var s = FromGolden(c);
        s.Validate();
        var p0 = g.Tensor("p0").Data;
        var grads = g.Tensor("grads");
        var expected = c.Tensor("params_after_step").Data;
        int n = p0.Length;
        if (useFloat) Run<float>(); else Run<double>();

        void Run<T>() where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
        {
            var p = p0.Select(T.CreateTruncating).ToArray();
            var st = Enumerable.Range(0, 3).Select(_ => new T[s.StateSlots > 0 ? n : 0]).ToArray();
            for (int k = 0; k < 3; k++) if (k >= s.StateSlots) st[k] = [];
            Optimizer.InitState<T>(s, st[0], st[1], st[2]);
            for (int t = 1; t <= 5; t++)
            {
                var gt = grads.Data.Skip((t - 1) * n).Take(n).Select(T.CreateTruncating).ToArray();
                Optimizer.Update<T>(s, new OptimizerStep(s.LearningRate, t), p, gt, st[0], st[1], st[2]);
                for (int i = 0; i < n; i++)
                {
                    double e = expected[(t - 1) * n + i];
                    double tol = useFloat ? 1e-5 + 1e-5 * Math.Abs(e) : 1e-14 + 1e-12 * Math.Abs(e);
                    Assert.That(double.CreateTruncating(p[i]), Is.EqualTo(e).Within(tol), $"{name} step {t} element {i}");
                }
            }
        }
    }

    [Test]
    public void Clipping_MatchesLibtorch()
    {
        var g = Golden.Load("clipping");
        var names = new[] { "0", "1", "2" };
        var grads = names.Select(k => g.GetProperty("grads").Tensor(k).Data).ToArray();
        // Clipped gradient read back through SGD(lr=1) from p = 0: p' = -g_clipped.
        double[][] Clip(OptimizerSettings s)
        {
            double ss = grads.Sum(x => Optimizer.SumOfSquares<double>(x, s.ClipValue));
            double scale = Optimizer.GlobalNormScale(ss, s.ClipNorm);
            return grads.Select(x =>
            {
                var p = new double[x.Length];
                Optimizer.Update<double>(s, new OptimizerStep(1.0, 1, scale), p, x, [], [], []);
                return p.Select(v => -v).ToArray();
            }).ToArray();
        }
        foreach (var (entry, settings) in new[]
                 {
                     ("clip_grad_norm", new Sgd() { ClipNorm = 1.0, LearningRate = 1e-3 }),
                     ("clip_grad_norm_loose", new Sgd() { ClipNorm = 100.0, LearningRate = 1e-3 }),
                     ("clip_grad_value", new Sgd() { ClipValue = 0.05, LearningRate = 1e-3 }),
                 })
        {
            var e = g.GetProperty(entry);
            if (e.TryGetProperty("total_norm", out var tn))
                Assert.That(Math.Sqrt(grads.Sum(x => Optimizer.SumOfSquares<double>(x, 0))), Is.EqualTo(tn.GetDouble()).Within(1e-14));
            var ours = Clip(settings);
            for (int k = 0; k < 3; k++)
            {
                var exp = e.GetProperty("grads").Tensor(names[k]).Data;
                for (int i = 0; i < exp.Length; i++) Assert.That(ours[k][i], Is.EqualTo(exp[i]).Within(1e-15 + 1e-13 * Math.Abs(exp[i])), $"{entry} {k}[{i}]");
            }
        }
    }

    [Test]
    public void Schedules_MatchLibtorch()
    {
        var g = Golden.Load("schedules");
        double baseLr = g.GetProperty("base_lr").GetDouble();
        var sch = g.GetProperty("schedules");
        var cases = new Dictionary<string, LrSchedule>
        {
            ["StepLR"] = new() { Kind = ScheduleKind.Step, StepSize = 3, Gamma = 0.5 },
            ["ExponentialLR"] = new() { Kind = ScheduleKind.Exponential, Gamma = 0.9 },
            ["CosineAnnealingLR"] = new() { Kind = ScheduleKind.Cosine, TMax = 10, EtaMin = 1e-4 },
            ["LinearLR"] = new() { Kind = ScheduleKind.Linear, StartFactor = 0.1, EndFactor = 1.0, TotalIters = 4 },
            ["SequentialLR"] = new() { Kind = ScheduleKind.Cosine, TMax = 9, EtaMin = 1e-4, WarmupSteps = 3, WarmupStartFactor = 0.1 },
        };
        foreach (var (name, s) in cases)
        {
            s.Validate();
            var lr = sch.GetProperty(name).Tensor("lr").Data;
            var closed = sch.GetProperty(name).Tensor("lr_closed_form").Data;
            for (int t = 0; t < lr.Length; t++)
            {
                Assert.That(s.At(baseLr, t), Is.EqualTo(closed[t]).Within(1e-12 * closed[t]), $"{name} t={t} (closed form)");
                Assert.That(s.At(baseLr, t), Is.EqualTo(lr[t]).Within(1e-12 * lr[t]), $"{name} t={t} (recursive)");
            }
        }
        Assert.That(new LrSchedule().At(0.5, 100), Is.EqualTo(0.5));
    }

    [Test]
    public void AllOptionsOn_FiveSteps_FromTheWrittenFormula()
    {
        // Adam with weight decay, AMSGrad, L1, value and norm clipping, a warm-up schedule; and SGD with
        // Nesterov momentum and the same gradient treatment. The reference is written out here.
        var rng = new Random(3);
        int n = 7;
        var p0 = Enumerable.Range(0, n).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
        var gs = Enumerable.Range(0, 5).Select(_ => Enumerable.Range(0, n).Select(_ => rng.NextDouble() * 4 - 2).ToArray()).ToArray();
        var sched = new LrSchedule { Kind = ScheduleKind.Exponential, Gamma = 0.8, WarmupSteps = 2, WarmupStartFactor = 0.5 };
        foreach (var kind in new[] { OptimizerKind.Adam, OptimizerKind.Sgd })
        {
            OptimizerSettings s = kind == OptimizerKind.Adam
                ? new Adam(lr: 0.05, weightDecay: 0.1, amsgrad: true) { L1 = 0.01, ClipValue = 1.5, ClipNorm = 2.0 }
                : new Sgd(lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 0.1) { L1 = 0.01, ClipValue = 1.5, ClipNorm = 2.0 };
            var p = (double[])p0.Clone();
            var st = new[] { new double[n], new double[n], new double[n] };
            var rp = (double[])p0.Clone();
            var m = new double[n]; var v = new double[n]; var vmax = new double[n]; var buf = new double[n];
            for (int t = 1; t <= 5; t++)
            {
                double lr = sched.At(s.LearningRate, t - 1);
                double ss = Optimizer.SumOfSquares<double>(gs[t - 1], s.ClipValue);
                Optimizer.Update<double>(s, new OptimizerStep(lr, t, Optimizer.GlobalNormScale(ss, s.ClipNorm)), p, gs[t - 1],
                    st[0], s.StateSlots > 1 ? st[1] : [], s.StateSlots > 2 ? st[2] : []);

                // reference
                var gc = gs[t - 1].Select(x => Math.Clamp(x, -1.5, 1.5)).ToArray();
                double norm = Math.Sqrt(gc.Sum(x => x * x));
                double coef = Math.Min(1, 2.0 / (norm + 1e-6));
                for (int i = 0; i < n; i++)
                {
                    double g = gc[i] * coef + 0.01 * Math.Sign(rp[i]) + 0.1 * rp[i];
                    if (kind == OptimizerKind.Adam)
                    {
                        m[i] = 0.9 * m[i] + 0.1 * g;
                        v[i] = 0.999 * v[i] + 0.001 * g * g;
                        vmax[i] = Math.Max(vmax[i], v[i]);
                        double mhat = m[i] / (1 - Math.Pow(0.9, t)), vhat = vmax[i] / (1 - Math.Pow(0.999, t));
                        rp[i] -= lr * mhat / (Math.Sqrt(vhat) + 1e-8);
                    }
                    else
                    {
                        buf[i] = t == 1 ? g : 0.9 * buf[i] + g;
                        rp[i] -= lr * (g + 0.9 * buf[i]);
                    }
                    Assert.That(p[i], Is.EqualTo(rp[i]).Within(1e-12), $"{kind} step {t} element {i}");
                }
            }
        }
    }

    [Test]
    public void AdamW_RMSprop_Adagrad_AllOptions_FiveSteps_FromTheWrittenFormula()
    {
        var rng = new System.Random(4);
        int n = 6;
        var p0 = Enumerable.Range(0, n).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
        var gs = Enumerable.Range(0, 5).Select(_ => Enumerable.Range(0, n).Select(_ => rng.NextDouble() * 2 - 1).ToArray()).ToArray();
        var cases = new OptimizerSettings[]
        {
            new AdamW() { LearningRate = 0.02, WeightDecay = 0.3, Amsgrad = true, ClipValue = 0.8, ClipNorm = 1.2 },
            new RmsProp() { LearningRate = 0.01, Alpha = 0.9, WeightDecay = 0.05, Momentum = 0.8, Centered = true, ClipNorm = 1.2 },
            new Adagrad() { LearningRate = 0.1, LrDecay = 0.05, WeightDecay = 0.02, InitialAccumulatorValue = 0.2, Eps = 1e-10, ClipValue = 0.8 },
        };
        foreach (var s in cases)
        {
            s.Validate();
            var p = (double[])p0.Clone();
            var st = Enumerable.Range(0, 3).Select(k => k < s.StateSlots ? new double[n] : []).ToArray();
            Optimizer.InitState<double>(s, st[0], st[1], st[2]);
            var rp = (double[])p0.Clone();
            var a = new double[n]; var b = new double[n]; var c = new double[n];
            if (s.Kind == OptimizerKind.Adagrad) Array.Fill(a, 0.2);
            for (int t = 1; t <= 5; t++)
            {
                double ss = Optimizer.SumOfSquares<double>(gs[t - 1], s.ClipValue);
                Optimizer.Update<double>(s, new OptimizerStep(s.LearningRate, t, Optimizer.GlobalNormScale(ss, s.ClipNorm)), p, gs[t - 1], st[0], st[1], st[2]);
                var gc = gs[t - 1].Select(x => s.ClipValue > 0 ? Math.Clamp(x, -s.ClipValue, s.ClipValue) : x).ToArray();
                double coef = s.ClipNorm > 0 ? Math.Min(1, s.ClipNorm / (Math.Sqrt(gc.Sum(x => x * x)) + 1e-6)) : 1;
                for (int i = 0; i < n; i++)
                {
                    double g = gc[i] * coef;
                    switch (s.Kind)
                    {
                        case OptimizerKind.AdamW:
                            rp[i] *= 1 - 0.02 * 0.3;
                            a[i] = 0.9 * a[i] + 0.1 * g;                  // m
                            b[i] = 0.999 * b[i] + 0.001 * g * g;          // v
                            c[i] = Math.Max(c[i], b[i]);                  // v max
                            rp[i] -= 0.02 * (a[i] / (1 - Math.Pow(0.9, t))) / (Math.Sqrt(c[i] / (1 - Math.Pow(0.999, t))) + 1e-8);
                            break;
                        case OptimizerKind.RMSprop:
                            g += 0.05 * rp[i];
                            a[i] = 0.9 * a[i] + 0.1 * g * g;              // square average
                            b[i] = 0.9 * b[i] + 0.1 * g;                  // gradient average (centered)
                            c[i] = 0.8 * c[i] + g / (Math.Sqrt(a[i] - b[i] * b[i]) + 1e-8); // momentum buffer
                            rp[i] -= 0.01 * c[i];
                            break;
                        case OptimizerKind.Adagrad:
                            g += 0.02 * rp[i];
                            a[i] += g * g;
                            rp[i] -= 0.1 / (1 + (t - 1) * 0.05) * g / (Math.Sqrt(a[i]) + 1e-10);
                            break;
                    }
                    Assert.That(p[i], Is.EqualTo(rp[i]).Within(1e-12), $"{s.Kind} step {t} element {i}");
                }
            }
        }
    }

    // One formula per algorithm runs on every rung of the vector ladder (512, 256, 128 bits, scalar): each rung must give
    // the scalar rung's bits, with every extension on (value clipping, the norm scale, L1) and a length with tails on every rung.
    [Test]
    public void EveryAlgorithm_GivesTheSameBits_OnEveryIsaPath([Values(false, true)] bool useFloat)
    {
        var settings = new OptimizerSettings[]
        {
            new Sgd(lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 0.01) { L1 = 1e-3, ClipValue = 0.7 },
            new Sgd(lr: 0.05, weightDecay: 0.01),
            new Adam(lr: 0.01, amsgrad: true, weightDecay: 0.1) { L1 = 1e-3, ClipValue = 0.7 },
            new AdamW(lr: 0.01),
            new RmsProp(lr: 0.01, momentum: 0.5, centered: true, weightDecay: 0.05) { ClipValue = 0.7 },
            new RmsProp(lr: 0.01),
            new Adagrad(lr: 0.1, lrDecay: 0.05, initialAccumulatorValue: 0.2) { L1 = 1e-3 },
        };
        if (useFloat) Run<float>(); else Run<double>();

        void Run<T>() where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
        {
            const int n = 16 * 5 + 8 + 4 + 3; // every rung's step and a scalar tail
            foreach (var s in settings)
            {
                T[] Final(Isa isa)
                {
                    var p = TestData.Doubles(n, 1).Select(T.CreateTruncating).ToArray();
                    p[3] = T.Zero; // sign(0) = 0 for L1
                    var st = Enumerable.Range(0, 3).Select(k => k < s.StateSlots ? new T[n] : []).ToArray();
                    Optimizer.InitState<T>(s, st[0], st[1], st[2]);
                    for (int t = 1; t <= 4; t++)
                    {
                        var g = TestData.Doubles(n, 10 + t, -2, 2).Select(T.CreateTruncating).ToArray();
                        Optimizer.Update<T>(s, new OptimizerStep(s.LearningRate, t, t == 2 ? 0.5 : 1.0), p, g, st[0], st[1], st[2], isa);
                    }
                    return p.Concat(st.SelectMany(a => a)).ToArray();
                }
                var scalar = Final(Isa.Scalar);
                foreach (var isa in Enum.GetValues<Isa>().Where(i => i > Isa.Scalar && i <= CpuIsa.Supported))
                    Assert.That(Final(isa), Is.EqualTo(scalar), $"{s} on {isa}");
            }
        }
    }

    [Test]
    public void BadSettings_NameTheValue()
    {
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new Adam { LearningRate = -1 }.Validate())!.Message,
            Does.Contain("LearningRate must be a finite number >= 0; got -1"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new Adam { Beta2 = 1 }.Validate())!.Message,
            Does.Contain("Beta2 must be in [0, 1); got 1"));
        Assert.That(Assert.Throws<ArgumentException>(() => new Sgd() { Nesterov = true, LearningRate = 1e-3 }.Validate())!.Message,
            Does.Contain("Nesterov momentum requires momentum > 0"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new LrSchedule { TMax = 0 }.Validate())!.Message, Does.Contain("T_max must be at least 1; got 0"));
        var s = new Adam();
        Assert.That(Assert.Throws<ArgumentException>(() => Optimizer.Update<float>(s, new OptimizerStep(0.1, 1), new float[3], new float[3], new float[3], new float[2], []))!.Message,
            Does.Contain("Adam needs 2 state array(s) of 3 elements; got 3, 2, 0"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => Optimizer.Update<float>(s, new OptimizerStep(0.1, 0), new float[3], new float[3], new float[3], new float[3], []))!.Message,
            Does.Contain("step count must start at 1; got 0"));
    }
}
