// The embedding sample (samples/Regression) is built with the solution; run it and check it learned.
using System.Diagnostics;
using NUnit.Framework;

namespace Backprop.Tests.Cli;

[TestFixture]
public class SampleTests
{
    [Test]
    public void RegressionSample_Runs_AndLearns()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Engine.sln"))) dir = dir.Parent;
        Assert.That(dir, Is.Not.Null, "repository root");
        string config = AppContext.BaseDirectory.Contains("/Debug/") ? "Debug" : "Release";
        string dll = Path.Combine(dir!.FullName, "samples", "Regression", "bin", config, "net10.0", "Regression.dll");
        Assert.That(File.Exists(dll), Is.True, $"{dll} is built with Engine.sln");
        using var p = Process.Start(new ProcessStartInfo("dotnet", $"\"{dll}\"") { RedirectStandardOutput = true, RedirectStandardError = true })!;
        string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.That(p.ExitCode, Is.EqualTo(0), output);
        Assert.That(output, Does.Contain("test MSE").And.Contain("predicted"));
    }
}
