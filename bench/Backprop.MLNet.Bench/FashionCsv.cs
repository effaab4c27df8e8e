// Fashion-MNIST as ML.NET users hold it: CSV in Kaggle's layout (label,pixel1..pixel784, a header row), written from the
// Debian package's IDX files. Shared with the tests (linked into tests/Backprop.Tests).
using System.Globalization;
using System.Text;
using Backprop.Engine.Data;
using Microsoft.ML.Data;

namespace Backprop.MLNet.Bench;

/// <summary>A Fashion-MNIST row as LoadFromTextFile reads the CSV.</summary>
public sealed class FashionRow
{
    /// <summary>The class, 0..9.</summary>
    [LoadColumn(0)] public float Label { get; set; }
    /// <summary>The 28x28 pixels, 0..255.</summary>
    [LoadColumn(1, 784), VectorType(784)] public float[] Pixels { get; set; } = [];
}

/// <summary>Writes Fashion-MNIST's IDX files as CSV.</summary>
public static class FashionCsv
{
    /// <summary>Where Debian's dataset-fashion-mnist puts the IDX files.</summary>
    public const string DefaultFolder = "/usr/share/datasets/fashion-mnist";

    /// <summary>
    /// Writes the first <paramref name="trainRows"/> training and <paramref name="testRows"/> test images of the IDX files in
    /// <paramref name="idxFolder"/> to train.csv and t10k.csv in <paramref name="outFolder"/>; returns their paths.
    /// </summary>
    public static (string Train, string Test) Write(string idxFolder, string outFolder, int trainRows, int testRows)
    {
        if (!Directory.Exists(idxFolder))
            throw new DirectoryNotFoundException($"Fashion-MNIST folder '{idxFolder}' does not exist: run ./build.sh Deps (apt-get install dataset-fashion-mnist).");
        if (trainRows < 1 || testRows < 1)
            throw new ArgumentOutOfRangeException(nameof(trainRows), $"rows must be at least 1; got {trainRows} training and {testRows} test rows.");
        Directory.CreateDirectory(outFolder);
        return (WriteSplit(idxFolder, outFolder, "train", trainRows), WriteSplit(idxFolder, outFolder, "t10k", testRows));
    }

    private static string WriteSplit(string idxFolder, string outFolder, string split, int rows)
    {
        var d = Idx.ReadPair(Path.Combine(idxFolder, $"{split}-images-idx3-ubyte.gz"), Path.Combine(idxFolder, $"{split}-labels-idx1-ubyte.gz"));
        if (rows > d.Count) throw new ArgumentOutOfRangeException(nameof(rows), $"the {split} split has {d.Count} images; {rows} were asked for.");
        string path = Path.Combine(outFolder, $"{split}.csv");
        string partial = path + ".partial"; // moved into place when whole: an interrupted write leaves no short CSV behind
        using (var w = new StreamWriter(partial, false, new UTF8Encoding(false), 1 << 20))
        {
            w.Write("label");
            for (int j = 1; j <= d.Width; j++) w.Write(string.Create(CultureInfo.InvariantCulture, $",pixel{j}"));
            w.Write('\n');
            for (int i = 0; i < rows; i++)
            {
                w.Write(d.Labels![i].ToString(CultureInfo.InvariantCulture));
                for (int j = 0; j < d.Width; j++)
                {
                    w.Write(',');
                    w.Write(((int)d.Features[i * d.Width + j]).ToString(CultureInfo.InvariantCulture));
                }
                w.Write('\n');
            }
        }
        File.Move(partial, path, overwrite: true);
        return path;
    }
}
