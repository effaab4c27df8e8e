// Reads and validates a safetensors file before anything is copied anywhere. The layout, with the rules
// of the reference implementation (huggingface/safetensors) and a few stricter ones:
//   8-byte little-endian header length N, with N <= 100,000,000 and 8 + N <= file size;
//   N bytes of UTF-8 JSON: one object, no duplicate keys at any level, trailing spaces allowed;
//     "__metadata__" (optional) is an object of string values;
//     every other key is a tensor: an object with exactly "dtype" (string: F32, F64, F16 or BF16 here),
//     "shape" (array of integers in [0, 2^31)) and "data_offsets" (array of two integers >= 0);
//     elements = Π shape (checked), end − begin = elements × dtype size;
//   the data section [8 + N, file end): the tensors, sorted by data_offsets, must cover it exactly:
//     the first begins at 0, each begins where the previous ends, the last ends at the file's end
//     (no gap, no overlap, no trailing bytes).
// Values are checked when read as float: NaN, ±∞ and F64 values beyond float's range are refused. F16
// and BF16 convert to float32 exactly (every half and bfloat16 value is a float32 value).
// Every failure is an InvalidDataException naming the file, the tensor and the value seen; sizes are
// checked against the file before anything is allocated.
using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Backprop.Engine.Checkpoints;

/// <summary>One tensor of a safetensors file: name, dtype, shape and its bytes' place in the data section.</summary>
public sealed record SafeTensorInfo(string Name, string Dtype, int[] Shape, long Begin, long End)
{
    /// <summary>Elements.</summary>
    public long Elements => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>A validated safetensors file held in memory.</summary>
public sealed class SafeTensorsFile
{
    /// <summary>The reference implementation's limit on the header length.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private const string MetadataKey = "__metadata__";

    private readonly byte[] _bytes;
    private readonly long _dataStart;

    private SafeTensorsFile(string path, byte[] bytes, long dataStart, Dictionary<string, SafeTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        _bytes = bytes;
        _dataStart = dataStart;
        Tensors = tensors;
        Metadata = metadata;
    }

