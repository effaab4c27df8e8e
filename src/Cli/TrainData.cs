// The data of `backprop train`: the training and test sets from --data in --format, their number of
// classes, and the input scaling. The classes come from --classes N when given (every label must be below
// it); otherwise from the labels, and an implausible result is refused with what to do about it: a class
// with no training sample, a test label that is no training class, or more classes than MaxInferred.
using Backprop.Engine.Checkpoints;
using Backprop.Engine.Data;

namespace Backprop.Cli;

internal static class TrainData
{
    public const string DefaultFolder = "/usr/share/datasets/fashion-mnist";

    /// <summary>The most classes inferred from labels without --classes.</summary>
    public const int MaxInferred = 10_000;

    /// <summary>Reads the training and test sets of <paramref name="folder"/> in <paramref name="format"/>; every problem a UsageException.</summary>
    public static (Dataset Train, Dataset Test) Load(string folder, string format, string labelColumn)
    {
        if (File.Exists(folder)) throw new UsageException($"--data '{folder}' is a file; expected a folder holding the {format} files.");
        if (!Directory.Exists(folder))
            throw new UsageException($"--data folder '{folder}' does not exist" + (folder == DefaultFolder ? " (install it with: apt-get install dataset-fashion-mnist, or ./build.sh Deps)." : "."));
        return format == "idx" ? LoadIdx(folder) : LoadOther(folder, format, labelColumn);
    }

    private static (Dataset, Dataset) LoadOther(string folder, string format, string labelColumn)
    {
        string Need(string name)
        {
            var path = Path.Combine(folder, name);
            return File.Exists(path) ? path : throw new UsageException($"--data folder '{folder}' has no {name} (--format {format}).");
        }
        try
        {
            var (train, test) = format == "csv"
                ? (Csv.Read(Need("train.csv"), labelColumn), Csv.Read(Need("test.csv"), labelColumn))
                : (Npy.ReadPair(Need("train_x.npy"), Need("train_y.npy")), Npy.ReadPair(Need("test_x.npy"), Need("test_y.npy")));
            if (train.Width != test.Width)
                throw new UsageException($"the training data has {train.Width} features and the test data {test.Width}; they must match.");
            return (train, test);
        }
        catch (Exception e) when (e is InvalidDataException or ArgumentException) { throw new UsageException(Flags.Message(e)); }
    }

    private static (Dataset, Dataset) LoadIdx(string folder)
    {
        string Find(string stem)
        {
            foreach (var name in new[] { stem, stem + ".gz" })
            {
                var path = Path.Combine(folder, name);
                if (File.Exists(path)) return path;
            }
            throw new UsageException($"--data folder '{folder}' has no {stem}[.gz].");
        }
        try
        {
            var train = Idx.ReadPair(Find("train-images-idx3-ubyte"), Find("train-labels-idx1-ubyte"));
            var test = Idx.ReadPair(Find("t10k-images-idx3-ubyte"), Find("t10k-labels-idx1-ubyte"));
            if (train.Width != test.Width)
                throw new UsageException($"the training images have {train.Width} pixels and the test images {test.Width}; they must match.");
            return (train, test);
        }
        catch (InvalidDataException e) { throw new UsageException(e.Message); }
    }

    /// <summary>The number of classes of a classification run (see the file header).</summary>
    public static int Classes(Dataset train, Dataset test, int? given)
    {
        var tr = train.Labels ?? throw new UsageException("the training data has no class labels.");
        var te = test.Labels ?? throw new UsageException("the test data has no class labels.");
        if (given is int n)
        {
            if (n < 2) throw new UsageException($"--classes must be at least 2; got {n}.");
            Check(tr, n, "training");
            Check(te, n, "test");
            return n;
        }
        int trainMax = tr.Max(), testMax = te.Max();
        int classes = Math.Max(2, Math.Max(trainMax, testMax) + 1);
        if (classes > MaxInferred)
            throw new UsageException($"the labels go up to {Math.Max(trainMax, testMax)}, which would make {classes:N0} classes (more than {MaxInferred:N0} are not inferred); " +
                "if that is right, pass --classes N; else check the label column.");
        var seen = new bool[classes];
        foreach (int y in tr) seen[y] = true;
        int missing = Array.IndexOf(seen, false, 0, trainMax + 1);
        if (missing >= 0)
            throw new UsageException($"class {missing} has no training sample (the training labels run 0..{trainMax}, but only {seen.Count(b => b)} of them occur); " +
                $"if the classes are right, pass --classes {classes}; else check the labels.");
        if (testMax > trainMax)
            throw new UsageException($"test label {testMax} (sample {Array.IndexOf(te, testMax)}) is no training class (the training labels run 0..{trainMax}); " +
                $"if that class is right, pass --classes {testMax + 1}.");
        return classes;
    }

    private static void Check(int[] labels, int classes, string which)
    {
        for (int i = 0; i < labels.Length; i++)
            if (labels[i] >= classes)
                throw new UsageException($"{which} label {labels[i]} of sample {i} is not below --classes {classes}.");
    }

    /// <summary>Fits (on the training set) or takes the scaling, applies it to both sets, and returns what was applied.</summary>
    public static Preprocessing Normalize(Dataset train, Dataset test, Normalization how, Preprocessing? stored = null)
    {
        Preprocessing p;
        if (stored is not null) p = stored;
        else if (how == Normalization.Standardize)
        {
            var (mean, std) = train.FeatureStats();
            p = new Preprocessing(how, mean, std);
        }
        else p = new Preprocessing(how);
        train.Normalize(p.Kind, p.Mean, p.Std);
        test.Normalize(p.Kind, p.Mean, p.Std);
        return p;
    }
}
