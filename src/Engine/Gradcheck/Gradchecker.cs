// Central finite differences in double precision against the analytic gradient, with
// torch.autograd.gradcheck's defaults (eps 1e-6, atol 1e-5, rtol 1e-3).
//   full: n_i = (L(x + eps·e_i) − L(x − eps·e_i)) / (2 eps) for every element i of every tensor
//   fast: for random unit directions v (per tensor): n = (L(x + eps·v) − L(x − eps·v)) / (2 eps) vs ∇L·v
// Before checking, the function moves inputs more than 100·eps away from its kinks so a difference
// never straddles one; the report lists what was moved.
namespace Backprop.Engine.Gradcheck;

/// <summary>Runs gradient checks on any <see cref="IGradcheckFunction"/>.</summary>
public static class Gradchecker
{
    /// <summary>
    /// Checks the network <paramref name="spec"/> as the engine runs it with <paramref name="options"/> (backend, threads, ISA,
    /// initialization and seed; computed in double), on <paramref name="batch"/>: the gradients of x and of every parameter.
    /// </summary>
    public static GradcheckReport Check(ModelSpec spec, TrainingOptions options, GradcheckBatch batch, GradcheckOptions? check = null)
    {
        using var f = new ModelGradcheck(spec, options, batch);
        return Run(f, check);
    }

    /// <summary>Checks <paramref name="f"/> and returns the per-tensor report.</summary>
    public static GradcheckReport Run(IGradcheckFunction f, GradcheckOptions? options = null)
    {
        var o = options ?? new GradcheckOptions();
        if (!(o.Eps > 0)) throw new ArgumentOutOfRangeException(nameof(options), o.Eps, $"eps must be positive; got {o.Eps}.");
        if (o.Directions < 1) throw new ArgumentOutOfRangeException(nameof(options), o.Directions, $"directions must be at least 1; got {o.Directions}.");
        var rng = new System.Random(unchecked((int)o.Seed));
        var nudges = f.AvoidKinks(100 * o.Eps, rng);
        f.ComputeGradients();
        var reports = new List<TensorReport>();
        foreach (var t in f.Tensors)
        {
            if (!t.Check) continue;
            var analytic = (double[])t.Gradient.Clone();
            reports.Add(o.Mode == GradcheckMode.Full ? Full(f, t, analytic, o) : Fast(f, t, analytic, o, rng));
        }
        return new GradcheckReport(reports, o, nudges);
    }

    private sealed class Tracker(GradcheckOptions o)
    {
        public double MaxAbs, MaxRel, WorstExcess = double.NegativeInfinity, WorstA, WorstN;
        public int Worst = -1, Count;
        public bool Passed = true;

        public void Add(int index, double a, double n)
        {
            double err = Math.Abs(a - n);
            if (double.IsNaN(a) || double.IsNaN(n)) err = double.PositiveInfinity;
            double tol = o.Atol + o.Rtol * Math.Abs(n);
            MaxAbs = Math.Max(MaxAbs, err);
            MaxRel = Math.Max(MaxRel, err / Math.Max(Math.Abs(n), 1e-300));
            if (!(err <= tol)) Passed = false;
            if (err - tol > WorstExcess) { WorstExcess = err - tol; Worst = index; WorstA = a; WorstN = n; }
            Count++;
        }
    }

    private static TensorReport Full(IGradcheckFunction f, GradTensor t, double[] analytic, GradcheckOptions o)
    {
        var tr = new Tracker(o);
        var x = t.Values;
        for (int i = 0; i < x.Length; i++)
        {
            double keep = x[i];
            x[i] = keep + o.Eps;
            double lp = f.Loss();
            x[i] = keep - o.Eps;
            double lm = f.Loss();
            x[i] = keep;
            tr.Add(i, analytic[i], (lp - lm) / (2 * o.Eps));
        }
        return new TensorReport(t.Name, t.Shape, tr.Count, tr.MaxAbs, tr.MaxRel, tr.Worst, tr.WorstA, tr.WorstN, tr.Passed);
    }

    private static TensorReport Fast(IGradcheckFunction f, GradTensor t, double[] analytic, GradcheckOptions o, System.Random rng)
    {
        var tr = new Tracker(o);
        var x = t.Values;
        var keep = (double[])x.Clone();
        var v = new double[x.Length];
        for (int d = 0; d < o.Directions; d++)
        {
            double norm = 0;
            for (int i = 0; i < v.Length; i++) { v[i] = rng.NextDouble() * 2 - 1; norm += v[i] * v[i]; }
            norm = Math.Sqrt(norm);
            double dot = 0;
            for (int i = 0; i < v.Length; i++) { v[i] /= norm; dot += analytic[i] * v[i]; }
            for (int i = 0; i < x.Length; i++) x[i] = keep[i] + o.Eps * v[i];
            double lp = f.Loss();
            for (int i = 0; i < x.Length; i++) x[i] = keep[i] - o.Eps * v[i];
            double lm = f.Loss();
            Array.Copy(keep, x, x.Length);
            tr.Add(d, dot, (lp - lm) / (2 * o.Eps));
        }
        return new TensorReport(t.Name, t.Shape, tr.Count, tr.MaxAbs, tr.MaxRel, tr.Worst, tr.WorstA, tr.WorstN, tr.Passed);
    }
}
