// Seeded mutants of every data format through the real loaders (Idx.ReadPair raw and gzip, Csv.Read,
// Npy.ReadPair): small valid files are written, then bit flips, truncations, insertions, deletions,
// duplications and format-aware edits (IDX magic/type/dimension fields, CSV cells/fields/lines/header,
// NPY version/header length/descr/shape/fortran_order/data values, dtype changes) are applied, one to
// three per mutant. Each mutant must load, and then be self-consistent (samples and width > 0,
// features [count, width], every value finite, labels in [0, classes) or targets [count, outputs]),
// or throw InvalidDataException. Anything else fails with the seed and mutant index that replay it:
//   BACKPROP_MUTATION_SEED=<seed> BACKPROP_MUTANT=<index> dotnet test --filter LoaderMutationTests
using System.Buffers.Binary;
using System.Globalization;
using System.IO.Compression;
using System.Text;
using Backprop.Engine.Data;
using NUnit.Framework;

namespace Backprop.Tests.Data;

[TestFixture]
public class LoaderMutationTests
{
    /// <summary>The formats mutated.</summary>
    public enum Format
    {
        /// <summary>Uncompressed IDX images and labels.</summary>
        IdxRaw,
        /// <summary>Gzip IDX: the content mutated and then compressed, or the compressed bytes mutated.</summary>
        IdxGzip,
        /// <summary>Numeric CSV, classification or regression.</summary>
        Csv,
        /// <summary>.npy features and labels.</summary>
        Npy,
    }

    private const int DefaultSeed = 20_251_107;
    private const int MutantsPerFormat = 500;

    private static int Seed => int.TryParse(Environment.GetEnvironmentVariable("BACKPROP_MUTATION_SEED"), out int s) ? s : DefaultSeed;
    private static int? Only => int.TryParse(Environment.GetEnvironmentVariable("BACKPROP_MUTANT"), out int i) ? i : null;

    private string _dir = "";

