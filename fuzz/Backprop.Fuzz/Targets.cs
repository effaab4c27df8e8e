// The fuzz targets: one input file through every public entry point of one loader. A loader may load the
// file or refuse it with its documented exception (InvalidDataException; the CSV reader's ArgumentException
// for a label column the file does not have, when one is asked for by name); anything else escapes and is
// what afl++ records as a crash. What loads is checked too (FuzzOracleException when it is inconsistent), and
// a refused load must leave the model it was refused by unchanged.
//   idx          Idx.Read (raw or gzip, whichever the input is); a raw input also gzipped and read again, which must
//                agree; Idx.ReadPair with the input as the images (or the labels) and a made-up partner file
//   csv          Csv.Read: default label column, classification and regression, column 0, header forced on and off,
//                and the label column by name
//   npy          Npy.Read; Npy.ReadPair with the input as the features and as the labels (classification, regression)
//   safetensors  SafeTensorsFile.Read + ReadFloat of every tensor, Checkpoint.ReadSpec, a fresh model of that spec
//                and LoadWeights into it; ModelFile.Read (state_dicts too) and LoadWeights of its description into a
//                fresh model; LoadWeights into a fixed model of the seeds' spec
//   checkpoint   the same reader, Checkpoint.ReadInfo, ReadSpec, a fresh model of the description and LoadTraining
//                into it; LoadWeights into the fixed model
// Models are built only below the caps (width, layers, batch, parameters), so the fuzzer does not spend its
// time allocating: a bigger description stops at ReadSpec/ReadInfo.
using System.Buffers.Binary;
using System.Globalization;
using System.IO.Compression;
using System.Text;
using Backprop.Engine;
using Backprop.Engine.Checkpoints;
using Backprop.Engine.Data;
using Backprop.Kernels;

namespace Backprop.Fuzz;

/// <summary>A loader accepted a file but what it returned is inconsistent (or a refused load changed a model).</summary>
public sealed class FuzzOracleException(string message) : Exception(message);

/// <summary>The fuzz targets, by name.</summary>
public static class Targets
{
    /// <summary>The targets, in the order ./build.sh Fuzz runs them.</summary>
    public static readonly string[] Names = ["idx", "csv", "npy", "safetensors", "checkpoint"];

    /// <summary>Widest layer (or input) a target builds a model for.</summary>
    public const int MaxWidth = 4096;
    /// <summary>Largest batch a target builds a model for, and most samples it pairs a file with.</summary>
    public const int MaxBatch = 4096;
    /// <summary>Most layers a target builds a model for.</summary>
    public const int MaxLayers = 16;
    /// <summary>Most parameters a target builds a model for.</summary>
    public const long MaxParameters = 1 << 20;
    /// <summary>Most activation values (batch × widths) a target builds a model for.</summary>
    public const long MaxActivations = 1 << 22;

    /// <summary>The spec of the fixed model every safetensors input is also loaded into (the seeds' first spec).</summary>
    /// <remarks>Made on first use, not in a static initializer: instrumented engine code must not run before SharpFuzz has
    /// set up its coverage map (Fuzzer.OutOfProcess.Run), or its first write faults.</remarks>
    public static ModelSpec FixedSpec => new Sequential(6).Dense(5, "relu").Dense(3).ToSpec(LossKind.CrossEntropy);

    private static Model? s_fixed;
    private static float[] s_fixedInitial = [];

    /// <summary>Runs <paramref name="target"/> on the file <paramref name="path"/>; partner files are written next to it.</summary>
    public static void Run(string target, string path)
    {
        switch (target)
        {
            case "idx": RunIdx(path); break;
            case "csv": RunCsv(path); break;
            case "npy": RunNpy(path); break;
            case "safetensors": RunSafeTensors(path, training: false); break;
            case "checkpoint": RunSafeTensors(path, training: true); break;
            default: throw new ArgumentException($"unknown fuzz target '{target}'; expected one of {string.Join(", ", Names)}.", nameof(target));
        }
    }

    /// <summary>Runs <paramref name="load"/>; false when it refused the input with InvalidDataException.</summary>
    private static bool Loads(Action load)
    {
        try
        {
            load();
            return true;
        }
        catch (InvalidDataException e)
        {
            if (s_verbose) Console.Error.WriteLine($"  refused: {e.Message}");
            return false;
        }
    }

