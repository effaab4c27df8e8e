// Text files the commands write (metrics, confusion matrices, predictions, results): to a temporary name in
// the same folder, then renamed over the target, so a failure leaves neither a half-written file nor the
// temporary behind.
namespace Backprop.Cli;

internal static class AtomicFile
{
    public static void WriteAllText(string path, string text)
    {
        string tmp = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, $".{Path.GetFileName(path)}.{Environment.ProcessId}.tmp");
        try
        {
            File.WriteAllText(tmp, text);
            File.Move(tmp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }
}
