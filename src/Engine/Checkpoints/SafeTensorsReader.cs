// Reads and validates a safetensors file before anything is copied anywhere:
//   8-byte little-endian header length N (N <= file size − 8, N <= 100 MB), N bytes of UTF-8 JSON
//   (an object; "__metadata__" maps strings to strings), then the data. Every tensor entry needs a
//   dtype (F32 or F64 here), a shape of non-negative integers and data_offsets [begin, end] with
//   begin <= end <= data size, end − begin = elements × dtype size, and no two tensors overlapping.
// Each failure names the file, the tensor and the problem.
using System.Buffers.Binary;
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
        var bytes = File.ReadAllBytes(path);
        string Where(string what) => $"safetensors file '{path}': {what}";
        if (bytes.Length < 8) throw new InvalidDataException(Where($"expected an 8-byte header length; the file has {bytes.Length} bytes."));
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (n > (ulong)(bytes.Length - 8) || n > 100_000_000)
            throw new InvalidDataException(Where($"the header length {n} exceeds the {bytes.Length - 8} bytes after it (truncated or not a safetensors file)."));
        long dataStart = 8 + (long)n;
        long dataSize = bytes.Length - dataStart;
        JsonDocument doc;
        try { doc = JsonDocument.Parse(Encoding.UTF8.GetString(bytes, 8, (int)n)); }
        catch (JsonException e) { throw new InvalidDataException(Where($"the header is not valid JSON ({e.Message})."), e); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new InvalidDataException(Where("the header must be a JSON object."));
            var tensors = new Dictionary<string, SafeTensorInfo>();
            var metadata = new Dictionary<string, string>();
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object) throw new InvalidDataException(Where("__metadata__ must be an object of strings."));
                    foreach (var m in prop.Value.EnumerateObject())
                        metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : throw new InvalidDataException(Where($"__metadata__ entry '{m.Name}' must be a string."));
                    continue;
                }
                string T(string what) => Where($"tensor '{prop.Name}': {what}");
                var v = prop.Value;
                if (v.ValueKind != JsonValueKind.Object) throw new InvalidDataException(T("expected an object with dtype, shape and data_offsets."));
                if (!v.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String) throw new InvalidDataException(T("missing dtype."));
                string dtype = dt.GetString()!;
                int size = dtype switch { "F32" => 4, "F64" => 8, _ => throw new InvalidDataException(T($"dtype {dtype} is not supported; expected F32 or F64.")) };
                if (!v.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array) throw new InvalidDataException(T("missing shape."));
                var shape = new List<int>();
                foreach (var d in sh.EnumerateArray())
                {
                    if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt32(out int x) || x < 0) throw new InvalidDataException(T($"shape entries must be integers >= 0; found {d}."));
                    shape.Add(x);
                }
                if (!v.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2
                    || !off[0].TryGetInt64(out long begin) || !off[1].TryGetInt64(out long end))
                    throw new InvalidDataException(T("data_offsets must be [begin, end]."));
                var info = new SafeTensorInfo(prop.Name, dtype, shape.ToArray(), begin, end);
                if (begin < 0 || end < begin || end > dataSize)
                    throw new InvalidDataException(T($"data_offsets [{begin}, {end}] are outside the {dataSize}-byte data section."));
                if (end - begin != info.Elements * size)
                    throw new InvalidDataException(T($"data_offsets span {end - begin} bytes but shape [{string.Join(", ", shape)}] of {dtype} needs {info.Elements * size}."));
                tensors[prop.Name] = info;
            }
            var sorted = tensors.Values.Where(t => t.End > t.Begin).OrderBy(t => t.Begin).ToList();
            for (int i = 1; i < sorted.Count; i++)
                if (sorted[i].Begin < sorted[i - 1].End)
                    throw new InvalidDataException(Where($"tensors '{sorted[i - 1].Name}' and '{sorted[i].Name}' overlap in the data section."));
            return new SafeTensorsFile(path, bytes, dataStart, tensors, metadata);
        }
    }

    /// <summary>The tensor's values as float (F64 is rounded).</summary>
    public float[] ReadFloat(string name)
    {
        var t = Tensors[name];
        var span = _bytes.AsSpan((int)(_dataStart + t.Begin), (int)(t.End - t.Begin));
        var r = new float[t.Elements];
        for (int i = 0; i < r.Length; i++)
            r[i] = t.Dtype == "F32" ? BinaryPrimitives.ReadSingleLittleEndian(span[(4 * i)..]) : (float)BinaryPrimitives.ReadDoubleLittleEndian(span[(8 * i)..]);
        return r;
    }
}
