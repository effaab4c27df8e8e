// Every file under tests/fuzz-corpus/<target>/ (the seeds, and what afl++ found: ./build.sh Fuzz, fuzz/README.md)
// through the entry points that target's fuzz harness runs (fuzz/Backprop.Fuzz/Targets.cs), in this process and without
// afl++: each must load, or be refused with the loader's documented exception (InvalidDataException; the CSV reader's
// ArgumentException for a label column asked for by name that the file lacks). What loads must be consistent, and a
// refused load must leave the model unchanged. A find that shows a loader defect stays in the corpus and its case is
// ignored through KnownDefects ("known defect: <exception>: <message>") until the loader is fixed; then remove the entry.
using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using Backprop.Engine;
using Backprop.Engine.Checkpoints;
using Backprop.Engine.Data;
using Backprop.Kernels;
using NUnit.Framework;

namespace Backprop.Tests.Fuzz;

[TestFixture]
public class FuzzCorpusTests
{
    private static readonly string[] Targets = ["idx", "csv", "npy", "safetensors", "checkpoint"];

    /// <summary>Corpus files (target/name) that show a loader defect, with the reason their case is ignored.</summary>
    private static readonly Dictionary<string, string> KnownDefects = new(StringComparer.Ordinal)
    {
    };

    // The same caps as the harness: models are built only below them.
    private const int MaxWidth = 4096, MaxBatch = 4096, MaxLayers = 16;
    private const long MaxParameters = 1 << 20, MaxActivations = 1 << 22;

    private static string CorpusRoot => Path.Combine(AppContext.BaseDirectory, "fuzz-corpus");

    private string _dir = "";

