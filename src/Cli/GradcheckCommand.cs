// `backprop gradcheck`: builds a described network with random parameters and inputs, runs the
// finite-difference check in double precision on the production kernels, prints one row per
// tensor, and exits 1 when any tensor fails (2 for bad arguments).
using System.CommandLine;
using System.Globalization;
using Backprop.Engine.Gradcheck;
using Backprop.Engine;
using Backprop.Kernels.Cpu.Gemm;
using Backprop.Kernels.Cpu.Ops;

namespace Backprop.Cli;

internal static class GradcheckCommand
{
    public static Command Create(TextWriter stdout)
    {
        var layers = new Option<string>("--layers") { Description = "Widths: input, then each layer's units (e.g. 784,128,10).", DefaultValueFactory = _ => "6,16,8,4" };
        var activation = new Option<string>("--activation") { Description = "Hidden activation: relu, leaky_relu[:slope], elu[:alpha], tanh, sigmoid, gelu, gelu_tanh, silu, identity.", DefaultValueFactory = _ => "relu" };
        var outAct = new Option<string>("--output-activation") { Description = "Activation of the last layer.", DefaultValueFactory = _ => "identity" };
        var loss = new Option<string>("--loss") { Description = "cross_entropy, mse, l1, huber, bce_with_logits.", DefaultValueFactory = _ => "cross_entropy" };
        var batch = new Option<int>("--batch") { Description = "Samples in the checked batch.", DefaultValueFactory = _ => 4 };
        var dropout = new Option<double>("--dropout") { Description = "Dropout after each hidden layer (fixed mask).", DefaultValueFactory = _ => 0 };
        var mode = new Option<string>("--mode") { Description = "full (every element) or fast (random directions).", DefaultValueFactory = _ => "full" };
        var directions = new Option<int>("--directions") { Description = "Directions per tensor in fast mode.", DefaultValueFactory = _ => 8 };
        var eps = new Option<double>("--eps") { Description = "Finite-difference step.", DefaultValueFactory = _ => 1e-6 };
        var atol = new Option<double>("--atol") { Description = "Absolute tolerance.", DefaultValueFactory = _ => 1e-5 };
        var rtol = new Option<double>("--rtol") { Description = "Relative tolerance.", DefaultValueFactory = _ => 1e-3 };
        var seed = new Option<int>("--seed") { Description = "Seed of parameters, inputs and directions.", DefaultValueFactory = _ => 1 };
        var threads = new Option<int>("--threads") { Description = "GEMM threads.", DefaultValueFactory = _ => 1 };
        var cmd = new Command("gradcheck", "Finite-difference gradient check of a described network (double precision, production kernels).");
        foreach (var o in new Option[] { layers, activation, outAct, loss, batch, dropout, mode, directions, eps, atol, rtol, seed, threads }) cmd.Options.Add(o);
        cmd.SetAction(p =>
        {
            var widths = ParseWidths(p.GetValue(layers)!);
            var hidden = ParseActivation(p.GetValue(activation)!, "--activation");
            var last = ParseActivation(p.GetValue(outAct)!, "--output-activation");
            var lossKind = ParseLoss(p.GetValue(loss)!);
            int b = p.GetValue(batch);
            if (b < 1) throw new UsageException($"--batch must be at least 1; got {b}.");
            double d = p.GetValue(dropout);
            if (!(d >= 0 && d < 1)) throw new UsageException($"--dropout must be in [0, 1); got {d.ToString(CultureInfo.InvariantCulture)}.");
            var m = p.GetValue(mode) switch
            {
                "full" => GradcheckMode.Full,
                "fast" => GradcheckMode.Fast,
                var other => throw new UsageException($"--mode must be full or fast; got '{other}'."),
            };
            int t = p.GetValue(threads);
            if (t < 1 || t > 256) throw new UsageException($"--threads must be in [1, 256]; got {t}.");
            var options = new GradcheckOptions
            {
                Mode = m, Directions = p.GetValue(directions), Eps = p.GetValue(eps), Atol = p.GetValue(atol), Rtol = p.GetValue(rtol), Seed = (ulong)p.GetValue(seed),
            };
            if (!(options.Eps > 0)) throw new UsageException($"--eps must be positive; got {options.Eps.ToString(CultureInfo.InvariantCulture)}.");
            if (options.Directions < 1) throw new UsageException($"--directions must be at least 1; got {options.Directions}.");
            var specLayers = new List<LayerSpec>();
            for (int l = 1; l < widths.Length; l++)
                specLayers.Add(new LayerSpec(widths[l], l == widths.Length - 1 ? last : hidden, l == widths.Length - 1 ? 0 : d));
            var spec = new ModelSpec(widths[0], specLayers, lossKind);
            try { spec.Validate(); }
            catch (ArgumentException e) { throw new UsageException(e.Message.Split(" (Parameter")[0]); }

            int s = p.GetValue(seed);
            var rng = new System.Random(s);
            var parameters = ModelParameters<double>.Initialize(spec, InitScheme.PyTorchDefault, (ulong)s);
            var x = Enumerable.Range(0, b * spec.InputWidth).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
            var targets = lossKind == LossKind.CrossEntropy
                ? new Targets<double>(Enumerable.Range(0, b).Select(_ => rng.Next(spec.OutputWidth)).ToArray(), null)
                : new Targets<double>(null, Enumerable.Range(0, b * spec.OutputWidth).Select(_ => lossKind == LossKind.BceWithLogits ? rng.NextDouble() : rng.NextDouble() * 2 - 1).ToArray());
            using var ctx = new GemmContext(t);
            var report = Gradchecker.Run(new NetworkGradcheck(spec, parameters, x, b, targets, ctx), options);
            Print(stdout, spec, report);
            return report.Passed ? 0 : 1;
        });
        return cmd;
    }

