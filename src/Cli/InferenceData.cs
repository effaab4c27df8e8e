// The data of `predict` and `evaluate`, in any format `train` reads. --data is either a folder laid out as
// train reads it (--split test, the default, or train: t10k-/train- IDX files, test.csv/train.csv,
// test_x.npy/test_y.npy or train_x/train_y) or one file (.csv, .npy, or else IDX) with --labels for the
// labels of an IDX or .npy file. Labels are optional for predictions: an IDX or .npy folder without the
// labels file, or a CSV with exactly the model's number of columns, is read as features alone. A
// classifier's data has class labels; a regression model's has target values (the CSV label column, the
// .npy labels array).
using System.CommandLine;
using Backprop.Engine;
using Backprop.Engine.Checkpoints;
using Backprop.Engine.Data;

namespace Backprop.Cli;

internal static class InferenceData
{
    /// <summary>The flags `predict` and `evaluate` share: the model file, the data, threads.</summary>
    public sealed class CommandFlags
    {
        public Option<FileInfo> Model { get; } = new("--model") { Description = "model.safetensors, checkpoint.safetensors, or a plain PyTorch state_dict (safetensors).", Required = true };
        public Option<string> Data { get; } = new("--data")
        {
            Description = "A folder laid out as train reads it (see --split), or one file: .csv, .npy or IDX.", DefaultValueFactory = _ => TrainData.DefaultFolder,
        };
        public Option<string?> Format { get; } = new("--format") { Description = "idx, csv or npy (default: idx for a folder, from the extension for a file)." };
        public Option<string> Split { get; } = new("--split") { Description = "Folders: test or train.", DefaultValueFactory = _ => "test" };
        public Option<string?> Labels { get; } = new("--labels") { Description = "With an IDX or .npy --data file: its labels (or regression targets) file." };
        public Option<string> LabelColumn { get; } = new("--label-column")
        {
            Description = "CSV label column: a name or an index (-1 = last), or none; default 'label' if present, else the last.", DefaultValueFactory = _ => "",
        };
        public Option<int> Threads { get; } = new("--threads") { Description = "Threads.", DefaultValueFactory = _ => Environment.ProcessorCount };
        public ModelSource Source { get; } = new();

        public void AddTo(Command cmd)
        {
            foreach (var o in new Option[] { Model, Data, Format, Split, Labels, LabelColumn, Threads }) cmd.Options.Add(o);
            Source.AddTo(cmd);
        }

        /// <summary>What the data flags ask to read.</summary>
        public Request RequestOf(ParseResult p)
        {
            string? format = p.GetValue(Format) is { } f ? Flags.Choice("--format", f, ("idx", "idx"), ("csv", "csv"), ("npy", "npy")) : null;
            string split = Flags.Choice("--split", p.GetValue(Split)!, ("test", "test"), ("train", "train"));
            return new Request(p.GetValue(Data)!, format, split, p.GetValue(Labels), p.GetValue(LabelColumn)!);
        }

        /// <summary>The model (weights loaded), the data (preprocessed as the model expects) and the preprocessing applied.</summary>
        public (Model Model, ModelFileInfo Info, Dataset Data, Preprocessing Preprocessing) Open(ParseResult p, TextWriter stderr, bool needLabels)
        {
            int threads = p.GetValue(Threads);
            if (threads < 1 || threads > 1024) throw new UsageException($"--threads must be in [1, 1024]; got {threads}.");
            var (info, pre) = Source.Open(p, "--model", p.GetValue(Model)!.FullName, stderr);
            var data = Load(RequestOf(p), info.Spec, needLabels);
            data.Normalize(pre.Kind, pre.Mean, pre.Std);
            return (ModelSource.Load(info, threads), info, data, pre);
        }
    }

    /// <summary>What to read: where, in which format, which split, and the labels file or column.</summary>
    public sealed record Request(string Data, string? Format, string Split, string? Labels, string LabelColumn);

