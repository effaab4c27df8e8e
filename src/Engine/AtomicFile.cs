// Every file the engine and the CLI write (weights, checkpoints, ONNX models, .npy predictions, metrics and
// reports) goes to a temporary name in the same folder, ".<file>.<pid>.tmp", and is renamed over the
// target only when complete: a failed or interrupted write leaves the previous file as it was and, except
// after a kill, no temporary behind (the CLI removes a killed writer's temporaries by that name pattern).
using System.Text;

namespace Backprop.Engine;

/// <summary>Whole-file writes that either replace the target completely or leave it untouched.</summary>
public static class AtomicFile
{
    /// <summary>The temporary a write of <paramref name="path"/> goes through: ".&lt;file&gt;.&lt;pid&gt;.tmp" in the same folder.</summary>
    public static string TemporaryPath(string path) =>
        Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, $".{Path.GetFileName(path)}.{Environment.ProcessId}.tmp");

    /// <summary>Runs <paramref name="write"/> on the temporary path, then renames it over <paramref name="path"/>; the temporary is removed if anything fails.</summary>
    public static void Write(string path, Action<string> write)
    {
        ArgumentNullException.ThrowIfNull(write);
        string tmp = TemporaryPath(path);
        try
        {
            write(tmp);
            File.Move(tmp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    /// <summary>Writes <paramref name="bytes"/> as the whole of <paramref name="path"/>.</summary>
    public static void WriteAllBytes(string path, byte[] bytes) => Write(path, tmp => File.WriteAllBytes(tmp, bytes));

    /// <summary>Writes <paramref name="text"/> (UTF-8, no BOM) as the whole of <paramref name="path"/>.</summary>
    public static void WriteAllText(string path, string text) => Write(path, tmp => File.WriteAllText(tmp, text, new UTF8Encoding(false)));
}
