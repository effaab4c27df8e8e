// `backprop export --onnx FILE --from WEIGHTS`: rebuilds the network described in a weights file or a
// training checkpoint (its __metadata__ "spec"), loads the weights and writes an ONNX model.
using System.CommandLine;
using Backprop.Engine;
using Backprop.Engine.Checkpoints;
using Backprop.Engine.Export;

namespace Backprop.Cli;

internal static class ExportCommand
{
    public static Command Create(TextWriter stdout)
    {
        var onnx = new Option<FileInfo>("--onnx") { Description = "The ONNX file to write.", Required = true };
        var from = new Option<FileInfo>("--from") { Description = "model.safetensors or checkpoint.safetensors written by backprop train.", Required = true };
        var softmax = new Option<bool>("--softmax") { Description = "End with Softmax (class probabilities instead of logits)." };
        var cmd = new Command("export", "Export trained weights for inference (ONNX, opset 17, dynamic batch).");
        cmd.Options.Add(onnx);
        cmd.Options.Add(from);
        cmd.Options.Add(softmax);
        cmd.SetAction(p =>
        {
            string src = p.GetValue(from)!.FullName;
            ModelSpec spec;
            try { spec = Checkpoint.ReadSpec(src); }
            catch (Exception e) when (e is FileNotFoundException or InvalidDataException) { throw new UsageException(e.Message); }
            using var model = new Model(spec, new TrainingOptions { Loss = spec.Loss, Threads = 1, MaxBatch = 1 });
            try { Checkpoint.LoadWeights(model, src); }
            catch (InvalidDataException e) { throw new UsageException(e.Message); }
            string dst = p.GetValue(onnx)!.FullName;
            OnnxExporter.Export(model, dst, p.GetValue(softmax));
            stdout.WriteLine($"wrote {dst}: {spec.InputWidth}-{string.Join("-", spec.Layers.Select(l => l.Units))}, opset 17, input 'input' [batch, {spec.InputWidth}], output 'output' [batch, {spec.OutputWidth}]");
            return 0;
        });
        return cmd;
    }
}