    private static readonly bool s_verbose = Environment.GetEnvironmentVariable("BACKPROP_FUZZ_VERBOSE") == "1";

    private static string Partner(string path, string name) => Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, name);

    // ---- IDX ----

    private static void RunIdx(string path)
    {
        var bytes = File.ReadAllBytes(path);
        IdxArray? a = null;
        bool loaded = Loads(() => a = Idx.Read(path));
        if (a is not null) CheckIdx(a);
        if (bytes is not [0x1f, 0x8b, ..])
        {
            // The gzip path must agree with the raw one: both refuse, or both load the same array.
            string gz = Partner(path, "input-gzipped.idx.gz");
            File.WriteAllBytes(gz, Gzip(bytes));
            IdxArray? b = null;
            bool loadedGz = Loads(() => b = Idx.Read(gz));
            if (loaded != loadedGz)
                throw new FuzzOracleException($"Idx.Read {(loaded ? "loaded" : "refused")} the raw file but {(loadedGz ? "loaded" : "refused")} the same bytes gzipped.");
            if (a is not null && (!a.Dimensions.AsSpan().SequenceEqual(b!.Dimensions) || !a.Data.AsSpan().SequenceEqual(b.Data)))
                throw new FuzzOracleException($"Idx.Read gave [{string.Join(", ", a.Dimensions)}] raw but [{string.Join(", ", b!.Dimensions)}] (or other data) gzipped.");
        }
        if (a is null || a.Count > MaxBatch) return;
        if (a.Dimensions.Length >= 2)
        {
            string labels = Partner(path, "labels.idx");
            File.WriteAllBytes(labels, IdxBytes([a.Count], Enumerable.Range(0, a.Count).Select(i => (byte)(i % 3)).ToArray()));
            Loads(() => CheckDataset(Idx.ReadPair(path, labels), classification: true, bytes: true));
            Loads(() => CheckDataset(Idx.ReadPair(path, labels, classes: 2), classification: true, bytes: true));
        }
        else
        {
            string images = Partner(path, "images.idx");
            File.WriteAllBytes(images, IdxBytes([a.Count, 2, 2], new byte[a.Count * 4]));
            Loads(() => CheckDataset(Idx.ReadPair(images, path), classification: true, bytes: true));
            Loads(() => CheckDataset(Idx.ReadPair(images, path, classes: 10), classification: true, bytes: true));
        }
    }

    private static void CheckIdx(IdxArray a)
    {
        long count = a.Dimensions.Aggregate(1L, (p, d) => p * d);
        if (a.Dimensions.Length is < 1 or > 4 || a.Dimensions.Any(d => d < 0) || a.Data.LongLength != count)
            throw new FuzzOracleException($"Idx.Read gave dimensions [{string.Join(", ", a.Dimensions)}] with {a.Data.LongLength} data bytes.");
    }

    /// <summary>An IDX file of unsigned bytes with <paramref name="dims"/>.</summary>
    public static byte[] IdxBytes(int[] dims, byte[] data)
    {
        var b = new byte[4 + 4 * dims.Length + data.Length];
        b[2] = 0x08;
        b[3] = (byte)dims.Length;
        for (int i = 0; i < dims.Length; i++) BinaryPrimitives.WriteInt32BigEndian(b.AsSpan(4 + 4 * i), dims[i]);
        data.CopyTo(b, 4 + 4 * dims.Length);
        return b;
    }

    /// <summary><paramref name="bytes"/> gzip-compressed.</summary>
    public static byte[] Gzip(byte[] bytes)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true)) gz.Write(bytes);
        return ms.ToArray();
    }

    // ---- CSV ----

    private static void RunCsv(string path)
    {
        Loads(() => CheckDataset(Csv.Read(path), classification: true, bytes: false));
        Loads(() => CheckDataset(Csv.Read(path, classification: false), classification: false, bytes: false));
        Loads(() => CheckDataset(Csv.Read(path, "0"), classification: true, bytes: false));
        Loads(() => CheckDataset(Csv.Read(path, "-1", hasHeader: false), classification: true, bytes: false));
        Loads(() => CheckDataset(Csv.Read(path, "1", classification: false, hasHeader: true), classification: false, bytes: false));
        try
        {
            Loads(() => CheckDataset(Csv.Read(path, "label"), classification: true, bytes: false));
        }
        catch (ArgumentException e) when (e.GetType() == typeof(ArgumentException) && e.Message.Contains("label", StringComparison.Ordinal))
        {
            // documented: a column asked for by name that the file does not have (or a file without a header)
        }
    }

    // ---- NPY ----

    private static void RunNpy(string path)
    {
        NpyArray? a = null;
        Loads(() => a = Npy.Read(path));
        if (a is null) return;
        long count = a.Shape.Aggregate(1L, (p, d) => p * d);
        if (a.Shape.Any(d => d < 0) || a.Data.LongLength != count || a.Data.Any(v => !double.IsFinite(v)))
            throw new FuzzOracleException($"Npy.Read gave shape ({string.Join(", ", a.Shape)}) with {a.Data.LongLength} values (or a value that is not finite).");
        if (a.Shape.Length == 0 || a.Shape[0] > MaxBatch) return;
        int n = a.Shape[0];
        string labels = Partner(path, "labels.npy");
        File.WriteAllBytes(labels, NpyBytes("<i8", [n], Enumerable.Range(0, n).SelectMany(i => BitConverter.GetBytes((long)(i % 3))).ToArray()));
        string features = Partner(path, "features.npy");
        File.WriteAllBytes(features, NpyBytes("<f4", [n, 2], Enumerable.Range(0, 2 * n).SelectMany(i => BitConverter.GetBytes(i * 0.5f)).ToArray()));
        Loads(() => CheckDataset(Npy.ReadPair(path, labels), classification: true, bytes: false));
        Loads(() => CheckDataset(Npy.ReadPair(features, path), classification: true, bytes: false));
        Loads(() => CheckDataset(Npy.ReadPair(features, path, classification: false), classification: false, bytes: false));
    }

    /// <summary>A version 1.0 .npy file (C order) with the dtype <paramref name="descr"/> and <paramref name="shape"/>.</summary>
    public static byte[] NpyBytes(string descr, int[] shape, byte[] data, int major = 1)
    {
        string tuple = shape.Length == 1 ? $"{shape[0]}," : string.Join(", ", shape);
        string dict = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': ({tuple}), }}";
        int preamble = major == 1 ? 10 : 12;
        int total = (preamble + dict.Length + 1 + 63) / 64 * 64;
        string header = dict.PadRight(total - preamble - 1) + "\n";
        var b = new byte[preamble + header.Length + data.Length];
        b[0] = 0x93;
        Encoding.ASCII.GetBytes("NUMPY").CopyTo(b, 1);
        b[6] = (byte)major;
        if (major == 1) BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(8), (ushort)header.Length);
        else BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(8), (uint)header.Length);
        Encoding.Latin1.GetBytes(header).CopyTo(b, preamble);
        data.CopyTo(b, preamble + header.Length);
        return b;
    }

    /// <summary>What every loaded dataset must be: samples and width > 0, features [count, width], finite, labels in range or targets [count, outputs].</summary>
    private static void CheckDataset(Dataset d, bool classification, bool bytes)
    {
        string? problem = DatasetProblem(d, classification, bytes);
        if (problem is not null) throw new FuzzOracleException($"the loader returned a dataset, but {problem}.");
    }

    private static string? DatasetProblem(Dataset d, bool classification, bool bytes)
    {
        if (d.Width <= 0) return $"its width is {d.Width}";
        if (d.Count <= 0) return $"it has {d.Count} samples";
        if (d.Features.LongLength != (long)d.Count * d.Width) return $"it has {d.Features.LongLength} feature values for {d.Count} samples of width {d.Width}";
        for (int i = 0; i < d.Features.Length; i++)
        {
            float v = d.Features[i];
            if (!float.IsFinite(v)) return $"feature {i} is {v}";
            if (bytes && (v < 0 || v > 255 || v != MathF.Floor(v))) return $"feature {i} is {v}, not a byte";
        }
        if (d.Outputs < 1) return $"it has {d.Outputs} outputs";
        if (classification)
        {
            if (d.Labels is null || d.Targets is not null) return "a classification dataset has no labels, or has targets";
            if (d.Labels.Length != d.Count) return $"it has {d.Labels.Length} labels for {d.Count} samples";
            for (int i = 0; i < d.Labels.Length; i++)
                if (d.Labels[i] < 0 || d.Labels[i] >= d.Outputs) return $"label {d.Labels[i]} of sample {i} is outside [0, {d.Outputs})";
            return null;
        }
        if (d.Targets is null || d.Labels is not null) return "a regression dataset has no targets, or has labels";
        if (d.Targets.LongLength != (long)d.Count * d.Outputs) return $"it has {d.Targets.LongLength} targets for {d.Count} samples of {d.Outputs} outputs";
        for (int i = 0; i < d.Targets.Length; i++)
            if (!float.IsFinite(d.Targets[i])) return $"target {i} is {d.Targets[i]}";
        return null;
    }

    // ---- safetensors: weights and training checkpoints ----

    private static void RunSafeTensors(string path, bool training)
    {
        SafeTensorsFile? file = null;
        Loads(() =>
        {
            file = SafeTensorsFile.Read(path);
            foreach (var t in file.Tensors.Values)
            {
                var values = file.ReadFloat(t.Name);
                if (values.LongLength != t.Elements || values.Any(v => !float.IsFinite(v)))
                    throw new FuzzOracleException($"ReadFloat('{t.Name}') gave {values.LongLength} values (or one not finite) for shape [{string.Join(", ", t.Shape)}].");
            }
        });
        ModelSpec? spec = null;
        Loads(() => spec = Checkpoint.ReadSpec(path));
        if (!training && spec is not null && Buildable(spec, null))
        {
            using var fresh = new Model(spec, new TrainingOptions { Loss = spec.Loss, MaxBatch = 1, Threads = 1 });
            LoadInto(fresh, path, m => Checkpoint.LoadWeights(m, path), "LoadWeights (a fresh model of ReadSpec's spec)", file);
        }
        if (training)
        {
            CheckpointInfo? info = null;
            Loads(() => info = Checkpoint.ReadInfo(path));
            if (info is not null && Buildable(info.Spec, info.Options))
            {
                using var fresh = new Model(info.Spec, OnThisMachine(info.Options));
                bool loaded = LoadInto(fresh, path, m => Checkpoint.LoadTraining(m, path), "LoadTraining (a fresh model of ReadInfo's description)", file);
                if (loaded && fresh.StepCount != info.Step)
                    throw new FuzzOracleException($"LoadTraining restored step {fresh.StepCount}; ReadInfo says {info.Step}.");
            }
        }
        // Every model file as the CLI reads one: a state_dict with the default choices (an ArgumentException for choices that
        // contradict the file is documented), then the weights loaded by the names ModelFile.Read gives.
        ModelFileInfo? mf = null;
        bool stateDict = file is not null && ModelFile.IsStateDict(file);
        // A state_dict first with no activations, then with ReLU after every hidden layer (modules between the Linears).
        foreach (var choices in stateDict ? StateDictAttempts : [null])
        {
            try
            {
                Loads(() => mf = ModelFile.Read(path, choices));
                break;
            }
            catch (ArgumentException e) when (e.ParamName == "choices")
            {
                if (s_verbose) Console.Error.WriteLine($"  refused: {e.Message}");
            }
        }
        if (mf is not null && Buildable(mf.Spec, null))
        {
            using var fresh = new Model(mf.Spec, new TrainingOptions { Loss = mf.Spec.Loss, MaxBatch = 1, Threads = 1 });
            LoadInto(fresh, path, m => Checkpoint.LoadWeights(m, mf), "LoadWeights (a fresh model of ModelFile.Read's description)", file, mf.Tensors);
        }
        if (s_fixed is null)
        {
            s_fixed = new Model(FixedSpec, new TrainingOptions { MaxBatch = 1, Threads = 1, Seed = 7 });
            s_fixedInitial = new float[s_fixed.ParameterSectionLength];
            s_fixed.CopyParametersTo(s_fixedInitial);
        }
        try
        {
            LoadInto(s_fixed, path, m => Checkpoint.LoadWeights(m, path), "LoadWeights (the fixed model)", file);
        }
        finally
        {
            s_fixed.CopyParametersFrom(s_fixedInitial);
        }
    }

    /// <summary>
    /// Loads into <paramref name="model"/>: true when it loaded (then every parameter equals the file's tensor of its name);
    /// false when refused, and then the parameters and step count must be as they were.
    /// </summary>
    private static StateDictChoices?[] StateDictAttempts => [new StateDictChoices(), new StateDictChoices { Activations = [Activation.Parse("relu")] }];

    private static bool LoadInto(Model model, string path, Action<Model> load, string what, SafeTensorsFile? file,
        IReadOnlyList<(string Weight, string Bias)>? fileNames = null)
    {
        var before = new float[model.ParameterSectionLength];
        model.CopyParametersTo(before);
        long step = model.StepCount;
        if (!Loads(() => load(model)))
        {
            var after = new float[model.ParameterSectionLength];
            model.CopyParametersTo(after);
            if (!before.AsSpan().SequenceEqual(after) || model.StepCount != step)
                throw new FuzzOracleException($"{what} refused '{path}' but changed the model.");
            return false;
        }
        if (file is null) throw new FuzzOracleException($"{what} loaded '{path}', which SafeTensorsFile.Read refuses.");
        if (fileNames is not null)
        {
            for (int l = 0; l < model.Spec.Layers.Count; l++)
            {
                var (w, b) = model.Spec.ParameterNames(l);
                if (!model.Parameter(w).SequenceEqual(file.ReadFloat(fileNames[l].Weight)) || !model.Parameter(b).SequenceEqual(file.ReadFloat(fileNames[l].Bias)))
                    throw new FuzzOracleException($"{what} loaded '{path}', but layer {l} differs from the file's tensors '{fileNames[l].Weight}' and '{fileNames[l].Bias}'.");
            }
            return true;
        }
        foreach (var p in model.Parameters)
        {
            if (!file.Tensors.ContainsKey(p.Name)) throw new FuzzOracleException($"{what} loaded '{path}', which has no tensor '{p.Name}'.");
            if (!model.Parameter(p.Name).SequenceEqual(file.ReadFloat(p.Name)))
                throw new FuzzOracleException($"{what} loaded '{path}', but parameter '{p.Name}' differs from the file's tensor.");
        }
        return true;
    }

    /// <summary>One thread and the plain CPU path: whether this machine has OpenBLAS, a GPU or AVX-512 is not what is fuzzed.</summary>
    private static TrainingOptions OnThisMachine(TrainingOptions o)
    {
        o = o with { Threads = 1 };
        if (Enum.IsDefined(o.Backend)) o = o with { Backend = Backend.Cpu };
        if (o.Isa is { } isa && Enum.IsDefined(isa)) o = o with { Isa = null };
        return o;
    }

    /// <summary>Below the caps: a description the target builds a model for (nulls pass: building from them is tested too).</summary>
    public static bool Buildable(ModelSpec spec, TrainingOptions? options)
    {
        if (spec.InputWidth > MaxWidth || spec.Layers is null || spec.Layers.Count > MaxLayers || spec.Layers.Any(l => l is null || l.Units > MaxWidth)) return false;
        long parameters = 0, widths = spec.InputWidth;
        for (int l = 0, inW = spec.InputWidth; l < spec.Layers.Count; inW = spec.Layers[l].Units, l++)
        {
            parameters += ((long)inW + 1) * spec.Layers[l].Units;
            widths += spec.Layers[l].Units;
        }
        int batch = options?.MaxBatch ?? 1;
        return parameters <= MaxParameters && batch <= MaxBatch && (long)batch * widths <= MaxActivations;
    }

    /// <summary>Describes an exception as afl++ triage wants it: type, the first frame in Backprop code, message.</summary>
    public static string Describe(Exception e)
    {
        var frames = new System.Diagnostics.StackTrace(e, fNeedFileInfo: true).GetFrames();
        var origin = frames.FirstOrDefault(f => f.GetMethod()?.DeclaringType?.FullName?.StartsWith("Backprop.Engine", StringComparison.Ordinal) == true) ?? frames.FirstOrDefault();
        string where = origin?.GetMethod() is { } m
            ? $"{m.DeclaringType?.FullName}.{m.Name}{(origin.GetFileName() is { } file ? $" ({Path.GetFileName(file)}:{origin.GetFileLineNumber().ToString(CultureInfo.InvariantCulture)})" : "")}"
            : "?";
        return $"{e.GetType().FullName} at {where}: {e.Message}";
    }
}
