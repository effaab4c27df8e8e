// `backprop gradcheck`: builds a described network with random parameters and inputs, runs the
// finite-difference check in double precision through the engine that trains it (the chosen backend's
// plan and kernels, dropout masks fixed), prints one row per tensor, and exits 1 when any tensor fails
// (2 for bad arguments).
using System.CommandLine;
using Backprop.Engine;
using Backprop.Engine.Gradcheck;
using Backprop.Kernels;

namespace Backprop.Cli;

internal static class GradcheckCommand
{
    public static Command Create(TextWriter stdout)
    {
        var inputWidth = new Option<int>("--input-width") { Description = "Features per sample.", DefaultValueFactory = _ => 6 };
        var layers = new Option<string>("--layers") { Description = "Hidden layer sizes, comma-separated (as in train).", DefaultValueFactory = _ => "16,8" };
        var outputs = new Option<int>("--outputs") { Description = "Output units (classes for cross_entropy).", DefaultValueFactory = _ => 4 };
        var activation = new Option<string>("--activation") { Description = "Hidden activation: relu, leaky_relu[:slope], elu[:alpha], tanh, sigmoid, gelu, gelu_tanh, silu, identity.", DefaultValueFactory = _ => "relu" };
        var outAct = new Option<string>("--output-activation") { Description = "Activation of the last layer.", DefaultValueFactory = _ => "identity" };
        var loss = new Option<string>("--loss") { Description = "cross_entropy, mse, l1, huber, bce_with_logits.", DefaultValueFactory = _ => "cross_entropy" };
        var batch = new Option<int>("--batch") { Description = "Samples in the checked batch.", DefaultValueFactory = _ => 4 };
        var dropout = new Option<double>("--dropout") { Description = "Dropout after each hidden layer (fixed mask).", DefaultValueFactory = _ => 0 };
        var backend = new Option<string>("--backend") { Description = "cpu (fused kernels) or blas (OpenBLAS + passes): the engine checked, in double.", DefaultValueFactory = _ => "cpu" };
        var mode = new Option<string>("--mode") { Description = "full (every element) or fast (random directions).", DefaultValueFactory = _ => "full" };
        var directions = new Option<int>("--directions") { Description = "Directions per tensor in fast mode.", DefaultValueFactory = _ => 8 };
        var eps = new Option<double>("--eps") { Description = "Finite-difference step.", DefaultValueFactory = _ => 1e-6 };
        var atol = new Option<double>("--atol") { Description = "Absolute tolerance.", DefaultValueFactory = _ => 1e-5 };
        var rtol = new Option<double>("--rtol") { Description = "Relative tolerance.", DefaultValueFactory = _ => 1e-3 };
        var seed = new Option<int>("--seed") { Description = "Seed of parameters, inputs, dropout masks and directions.", DefaultValueFactory = _ => 1 };
        var threads = new Option<int>("--threads") { Description = "Kernel threads.", DefaultValueFactory = _ => 1 };
        var arch = new Option<string>("--arch") { Description = Architecture.Help, DefaultValueFactory = _ => "mlp" };
        var cmd = new Command("gradcheck", "Finite-difference gradient check of a described network, in double precision, through the engine that trains it.");
        foreach (var o in new Option[] { inputWidth, layers, outputs, activation, outAct, loss, batch, dropout, backend, mode, directions, eps, atol, rtol, seed, threads, arch })
            cmd.Options.Add(o);
        cmd.SetAction(p =>
        {
            int inW = p.GetValue(inputWidth), outW = p.GetValue(outputs);
            if (inW < 1) throw new UsageException($"--input-width must be at least 1; got {inW}.");
            if (outW < 1) throw new UsageException($"--outputs must be at least 1; got {outW}.");
            var hidden = Flags.Layers(p.GetValue(layers)!);
            var shape = Architecture.Parse(p.GetValue(arch)!);
            if (shape.Residual && p.GetResult(layers) is { Implicit: false })
                throw new UsageException($"--layers cannot be given with --arch {p.GetValue(arch)}: the residual network's widths come from --arch.");
            var hiddenAct = Flags.Activation("--activation", p.GetValue(activation)!);
            var last = Flags.Activation("--output-activation", p.GetValue(outAct)!);
            var lossKind = Flags.Loss(p.GetValue(loss)!);
            int b = p.GetValue(batch);
            if (b < 1) throw new UsageException($"--batch must be at least 1; got {b}.");
            double d = p.GetValue(dropout);
            if (!(d >= 0 && d < 1)) throw new UsageException($"--dropout must be in [0, 1); got {Flags.Inv(d)}.");
            var be = Flags.Choice("--backend", p.GetValue(backend)!, ("cpu", Backend.Cpu), ("blas", Backend.Blas));
            var m = Flags.Choice("--mode", p.GetValue(mode)!, ("full", GradcheckMode.Full), ("fast", GradcheckMode.Fast));
            int t = p.GetValue(threads);
            if (t < 1 || t > 256) throw new UsageException($"--threads must be in [1, 256]; got {t}.");
            var options = new GradcheckOptions
            {
                Mode = m, Directions = p.GetValue(directions), Eps = p.GetValue(eps), Atol = p.GetValue(atol), Rtol = p.GetValue(rtol), Seed = (ulong)p.GetValue(seed),
            };
            if (!(options.Eps > 0)) throw new UsageException($"--eps must be positive; got {Flags.Inv(options.Eps)}.");
            if (options.Directions < 1) throw new UsageException($"--directions must be at least 1; got {options.Directions}.");
            ModelSpec spec;
            try { spec = shape.Build(inW, outW, hidden, hiddenAct, d, last).ToSpec(lossKind); }
            catch (ArgumentException e) { throw new UsageException(Flags.Message(e)); }
            int s = p.GetValue(seed);
            var training = new TrainingOptions { Loss = lossKind, Backend = be, Threads = t, Seed = (ulong)s, Init = InitScheme.PyTorchDefault };
            try
            {
                spec.Validate();
                training.Validate();
            }
            catch (ArgumentException e) { throw new UsageException(Flags.Message(e)); }

            var rng = new System.Random(s);
            var x = Enumerable.Range(0, b * inW).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
            var data = lossKind == LossKind.CrossEntropy
                ? new GradcheckBatch(x, Labels: Enumerable.Range(0, b).Select(_ => rng.Next(outW)).ToArray())
                : new GradcheckBatch(x, Targets: Enumerable.Range(0, b * outW).Select(_ => lossKind == LossKind.BceWithLogits ? rng.NextDouble() : rng.NextDouble() * 2 - 1).ToArray());
            GradcheckReport report;
            try { report = Gradchecker.Check(spec, training, data, options); }
            catch (ArgumentException e) { throw new UsageException(Flags.Message(e)); }
            Print(stdout, spec, be, report);
            return report.Passed ? 0 : 1;
        });
        return cmd;
    }

