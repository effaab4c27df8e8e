// `backprop export --onnx FILE --from WEIGHTS`: rebuilds the network described in a weights file or a
// training checkpoint (its __metadata__ "spec"), loads the weights and writes an ONNX model. The output is
// refused (exit 2) when it is the input itself, a folder, in a folder that does not exist, or an existing
// file that is not an ONNX model (an ONNX model there is replaced).
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
            CheckTarget(src, dst);
            try { OnnxExporter.Export(model, dst, p.GetValue(softmax)); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new UsageException($"--onnx '{dst}' cannot be written: {e.Message}"); }
            stdout.WriteLine($"wrote {dst}: {spec.InputWidth}-{string.Join("-", spec.Layers.Select(l => l.Units))}, opset 17, input 'input' [batch, {spec.InputWidth}], output 'output' [batch, {spec.OutputWidth}]");
            return 0;
        });
        return cmd;
    }

    private static void CheckTarget(string src, string dst)
    {
        if (string.Equals(Path.GetFullPath(src), Path.GetFullPath(dst), StringComparison.Ordinal))
            throw new UsageException($"--onnx '{dst}' is the --from file itself; writing the export there would destroy the weights.");
        if (Directory.Exists(dst)) throw new UsageException($"--onnx '{dst}' is a folder; expected the path of the .onnx file to write.");
        string? folder = Path.GetDirectoryName(dst);
        if (folder is not null && !Directory.Exists(folder)) throw new UsageException($"--onnx '{dst}': the folder '{folder}' does not exist.");
        if (File.Exists(dst) && !LooksLikeOnnx(dst))
            throw new UsageException($"--onnx '{dst}' exists and is not an ONNX model; refusing to replace it (remove it first, or choose another name).");
    }

    // An ONNX ModelProto starts with field 1 (ir_version, a varint: byte 0x08) and a small version number.
    private static bool LooksLikeOnnx(string path)
    {
        try
        {
            using var f = File.OpenRead(path);
            Span<byte> head = stackalloc byte[2];
            return f.Read(head) == 2 && head[0] == 0x08 && head[1] is >= 1 and <= 30;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }
}
