// Seeded mutants of real weights files and training checkpoints through the real loaders: each mutant
// either loads or is refused with InvalidDataException, and a refused load leaves the model as it was.
// Mutant i of a file type is drawn from its own Random(Seed, type, i), so a failure reproduces from the
// printed seed and index alone (BACKPROP_MUTATION_SEED=n and BACKPROP_MUTATION_COUNT=n explore further).
// The allow-list KnownOutsideScope (failures from outside the reader, printed as "known") is empty: everything must hold.
// Kinds: bit flips, byte overwrites, truncations, insertions, deletions, header-length edits, header
// edits (dtype, a shape dim, an offset, a key removed, duplicated or added, the metadata and the JSON
// inside it), single characters of the header replaced, and NaN/±∞ or random bits put into the data.
using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Backprop.Engine;
using Backprop.Engine.Checkpoints;
using NUnit.Framework;

namespace Backprop.Tests.Checkpoints;

[TestFixture]
[NonParallelizable]
public class SafeTensorsMutationTests
{
    private const int DefaultSeed = 20_260_611;
    private const int DefaultMutantsPerFile = 600;

    private string _dir = "";

    [SetUp]
    public void SetUp() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "backprop-mut-" + Guid.NewGuid().ToString("N")));

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, true);

    private static int Seed => FromEnvironment("BACKPROP_MUTATION_SEED", DefaultSeed);

    private static int MutantsPerFile => FromEnvironment("BACKPROP_MUTATION_COUNT", DefaultMutantsPerFile);

    private static int FromEnvironment(string name, int fallback) =>
        int.TryParse(Environment.GetEnvironmentVariable(name), NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) ? v : fallback;

    private static Model Net() => new Sequential(6).Dense(5, "relu").Dense(3).Compile(new TrainingOptions { Threads = 1 });

    private static void Train(Model m, int steps)
    {
        for (int t = 0; t < steps; t++) m.Step(TestData.Floats(4 * 6, 300 + t), [0, 1, 2, 1]);
    }

    /// <summary>Everything a model holds that a load may write: parameters, optimizer state, step count.</summary>
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

    private static bool Same((float[] Parameters, float[] State, long Step) a, (float[] Parameters, float[] State, long Step) b) =>
        a.Step == b.Step && a.Parameters.AsSpan().SequenceEqual(b.Parameters) && a.State.AsSpan().SequenceEqual(b.State);

    [TestCase("weights")]
    [TestCase("training")]
    public void EveryMutant_LoadsOrIsRefusedWithInvalidDataException(string kind)
    {
        var clock = Stopwatch.StartNew();
        using var model = Net();
        Train(model, 3);
        string original = Path.Combine(_dir, "original.safetensors");
        if (kind == "weights") Checkpoint.SaveWeights(model, original);
        else Checkpoint.SaveTraining(model, original, new TrainingPosition(1, 2));
        var bytes = File.ReadAllBytes(original);
        // LoadWeights' target holds other values than the file, so a partial copy shows; it is put back after each mutant.
        using var target = Net();
        target.CopyParametersFrom(TestData.Floats(target.ParameterSectionLength, 7));

        int seed = Seed, count = MutantsPerFile, loaded = 0;
        var failures = new List<string>();
        var known = new List<(string Key, string Line)>();
        var kinds = new SortedDictionary<string, int>(StringComparer.Ordinal);
        Assert.That(RunLoaders(kind, original, new Outcome("the unmutated file", failures, known), target) && failures.Count == 0 && known.Count == 0, Is.True,
            "the unmutated file must load everywhere: " + string.Join("\n", failures));
        string path = Path.Combine(_dir, "mutant.safetensors");
        for (int i = 0; i < count; i++)
        {
            var r = new Random(unchecked(seed * 1_000_003 + (kind == "weights" ? 0 : 500_000) + i) & int.MaxValue);   // not HashCode: it is salted per process
            var (what, mutant) = Mutate(bytes, r);
            string category = what[..what.IndexOf(' ', StringComparison.Ordinal)];
            kinds[category] = kinds.GetValueOrDefault(category) + 1;
            File.WriteAllBytes(path, mutant);
            var outcome = new Outcome($"seed {seed}, {kind} mutant {i} ({what})", failures, known);
            if (RunLoaders(kind, path, outcome, target)) loaded++;
        }
        TestContext.Out.WriteLine($"{kind}: {count} mutants (seed {seed}) in {clock.ElapsedMilliseconds} ms: {loaded} loaded, {count - loaded} refused; "
            + string.Join(", ", kinds.Select(k => $"{k.Key} {k.Value}")));
        foreach (var g in known.GroupBy(k => k.Key))
            TestContext.Out.WriteLine($"known, to be fixed outside the reader: {g.Count()} x {g.Key}; first: {g.First().Line}");
        Assert.That(failures, Is.Empty, $"{failures.Count} mutants escaped as something other than InvalidDataException, or changed a model they were refused by:\n"
            + string.Join("\n", failures.Take(20)));
        Assert.That(count - loaded, Is.GreaterThan(count / 2), "most mutants should be refused; are the mutations reaching the file?");
    }

    /// <summary>
    /// Every loader on one mutant: the reader and every tensor read as float; the spec and the checkpoint description; a fresh
    /// model built from what they describe, loaded (LoadWeights or LoadTraining); LoadWeights into a model of the original spec.
    /// True when the mutant loaded (a weights file by LoadWeights, a checkpoint by LoadTraining).
    /// </summary>
    private static bool RunLoaders(string kind, string path, Outcome outcome, Model target)
    {
        outcome.Run("SafeTensorsFile.Read + ReadFloat", () =>
        {
            var f = SafeTensorsFile.Read(path);
            foreach (var name in f.Tensors.Keys) f.ReadFloat(name);
        });
        ModelSpec? spec = null;
        outcome.Run("Checkpoint.ReadSpec", () => spec = Checkpoint.ReadSpec(path));
        CheckpointInfo? info = null;
        outcome.Run("Checkpoint.ReadInfo", () => info = Checkpoint.ReadInfo(path));
        bool loaded = false;
        if (kind == "weights" && spec is not null && Buildable(spec, null))
            loaded = IntoFresh(outcome, "ReadSpec's spec", () => new Model(spec, new TrainingOptions { Threads = 1 }), "Checkpoint.LoadWeights (fresh model)", m => Checkpoint.LoadWeights(m, path));
        if (kind == "training" && info is not null && Buildable(info.Spec, info.Options))
            loaded = IntoFresh(outcome, "ReadInfo's spec and options", () => new Model(info.Spec, OnThisMachine(info.Options)), "Checkpoint.LoadTraining", m => Checkpoint.LoadTraining(m, path));
        var initial = Snapshot(target);
        if (!outcome.Run("Checkpoint.LoadWeights", () => Checkpoint.LoadWeights(target, path)) && !Same(initial, Snapshot(target)))
            outcome.ChangedOnFailure("Checkpoint.LoadWeights");
        target.CopyParametersFrom(initial.Parameters);
        return loaded;
    }

    private static bool IntoFresh(Outcome outcome, string from, Func<Model> build, string stage, Action<Model> load)
    {
        Model? fresh = null;
        if (!outcome.Run($"new Model({from})", () => fresh = build())) return false;
        using (fresh)
        {
            var before = Snapshot(fresh!);
            if (outcome.Run(stage, () => load(fresh!))) return true;
            if (!Same(before, Snapshot(fresh!))) outcome.ChangedOnFailure(stage);
            return false;
        }
    }

    // One thread, and a defined backend or ISA replaced by the plain CPU path: whether this machine has OpenBLAS, a GPU or
    // AVX-512 is not what the test is about (undefined values stay, so a checkpoint's unchecked enums still show).
    private static TrainingOptions OnThisMachine(TrainingOptions o)
    {
        o = o with { Threads = 1 };
        if (Enum.IsDefined(o.Backend)) o = o with { Backend = Backend.Cpu };
        if (o.Isa is { } isa && Enum.IsDefined(isa)) o = o with { Isa = null };
        return o;
    }

    // A mutated description can ask for a model too big to build in a test (a digit added to a width); those stop at
    // ReadSpec/ReadInfo. Nulls pass: building from them is part of what is tested.
    private static bool Buildable(ModelSpec spec, TrainingOptions? options) =>
        spec.InputWidth <= 4096 && (spec.Layers is null || (spec.Layers.Count <= 16 && spec.Layers.All(l => l is null || l.Units <= 4096)))
        && (options is null || options.MaxBatch <= 4096);

    /// <summary>The result of running one mutant through the loaders.</summary>
    private sealed class Outcome(string mutant, List<string> failures, List<(string Key, string Line)> known)
    {
        private Exception? _refusal;

        /// <summary>Runs a loader; true when it loaded, false when it refused (InvalidDataException, or anything else, which is recorded).</summary>
        public bool Run(string stage, Action load)
        {
            try
            {
                load();
                return true;
            }
            catch (InvalidDataException e)
            {
                _refusal = e;
                return false;
            }
            catch (Exception e)
            {
                _refusal = e;
                string origin = Origin(e);
                string line = $"{mutant}: {stage} threw {e.GetType().FullName} at {origin}: {e.Message}";
                if (IsKnown(stage, e.GetType(), origin)) known.Add(($"{stage} threw {e.GetType().Name} at {origin}", line));
                else failures.Add(line);
                return false;
            }
        }

        /// <summary>Records that the loader just refused the file (<see cref="Run"/> returned false) yet changed the model.</summary>
        public void ChangedOnFailure(string stage)
        {
            string origin = Origin(_refusal!);
            string line = $"{mutant}: {stage} refused the file ({_refusal!.GetType().Name} at {origin}: {_refusal.Message}) but changed the model";
            if (IsKnown(stage, typeof(ModelChanged), origin)) known.Add(($"{stage} changed the model, refused at {origin}", line));
            else failures.Add(line);
        }

        private static bool IsKnown(string stage, Type type, string origin) =>
            KnownOutsideScope.Any(k => k.Stage == stage && k.Type.IsAssignableFrom(type) && k.Origins.Any(o => origin.StartsWith(o, StringComparison.Ordinal)));
    }

    /// <summary>Stands for "a refused load changed the model" in <see cref="KnownOutsideScope"/>; the origin is that of the refusal.</summary>
    private sealed class ModelChanged;

    /// <summary>The innermost frame of the engine's own code (Backprop.*, not the tests) in the exception's stack: where it came from.</summary>
    private static string Origin(Exception e)
    {
        foreach (var f in new StackTrace(e, false).GetFrames())
            if (f.GetMethod() is { DeclaringType: { } t } m && t.FullName!.StartsWith("Backprop.", StringComparison.Ordinal) && !t.FullName.StartsWith("Backprop.Tests.", StringComparison.Ordinal))
                return $"{t.FullName}.{m.Name}";
        return "(no engine frame)";
    }

    private sealed record KnownFailure(string Stage, Type Type, params string[] Origins);

    // Failures known to originate outside the reader and allowed for now: none (Checkpoint validates its metadata completely
    // and reads every tensor before copying any). An entry here lets its failure pass, printed as "known".
    private static readonly KnownFailure[] KnownOutsideScope = [];

    // ---- mutations ----

    private const string JsonChars = "{}[],:\" 0123456789-.eE\\ntu";

    private static (string What, byte[] Bytes) Mutate(byte[] original, Random r)
    {
        var b = (byte[])original.Clone();
        int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(b);
        int headerEnd = 8 + n;
        // Where most of the structure is: half of the byte-level edits land in the length and the header.
        int Anywhere() => r.Next(2) == 0 ? r.Next(headerEnd) : r.Next(b.Length);
        switch (r.Next(12))
        {
            case 0:
            {
                int flips = 1 + r.Next(3);
                var at = new List<string>();
                for (int k = 0; k < flips; k++)
                {
                    int p = Anywhere(), bit = r.Next(8);
                    b[p] ^= (byte)(1 << bit);
                    at.Add($"{p}:{bit}");
                }
                return ($"bitflip {string.Join(",", at)}", b);
            }
            case 1:
            {
                int p = Anywhere();
                byte v = (byte)r.Next(256);
                b[p] = v;
                return ($"overwrite byte {p} with 0x{v:X2}", b);
            }
            case 2:
            {
                int len = r.Next(3) == 0 ? r.Next(headerEnd + 1) : r.Next(b.Length);
                return ($"truncate to {len} of {b.Length} bytes", b[..len]);
            }
            case 3:
            {
                int p = Anywhere();
                var extra = new byte[1 + r.Next(r.Next(2) == 0 ? 4 : 16)];
                r.NextBytes(extra);
                if (r.Next(2) == 0) Array.Fill(extra, (byte)JsonChars[r.Next(JsonChars.Length)]);
                return ($"insert {extra.Length} bytes at {p}", [.. b[..p], .. extra, .. b[p..]]);
            }
            case 4:
            {
                int p = Anywhere(), len = Math.Min(b.Length - p, 1 + r.Next(16));
                return ($"delete {len} bytes at {p}", [.. b[..p], .. b[(p + len)..]]);
            }
            case 5:
            {
                ulong v = r.Next(8) switch
                {
                    0 => (ulong)n + 1,
                    1 => (ulong)n - 1,
                    2 => (ulong)n + 8,
                    3 => (ulong)n - 8,
                    4 => 0,
                    5 => (ulong)r.NextInt64(),
                    6 => (ulong)r.Next(b.Length),
                    _ => ulong.MaxValue - (ulong)r.Next(16),
                };
                BinaryPrimitives.WriteUInt64LittleEndian(b, v);
                return ($"header-length {n} -> {v}", b);
            }
            case 6:
            {
                // one character of the header text replaced by one of JSON's own (the length field kept)
                int p = 8 + r.Next(n);
                byte v = (byte)JsonChars[r.Next(JsonChars.Length)];
                b[p] = v;
                return ($"header-char {p - 8} -> '{(char)v}'", b);
            }
            case 7:
            {
                int elements = (b.Length - headerEnd) / 4;
                if (elements == 0) goto case 0;
                int e = r.Next(elements);
                float v = r.Next(4) switch { 0 => float.NaN, 1 => float.PositiveInfinity, 2 => float.NegativeInfinity, _ => BitConverter.Int32BitsToSingle(r.Next() | (r.Next(2) << 31)) };
                BinaryPrimitives.WriteSingleLittleEndian(b.AsSpan(headerEnd + 4 * e), v);
                return ($"data-value element {e} -> {v.ToString(CultureInfo.InvariantCulture)}", b);
            }
            default:
                return HeaderEdit(b, n, r);
        }
    }

    private static readonly JsonNode?[] OddValues =
    [
        null, true, -1, 0, 1, 3, 2147483648, 1.5, "x", "", "3", new JsonArray(), new JsonObject(), JsonValue.Create(1e300), JsonValue.Create(long.MaxValue),
    ];

    private static JsonNode? Odd(Random r) => OddValues[r.Next(OddValues.Length)]?.DeepClone();

    /// <summary>An edit of the parsed header, written back with a correct length (so the edit, not the length, is what the reader sees).</summary>
    private static (string What, byte[] Bytes) HeaderEdit(byte[] b, int n, Random r)
    {
        string text = Encoding.UTF8.GetString(b, 8, n);
        var data = b[(8 + n)..];
        var root = JsonNode.Parse(text)!.AsObject();
        var tensors = root.Where(p => p.Key != "__metadata__").Select(p => p.Key).ToList();
        var meta = root["__metadata__"]?.AsObject();
        string t = tensors[r.Next(tensors.Count)];
        var entry = root[t]!.AsObject();
        string what;
        switch (r.Next(10))
        {
            case 0:
            {
                JsonNode? v = r.Next(3) == 0 ? Odd(r) : new[] { "F16", "BF16", "F64", "I32", "I8", "U8", "BOOL", "f32", "F32 " }[r.Next(9)];
                entry["dtype"] = v;
                what = $"dtype of '{t}' -> {v?.ToJsonString() ?? "null"}";
                break;
            }
            case 1:
            {
                var shape = entry["shape"]!.AsArray();
                if (shape.Count == 0) // a scalar (a per-parameter step) gains a dimension
                {
                    shape.Add(r.Next(3));
                    what = $"shape of scalar '{t}' -> {shape.ToJsonString()}";
                    break;
                }
                int d = r.Next(shape.Count);
                int old = shape[d]!.GetValue<int>();
                JsonNode? v = r.Next(9) switch
                {
                    0 => old + 1,
                    1 => old - 1,
                    2 => 0,
                    3 => old * 2,
                    4 => -old,
                    5 => (long)int.MaxValue + 1,
                    6 => 1L << 40,
                    7 => old + 0.5,
                    _ => Odd(r),
                };
                shape[d] = v;
                what = $"shape-dim [{d}] of '{t}' {old} -> {v?.ToJsonString() ?? "null"}";
                break;
            }
            case 2:
            {
                var shape = entry["shape"]!.AsArray();
                if (r.Next(2) == 0 && shape.Count > 0) { shape.RemoveAt(r.Next(shape.Count)); what = $"shape-rank '{t}' lost a dim"; }
                else { shape.Insert(r.Next(shape.Count + 1), r.Next(3)); what = $"shape-rank '{t}' gained a dim"; }
                break;
            }
            case 3:
            {
                var off = entry["data_offsets"]!.AsArray();
                int k = r.Next(2);
                long old = off[k]!.GetValue<long>();
                JsonNode? v = r.Next(10) switch
                {
                    0 => old + 1,
                    1 => old - 1,
                    2 => old + 4,
                    3 => old - 4,
                    4 => -4,
                    5 => old + 1_000_000,
                    6 => long.MaxValue,
                    7 => old + 0.5,
                    8 => off[1 - k]!.GetValue<long>(),
                    _ => Odd(r),
                };
                off[k] = v;
                what = $"offset [{k}] of '{t}' {old} -> {v?.ToJsonString() ?? "null"}";
                break;
            }
            case 4:
            {
                // two tensors trade their offsets, or one takes another's
                string u = tensors[r.Next(tensors.Count)];
                var a = entry["data_offsets"]!.DeepClone();
                entry["data_offsets"] = root[u]!["data_offsets"]!.DeepClone();
                if (r.Next(2) == 0) root[u]!["data_offsets"] = a;
                what = $"offsets-swap '{t}' and '{u}' traded or copied";
                break;
            }
            case 5:
            {
                string[] fields = ["dtype", "shape", "data_offsets", "(tensor)", "(metadata)", "(metadata key)"];
                string f = fields[r.Next(fields.Length)];
                if (f == "(tensor)") root.Remove(t);
                else if (f == "(metadata)") root.Remove("__metadata__");
                else if (f == "(metadata key)" && meta is { Count: > 0 }) { f = meta.ElementAt(r.Next(meta.Count)).Key; meta.Remove(f); }
                else entry.Remove(f);
                what = $"remove {f} of '{t}'";
                break;
            }
            case 6:
            {
                string f = new[] { "offsets", "dtype2", "extra", "__metadata__" }[r.Next(4)];
                if (r.Next(2) == 0) { entry[f] = Odd(r); what = $"unknown-field '{f}' added to '{t}'"; }
                else
                {
                    string name = r.Next(2) == 0 ? "9.weight" : "optimizer.exp_avg.9.bias";
                    root[name] = new JsonObject { ["dtype"] = "F32", ["shape"] = new JsonArray(0), ["data_offsets"] = new JsonArray(0, 0) };
                    what = $"extra-tensor '{name}' (zero-size)";
                }
                break;
            }
            case 7:
            {
                // duplicate a key, textually (a JSON object model cannot hold duplicates)
                string s = root.ToJsonString();
                string probe = new[] { $"\"{t}\":", "\"dtype\":", "\"shape\":", "\"data_offsets\":", "\"__metadata__\":", "\"format\":" }[r.Next(6)];
                int at = s.IndexOf(probe, StringComparison.Ordinal);
                if (at < 0) goto case 5;
                int end = ValueEnd(s, at + probe.Length);
                s = s[..at] + s[at..end] + "," + s[at..];
                return ($"duplicate {probe.TrimEnd(':')} at {at}", Assemble(s, data));
            }
            case 8:
            {
                if (meta is null || meta.Count == 0) goto case 0;
                string key = meta.ElementAt(r.Next(meta.Count)).Key;
                if (r.Next(3) == 0 && meta.ContainsKey("step"))
                {
                    // the checkpoint's own numbers
                    key = new[] { "step", "epoch", "next_batch" }[r.Next(3)];
                    string v = new[] { "-1", "-2147483649", "x", "", " 1", "+1", "1e3", "0x10", "9223372036854775808", "2147483648", "0" }[r.Next(11)];
                    meta[key] = v;
                    what = $"metadata '{key}' -> \"{v}\"";
                    break;
                }
                switch (r.Next(4))
                {
                    case 0: meta[key] = Odd(r); what = $"metadata '{key}' -> {meta[key]?.ToJsonString() ?? "null"}"; break;
                    case 1: root["__metadata__"] = Odd(r); what = $"metadata __metadata__ -> {root["__metadata__"]?.ToJsonString() ?? "null"}"; break;
                    default:
                    {
                        string v = new[] { "", "-1", "x", "99999999999999999999", "2147483648", "1.5", "backprop-weights", "backprop-checkpoint", "{}", "null", "[]" }[r.Next(11)];
                        meta[key] = v;
                        what = $"metadata '{key}' -> \"{v}\"";
                        break;
                    }
                }
                break;
            }
            default:
            {
                // an edit inside the JSON a metadata value holds (spec, options)
                if (meta is null) goto case 0;
                var jsonKeys = meta.Where(p => p.Value!.GetValue<string>().StartsWith('{')).Select(p => p.Key).ToList();
                if (jsonKeys.Count == 0) goto case 8;
                string key = jsonKeys[r.Next(jsonKeys.Count)];
                var inner = JsonNode.Parse(meta[key]!.GetValue<string>())!;
                var leaves = new List<(JsonNode Parent, string? Name, int Index)>();
                Leaves(inner, leaves);
                var (parent, name, index) = leaves[r.Next(leaves.Count)];
                JsonNode? v = Odd(r);
                bool remove = r.Next(4) == 0;
                if (parent is JsonObject o) { if (remove) o.Remove(name!); else o[name!] = v; }
                else { var a = parent.AsArray(); if (remove) a.RemoveAt(index); else a[index] = v; }
                meta[key] = inner.ToJsonString();
                what = $"metadata-json '{key}' field {name ?? index.ToString(CultureInfo.InvariantCulture)} -> {(remove ? "removed" : v?.ToJsonString() ?? "null")}";
                break;
            }
        }
        return (what, Assemble(root.ToJsonString(), data));
    }

    private static void Leaves(JsonNode node, List<(JsonNode, string?, int)> into)
    {
        if (node is JsonObject o)
            foreach (var (k, v) in o.ToList())
            {
                into.Add((o, k, -1));
                if (v is JsonObject or JsonArray) Leaves(v, into);
            }
        else if (node is JsonArray a)
            for (int i = 0; i < a.Count; i++)
            {
                into.Add((a, null, i));
                if (a[i] is JsonObject or JsonArray) Leaves(a[i]!, into);
            }
    }

    // The end of the JSON value starting at (or after whitespace from) s[start], for the compact text JsonNode writes.
    private static int ValueEnd(string s, int start)
    {
        int depth = 0;
        bool inString = false;
        for (int i = start; i < s.Length; i++)
        {
            char c = s[i];
            if (inString) { if (c == '\\') i++; else if (c == '"') { inString = false; if (depth == 0) return i + 1; } continue; }
            if (c == '"') inString = true;
            else if (c is '{' or '[') depth++;
            else if (c is '}' or ']') { if (--depth == 0) return i + 1; if (depth < 0) return i; }
            else if (c == ',' && depth == 0) return i;
        }
        return s.Length;
    }

    private static byte[] Assemble(string header, byte[] data)
    {
        var json = Encoding.UTF8.GetBytes(header);
        int padded = (json.Length + 7) / 8 * 8;
        var b = new byte[8 + padded + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(b, (ulong)padded);
        json.CopyTo(b, 8);
        b.AsSpan(8 + json.Length, padded - json.Length).Fill((byte)' ');
        data.CopyTo(b, 8 + padded);
        return b;
    }
}