    [SetUp]
    public void SetUp() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "backprop-mutants-" + Guid.NewGuid().ToString("N")));

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, true);

    /// <summary>One mutant: its files (name, bytes), how it was made, and how it is loaded.</summary>
    private sealed record Mutant(List<(string Name, byte[] Bytes)> Files, List<string> Edits, Func<string, Dataset> Load, bool Classification, bool Bytes);

    [TestCase(Format.IdxRaw)]
    [TestCase(Format.IdxGzip)]
    [TestCase(Format.Csv)]
    [TestCase(Format.Npy)]
    public void EveryMutant_LoadsConsistently_OrThrowsInvalidData(Format format)
    {
        int seed = Seed;
        var failures = new List<string>();
        int loaded = 0, rejected = 0;
        for (int i = 0; i < MutantsPerFormat; i++)
        {
            if (Only is int only && only != i) continue;
            var rng = new Random(unchecked((seed * 31 + (int)format) * 1_000_003 + i));
            var m = format switch
            {
                Format.IdxRaw => IdxMutant(rng, gzip: false),
                Format.IdxGzip => IdxMutant(rng, gzip: true),
                Format.Csv => CsvMutant(rng),
                _ => NpyMutant(rng),
            };
            string dir = Path.Combine(_dir, i.ToString(CultureInfo.InvariantCulture));
            Directory.CreateDirectory(dir);
            foreach (var (name, bytes) in m.Files) File.WriteAllBytes(Path.Combine(dir, name), bytes);
            string Replay() => $"seed {seed} mutant {i} ({format}; replay with BACKPROP_MUTATION_SEED={seed} BACKPROP_MUTANT={i}); edits: {string.Join("; ", m.Edits)}";
            try
            {
                var d = m.Load(dir);
                string? problem = Inconsistency(d, m.Classification, m.Bytes);
                if (problem is null) loaded++;
                else failures.Add($"{Replay()}: loaded, but {problem}");
            }
            catch (InvalidDataException) { rejected++; }
            catch (Exception e) { failures.Add($"{Replay()}: {e.GetType().Name}: {e.Message}\n{e.StackTrace}"); }
            Directory.Delete(dir, true);
        }
        TestContext.Out.WriteLine($"{format}: {loaded} mutants loaded, {rejected} refused with InvalidDataException, {failures.Count} failures (seed {seed}).");
        Assert.That(failures, Is.Empty, $"{failures.Count} mutants neither loaded consistently nor threw InvalidDataException; the first:\n" + string.Join("\n\n", failures.Take(5)));
        if (Only is null)
        {
            Assert.That(loaded, Is.GreaterThan(MutantsPerFormat / 50), "too few mutants load: the mutations are too coarse to test the loaded path");
            Assert.That(rejected, Is.GreaterThan(MutantsPerFormat / 4), "too few mutants are refused: the mutations miss the checks");
        }
    }

    [Test]
    public void TheUnmutatedSeedFiles_Load()
    {
        var rng = new Random(1);
        foreach (var (d, classification) in new[]
        {
            (Idx.ReadPair(WriteAll(IdxImages(rng, [5, 3, 2]), "i"), WriteAll(IdxLabels(rng, 5), "l")), true),
            (Csv.Read(WriteAll(Encoding.UTF8.GetBytes(CsvText(rng, header: true, rows: 4, columns: 4)), "c")), true),
            (Npy.ReadPair(WriteAll(NpyFile(NpyFeature(rng, "<f4", [4, 3])), "x"), WriteAll(NpyFile(NpyLabel(rng, "|u1", [4], true)), "y")), true),
            (Npy.ReadPair(WriteAll(NpyFile(NpyFeature(rng, "<f8", [4, 2, 2])), "x2"), WriteAll(NpyFile(NpyLabel(rng, "<f8", [4, 2], false)), "y2"), false), false),
        })
            Assert.That(Inconsistency(d, classification, bytes: false), Is.Null);
    }

    private string WriteAll(byte[] bytes, string name)
    {
        string p = Path.Combine(_dir, name);
        File.WriteAllBytes(p, bytes);
        return p;
    }

    /// <summary>Null when the dataset is self-consistent, else what is wrong with it.</summary>
    private static string? Inconsistency(Dataset d, bool classification, bool bytes)
    {
        if (d.Width <= 0) return $"width {d.Width}";
        if (d.Count <= 0) return $"{d.Count} samples";
        if (d.Features.LongLength != (long)d.Count * d.Width) return $"{d.Features.LongLength} feature values for {d.Count} samples of width {d.Width}";
        for (int i = 0; i < d.Features.Length; i++)
        {
            float v = d.Features[i];
            if (!float.IsFinite(v)) return $"feature {i} is {v}";
            if (bytes && (v < 0 || v > 255 || v != MathF.Floor(v))) return $"feature {i} is {v}, not a byte";
        }
        if (d.Outputs < 1) return $"{d.Outputs} outputs";
        if (classification)
        {
            if (d.Labels is null || d.Targets is not null) return "a classification dataset without labels, or with targets";
            if (d.Labels.Length != d.Count) return $"{d.Labels.Length} labels for {d.Count} samples";
            for (int i = 0; i < d.Labels.Length; i++)
                if (d.Labels[i] < 0 || d.Labels[i] >= d.Outputs) return $"label {d.Labels[i]} of sample {i} is outside [0, {d.Outputs})";
            return null;
        }
        if (d.Targets is null || d.Labels is not null) return "a regression dataset without targets, or with labels";
        if (d.Targets.LongLength != (long)d.Count * d.Outputs) return $"{d.Targets.LongLength} targets for {d.Count} samples of {d.Outputs} outputs";
        for (int i = 0; i < d.Targets.Length; i++)
            if (!float.IsFinite(d.Targets[i])) return $"target {i} is {d.Targets[i]}";
        return null;
    }

    // ---- generic byte mutations ----

    private static readonly byte[] InterestingBytes = [0x00, 0x01, 0x02, 0x04, 0x07, 0x08, 0x09, 0x0D, 0x0E, 0x7F, 0x80, 0xFE, 0xFF, (byte)'\n', (byte)'\r', (byte)',',
        (byte)'\'', (byte)'(', (byte)')', (byte)'L', (byte)'-', (byte)'.', (byte)'e', (byte)' ', (byte)'0', (byte)'9', (byte)'N'];
    private static readonly int[] InterestingInts = [0, 1, 2, -1, 255, 256, 65535, 65536, 1 << 24, 0x7FFFFFC7, int.MaxValue, int.MinValue, 60000, 784];

    /// <summary>One byte-level edit; <paramref name="header"/> bytes at the start get half of the positions.</summary>
    private static byte[] MutateBytes(byte[] b, Random rng, List<string> edits, int header)
    {
        int Pos(int length) => length == 0 ? 0 : header > 0 && rng.Next(2) == 0 ? rng.Next(Math.Min(header, length)) : rng.Next(length);
        switch (rng.Next(7))
        {
            case 0 when b.Length > 0:
            {
                int p = Pos(b.Length), bit = rng.Next(8);
                edits.Add($"flip bit {bit} of byte {p}");
                var r = (byte[])b.Clone();
                r[p] ^= (byte)(1 << bit);
                return r;
            }
            case 1 when b.Length > 0:
            {
                int p = Pos(b.Length);
                byte v = InterestingBytes[rng.Next(InterestingBytes.Length)];
                edits.Add($"byte {p} = 0x{v:x2}");
                var r = (byte[])b.Clone();
                r[p] = v;
                return r;
            }
            case 2:
            {
                int keep = rng.Next(b.Length + 1);
                if (rng.Next(2) == 0) keep = Math.Min(b.Length, Pos(b.Length)); // often inside the header
                edits.Add($"truncate to {keep} bytes");
                return b[..keep];
            }
            case 3:
            {
                int p = Pos(b.Length + 1), n = 1 + rng.Next(8);
                var ins = new byte[n];
                for (int k = 0; k < n; k++) ins[k] = rng.Next(2) == 0 ? (byte)rng.Next(256) : InterestingBytes[rng.Next(InterestingBytes.Length)];
                edits.Add($"insert {Convert.ToHexString(ins)} at {p}");
                return [.. b[..p], .. ins, .. b[p..]];
            }
            case 4 when b.Length > 0:
            {
                int p = Pos(b.Length), n = Math.Min(b.Length - p, 1 + rng.Next(16));
                edits.Add($"delete {n} bytes at {p}");
                return [.. b[..p], .. b[(p + n)..]];
            }
            case 5 when b.Length > 0:
            {
                int p = Pos(b.Length), n = Math.Min(b.Length - p, 1 + rng.Next(32));
                edits.Add($"duplicate {n} bytes at {p}");
                return [.. b[..(p + n)], .. b[p..]];
            }
            case 6 when b.Length >= 4:
            {
                int p = Math.Min(Pos(b.Length), b.Length - 4), v = InterestingInts[rng.Next(InterestingInts.Length)];
                bool big = rng.Next(2) == 0;
                edits.Add($"int32 {v} ({(big ? "big" : "little")}-endian) at {p}");
                var r = (byte[])b.Clone();
                if (big) BinaryPrimitives.WriteInt32BigEndian(r.AsSpan(p), v);
                else BinaryPrimitives.WriteInt32LittleEndian(r.AsSpan(p), v);
                return r;
            }
            default:
                edits.Add("append a byte");
                return [.. b, (byte)rng.Next(256)];
        }
    }

    private static T Pick<T>(Random rng, params T[] items) => items[rng.Next(items.Length)];

    /// <summary>Edits per file: mostly one, so that many mutants are one step from a valid file.</summary>
    private static int Edits(Random rng) => Pick(rng, 1, 1, 1, 1, 1, 1, 2, 2, 2, 3);

    // ---- IDX ----

    private static byte[] IdxImages(Random rng, int[] dims)
    {
        var pixels = new byte[dims.Aggregate(1, (a, x) => a * x)];
        rng.NextBytes(pixels);
        return IdxTests.Encode(dims, pixels);
    }

    private static byte[] IdxLabels(Random rng, int n) => IdxTests.Encode([n], Enumerable.Range(0, n).Select(_ => (byte)rng.Next(4)).ToArray());

    /// <summary>An IDX-aware edit of the uncompressed bytes: a field of the header, or the whole file's kind.</summary>
    private static byte[] MutateIdx(byte[] b, Random rng, List<string> edits)
    {
        if (b.Length < 4) return MutateBytes(b, rng, edits, 0);
        var r = (byte[])b.Clone();
        int d = Math.Clamp((int)b[3], 0, 4);
        int header = 4 + 4 * d;
        switch (rng.Next(7))
        {
            case 6 when d >= 1 && b.Length >= header:
            {
                // One dimension set to a small value and the data cut or padded to match: a well-formed file of
                // another size (no samples, zero-width items, more samples than labels).
                var dims = Enumerable.Range(0, d).Select(k => BinaryPrimitives.ReadInt32BigEndian(b.AsSpan(4 + 4 * k))).ToArray();
                int k = rng.Next(d);
                dims[k] = Pick(rng, 0, 0, 1, 2, 3, 7);
                if (dims.Any(x => x < 0) || dims.Aggregate(1.0, (a, x) => a * x) > 4096) return MutateBytes(b, rng, edits, header);
                var data = new byte[dims.Aggregate(1, (a, x) => a * x)];
                rng.NextBytes(data);
                b.AsSpan(header, Math.Min(data.Length, b.Length - header)).CopyTo(data);
                edits.Add($"dimensions [{string.Join(", ", dims)}] with the data to match");
                var r2 = IdxTests.Encode(dims, data);
                r2[2] = b[2];
                r2[0] = b[0];
                r2[1] = b[1];
                return r2;
            }
            case 4 when b.Length > header:
            {
                // A pixel or label value: the file stays well-formed.
                int p = header + rng.Next(b.Length - header);
                byte v = Pick<byte>(rng, 0, 1, 3, 4, 9, 10, 127, 128, 255);
                edits.Add($"data byte {p} = {v}");
                r[p] = v;
                return r;
            }
            case 5 when d >= 1 && b[0] == 0 && b[1] == 0 && b[2] == 8 && b.Length >= header:
            {
                // The same bytes under other dimensions with the same product (a reshape), or the first dimension alone.
                var dims = Enumerable.Range(0, d).Select(k => BinaryPrimitives.ReadInt32BigEndian(b.AsSpan(4 + 4 * k))).ToArray();
                if (dims.Any(x => x <= 0)) return MutateBytes(b, rng, edits, header);
                int item = dims.Skip(1).Aggregate(1, (a, x) => a * x);
                int[] to = Pick<int[]>(rng, [dims[0], item], [dims[0], 1, item], [dims[0], item, 1], [dims[0] * item], [dims[0], item, 1, 1]);
                edits.Add($"reshaped to [{string.Join(", ", to)}]");
                return IdxTests.Encode(to, b[header..]);
            }
            case 0 when d > 0 && b.Length >= 4 + 4 * d:
            {
                int k = rng.Next(d), old = BinaryPrimitives.ReadInt32BigEndian(b.AsSpan(4 + 4 * k));
                int v = rng.Next(3) == 0 ? old + Pick(rng, -1, 1, 2, -2) : InterestingInts[rng.Next(InterestingInts.Length)];
                edits.Add($"dimension {k} = {v}");
                BinaryPrimitives.WriteInt32BigEndian(r.AsSpan(4 + 4 * k), v);
                return r;
            }
            case 1:
            {
                byte v = Pick<byte>(rng, 0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0xFF);
                edits.Add($"element type 0x{v:x2}");
                r[2] = v;
                return r;
            }
            case 2:
            {
                byte v = Pick<byte>(rng, 0, 1, 2, 3, 4, 5, 255);
                edits.Add($"dimension count {v}");
                r[3] = v;
                return r;
            }
            default:
            {
                int p = rng.Next(2);
                byte v = Pick<byte>(rng, 0x01, 0x08, 0x1f, 0x8b, 0xFF);
                edits.Add($"magic byte {p} = 0x{v:x2}");
                r[p] = v;
                return r;
            }
        }
    }

    private static byte[] Gzip(byte[] b)
    {
        var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true)) gz.Write(b);
        return ms.ToArray();
    }

    private static Mutant IdxMutant(Random rng, bool gzip)
    {
        int n = 1 + rng.Next(6);
        int[] dims = rng.Next(3) switch { 0 => [n, 6], 1 => [n, 3, 2], _ => [n, 2, 2, 2] };
        var edits = new List<string> { $"images [{string.Join(", ", dims)}]" };
        var images = IdxImages(rng, dims);
        var labels = IdxLabels(rng, n);
        int which = rng.Next(12) == 0 ? 4 : rng.Next(4); // 0, 1: images; 2: labels; 3: both; 4: images given as labels and labels as images
        if (which == 4)
        {
            (images, labels) = (labels, images);
            edits.Add("files swapped");
        }
        byte[] Mutate(byte[] b, string name)
        {
            int count = Edits(rng);
            bool compressedEdits = gzip && rng.Next(3) == 0; // else edit the content, then compress it
            for (int k = 0; k < count && !compressedEdits; k++)
            {
                edits.Add(name + ":");
                b = rng.Next(2) == 0 ? MutateIdx(b, rng, edits) : MutateBytes(b, rng, edits, 4 + 4 * Math.Clamp(b.Length > 3 ? (int)b[3] : 0, 0, 4));
            }
            if (!gzip) return b;
            b = Gzip(b);
            for (int k = 0; k < count && compressedEdits; k++)
            {
                edits.Add(name + " (compressed):");
                b = MutateBytes(b, rng, edits, 12);
            }
            if (rng.Next(10) == 0)
            {
                edits.Add(name + ": a second gzip member appended");
                b = [.. b, .. Gzip([1, 2, 3])];
            }
            return b;
        }
        if (which is 0 or 1 or 3) images = Mutate(images, "images");
        if (which is 2 or 3) labels = Mutate(labels, "labels");
        if (gzip && which == 4) (images, labels) = (Gzip(images), Gzip(labels));
        int? classes = rng.Next(3) == 0 ? 1 + rng.Next(5) : null;
        if (classes is not null) edits.Add($"classes {classes}");
        string ext = gzip ? ".gz" : "";
        return new Mutant([("images" + ext, images), ("labels" + ext, labels)], edits,
            dir => Idx.ReadPair(Path.Combine(dir, "images" + ext), Path.Combine(dir, "labels" + ext), classes),
            Classification: true, Bytes: true);
    }

    // ---- CSV ----

    private static readonly string[] InterestingCells = ["NaN", "nan", "Infinity", "-Infinity", "infinity", "1e39", "-1e39", "1e400", "3.4028235e38", "1e-50", "", " ", "x",
        "-1", "0", "1", "2.5", "2147483646", "2147483647", "2147483648", "1e10", "-0", "0x10", "1,5", "1.2.3", "\"3\"", "١", "+4", ".5", "5.", "1e", "label"];

    private static string CsvText(Random rng, bool header, int rows, int columns)
    {
        var sb = new StringBuilder();
        if (header) sb.Append(string.Join(",", Enumerable.Range(0, columns - 1).Select(c => $"f{c}")) + ",label\n");
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < columns - 1; c++)
                sb.Append(Pick(rng, "0", "-1.5", "3", "2.25e-3", "1E2", " 7 ", "-0.125")).Append(',');
            sb.Append(rng.Next(4).ToString(CultureInfo.InvariantCulture)).Append('\n');
        }
        return sb.ToString();
    }

    /// <summary>A CSV-aware edit of the text: a cell, a field, a line, the header or the line endings.</summary>
    private static string MutateCsv(string text, Random rng, List<string> edits)
    {
        var lines = text.Split('\n').ToList();
        int li = rng.Next(lines.Count);
        var cells = lines[li].Split(',').ToList();
        switch (rng.Next(9))
        {
            case 0:
            case 1:
            {
                int c = rng.Next(cells.Count);
                string v = InterestingCells[rng.Next(InterestingCells.Length)];
                edits.Add($"line {li + 1} cell {c + 1} = '{v}'");
                cells[c] = v;
                lines[li] = string.Join(",", cells);
                break;
            }
            case 2:
            {
                int c = rng.Next(cells.Count);
                edits.Add($"line {li + 1}: field {c + 1} removed");
                cells.RemoveAt(c);
                lines[li] = string.Join(",", cells);
                break;
            }
            case 3:
                edits.Add($"line {li + 1}: a field added");
                lines[li] += "," + Pick(rng, "1", "", "x", "NaN");
                break;
            case 4:
                edits.Add($"line {li + 1} removed");
                lines.RemoveAt(li);
                break;
            case 5:
                edits.Add($"line {li + 1} duplicated");
                lines.Insert(li, lines[li]);
                break;
            case 6:
            {
                string v = Pick(rng, "", "   ", ",", ",,,", "a,b,label", "1,2");
                edits.Add($"line '{v}' inserted before line {li + 1}");
                lines.Insert(li, v);
                break;
            }
            case 7:
                edits.Add("only the first line kept");
                lines = [lines[0]];
                break;
            default:
            {
                string nl = Pick(rng, "\r\n", "\r", "\n\n");
                edits.Add($"line ends {Convert.ToHexString(Encoding.ASCII.GetBytes(nl))}");
                return string.Join(nl, lines);
            }
        }
        return string.Join("\n", lines);
    }

    private static Mutant CsvMutant(Random rng)
    {
        bool header = rng.Next(3) != 0;
        int rows = 1 + rng.Next(4), columns = 2 + rng.Next(3);
        var edits = new List<string> { $"{rows} rows of {columns} columns{(header ? " under a header" : "")}" };
        string text = CsvText(rng, header, rows, columns);
        int count = Edits(rng);
        byte[]? bytes = null;
        for (int k = 0; k < count; k++)
        {
            if (bytes is null && rng.Next(4) != 0) { text = MutateCsv(text, rng, edits); continue; }
            bytes = MutateBytes(bytes ?? Encoding.UTF8.GetBytes(text), rng, edits, text.IndexOf('\n') + 1);
        }
        bytes ??= Encoding.UTF8.GetBytes(text);
        bool classification = rng.Next(3) != 0;
        string labelColumn = Pick(rng, "", "", "0", "-1"); // names are the caller's choice (ArgumentException); indices always exist
        bool? hasHeader = Pick<bool?>(rng, null, null, true, false);
        edits.Add($"read with labelColumn '{labelColumn}', classification {classification}, hasHeader {hasHeader?.ToString() ?? "auto"}");
        return new Mutant([("data.csv", bytes)], edits,
            dir => Csv.Read(Path.Combine(dir, "data.csv"), labelColumn, classification, hasHeader), classification, Bytes: false);
    }

    // ---- NPY ----

    /// <summary>A .npy file as its parts, so the header can be edited as text and the file re-encoded around it.</summary>
    private sealed record NpyParts(string Descr, string Fortran, string Shape, byte[] Data, int Version = 1, string? Dict = null)
    {
        public string Header => Dict ?? $"{{'descr': '{Descr}', 'fortran_order': {Fortran}, 'shape': {Shape}, }}";
    }

    private static byte[] NpyFile(NpyParts p) => CsvNpyTests.NpyRaw(p.Header, p.Data, p.Version);

    private static string ShapeText(int[] shape) => $"({string.Join(", ", shape)}{(shape.Length == 1 ? "," : "")})";

    private static byte[] Encode(string descr, double[] values) => descr switch
    {
        "<f4" => values.SelectMany(v => BitConverter.GetBytes((float)v)).ToArray(),
        "<f8" => values.SelectMany(BitConverter.GetBytes).ToArray(),
        "<i4" => values.SelectMany(v => BitConverter.GetBytes((int)v)).ToArray(),
        "<i8" => values.SelectMany(v => BitConverter.GetBytes((long)v)).ToArray(),
        _ => values.Select(v => (byte)v).ToArray(),
    };

    private static NpyParts NpyFeature(Random rng, string descr, int[] shape)
    {
        var values = Enumerable.Range(0, shape.Aggregate(1, (a, x) => a * x)).Select(_ => descr is "|u1" ? rng.Next(256) : Math.Round(rng.NextDouble() * 8 - 4, 3)).ToArray();
        return new NpyParts(descr, "False", ShapeText(shape), Encode(descr, values), Pick(rng, 1, 1, 2, 3));
    }

    private static NpyParts NpyLabel(Random rng, string descr, int[] shape, bool classification)
    {
        var values = Enumerable.Range(0, shape.Aggregate(1, (a, x) => a * x)).Select(_ => classification ? rng.Next(4) : Math.Round(rng.NextDouble() * 2 - 1, 3)).ToArray();
        return new NpyParts(descr, "False", ShapeText(shape), Encode(descr, values), Pick(rng, 1, 1, 2, 3));
    }

    private static readonly string[] InterestingShapes = ["(4, 3)", "(4L, 3L)", "(4,)", "(4)", "()", "(0, 3)", "(4, 0)", "(0,)", "(12,)", "(4, 3, 1)", "(2, 6)", "(3, 4)",
        "(-1, 3)", "(4, x)", "(4,, 3)", "(2147483647, 2147483647)", "(4294967296, 1)", "(99999999999999999999L,)", "(100000, 100000)", "(4, 3,)", "( 4 , 3 )", "(4 3)"];
    private static readonly string[] InterestingDescrs = ["<f4", "<f8", "|u1", "<u1", "<i4", "<i8", "|O", ">f4", ">f8", "<f2", "<c8", "<U3", "|b1", "<i2", "=f4", "", "'"];

    /// <summary>An NPY-aware edit: a header field, the version, the data values, or the dtype with the data converted to it.</summary>
    private static NpyParts MutateNpy(NpyParts p, Random rng, List<string> edits, bool labels)
    {
        switch (rng.Next(8))
        {
            case 0:
            case 1:
            {
                string s = InterestingShapes[rng.Next(InterestingShapes.Length)];
                edits.Add($"shape {s}");
                return p with { Shape = s };
            }
            case 2:
            {
                string d = InterestingDescrs[rng.Next(InterestingDescrs.Length)];
                edits.Add($"descr '{d}'");
                return p with { Descr = d };
            }
            case 3:
            {
                // A type change that keeps the file consistent: the values converted to the new dtype.
                int size = p.Descr switch { "<f4" or "<i4" => 4, "<f8" or "<i8" => 8, "|u1" or "<u1" => 1, _ => 0 };
                if (size == 0 || p.Data.Length % size != 0) goto case 2;
                var values = Enumerable.Range(0, p.Data.Length / size).Select(i => p.Descr switch
                {
                    "<f4" => BitConverter.ToSingle(p.Data, 4 * i),
                    "<f8" => BitConverter.ToDouble(p.Data, 8 * i),
                    "<i4" => BitConverter.ToInt32(p.Data, 4 * i),
                    "<i8" => (double)BitConverter.ToInt64(p.Data, 8 * i),
                    _ => p.Data[i],
                }).ToArray();
                string to = Pick(rng, "<f4", "<f8", "|u1", "<i4", "<i8");
                edits.Add($"dtype {p.Descr} -> {to}, values converted");
                return p with { Descr = to, Data = Encode(to, values.Select(v => to is "|u1" ? Math.Clamp(Math.Round(v), 0, 255) : to is "<i4" or "<i8" ? Math.Round(v) : v).ToArray()) };
            }
            case 4:
            {
                // A special value written into one element (of a float array), or into the data at large.
                int size = p.Descr switch { "<f4" => 4, "<f8" => 8, _ => 0 };
                if (size == 0 || p.Data.Length < size) goto case 2;
                int e = rng.Next(p.Data.Length / size);
                double v = Pick(rng, double.NaN, double.PositiveInfinity, double.NegativeInfinity, 1e39, -1e300, double.Epsilon, -0.0, 2147483647.0, 4.5);
                edits.Add($"{(labels ? "label" : "feature")} element {e} = {v.ToString(CultureInfo.InvariantCulture)}");
                var data = (byte[])p.Data.Clone();
                Encode(p.Descr, [v]).CopyTo(data, e * size);
                return p with { Data = data };
            }
            case 5:
            {
                int v = Pick(rng, 0, 1, 2, 3, 4, 255);
                edits.Add($"version {v}");
                return p with { Version = v };
            }
            case 6:
            {
                edits.Add("fortran_order True");
                return p with { Fortran = "True" };
            }
            default:
            {
                // The dict written another way: keys reordered, spacing, no trailing comma, a key missing or unknown.
                string d = Pick(rng,
                    $"{{'shape': {p.Shape}, 'fortran_order': {p.Fortran}, 'descr': '{p.Descr}'}}",
                    $"{{'descr':'{p.Descr}','fortran_order':{p.Fortran},'shape':{p.Shape}}}",
                    $"{{'descr': '{p.Descr}', 'shape': {p.Shape}, }}",
                    $"{{'descr': '{p.Descr}', 'fortran_order': {p.Fortran}, 'shape': {p.Shape}, 'extra': 1, }}",
                    $"{{'descr': [('a', '{p.Descr}')], 'fortran_order': {p.Fortran}, 'shape': {p.Shape}, }}",
                    "");
                edits.Add($"header dict {d}");
                return p with { Dict = d };
            }
        }
    }

    private static Mutant NpyMutant(Random rng)
    {
        int n = 1 + rng.Next(5);
        bool classification = rng.Next(3) != 0;
        int[] xShape = rng.Next(2) == 0 ? [n, 3] : [n, 2, 2];
        var x = NpyFeature(rng, Pick(rng, "<f4", "<f8", "|u1"), xShape);
        var y = classification ? NpyLabel(rng, Pick(rng, "|u1", "<i4", "<i8", "<f4"), [n], true) : NpyLabel(rng, Pick(rng, "<f4", "<f8"), rng.Next(2) == 0 ? [n] : [n, 2], false);
        var edits = new List<string> { $"x {x.Descr} {x.Shape} v{x.Version}, y {y.Descr} {y.Shape} v{y.Version}" };
        byte[] Mutate(NpyParts p, string name, bool labels)
        {
            int count = Edits(rng);
            byte[]? b = null;
            for (int k = 0; k < count; k++)
            {
                edits.Add(name + ":");
                if (b is null && rng.Next(3) != 0) { p = MutateNpy(p, rng, edits, labels); continue; }
                b ??= NpyFile(p);
                b = rng.Next(4) == 0 ? MutateLength(b, rng, edits) : MutateBytes(b, rng, edits, b.Length - p.Data.Length);
            }
            return b ?? NpyFile(p);
        }
        int which = rng.Next(4); // 0, 1: features; 2: labels; 3: both
        byte[] xb = which is 0 or 1 or 3 ? Mutate(x, "x", false) : NpyFile(x);
        byte[] yb = which is 2 or 3 ? Mutate(y, "y", true) : NpyFile(y);
        if (rng.Next(12) == 0)
        {
            (xb, yb) = (yb, xb);
            edits.Add("files swapped");
        }
        bool asClassification = rng.Next(8) == 0 ? !classification : classification;
        edits.Add($"read with classification {asClassification}");
        return new Mutant([("x.npy", xb), ("y.npy", yb)], edits,
            dir => Npy.ReadPair(Path.Combine(dir, "x.npy"), Path.Combine(dir, "y.npy"), asClassification), asClassification, Bytes: false);
    }

    /// <summary>The header-length field of the preamble set to a nearby or extreme value.</summary>
    private static byte[] MutateLength(byte[] b, Random rng, List<string> edits)
    {
        if (b.Length < 12) return MutateBytes(b, rng, edits, b.Length);
        var r = (byte[])b.Clone();
        bool v1 = b[6] == 1;
        long old = v1 ? BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(8)) : BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(8));
        long v = Pick(rng, old - 1, old + 1, old - 64, old + 64, 0L, 1L, 0xFFFFL, 0x7FFFFFFFL, 0x80000000L, 0xFFFFFFFFL);
        edits.Add($"header length {v}");
        if (v1) BinaryPrimitives.WriteUInt16LittleEndian(r.AsSpan(8), (ushort)v);
        else BinaryPrimitives.WriteUInt32LittleEndian(r.AsSpan(8), (uint)v);
        return r;
    }
}
