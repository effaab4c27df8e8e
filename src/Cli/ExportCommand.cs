// `backprop export --from FILE (--onnx OUT | --safetensors OUT)`: rebuilds the model in a weights file, a
// training checkpoint or a plain PyTorch state_dict (see ModelSource for the flags a state_dict needs),
// loads its weights and writes an ONNX model (opset 17, dynamic batch; the input preprocessing the file
// records is the graph's first nodes unless --no-preprocessing) or a backprop weights file (--dtype f32,
// bf16 or f16: smaller inference files). The output is refused (exit 2) when it is the input itself, a
// folder, in a folder that does not exist, or an existing file of another kind (an ONNX model, or a
// safetensors file, there is replaced).
using System.CommandLine;
using Backprop.Engine.Checkpoints;
using Backprop.Engine.Data;
using Backprop.Engine.Export;

namespace Backprop.Cli;

internal static class ExportCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var onnx = new Option<FileInfo?>("--onnx") { Description = "The ONNX file to write." };
        var safetensors = new Option<FileInfo?>("--safetensors") { Description = "The backprop weights file to write (with the model description and preprocessing)." };
        var from = new Option<FileInfo>("--from") { Description = "model.safetensors or checkpoint.safetensors written by backprop train, or a plain PyTorch state_dict.", Required = true };
        var softmax = new Option<bool>("--softmax") { Description = "ONNX: end with Softmax (class probabilities instead of logits)." };
        var noPre = new Option<bool>("--no-preprocessing") { Description = "ONNX: leave the input scaling out of the graph (the model then takes inputs already scaled)." };
        var dtype = new Option<string>("--dtype") { Description = "--safetensors: f32, bf16 or f16 (round to nearest even).", DefaultValueFactory = _ => "f32" };
        var source = new ModelSource();
        var cmd = new Command("export", "Export trained weights for inference: ONNX (opset 17, dynamic batch) or a backprop weights file in F32, BF16 or F16.");
        foreach (var o in new Option[] { onnx, safetensors, from, softmax, noPre, dtype }) cmd.Options.Add(o);
        source.AddTo(cmd);
        cmd.SetAction(p =>
        {
            string src = p.GetValue(from)!.FullName;
            var toOnnx = p.GetValue(onnx);
            var toWeights = p.GetValue(safetensors);
            if ((toOnnx is null) == (toWeights is null)) throw new UsageException("give one of --onnx FILE and --safetensors FILE.");
            var type = Flags.Choice("--dtype", p.GetValue(dtype)!, ("f32", TensorDtype.F32), ("bf16", TensorDtype.BF16), ("f16", TensorDtype.F16));
            if (toOnnx is not null && p.GetResult(dtype) is { Implicit: false }) throw new UsageException("--dtype applies to --safetensors; the ONNX export is float32.");
            if (toWeights is not null && (p.GetValue(softmax) || p.GetValue(noPre)))
                throw new UsageException($"{(p.GetValue(softmax) ? "--softmax" : "--no-preprocessing")} applies to --onnx; a weights file keeps the logits and records the preprocessing.");
            var (info, pre) = source.Open(p, "--from", src, stderr);
            string dst = (toOnnx ?? toWeights)!.FullName;
            CheckTarget(src, dst, toOnnx is not null ? "--onnx" : "--safetensors");
            using var model = ModelSource.Load(info, threads: 1, batch: 1);
            var spec = info.Spec;
            try
            {
                if (toOnnx is not null)
                {
                    var graphPre = p.GetValue(noPre) || pre.Kind == Normalization.None ? null : pre;
                    OnnxExporter.Export(model, dst, p.GetValue(softmax), graphPre);
                    stdout.WriteLine($"wrote {dst}: {spec.Describe()}, opset 17, input 'input' [batch, {spec.InputWidth}]" +
                        $"{(graphPre is null ? "" : $" (raw: the graph applies {ModelSource.Describe(graphPre.Kind)})")}, output 'output' [batch, {spec.OutputWidth}]");
                }
                else
                {
                    Checkpoint.SaveWeights(model, dst, pre, type);
                    stdout.WriteLine($"wrote {dst}: {spec.Describe()}, {type}, inputs: {ModelSource.Describe(pre.Kind)}");
                }
            }
            catch (ArgumentException e) { throw new UsageException(Flags.Message(e)); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new UsageException($"'{dst}' cannot be written: {e.Message}"); }
            return 0;
        });
        return cmd;
    }

    private static void CheckTarget(string src, string dst, string flag)
    {
        if (string.Equals(Path.GetFullPath(src), Path.GetFullPath(dst), StringComparison.Ordinal))
            throw new UsageException($"{flag} '{dst}' is the --from file itself; writing the export there would destroy the weights.");
        if (Directory.Exists(dst)) throw new UsageException($"{flag} '{dst}' is a folder; expected the path of the file to write.");
        string? folder = Path.GetDirectoryName(dst);
        if (folder is not null && !Directory.Exists(folder)) throw new UsageException($"{flag} '{dst}': the folder '{folder}' does not exist.");
        bool same = flag == "--onnx" ? LooksLikeOnnx(dst) : LooksLikeSafetensors(dst);
        if (File.Exists(dst) && !same)
            throw new UsageException($"{flag} '{dst}' exists and is not {(flag == "--onnx" ? "an ONNX model" : "a safetensors file")}; refusing to replace it (remove it first, or choose another name).");
    }

    private static bool LooksLikeSafetensors(string path)
    {
        try
        {
            SafeTensorsFile.Read(path);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException) { return false; }
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
