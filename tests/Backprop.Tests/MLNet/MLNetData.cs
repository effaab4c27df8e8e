// Data for the ML.NET tests as ML.NET users hold it: CSV files. Fashion-MNIST (the Debian package's IDX files) is
// written once per test run in Kaggle's CSV layout (label,pixel1..pixel784); the regression and binary sets are made
// up from seeded functions.
using System.Globalization;
using System.Text;
using Backprop.Engine.Data;
using Microsoft.ML.Data;
using NUnit.Framework;

namespace Backprop.Tests.MLNet;

/// <summary>A Fashion-MNIST row as LoadFromTextFile reads the CSV.</summary>
public sealed class FashionRow
{
    /// <summary>The class, 0..9.</summary>
    [LoadColumn(0)] public float Label { get; set; }
    /// <summary>The 28x28 pixels, 0..255.</summary>
    [LoadColumn(1, 784), VectorType(784)] public float[] Pixels { get; set; } = [];
}

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
        string dir = Data.IdxTests.FashionDir;
        if (!Directory.Exists(dir)) Assert.Fail($"{dir} is missing: run ./build.sh Deps (apt-get install dataset-fashion-mnist)");
        string outDir = Path.Combine(Path.GetTempPath(), $"backprop-mlnet-{Environment.ProcessId}-{trainRows}-{testRows}");
        Directory.CreateDirectory(outDir);
        string Write(string split, int rows)
        {
            var d = Idx.ReadPair(Path.Combine(dir, $"{split}-images-idx3-ubyte.gz"), Path.Combine(dir, $"{split}-labels-idx1-ubyte.gz"));
            string path = Path.Combine(outDir, $"{split}.csv");
            using var w = new StreamWriter(path, false, new UTF8Encoding(false), 1 << 20);
            w.Write("label");
            for (int j = 1; j <= d.Width; j++) w.Write(string.Create(CultureInfo.InvariantCulture, $",pixel{j}"));
            w.Write('\n');
            for (int i = 0; i < Math.Min(rows, d.Count); i++)
            {
                w.Write(d.Labels![i].ToString(CultureInfo.InvariantCulture));
                for (int j = 0; j < d.Width; j++)
                {
                    w.Write(',');
                    w.Write(((int)d.Features[i * d.Width + j]).ToString(CultureInfo.InvariantCulture));
                }
                w.Write('\n');
            }
            return path;
        }
        return (Write("train", trainRows), Write("t10k", testRows));
    }

    /// <summary>
    /// A made-up table of <paramref name="rows"/> rows: target = 1000 + 400·(sin(3·x0) + x1² − 0.5·x2) + noise (a label far
    /// from unit scale), inside = x0² + x1² &lt; 0.5 (a circle: not linearly separable).
    /// </summary>
    public static string Tabular(int rows, int seed, string name)
    {
        string path = Path.Combine(Path.GetTempPath(), $"backprop-mlnet-{Environment.ProcessId}-{name}.csv");
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