    /// <summary>The file read.</summary>
    public string Path { get; }
    /// <summary>Tensors by name.</summary>
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors { get; }
    /// <summary>The "__metadata__" strings.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Reads and validates <paramref name="path"/>; throws <see cref="InvalidDataException"/> naming the problem.</summary>
    public static SafeTensorsFile Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"safetensors file '{path}' does not exist.", path);
        string Where(string what) => $"safetensors file '{path}': {what}";
        long length = new FileInfo(path).Length;
        if (length > Array.MaxLength)
            throw new InvalidDataException(Where($"the file has {length} bytes; this reader holds files in memory and takes at most {Array.MaxLength}."));
        return Parse(File.ReadAllBytes(path), path);
    }

    /// <summary>
    /// Validates safetensors bytes held in memory (an entry of a container such as an ML.NET model zip); <paramref name="source"/>
    /// names them in errors as a file's path does.
    /// </summary>
    public static SafeTensorsFile Parse(byte[] bytes, string source)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        string path = source;
        string Where(string what) => $"safetensors file '{path}': {what}";
        if (bytes.Length < 8) throw new InvalidDataException(Where($"expected an 8-byte header length; the file has {bytes.Length} bytes."));
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (n > MaxHeaderBytes)
            throw new InvalidDataException(Where($"the header length {n} exceeds the limit of {MaxHeaderBytes} bytes (damaged or not a safetensors file)."));
        if (n > (ulong)(bytes.Length - 8))
            throw new InvalidDataException(Where($"the header length {n} exceeds the {bytes.Length - 8} bytes after it (truncated or not a safetensors file)."));
        long dataStart = 8 + (long)n;
        var header = bytes.AsMemory(8, (int)n);
        CheckUtf8(header.Span, Where);
        JsonDocument doc;
        try { doc = JsonDocument.Parse(header); }
        catch (JsonException e) { throw new InvalidDataException(Where($"the header is not valid JSON ({e.Message})."), e); }
        using (doc)
        {
            var (tensors, metadata) = ParseHeader(doc.RootElement, bytes.Length - dataStart, Where);
            CheckCoverage(tensors, bytes.Length - dataStart, Where);
            return new SafeTensorsFile(path, bytes, dataStart, tensors, metadata);
        }
    }

    // The reference refuses a header that is not UTF-8; a lenient decoder would turn bad bytes into U+FFFD instead.
    private static void CheckUtf8(ReadOnlySpan<byte> header, Func<string, string> where)
    {
        if (System.Text.Unicode.Utf8.IsValid(header)) return;
        int at = 0;
        while (Rune.DecodeFromUtf8(header[at..], out _, out int used) == System.Buffers.OperationStatus.Done) at += used;
        throw new InvalidDataException(where($"the header is not valid UTF-8 (byte 0x{header[at]:X2} at header offset {at})."));
    }

    private static (Dictionary<string, SafeTensorInfo>, Dictionary<string, string>) ParseHeader(JsonElement root, long dataSize, Func<string, string> where)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException(where($"the header must be a JSON object; found {Kind(root)}."));
        var tensors = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
        Dictionary<string, string>? metadata = null;
        foreach (var prop in root.EnumerateObject())
        {
            string name = Name(prop, where);
            if (name == MetadataKey)
            {
                if (metadata is not null) throw new InvalidDataException(where($"the header has the key '{MetadataKey}' twice."));
                metadata = ParseMetadata(prop.Value, where);
                continue;
            }
            if (tensors.ContainsKey(name)) throw new InvalidDataException(where($"the header has the tensor '{name}' twice."));
            tensors[name] = ParseTensor(name, prop.Value, dataSize, where);
        }
        return (tensors, metadata ?? new Dictionary<string, string>(StringComparer.Ordinal));
    }

    private static Dictionary<string, string> ParseMetadata(JsonElement v, Func<string, string> where)
    {
        if (v.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException(where($"{MetadataKey} must be an object of strings; found {Kind(v)}."));
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var m in v.EnumerateObject())
        {
            string key = Name(m, where);
            if (m.Value.ValueKind != JsonValueKind.String)
                throw new InvalidDataException(where($"{MetadataKey} entry '{key}' must be a string; found {Kind(m.Value)}."));
            if (!metadata.TryAdd(key, Text(m.Value, where)))
                throw new InvalidDataException(where($"{MetadataKey} has the key '{key}' twice."));
        }
        return metadata;
    }

    private static SafeTensorInfo ParseTensor(string name, JsonElement v, long dataSize, Func<string, string> where)
    {
        string T(string what) => where($"tensor '{name}': {what}");
        if (v.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException(T($"expected an object with dtype, shape and data_offsets; found {Kind(v)}."));
        JsonElement? dt = null, sh = null, off = null;
        foreach (var field in v.EnumerateObject())
        {
            string key = Name(field, where);
            ref JsonElement? slot = ref dt;
            if (key == "dtype") slot = ref dt;
            else if (key == "shape") slot = ref sh;
            else if (key == "data_offsets") slot = ref off;
            else throw new InvalidDataException(T($"unknown field '{key}'; a tensor has exactly dtype, shape and data_offsets."));
            if (slot is not null) throw new InvalidDataException(T($"the field '{key}' appears twice."));
            slot = field.Value;
        }
        if (dt is not { } dtype || sh is not { } shape || off is not { } offsets)
            throw new InvalidDataException(T($"missing {(dt is null ? "dtype" : sh is null ? "shape" : "data_offsets")}; a tensor has exactly dtype, shape and data_offsets."));

        if (dtype.ValueKind != JsonValueKind.String) throw new InvalidDataException(T($"dtype must be a string; found {Kind(dtype)}."));
        string type = Text(dtype, where);
        int size = ElementSize(type) is > 0 and var s ? s : throw new InvalidDataException(T($"dtype {type} is not supported; expected F32, F64, F16 or BF16."));

        if (shape.ValueKind != JsonValueKind.Array) throw new InvalidDataException(T($"shape must be an array of integers; found {Kind(shape)}."));
        var dims = new int[shape.GetArrayLength()];
        long elements = 1;
        bool overflow = false;
        int i = 0;
        foreach (var d in shape.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt32(out int x) || x < 0)
                throw new InvalidDataException(T($"shape entries must be integers in [0, {int.MaxValue}]; found {Raw(d)} at index {i}."));
            dims[i++] = x;
            // The reference multiplies in order with a checked product, so an overflow before a 0 is refused too.
            overflow |= x != 0 && elements > long.MaxValue / x;
            elements = overflow ? elements : elements * x;
        }
        string shapeText = $"[{string.Join(", ", dims)}]";
        if (overflow || elements > long.MaxValue / size)
            throw new InvalidDataException(T($"shape {shapeText} of {type} has more bytes than a 64-bit size holds."));

        if (offsets.ValueKind != JsonValueKind.Array || offsets.GetArrayLength() != 2)
            throw new InvalidDataException(T($"data_offsets must be [begin, end], two integers >= 0; found {Raw(offsets)}."));
        long begin = Offset(offsets[0], "begin", T), end = Offset(offsets[1], "end", T);
        if (end < begin) throw new InvalidDataException(T($"data_offsets [{begin}, {end}] end before they begin; expected begin <= end."));
        if (end > dataSize) throw new InvalidDataException(T($"data_offsets [{begin}, {end}] are outside the {dataSize}-byte data section."));
        if (end - begin != elements * size)
            throw new InvalidDataException(T($"data_offsets span {end - begin} bytes ([{begin}, {end}]) but shape {shapeText} of {type} needs {elements * size}."));
        return new SafeTensorInfo(name, type, dims, begin, end);
    }

    private static long Offset(JsonElement e, string which, Func<string, string> t) =>
        e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out long x) && x >= 0 ? x
            : throw new InvalidDataException(t($"data_offsets {which} must be an integer in [0, {long.MaxValue}]; found {Raw(e)}."));

    // The reference's rule: sorted by (begin, end), each tensor begins where the previous one ends, and the last ends at the file's end.
    private static void CheckCoverage(Dictionary<string, SafeTensorInfo> tensors, long dataSize, Func<string, string> where)
    {
        var sorted = tensors.Values.OrderBy(t => t.Begin).ThenBy(t => t.End).ThenBy(t => t.Name, StringComparer.Ordinal).ToList();
        long start = 0;
        SafeTensorInfo? previous = null;
        foreach (var t in sorted)
        {
            if (t.Begin < start)
                throw new InvalidDataException(where($"tensors '{previous!.Name}' [{previous.Begin}, {previous.End}] and '{t.Name}' [{t.Begin}, {t.End}] overlap in the data section."));
            if (t.Begin > start)
                throw new InvalidDataException(where(previous is null
                    ? $"tensor '{t.Name}' [{t.Begin}, {t.End}] begins at {t.Begin}: the data section's bytes [0, {t.Begin}) belong to no tensor (expected the first tensor at 0)."
                    : $"tensor '{t.Name}' [{t.Begin}, {t.End}] begins at {t.Begin} but '{previous.Name}' [{previous.Begin}, {previous.End}] ends at {start}: the bytes [{start}, {t.Begin}) belong to no tensor."));
            start = t.End;
            previous = t;
        }
        if (start != dataSize)
            throw new InvalidDataException(where(previous is null
                ? $"the header names no tensor but the data section has {dataSize} bytes; expected none."
                : $"the last tensor '{previous.Name}' [{previous.Begin}, {previous.End}] ends at {start} but the data section has {dataSize} bytes: the bytes [{start}, {dataSize}) belong to no tensor."));
    }

    private static int ElementSize(string dtype) => dtype switch { "F32" => 4, "F64" => 8, "F16" or "BF16" => 2, _ => 0 };

    // Names and strings with escapes that decode to lone surrogates make System.Text.Json throw InvalidOperationException.
    private static string Name(JsonProperty p, Func<string, string> where)
    {
        try { return p.Name; }
        catch (InvalidOperationException e) { throw new InvalidDataException(where($"a header key (with the value {Raw(p.Value)}) is not valid text ({e.Message})."), e); }
    }

    private static string Text(JsonElement e, Func<string, string> where)
    {
        try { return e.GetString()!; }
        catch (InvalidOperationException x) { throw new InvalidDataException(where($"the header string {Raw(e)} is not valid text ({x.Message})."), x); }
    }

    private static string Kind(JsonElement e) => $"{e.ValueKind.ToString().ToLowerInvariant()} {Raw(e)}";

    private static string Raw(JsonElement e) => Clip(e.GetRawText());

    private static string Clip(string s) => s.Length <= 60 ? s : string.Concat(s.AsSpan(0, 57), "...");

    /// <summary>
    /// The tensor's values as float (F64 is rounded; F16 and BF16 convert exactly). Throws <see cref="InvalidDataException"/>
    /// naming the element when a value is NaN or infinite, or an F64 value lies beyond float's range: weights and optimizer
    /// state must be finite.
    /// </summary>
    public float[] ReadFloat(string name)
    {
        if (!Tensors.TryGetValue(name, out var t))
            throw new KeyNotFoundException($"safetensors file '{Path}' has no tensor '{name}'.");
        var span = _bytes.AsSpan(checked((int)(_dataStart + t.Begin)), checked((int)(t.End - t.Begin)));
        var r = new float[t.Elements];
        for (int i = 0; i < r.Length; i++)
        {
            switch (t.Dtype)
            {
                case "F32":
                    r[i] = BinaryPrimitives.ReadSingleLittleEndian(span[(4 * i)..]);
                    break;
                case "F16":
                    r[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(span[(2 * i)..]);
                    break;
                case "BF16":
                    r[i] = BitConverter.UInt32BitsToSingle((uint)BinaryPrimitives.ReadUInt16LittleEndian(span[(2 * i)..]) << 16);
                    break;
                default:
                {
                    double v = BinaryPrimitives.ReadDoubleLittleEndian(span[(8 * i)..]);
                    if (!double.IsFinite(v)) throw NotFinite(t, i, v.ToString(CultureInfo.InvariantCulture));
                    r[i] = (float)v;
                    if (!float.IsFinite(r[i])) throw NotFinite(t, i, $"{v.ToString("R", CultureInfo.InvariantCulture)}, beyond float's range");
                    break;
                }
            }
            if (!float.IsFinite(r[i])) throw NotFinite(t, i, r[i].ToString(CultureInfo.InvariantCulture));
        }
        return r;
    }

    private InvalidDataException NotFinite(SafeTensorInfo t, int index, string value) =>
        new($"safetensors file '{Path}': tensor '{t.Name}' element {index} is {value}; expected a finite value.");
}
