// Data for the ML.NET tests as ML.NET users hold it: CSV files. Fashion-MNIST (the Debian package's IDX files) is
// written once per test run in Kaggle's CSV layout by the benchmark's FashionCsv (linked in); the regression and
// binary sets are made up from seeded functions.
using System.Globalization;
using System.Text;
using Backprop.MLNet.Bench;
using Microsoft.ML.Data;
using NUnit.Framework;

namespace Backprop.Tests.MLNet;

/// <summary>A row of the made-up three-feature sets.</summary>
public sealed class TabularRow
{
    [LoadColumn(0)] public float X0 { get; set; }
    [LoadColumn(1)] public float X1 { get; set; }
    [LoadColumn(2)] public float X2 { get; set; }
    [LoadColumn(3)] public float Target { get; set; }
    [LoadColumn(4)] public bool Inside { get; set; }
}

internal static class MLNetData
{
    /// <summary>The one transformer of type <typeparamref name="T"/> in a fitted pipeline (chains nested in chains included).</summary>
    public static T Find<T>(Microsoft.ML.ITransformer model) where T : class
    {
        IEnumerable<Microsoft.ML.ITransformer> All(Microsoft.ML.ITransformer t) =>
            t is IEnumerable<Microsoft.ML.ITransformer> chain ? chain.SelectMany(All) : [t];
        return All(model).OfType<T>().Single();
    }

    private static readonly Lock s_lock = new();
    private static string? s_dir;

    /// <summary>
    /// A path in this test run's scratch folder for the ML.NET tests (the CSV copies of Fashion-MNIST take 150 MB),
    /// deleted when the test host exits.
    /// </summary>
    public static string Scratch(string name)
    {
        lock (s_lock)
        {
            if (s_dir is null)
            {
                s_dir = Path.Combine(Path.GetTempPath(), $"backprop-mlnet-{Environment.ProcessId}");
                Directory.CreateDirectory(s_dir);
                string dir = s_dir;
                AppDomain.CurrentDomain.ProcessExit += (_, _) =>
                {
                    try { Directory.Delete(dir, true); }
                    catch (IOException) { } // best effort: a file still open is left for the system's temp cleaning
                };
            }
            return Path.Combine(s_dir, name);
        }
    }
    private static (string Train, string Test)? s_fashion;
    private static readonly Dictionary<(int, int), (string, string)> s_subsets = [];

    /// <summary>The whole of Fashion-MNIST as train.csv (60000 rows) and test.csv (10000 rows), written once per run.</summary>
    public static (string Train, string Test) Fashion()
    {
        lock (s_lock) return s_fashion ??= WriteFashion(60000, 10000);
    }

    /// <summary>The first rows of each split, as CSV files of their own.</summary>
    public static (string Train, string Test) FashionSubset(int train, int test)
    {
        lock (s_lock)
        {
            if (!s_subsets.TryGetValue((train, test), out var files)) s_subsets[(train, test)] = files = WriteFashion(train, test);
            return files;
        }
    }

    private static (string, string) WriteFashion(int trainRows, int testRows)
    {
        if (!Directory.Exists(FashionCsv.DefaultFolder))
            Assert.Fail($"{FashionCsv.DefaultFolder} is missing: run ./build.sh Deps (apt-get install dataset-fashion-mnist)");
        return FashionCsv.Write(FashionCsv.DefaultFolder, Scratch($"{trainRows}-{testRows}"), trainRows, testRows);
    }

    /// <summary>
    /// A made-up table of <paramref name="rows"/> rows: target = 1000 + 400·(sin(3·x0) + x1² − 0.5·x2) + noise (a label far
    /// from unit scale), inside = x0² + x1² &lt; 0.5 (a circle: not linearly separable).
    /// </summary>
    public static string Tabular(int rows, int seed, string name)
    {
        string path = MLNetData.Scratch($"{name}.csv");
        var r = new Random(seed);
        var sb = new StringBuilder("x0,x1,x2,target,inside\n");
        for (int i = 0; i < rows; i++)
        {
            double x0 = r.NextDouble() * 2 - 1, x1 = r.NextDouble() * 2 - 1, x2 = r.NextDouble() * 2 - 1;
            double y = 1000 + 400 * (Math.Sin(3 * x0) + x1 * x1 - 0.5 * x2) + 4 * (r.NextDouble() - 0.5);
            bool inside = x0 * x0 + x1 * x1 < 0.5;
            sb.Append(CultureInfo.InvariantCulture, $"{x0:R},{x1:R},{x2:R},{y:R},{(inside ? "true" : "false")}\n");
        }
        File.WriteAllText(path, sb.ToString());
        return path;
    }
}