    private static void Print(TextWriter o, ModelSpec spec, Backend backend, GradcheckReport r)
    {
        var opt = r.Options;
        o.WriteLine(FormattableString.Invariant(
            $"gradcheck: {(spec.IsTree ? spec.Describe() : $"{spec.InputWidth}-{string.Join("-", spec.Layers.Select(l => $"{l.Units}({l.Activation})"))}")}, loss {spec.Loss}, backend {backend} in double, mode {opt.Mode}, eps {opt.Eps:G3}, atol {opt.Atol:G3}, rtol {opt.Rtol:G3}"));
        foreach (var n in r.Nudges) o.WriteLine($"  nudged: {n}");
        o.WriteLine("| tensor | shape | checked | max abs err | max rel err | worst | analytic | numerical | result |");
        o.WriteLine("|---|---|---:|---:|---:|---:|---:|---:|---|");
        foreach (var t in r.Tensors)
            o.WriteLine(FormattableString.Invariant(
                $"| {t.Name} | [{string.Join(", ", t.Shape)}] | {t.Checked} | {t.MaxAbsError:E2} | {t.MaxRelError:E2} | {t.WorstIndex} | {t.WorstAnalytic:G6} | {t.WorstNumerical:G6} | {(t.Passed ? "pass" : "FAIL")} |"));
        o.WriteLine(r.Passed ? "gradcheck passed" : "gradcheck FAILED");
    }
}
