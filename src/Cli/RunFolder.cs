// The folder a run writes (--output, or the --resume folder): checked before any training starts, so a
// run is never lost to a folder it cannot use. A folder is refused when it is a file, when it cannot be
// created or written (a probe file is written and removed), or when it holds an earlier run and neither
// --resume nor --overwrite says to use it. Temporaries that a killed writer left behind (the writer's
// own names, AtomicFile.TemporaryPath: ".<file>.<pid>.tmp") are removed; nothing else in the folder is touched.
using System.Text.RegularExpressions;

namespace Backprop.Cli;

internal static partial class RunFolder
{
    /// <summary>The files a run writes; any of them present means the folder holds a run.</summary>
    public static readonly string[] RunFiles = ["checkpoint.safetensors", "model.safetensors", "metrics.json", "metrics.csv", "confusion.csv", "curves.png"];

    [GeneratedRegex(@"^\.(checkpoint\.safetensors|model\.safetensors|metrics\.csv|metrics\.json|confusion\.csv)\.\d+\.tmp$")]
    private static partial Regex Temporary();

    /// <summary>Makes <paramref name="dir"/> ready for a run: refuses what cannot work (a UsageException naming the folder and why), then removes stale temporaries.</summary>
    public static void Prepare(string flag, DirectoryInfo dir, bool resuming, bool overwrite)
    {
        string path = dir.FullName;
        if (File.Exists(path)) throw new UsageException($"{flag} '{path}' is a file; expected a folder for the run's files.");
        if (!resuming && Directory.Exists(path) && !overwrite)
        {
            var found = RunFiles.Where(f => File.Exists(Path.Combine(path, f))).ToArray();
            if (found.Length > 0)
                throw new UsageException($"{flag} '{path}' holds an earlier run ({string.Join(", ", found)}); continue it with --resume '{path}', " +
                    "replace it with --overwrite, or choose another folder.");
        }
        try
        {
            Directory.CreateDirectory(path);
            string probe = Path.Combine(path, $".backprop-write-test.{Environment.ProcessId}");
            File.WriteAllBytes(probe, new byte[4096]);
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"{flag} '{path}' cannot be written: {e.Message}");
        }
        RemoveTemporaries(path);
    }

    /// <summary>Deletes the temporaries a killed writer left in <paramref name="folder"/> (by their name pattern only); returns how many.</summary>
    public static int RemoveTemporaries(string folder)
    {
        int n = 0;
        foreach (var file in Directory.EnumerateFiles(folder, ".*.tmp"))
        {
            if (!Temporary().IsMatch(Path.GetFileName(file))) continue;
            try
            {
                File.Delete(file);
                n++;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
        return n;
    }
}