    [SetUp]
    public void SetUp() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "backprop-fuzz-corpus-" + Guid.NewGuid().ToString("N")));

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, true);

    public static IEnumerable<TestCaseData> Corpus()
    {
        foreach (var target in Targets)
        {
            string dir = Path.Combine(CorpusRoot, target);
            if (!Directory.Exists(dir)) continue;
            foreach (var file in Directory.GetFiles(dir).Select(Path.GetFileName).Order(StringComparer.Ordinal))
            {
                string key = $"{target}/{file}";
                var data = new TestCaseData(target, file).SetName($"Input_LoadsOrIsRefusedAsDocumented({key})");
                if (KnownDefects.TryGetValue(key, out var reason)) data.Ignore(reason);
                yield return data;
            }
        }
    }

    [Test]
    public void Corpus_HasSeedsForEveryTarget()
    {
        foreach (var target in Targets)
        {
            string dir = Path.Combine(CorpusRoot, target);
            Assert.That(Directory.Exists(dir) && Directory.GetFiles(dir, "seed-*").Length > 0, Is.True, $"no seeds in {dir} (is tests/fuzz-corpus copied to the output?)");
        }
        foreach (var key in KnownDefects.Keys)
            Assert.That(File.Exists(Path.Combine(CorpusRoot, key)), Is.True, $"KnownDefects names {key}, which is not in the corpus");
    }

    [TestCaseSource(nameof(Corpus))]
    public void Input_LoadsOrIsRefusedAsDocumented(string target, string file)
    {
        string path = Path.Combine(_dir, "input");
        File.Copy(Path.Combine(CorpusRoot, target, file), path);
        var run = new Run();
        switch (target)
        {
            case "idx": IdxInput(run, path); break;
            case "csv": CsvInput(run, path); break;
            case "npy": NpyInput(run, path); break;
            default: SafeTensors(run, path, training: target == "checkpoint"); break;
        }
        Assert.That(run.Failures, Is.Empty, $"{target}/{file}:\n" + string.Join("\n", run.Failures));
    }

    /// <summary>The stages of one input: each loads, is refused as documented, or is recorded as a failure.</summary>
    private sealed class Run
    {
        public List<string> Failures { get; } = [];

        /// <summary>True when <paramref name="load"/> loaded; false when it was refused as documented or failed (recorded).</summary>
        public bool Stage(string stage, Action load, Func<Exception, bool>? alsoDocumented = null)
        {
            try
            {
                load();
                return true;
            }
            catch (InvalidDataException)
            {
                return false;
            }
            catch (Exception e) when (alsoDocumented?.Invoke(e) == true)
            {
                return false;
            }
            catch (Exception e)
            {
                var frame = new System.Diagnostics.StackTrace(e, true).GetFrames()
                    .FirstOrDefault(f => f.GetMethod()?.DeclaringType?.FullName?.StartsWith("Backprop.Engine", StringComparison.Ordinal) == true);
                string origin = frame?.GetMethod() is { } m ? $"{m.DeclaringType!.FullName}.{m.Name}{(frame.GetFileName() is { } f ? $" ({Path.GetFileName(f)}:{frame.GetFileLineNumber()})" : "")}" : "?";
                Failures.Add($"{stage} threw {e.GetType().FullName} at {origin}: {e.Message}");
                return false;
            }
        }

        public void Check(string stage, string? problem)
        {
            if (problem is not null) Failures.Add($"{stage}: {problem}");
        }
    }

    private string Partner(string name, byte[] bytes)
    {
        string p = Path.Combine(_dir, name);
        File.WriteAllBytes(p, bytes);
        return p;
    }

    // ---- IDX ----

    private void IdxInput(Run run, string path)
    {
        var bytes = File.ReadAllBytes(path);
        IdxArray? a = null;
        bool loaded = run.Stage("Idx.Read", () => a = Idx.Read(path));
        if (a is not null && a.Data.LongLength != a.Dimensions.Aggregate(1L, (p, d) => p * d))
            run.Check("Idx.Read", $"dimensions [{string.Join(", ", a.Dimensions)}] with {a.Data.LongLength} data bytes");
        if (bytes is not [0x1f, 0x8b, ..])
        {
            using var ms = new MemoryStream();
            using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true)) gz.Write(bytes);
            string gzPath = Partner("input.gz", ms.ToArray());
            IdxArray? b = null;
            bool loadedGz = run.Stage("Idx.Read (gzipped)", () => b = Idx.Read(gzPath));
            if (loaded != loadedGz) run.Check("Idx.Read", $"{(loaded ? "loads" : "refuses")} the raw file but {(loadedGz ? "loads" : "refuses")} it gzipped");
            else if (a is not null && (!a.Dimensions.AsSpan().SequenceEqual(b!.Dimensions) || !a.Data.AsSpan().SequenceEqual(b.Data)))
                run.Check("Idx.Read", "the raw and the gzipped file load differently");
        }
        if (a is null || a.Count > MaxBatch) return;
        if (a.Dimensions.Length >= 2)
        {
            string labels = Partner("labels.idx", IdxBytes([a.Count], Enumerable.Range(0, a.Count).Select(i => (byte)(i % 3)).ToArray()));
            run.Stage("Idx.ReadPair (input as images)", () => run.Check("Idx.ReadPair", Problem(Idx.ReadPair(path, labels), true, true)));
            run.Stage("Idx.ReadPair (input as images, 2 classes)", () => run.Check("Idx.ReadPair", Problem(Idx.ReadPair(path, labels, classes: 2), true, true)));
        }
        else
        {
            string images = Partner("images.idx", IdxBytes([a.Count, 2, 2], new byte[a.Count * 4]));
            run.Stage("Idx.ReadPair (input as labels)", () => run.Check("Idx.ReadPair", Problem(Idx.ReadPair(images, path), true, true)));
            run.Stage("Idx.ReadPair (input as labels, 10 classes)", () => run.Check("Idx.ReadPair", Problem(Idx.ReadPair(images, path, classes: 10), true, true)));
        }
    }

    private static byte[] IdxBytes(int[] dims, byte[] data)
    {
        var b = new byte[4 + 4 * dims.Length + data.Length];
        b[2] = 0x08;
        b[3] = (byte)dims.Length;
        for (int i = 0; i < dims.Length; i++) BinaryPrimitives.WriteInt32BigEndian(b.AsSpan(4 + 4 * i), dims[i]);
        data.CopyTo(b, 4 + 4 * dims.Length);
        return b;
    }

    // ---- CSV ----

    private static void CsvInput(Run run, string path)
    {
        run.Stage("Csv.Read", () => run.Check("Csv.Read", Problem(Csv.Read(path), true, false)));
        run.Stage("Csv.Read (regression)", () => run.Check("Csv.Read (regression)", Problem(Csv.Read(path, classification: false), false, false)));
        run.Stage("Csv.Read (label column 0)", () => run.Check("Csv.Read (label column 0)", Problem(Csv.Read(path, "0"), true, false)));
        run.Stage("Csv.Read (no header)", () => run.Check("Csv.Read (no header)", Problem(Csv.Read(path, "-1", hasHeader: false), true, false)));
        run.Stage("Csv.Read (header, regression on column 1)", () => run.Check("Csv.Read (header)", Problem(Csv.Read(path, "1", classification: false, hasHeader: true), false, false)));
        run.Stage("Csv.Read (label column by name)", () => run.Check("Csv.Read (by name)", Problem(Csv.Read(path, "label"), true, false)),
            e => e.GetType() == typeof(ArgumentException) && e.Message.Contains("label", StringComparison.Ordinal));
    }

    // ---- NPY ----

    private void NpyInput(Run run, string path)
    {
        NpyArray? a = null;
        run.Stage("Npy.Read", () => a = Npy.Read(path));
        if (a is null) return;
        if (a.Data.LongLength != a.Shape.Aggregate(1L, (p, d) => p * d) || a.Data.Any(v => !double.IsFinite(v)))
            run.Check("Npy.Read", $"shape ({string.Join(", ", a.Shape)}) with {a.Data.LongLength} values, or one not finite");
        if (a.Shape.Length == 0 || a.Shape[0] > MaxBatch) return;
        int n = a.Shape[0];
        string labels = Partner("labels.npy", NpyBytes("<i8", $"{n},", Enumerable.Range(0, n).SelectMany(i => BitConverter.GetBytes((long)(i % 3))).ToArray()));
        string features = Partner("features.npy", NpyBytes("<f4", $"{n}, 2", Enumerable.Range(0, 2 * n).SelectMany(i => BitConverter.GetBytes(i * 0.5f)).ToArray()));
        run.Stage("Npy.ReadPair (input as features)", () => run.Check("Npy.ReadPair", Problem(Npy.ReadPair(path, labels), true, false)));
        run.Stage("Npy.ReadPair (input as labels)", () => run.Check("Npy.ReadPair", Problem(Npy.ReadPair(features, path), true, false)));
        run.Stage("Npy.ReadPair (input as targets)", () => run.Check("Npy.ReadPair", Problem(Npy.ReadPair(features, path, classification: false), false, false)));
    }

    private static byte[] NpyBytes(string descr, string shape, byte[] data)
    {
        string dict = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': ({shape}), }}";
        int total = (10 + dict.Length + 1 + 63) / 64 * 64;
        string header = dict.PadRight(total - 11) + "\n";
        var b = new byte[10 + header.Length + data.Length];
        b[0] = 0x93;
        Encoding.ASCII.GetBytes("NUMPY").CopyTo(b, 1);
        b[6] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(8), (ushort)header.Length);
        Encoding.ASCII.GetBytes(header).CopyTo(b, 10);
        data.CopyTo(b, 10 + header.Length);
        return b;
    }

    /// <summary>Null when the dataset is self-consistent, else what is wrong with it.</summary>
    private static string? Problem(Dataset d, bool classification, bool bytes)
    {
        if (d.Width <= 0 || d.Count <= 0 || d.Outputs < 1) return $"width {d.Width}, {d.Count} samples, {d.Outputs} outputs";
        if (d.Features.LongLength != (long)d.Count * d.Width) return $"{d.Features.LongLength} feature values for {d.Count} samples of width {d.Width}";
        for (int i = 0; i < d.Features.Length; i++)
            if (!float.IsFinite(d.Features[i]) || (bytes && (d.Features[i] < 0 || d.Features[i] > 255 || d.Features[i] != MathF.Floor(d.Features[i]))))
                return $"feature {i} is {d.Features[i]}";
        if (classification)
        {
            if (d.Labels is null || d.Targets is not null || d.Labels.Length != d.Count) return "labels missing, of the wrong count, or targets present";
            int bad = Array.FindIndex(d.Labels, l => l < 0 || l >= d.Outputs);
            return bad < 0 ? null : $"label {d.Labels[bad]} of sample {bad} is outside [0, {d.Outputs})";
        }
        if (d.Targets is null || d.Labels is not null || d.Targets.LongLength != (long)d.Count * d.Outputs) return "targets missing, of the wrong count, or labels present";
        return d.Targets.All(float.IsFinite) ? null : "a target is not finite";
    }

    // ---- safetensors ----

    private static void SafeTensors(Run run, string path, bool training)
    {
        SafeTensorsFile? file = null;
        run.Stage("SafeTensorsFile.Read + ReadFloat", () =>
        {
            file = SafeTensorsFile.Read(path);
            foreach (var t in file.Tensors.Values)
                if (file.ReadFloat(t.Name) is var v && (v.LongLength != t.Elements || !v.All(float.IsFinite)))
                    run.Check("ReadFloat", $"tensor '{t.Name}' gave {v.LongLength} values (or one not finite) for shape [{string.Join(", ", t.Shape)}]");
        });
        ModelSpec? spec = null;
        run.Stage("Checkpoint.ReadSpec", () => spec = Checkpoint.ReadSpec(path));
        if (!training && spec is not null && Buildable(spec, null))
        {
            Model? fresh = null;
            if (run.Stage("new Model (ReadSpec's spec)", () => fresh = new Model(spec, new TrainingOptions { Loss = spec.Loss, MaxBatch = 1, Threads = 1 })))
                using (fresh) LoadInto(run, fresh!, "Checkpoint.LoadWeights (fresh model)", m => Checkpoint.LoadWeights(m, path), file);
        }
        if (training)
        {
            CheckpointInfo? info = null;
            run.Stage("Checkpoint.ReadInfo", () => info = Checkpoint.ReadInfo(path));
            if (info is not null && Buildable(info.Spec, info.Options))
            {
                Model? fresh = null;
                if (run.Stage("new Model (ReadInfo's description)", () => fresh = new Model(info.Spec, OnThisMachine(info.Options))))
                    using (fresh)
                        if (LoadInto(run, fresh!, "Checkpoint.LoadTraining", m => Checkpoint.LoadTraining(m, path), file) && fresh!.StepCount != info.Step)
                            run.Check("Checkpoint.LoadTraining", $"restored step {fresh.StepCount}; ReadInfo says {info.Step}");
            }
        }
        // Every model file as the CLI reads one: a state_dict with the default choices (its ArgumentException for choices that
        // contradict the file is documented), then the weights loaded by the names ModelFile.Read gives.
        ModelFileInfo? mf = null;
        bool stateDict = file is not null && ModelFile.IsStateDict(file);
        // A state_dict first with no activations, then with ReLU after every hidden layer (modules between the Linears).
        foreach (var choices in stateDict ? new StateDictChoices?[] { new StateDictChoices(), new StateDictChoices { Activations = [Activation.Parse("relu")] } } : [null])
        {
            bool refusedChoices = false;
            run.Stage("ModelFile.Read", () => mf = ModelFile.Read(path, choices), e => refusedChoices = e is ArgumentException { ParamName: "choices" });
            if (!refusedChoices) break;
        }
        if (mf is not null && Buildable(mf.Spec, null))
        {
            Model? fresh = null;
            if (run.Stage("new Model (ModelFile.Read's spec)", () => fresh = new Model(mf.Spec, new TrainingOptions { Loss = mf.Spec.Loss, MaxBatch = 1, Threads = 1 })))
                using (fresh) LoadInto(run, fresh!, "Checkpoint.LoadWeights (ModelFile.Read's description)", m => Checkpoint.LoadWeights(m, mf), file, mf.Tensors);
        }
        using var fixedModel = new Sequential(6).Dense(5, "relu").Dense(3).Compile(new TrainingOptions { MaxBatch = 1, Threads = 1, Seed = 7 });
        LoadInto(run, fixedModel, "Checkpoint.LoadWeights (fixed 6-5-3 model)", m => Checkpoint.LoadWeights(m, path), file);
    }

    /// <summary>Loads into <paramref name="model"/>: when it loads, the parameters are the file's tensors; when refused, the model is unchanged.</summary>
    private static bool LoadInto(Run run, Model model, string stage, Action<Model> load, SafeTensorsFile? file,
        IReadOnlyList<(string Weight, string Bias)>? fileNames = null)
    {
        var before = Snapshot(model);
        if (!run.Stage(stage, () => load(model)))
        {
            var after = Snapshot(model);
            if (before.Step != after.Step || !before.Parameters.AsSpan().SequenceEqual(after.Parameters) || !before.State.AsSpan().SequenceEqual(after.State))
                run.Check(stage, "refused the file but changed the model");
            return false;
        }
        if (file is null)
        {
            run.Check(stage, "loaded a file SafeTensorsFile.Read refuses");
            return true;
        }
        if (fileNames is not null)
        {
            for (int l = 0; l < model.Spec.Layers.Count; l++)
            {
                var (w, b) = model.Spec.ParameterNames(l);
                if (!model.Parameter(w).SequenceEqual(file.ReadFloat(fileNames[l].Weight)) || !model.Parameter(b).SequenceEqual(file.ReadFloat(fileNames[l].Bias)))
                    run.Check(stage, $"loaded, but layer {l} is not the file's tensors '{fileNames[l].Weight}' and '{fileNames[l].Bias}'");
            }
            return true;
        }
        foreach (var p in model.Parameters)
            if (!file.Tensors.ContainsKey(p.Name) || !model.Parameter(p.Name).SequenceEqual(file.ReadFloat(p.Name)))
                run.Check(stage, $"loaded, but parameter '{p.Name}' is not the file's tensor");
        return true;
    }

    private static (float[] Parameters, float[] State, long Step) Snapshot(Model m)
    {
        var p = new float[m.ParameterSectionLength];
        m.CopyParametersTo(p);
        var state = new List<float>();
        for (int k = 0; k < m.Plan.StateSlots; k++)
            foreach (var layer in m.Plan.Layers)
            {
                state.AddRange(m.ReadState(k, layer.Weight).ToArray());
                state.AddRange(m.ReadState(k, layer.Bias).ToArray());
            }
        return (p, state.ToArray(), m.StepCount);
    }

    private static TrainingOptions OnThisMachine(TrainingOptions o)
    {
        o = o with { Threads = 1 };
        if (Enum.IsDefined(o.Backend)) o = o with { Backend = Backend.Cpu };
        if (o.Isa is { } isa && Enum.IsDefined(isa)) o = o with { Isa = null };
        return o;
    }

    private static bool Buildable(ModelSpec spec, TrainingOptions? options)
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
}
