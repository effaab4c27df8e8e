// The solution's console programs (samples/, bench/Backprop.MLNet.Bench) as the tests run them: the copy Engine.sln built
// in the tests' configuration, in a child process, with its exit code and everything it printed.
using System.Diagnostics;
using Backprop.Tests.Interop;
using NUnit.Framework;

namespace Backprop.Tests;

internal static class BuiltProgram
{
    /// <summary>Runs <paramref name="folder"/>/bin/&lt;configuration&gt;/net10.0/<paramref name="name"/>.dll with <paramref name="arguments"/>.</summary>
    public static (int Code, string Output) Run(string folder, string name, string arguments = "", string? workingDirectory = null)
    {
        string config = AppContext.BaseDirectory.Contains("/Debug/") ? "Debug" : "Release";
        string dll = Path.Combine(TorchPython.Root, folder, "bin", config, "net10.0", name + ".dll");
        Assert.That(File.Exists(dll), Is.True, $"{dll} is built with Engine.sln");
        var start = new ProcessStartInfo("dotnet", $"\"{dll}\" {arguments}") { RedirectStandardOutput = true, RedirectStandardError = true };
        if (workingDirectory is not null) start.WorkingDirectory = workingDirectory;
        using var p = Process.Start(start)!;
        var error = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd() + error.Result;
        p.WaitForExit();
        return (p.ExitCode, output);
    }
}
