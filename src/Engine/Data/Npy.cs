// NumPy .npy arrays: magic "\x93NUMPY", version (1.0: 2-byte header length; 2.0/3.0: 4-byte), then a
// Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (n, m), } and the raw data.
// Supported: float32 ('<f4'), float64 ('<f8'), uint8 ('|u1'), and for labels int32/int64 ('<i4', '<i8'),
// in C order. Anything else is an error naming the file and what was found.
using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Backprop.Engine.Data;

/// <summary>A .npy array converted to double: its shape, its dtype as written, and its values.</summary>
public sealed record NpyArray(string Path, string Descr, int[] Shape, double[] Data)
{
    /// <summary>Elements in all.</summary>
    public long Count => Data.LongLength;
}

/// <summary>Reads NumPy .npy files.</summary>
public static partial class Npy
{
    [GeneratedRegex(@"'descr'\s*:\s*'([^']*)'")]
    private static partial Regex DescrRe();
    [GeneratedRegex(@"'fortran_order'\s*:\s*(True|False)")]
    private static partial Regex FortranRe();
    [GeneratedRegex(@"'shape'\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapeRe();

    /// <summary>Reads and validates a .npy file.</summary>
    public static NpyArray Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($".npy file '{path}' does not exist.", path);
        var b = File.ReadAllBytes(path);
        if (b.Length < 10 || b[0] != 0x93 || Encoding.ASCII.GetString(b, 1, 5) != "NUMPY")
            throw new InvalidDataException($".npy file '{path}': expected the magic \\x93NUMPY at the start; found {(b.Length >= 6 ? BitConverter.ToString(b, 0, 6) : $"{b.Length} bytes")}.");
        int major = b[6];
        int headerLen, start;
        if (major == 1) { headerLen = BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(8)); start = 10; }
        else if (major is 2 or 3) { headerLen = (int)BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(8)); start = 12; }
        else throw new InvalidDataException($".npy file '{path}': expected format version 1, 2 or 3; found {major}.");
        if (start + headerLen > b.Length) throw new InvalidDataException($".npy file '{path}': the header claims {headerLen} bytes but the file has {b.Length - start} after the preamble.");
        string header = Encoding.Latin1.GetString(b, start, headerLen);
        var d = DescrRe().Match(header);
        var f = FortranRe().Match(header);
        var s = ShapeRe().Match(header);
        if (!d.Success || !f.Success || !s.Success) throw new InvalidDataException($".npy file '{path}': expected a header dict with descr, fortran_order and shape; found {header.Trim()}.");
        string descr = d.Groups[1].Value;
        if (f.Groups[1].Value == "True") throw new InvalidDataException($".npy file '{path}': Fortran (column-major) order is not supported; save it with np.ascontiguousarray.");
        var shape = s.Groups[1].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(x => int.Parse(x, CultureInfo.InvariantCulture)).ToArray();
        long count = shape.Aggregate(1L, (a, x) => a * x);
        int size = descr switch
        {
            "<f4" => 4,
            "<f8" => 8,
            "|u1" or "<u1" => 1,
            "<i4" => 4,
            "<i8" => 8,
            _ => throw new InvalidDataException($".npy file '{path}': dtype '{descr}' is not supported; expected float32 ('<f4'), float64 ('<f8'), uint8 ('|u1'), int32 or int64."),
        };
        int dataStart = start + headerLen;
        if (b.Length - dataStart != count * size)
            throw new InvalidDataException($".npy file '{path}': shape ({string.Join(", ", shape)}) of '{descr}' needs {count * size} data bytes; found {b.Length - dataStart}.");
        var data = new double[count];
        var span = b.AsSpan(dataStart);
        for (long i = 0; i < count; i++)
        {
            int o = (int)(i * size);
            data[i] = descr switch
            {
                "<f4" => BinaryPrimitives.ReadSingleLittleEndian(span[o..]),
                "<f8" => BinaryPrimitives.ReadDoubleLittleEndian(span[o..]),
                "<i4" => BinaryPrimitives.ReadInt32LittleEndian(span[o..]),
                "<i8" => BinaryPrimitives.ReadInt64LittleEndian(span[o..]),
                _ => span[o],
            };
        }
        return new NpyArray(path, descr, shape, data);
    }

    /// <summary>Features [n, width] (or [n, ...], flattened) and labels [n] from two .npy files.</summary>
    public static Dataset ReadPair(string featuresPath, string labelsPath, bool classification = true)
    {
        var x = Read(featuresPath);
        var y = Read(labelsPath);
        if (x.Shape.Length < 2) throw new InvalidDataException($".npy file '{featuresPath}': expected features with at least 2 dimensions (samples, features); found shape ({string.Join(", ", x.Shape)}).");
        int n = x.Shape[0];
        if (y.Shape.Length == 0 || y.Shape[0] != n)
            throw new InvalidDataException($".npy files '{featuresPath}' and '{labelsPath}': expected {n} labels (one per sample); found shape ({string.Join(", ", y.Shape)}).");
        int width = (int)(x.Count / Math.Max(1, n));
        var features = Array.ConvertAll(x.Data, v => (float)v);
        if (!classification)
        {
            int outs = (int)(y.Count / Math.Max(1, n));
            return new Dataset(features, null, Array.ConvertAll(y.Data, v => (float)v), width, outs);
        }
        if (y.Shape.Length != 1) throw new InvalidDataException($".npy file '{labelsPath}': expected 1-dimensional class labels; found shape ({string.Join(", ", y.Shape)}).");
        var labels = new int[n];
        for (int i = 0; i < n; i++)
        {
            double v = y.Data[i];
            if (v < 0 || v != Math.Floor(v) || v > int.MaxValue)
                throw new InvalidDataException($".npy file '{labelsPath}': label {v.ToString(CultureInfo.InvariantCulture)} of sample {i} is not a class index (a whole number >= 0).");
            labels[i] = (int)v;
        }
        return new Dataset(features, labels, null, width, n == 0 ? 0 : labels.Max() + 1);
    }
}
