// Real PyTorch and ONNX for the interop tests: tests/python/interop.py run with Debian's /usr/bin/python3
// (python3-torch 1.13, python3-onnx 1.12; `./build.sh Deps` installs both). When either is missing a test
// is skipped with the reason (Assert.Ignore), never passed; every run's stderr is in a failure's message.
using System.Diagnostics;
using NUnit.Framework;

namespace Backprop.Tests.Interop;

internal static class TorchPython
{
    public const string Python = "/usr/bin/python3";

    /// <summary>The repository root (the folder of Engine.sln).</summary>
    public static string Root { get; } = FindRoot();

    public static string Script => Path.Combine(Root, "tests", "python", "interop.py");
    public static string Readme => Path.Combine(Root, "README.md");

    /// <summary>tests/python/interop.py: needs torch and onnx.</summary>
    public static PythonScript Interop { get; } = new("interop.py", "python3-torch or python3-onnx");

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Engine.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException($"no Engine.sln above {AppContext.BaseDirectory}");
    }

    /// <summary>Skips the calling test, with the reason, when PyTorch or ONNX is not available.</summary>
    public static void Require() => Interop.Require();

    /// <summary>Runs interop.py with <paramref name="args"/>; fails the test (with its output) unless it exits 0.</summary>
    public static string Run(params string[] args) => Interop.Run(args);
}

/// <summary>A script of tests/python run by Debian's interpreter: probed once (its "probe" command), skipped with the reason when its packages are missing.</summary>
internal sealed class PythonScript(string file, string packages)
{
    private readonly Lazy<string?> _missing = new(() => Probe(file, packages));

    private string Path => System.IO.Path.Combine(TorchPython.Root, "tests", "python", file);

    // Null when the script's imports work; else why not.
    private static string? Probe(string file, string packages)
    {
        if (!File.Exists(TorchPython.Python)) return $"{TorchPython.Python} is not installed (./build.sh Deps installs {packages})";
        var (code, o, e) = RunRaw(System.IO.Path.Combine(TorchPython.Root, "tests", "python", file), ["probe"], TimeSpan.FromMinutes(2));
        return code == 0 ? null : $"{packages} is not installed for {TorchPython.Python} (./build.sh Deps installs them): {e.Trim().Split('\n')[^1]}{o}";
    }

    /// <summary>Skips the calling test, with the reason, when the script's packages are not available.</summary>
    public void Require()
    {
        if (_missing.Value is { } why) Assert.Ignore(why);
    }

    /// <summary>Runs the script with <paramref name="args"/>; fails the test (with its output) unless it exits 0.</summary>
    public string Run(params string[] args)
    {
        Require();
        var (code, o, e) = RunRaw(Path, args, TimeSpan.FromMinutes(5));
        Assert.That(code, Is.EqualTo(0), $"{file} {string.Join(' ', args)}\nstdout:\n{o}\nstderr:\n{e}");
        return o;
    }

    private static (int Code, string Out, string Err) RunRaw(string script, string[] args, TimeSpan timeout)
    {
        var psi = new ProcessStartInfo(TorchPython.Python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(script);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["PYTHONDONTWRITEBYTECODE"] = "1";
        psi.Environment["OMP_NUM_THREADS"] = "1";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            return (-1, stdout.Result, $"timed out after {timeout}\n{stderr.Result}");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}