    /// <summary>
    /// Reads the data for a model of <paramref name="spec"/>; <paramref name="needLabels"/>: labels (or targets) must be there.
    /// Every problem is a UsageException naming the flag or file.
    /// </summary>
    public static Dataset Load(Request r, ModelSpec spec, bool needLabels)
    {
        bool classes = spec.Loss == LossKind.CrossEntropy;
        string path = Path.GetFullPath(r.Data);
        var (format, features, labels) = Resolve(r);

        Dataset d;
        try
        {
            d = format switch
            {
                "csv" => ReadCsv(features, r.LabelColumn, spec.InputWidth, classes, needLabels),
                "npy" => labels is null ? Npy.ReadFeatures(features) : Npy.ReadPair(features, labels, classes),
                _ => labels is null ? Idx.ReadImages(features) : IdxPair(features, labels, classes),
            };
        }
        catch (Exception e) when (e is InvalidDataException or ArgumentException or FileNotFoundException) { throw new UsageException(Flags.Message(e)); }
        if (needLabels && d.Labels is null && d.Targets is null)
            throw new UsageException($"--data '{r.Data}' has no labels to evaluate against" +
                (format == "csv" ? " (the CSV has no label column)." : Directory.Exists(path) ? $" (the folder has no {r.Split} labels file)." : "; give them with --labels FILE."));
        if (d.Width != spec.InputWidth)
            throw new UsageException($"the data has {d.Width} features per sample; the model takes {spec.InputWidth}.");
        if (d.Labels is { } y)
            for (int i = 0; i < y.Length; i++)
                if (y[i] >= spec.OutputWidth)
                    throw new UsageException($"label {y[i]} of sample {i} is not one of the model's {spec.OutputWidth} classes (0..{spec.OutputWidth - 1}).");
        if (d.Targets is { } t && d.Outputs != spec.OutputWidth)
            throw new UsageException($"the data has {d.Outputs} target values per sample; the model has {spec.OutputWidth} outputs.");
        return d;
    }

    /// <summary>The files a request reads (the features file, and the labels file when there is one) and their format, without reading them.</summary>
    public static (string Format, string Features, string? Labels) Resolve(Request r)
    {
        string path = Path.GetFullPath(r.Data);
        string? labels = r.Labels is null ? null : Path.GetFullPath(r.Labels);
        if (Directory.Exists(path))
        {
            string format = r.Format ?? "idx";
            if (labels is not null) throw new UsageException($"--labels is for a --data file; the folder '{path}' holds its own labels.");
            var (features, folderLabels) = FolderFiles(path, format, r.Split);
            return (format, features, folderLabels);
        }
        if (File.Exists(path))
        {
            string format = r.Format ?? (path.EndsWith(".csv", StringComparison.OrdinalIgnoreCase) ? "csv" : path.EndsWith(".npy", StringComparison.OrdinalIgnoreCase) ? "npy" : "idx");
            if (format == "csv" && labels is not null) throw new UsageException("--labels is for IDX and .npy files; a CSV file holds its labels in a column (--label-column).");
            if (labels is not null && !File.Exists(labels)) throw new UsageException($"--labels '{labels}' does not exist.");
            return (format, path, labels);
        }
        throw new UsageException($"--data '{path}' does not exist.");
    }

    // IDX labels are class indices; a regression model cannot use them.
    private static Dataset IdxPair(string images, string labels, bool classes) => classes
        ? Idx.ReadPair(images, labels)
        : throw new UsageException($"IDX labels are class indices, but the model is a regression model; give the targets as .npy or CSV.");

    private static (string Features, string? Labels) FolderFiles(string folder, string format, string split)
    {
        string Need(string name) => File.Exists(Path.Combine(folder, name)) ? Path.Combine(folder, name)
            : throw new UsageException($"--data folder '{folder}' has no {name} (--format {format}, --split {split}).");
        string? Optional(string name) => File.Exists(Path.Combine(folder, name)) ? Path.Combine(folder, name) : null;
        switch (format)
        {
            case "csv": return (Need($"{split}.csv"), null);
            case "npy": return (Need($"{split}_x.npy"), Optional($"{split}_y.npy"));
            default:
            {
                string stem = split == "test" ? "t10k" : "train";
                string images = Optional($"{stem}-images-idx3-ubyte") ?? Need($"{stem}-images-idx3-ubyte.gz");
                return (images, Optional($"{stem}-labels-idx1-ubyte") ?? Optional($"{stem}-labels-idx1-ubyte.gz"));
            }
        }
    }

    // A CSV with the model's width + 1 columns has labels (the label column); one with exactly the model's width has none.
    private static Dataset ReadCsv(string path, string labelColumn, int width, bool classes, bool needLabels)
    {
        if (labelColumn.Length == 0 && !needLabels)
        {
            string? first = File.ReadLines(path).FirstOrDefault(l => l.Trim().Length > 0);
            if (first is not null && first.Split(',').Length == width) labelColumn = "none";
        }
        return Csv.Read(path, labelColumn, classification: classes);
    }
}