    private static void Print(TextWriter o, ModelSpec spec, GradcheckReport r)
    {
        var opt = r.Options;
        o.WriteLine(FormattableString.Invariant(
            $"gradcheck: {spec.InputWidth}-{string.Join("-", spec.Layers.Select(l => $"{l.Units}({l.Activation})"))}, loss {spec.Loss}, mode {opt.Mode}, eps {opt.Eps:G3}, atol {opt.Atol:G3}, rtol {opt.Rtol:G3}"));
        foreach (var n in r.Nudges) o.WriteLine($"  nudged: {n}");
        o.WriteLine("| tensor | shape | checked | max abs err | max rel err | worst | analytic | numerical | result |");
        o.WriteLine("|---|---|---:|---:|---:|---:|---:|---:|---|");
        foreach (var t in r.Tensors)
            o.WriteLine(FormattableString.Invariant(
                $"| {t.Name} | [{string.Join(", ", t.Shape)}] | {t.Checked} | {t.MaxAbsError:E2} | {t.MaxRelError:E2} | {t.WorstIndex} | {t.WorstAnalytic:G6} | {t.WorstNumerical:G6} | {(t.Passed ? "pass" : "FAIL")} |"));
        o.WriteLine(r.Passed ? "gradcheck passed" : "gradcheck FAILED");
    }

    private static int[] ParseWidths(string text)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        var widths = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out widths[i]) || widths[i] < 1 || widths[i] > 1 << 20)
                throw new UsageException($"--layers must be comma-separated positive widths (input first), e.g. 784,128,10; got '{text}'.");
        if (widths.Length < 2) throw new UsageException($"--layers needs the input width and at least one layer; got '{text}'.");
        return widths;
    }

    internal static Activation ParseActivation(string text, string flag)
    {
        try { return Activation.Parse(text); }
        catch (ArgumentException e) { throw new UsageException($"{flag}: {e.Message.Split(" (Parameter")[0]}"); }
    }

    internal static LossKind ParseLoss(string text) => text.Replace("-", "_").ToLowerInvariant() switch
    {
        "cross_entropy" or "ce" => LossKind.CrossEntropy,
        "mse" => LossKind.Mse,
        "l1" => LossKind.L1,
        "huber" => LossKind.Huber,
        "bce" or "bce_with_logits" => LossKind.BceWithLogits,
        _ => throw new UsageException($"--loss must be one of cross_entropy, mse, l1, huber, bce_with_logits; got '{text}'."),
    };
}
