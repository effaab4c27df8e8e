// The afl++ harness of the loaders (SharpFuzz). Usage:
//   Backprop.Fuzz <target>                          the loop afl-fuzz runs (input on stdin; SharpFuzz's out-of-process
//                                                   mode, so a crash of the runtime or a timeout is a finding, not the end)
//   Backprop.Fuzz replay <target> <file|dir>... [--passing DIR]
//                                                   each file through the target in this process: one line per file
//                                                   (ok, or CRASH with the exception, its first Backprop frame and message);
//                                                   --passing copies the files that pass into DIR; exit 1 when one crashed
//   Backprop.Fuzz seeds <target> <dir>              writes small valid inputs (seed-*) into dir
// Targets: idx, csv, npy, safetensors, checkpoint (Targets.cs). Input and partner files go to
// $BACKPROP_FUZZ_WORK, else /dev/shm/backprop-fuzz-<pid> (or the temp folder).
using System.Diagnostics;
using System.Globalization;
using Backprop.Fuzz;
using SharpFuzz;

if (args.Length == 1 && Targets.Names.Contains(args[0]))
{
    string target = args[0];
    string? input = null;
    Fuzzer.OutOfProcess.Run(stream =>
    {
        input ??= Path.Combine(WorkDir(), "input");
        using (var file = File.Create(input)) stream.CopyTo(file);
        Targets.Run(target, input);
    });
    return 0;
}
if (args.Length >= 3 && args[0] == "seeds" && Targets.Names.Contains(args[1]))
{
    foreach (var path in Seeds.Write(args[1], args[2])) Console.WriteLine(path);
    return 0;
}
if (args.Length >= 3 && args[0] == "replay" && Targets.Names.Contains(args[1]))
    return Replay(args[1], args[2..]);
Console.Error.WriteLine($"usage: Backprop.Fuzz <target> | replay <target> <file|dir>... [--passing DIR] | seeds <target> <dir>; targets: {string.Join(", ", Targets.Names)}");
return 2;

static string WorkDir()
{
    string dir = Environment.GetEnvironmentVariable("BACKPROP_FUZZ_WORK") is { Length: > 0 } w ? w
        : Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), $"backprop-fuzz-{Environment.ProcessId}");
    Directory.CreateDirectory(dir);
    return dir;
}

static int Replay(string target, string[] rest)
{
    string? passing = null;
    var files = new List<string>();
    for (int i = 0; i < rest.Length; i++)
    {
        if (rest[i] == "--passing" && i + 1 < rest.Length) passing = rest[++i];
        else if (Directory.Exists(rest[i])) files.AddRange(Directory.GetFiles(rest[i]).Where(f => !Path.GetFileName(f).StartsWith('.') && Path.GetFileName(f) != "README.txt").Order(StringComparer.Ordinal));
        else files.Add(rest[i]);
    }
    if (passing is not null) Directory.CreateDirectory(passing);
    string input = Path.Combine(WorkDir(), "input");
    int crashed = 0;
    foreach (var f in files)
    {
        File.Copy(f, input, overwrite: true);
        var clock = Stopwatch.StartNew();
        try
        {
            Targets.Run(target, input);
            Console.WriteLine($"ok {f} ({clock.ElapsedMilliseconds.ToString(CultureInfo.InvariantCulture)} ms)");
            if (passing is not null) File.Copy(f, Path.Combine(passing, Path.GetFileName(f)), overwrite: true);
        }
        catch (Exception e)
        {
            crashed++;
            Console.WriteLine($"CRASH {f} ({clock.ElapsedMilliseconds.ToString(CultureInfo.InvariantCulture)} ms): {Targets.Describe(e)}");
            if (Environment.GetEnvironmentVariable("BACKPROP_FUZZ_STACK") == "1") Console.WriteLine(e);
        }
    }
    Console.WriteLine($"{target}: {files.Count} files, {files.Count - crashed} ok, {crashed} crashed");
    return crashed == 0 ? 0 : 1;
}
