// The samples (samples/Regression, samples/MLNet) are built with the solution; run them and check they learned.
using System.Globalization;
using System.Text.RegularExpressions;
using NUnit.Framework;

namespace Backprop.Tests.Cli;

[TestFixture]
public class SampleTests
{
    private static (int Code, string Output) RunSample(string name, string arguments = "", string? workingDirectory = null) =>
        BuiltProgram.Run(Path.Combine("samples", name), name, arguments, workingDirectory);

    [Test]
    public void RegressionSample_Runs_AndLearns()
    {
        var (code, output) = RunSample("Regression");
        Assert.That(code, Is.EqualTo(0), output);
        Assert.That(output, Does.Contain("test MSE").And.Contain("predicted"));
    }

    [Test]
    public void MLNetSample_TrainsEvaluatesSavesAndLoads_OnFashionMnistCsv()
    {
        var (train, test) = MLNet.MLNetData.FashionSubset(6000, 1000);
        string work = MLNet.MLNetData.Scratch("sample");
        Directory.CreateDirectory(work);
        var (code, output) = RunSample("MLNet", $"\"{train}\" \"{test}\" 3", work);
        Assert.That(code, Is.EqualTo(0), output);
        var accuracy = Regex.Match(output, @"test accuracy (\d\.\d+)");
        Assert.That(accuracy.Success, Is.True, output);
        // 3 epochs on a tenth of the training set: 0.827 when written.
        Assert.That(double.Parse(accuracy.Groups[1].Value, CultureInfo.InvariantCulture), Is.GreaterThan(0.8), output);
        Assert.That(output, Does.Match(@"first test image: label \d, predicted \d"));
        Assert.That(File.Exists(Path.Combine(work, "fashion-model.zip")), Is.True);

        var (usage, message) = RunSample("MLNet", "", work);
        Assert.That((usage, message.Trim()), Is.EqualTo((2, "usage: MLNet <train.csv> <test.csv> [epochs]")));
    }
}
