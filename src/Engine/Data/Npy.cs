// NumPy .npy arrays: magic "\x93NUMPY", version (1.0: 2-byte header length; 2.0/3.0: 4-byte), then a
// Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (n, m), } and the raw data.
// Supported: float32 ('<f4'), float64 ('<f8'), uint8 ('|u1'), and for labels int32/int64 ('<i4', '<i8'),
// in C order; shapes as Python 3 or Python 2 writes them ((60000, 784) or (60000L, 784L)). Float data
// must be finite. Anything else is an InvalidDataException naming the file, what was found and what
// is accepted.
using System.Buffers.Binary;
using System.Globalization;
using System.Numerics;
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
    [GeneratedRegex(@"'descr'\s*:\s*\[")]
    private static partial Regex StructuredDescrRe();
    [GeneratedRegex(@"'fortran_order'\s*:\s*(True|False)")]
    private static partial Regex FortranRe();
    [GeneratedRegex(@"'shape'\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapeRe();

    private const string Accepted = "float32 ('<f4'), float64 ('<f8'), uint8 ('|u1'), int32 ('<i4') or int64 ('<i8')";

    /// <summary>Reads and validates a .npy file.</summary>
    public static NpyArray Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($".npy file '{path}' does not exist.", path);
        long length = new FileInfo(path).Length;
        if (length > Array.MaxLength)
            throw new InvalidDataException($".npy file '{path}': the file has {length} bytes; at most {Array.MaxLength} can be read.");
        var b = File.ReadAllBytes(path);
        if (b.Length < 6 || b[0] != 0x93 || Encoding.ASCII.GetString(b, 1, 5) != "NUMPY")
            throw new InvalidDataException($".npy file '{path}': expected the magic \\x93NUMPY at the start; found {(b.Length >= 6 ? BitConverter.ToString(b, 0, 6) : $"{b.Length} bytes")}.");
        if (b.Length < 8) throw new InvalidDataException($".npy file '{path}': expected a 2-byte version after the magic; the file ends after {b.Length} bytes.");
        int major = b[6], minor = b[7];
        if (major is not (1 or 2 or 3)) throw new InvalidDataException($".npy file '{path}': expected format version 1, 2 or 3; found {major}.");
        // The preamble: magic (6), version (2), header length (2 bytes in version 1, 4 in versions 2 and 3).
        int start = major == 1 ? 10 : 12;
        if (b.Length < start)
            throw new InvalidDataException(
                $".npy file '{path}': a version {major}.{minor} preamble is {start} bytes (magic, version, {start - 8}-byte header length); the file has {b.Length} (truncated header).");
        long headerLen = major == 1 ? BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(8)) : BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(8));
        if (start + headerLen > b.Length)
            throw new InvalidDataException(
                $".npy file '{path}': the version {major}.{minor} header claims {headerLen} bytes but the file has {b.Length - start} after the {start}-byte preamble (truncated header).");
        string header = Encoding.Latin1.GetString(b, start, (int)headerLen);
        var d = DescrRe().Match(header);
        if (!d.Success && StructuredDescrRe().IsMatch(header))
            throw new InvalidDataException($".npy file '{path}': structured (record) dtypes are not supported; found {Clip(header)}; expected a plain {Accepted}.");
        var f = FortranRe().Match(header);
        var s = ShapeRe().Match(header);
        if (!d.Success || !f.Success || !s.Success) throw new InvalidDataException($".npy file '{path}': expected a header dict with descr, fortran_order and shape; found {Clip(header)}.");
        string descr = d.Groups[1].Value;
        if (f.Groups[1].Value == "True")
            throw new InvalidDataException(
                $".npy file '{path}': Fortran (column-major) order is not supported; found 'fortran_order': True, expected False (C order); save it with np.ascontiguousarray.");
        var shape = ParseShape(path, s.Groups[1].Value);
        int size = descr switch
        {
            "<f4" => 4,
            "<f8" => 8,
            "|u1" or "<u1" => 1,
            "<i4" => 4,
            "<i8" => 8,
            ['|' or '<' or '>' or '=', 'O', ..] => throw new InvalidDataException(
                $".npy file '{path}': dtype '{descr}' (an object array of pickled Python objects) is not supported; expected {Accepted}."),
            ['>', ..] => throw new InvalidDataException(
                $".npy file '{path}': dtype '{descr}' is not supported (big-endian); expected {Accepted}; convert it with .astype('<{descr[1..]}')."),
            _ => throw new InvalidDataException($".npy file '{path}': dtype '{descr}' is not supported; expected {Accepted}."),
        };
        long count = Elements(path, shape);
        int dataStart = start + (int)headerLen;
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
            if (!double.IsFinite(data[i]))
                throw new InvalidDataException(
                    $".npy file '{path}': element {i} (index [{Index(i, shape)}]) is {Text(data[i])}; expected finite numbers (NaN and ±Infinity are not accepted).");
        }
        return new NpyArray(path, descr, shape, data);
    }

    /// <summary>
    /// The shape tuple's contents: whole numbers >= 0, comma-separated, with an optional trailing comma
    /// ("3," is a 1-tuple, "" a scalar) and Python 2's long suffix ("60000L").
    /// </summary>
    private static int[] ParseShape(string path, string text)
    {
        var items = text.Split(',').Select(x => x.Trim()).ToList();
        if (items.Count > 1 && items[^1].Length == 0) items.RemoveAt(items.Count - 1);
        if (items.Count == 1 && items[0].Length == 0) return [];
        var shape = new int[items.Count];
        for (int i = 0; i < items.Count; i++)
        {
            string item = items[i].EndsWith('L') || items[i].EndsWith('l') ? items[i][..^1] : items[i];
            if (!BigInteger.TryParse(item, NumberStyles.None, CultureInfo.InvariantCulture, out var v))
                throw new InvalidDataException($".npy file '{path}': shape ({Clip(text)}) has '{Clip(items[i])}' at position {i}; expected whole numbers >= 0.");
            if (v > int.MaxValue)
                throw new InvalidDataException($".npy file '{path}': shape ({Clip(text)}) has dimension {v} at position {i}; expected at most {int.MaxValue}.");
            shape[i] = (int)v;
        }
        return shape;
    }

    /// <summary>The product of the shape, refused when it is more than one .NET array holds.</summary>
    private static long Elements(string path, int[] shape)
    {
        var product = shape.Aggregate(BigInteger.One, (a, x) => a * x);
        if (product > Array.MaxLength)
            throw new InvalidDataException($".npy file '{path}': shape ({string.Join(", ", shape)}) holds {product} elements; at most {Array.MaxLength} fit in one array.");
        return (long)product;
    }

    /// <summary>The C-order index tuple of flat element <paramref name="flat"/>.</summary>
    private static string Index(long flat, int[] shape)
    {
        var index = new long[shape.Length];
        for (int k = shape.Length - 1; k >= 0; k--)
        {
            index[k] = flat % shape[k];
            flat /= shape[k];
        }
        return string.Join(", ", index);
    }

    private static string Text(double v) => v.ToString("R", CultureInfo.InvariantCulture);

    private static string Clip(string text)
    {
        text = text.Trim();
        return text.Length <= 200 ? text : text[..200] + "…";
    }

    /// <summary>The values as float, refusing those outside the float32 range (they would become ±Infinity).</summary>
    private static float[] ToFloat(NpyArray a)
    {
        var r = new float[a.Data.Length];
        for (long i = 0; i < r.LongLength; i++)
        {
            r[i] = (float)a.Data[i];
            if (!float.IsFinite(r[i]))
                throw new InvalidDataException(
                    $".npy file '{a.Path}': element {i} (index [{Index(i, a.Shape)}]) is {Text(a.Data[i])}, outside the float32 range (±{float.MaxValue.ToString(CultureInfo.InvariantCulture)}).");
        }
        return r;
    }

    /// <summary>
    /// Writes <paramref name="data"/> as a float32 ('&lt;f4', C order) .npy file of <paramref name="shape"/> (format 1.0, header
    /// padded to 64 bytes), to a temporary name in the same folder and renamed, so a failure leaves no half-written file.
    /// </summary>
    public static void WriteFloat32(string path, ReadOnlySpan<float> data, params int[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        long count = shape.Aggregate(1L, (a, b) => b >= 0 ? a * b : throw new ArgumentOutOfRangeException(nameof(shape), b, $"shape entries must be >= 0; got {b}."));
        if (count != data.Length) throw new ArgumentException($"shape ({string.Join(", ", shape)}) holds {count} values; data has {data.Length}.", nameof(data));
        string dims = shape.Length == 1 ? $"{shape[0]}," : string.Join(", ", shape);
        string dict = $"{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}";
        int total = (10 + dict.Length + 1 + 63) / 64 * 64; // preamble + dict + '\n', padded with spaces
        string header = dict.PadRight(total - 10 - 1) + "\n";
        var bytes = new byte[10 + header.Length + 4L * data.Length];
        bytes[0] = 0x93;
        Encoding.ASCII.GetBytes("NUMPY", bytes.AsSpan(1));
        bytes[6] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(8), (ushort)header.Length);
        Encoding.ASCII.GetBytes(header, bytes.AsSpan(10));
        for (int i = 0; i < data.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(10 + header.Length + 4 * i), data[i]);
        AtomicFile.WriteAllBytes(path, bytes);
    }

    /// <summary>Features [n, width] (or [n, ...], flattened) of one .npy file, without labels (for predictions).</summary>
    public static Dataset ReadFeatures(string featuresPath)
    {
        var x = Read(featuresPath);
        int n = CheckFeatures(x);
        return new Dataset(ToFloat(x), null, null, (int)(x.Count / n), 0);
    }

    // The number of samples of a features array: at least 2 dimensions, at least one sample, no zero-sized feature dimension.
    private static int CheckFeatures(NpyArray x)
    {
        string featuresPath = x.Path;
        if (x.Shape.Length < 2) throw new InvalidDataException($".npy file '{featuresPath}': expected features with at least 2 dimensions (samples, features); found shape ({string.Join(", ", x.Shape)}).");
        int n = x.Shape[0];
        if (n == 0) throw new InvalidDataException($".npy file '{featuresPath}': shape ({string.Join(", ", x.Shape)}) holds no samples; expected at least one.");
        int zero = Array.IndexOf(x.Shape, 0, 1);
        if (zero > 0)
            throw new InvalidDataException(
                $".npy file '{featuresPath}': shape ({string.Join(", ", x.Shape)}) has a zero-sized feature dimension (dimension {zero}); expected at least one feature per sample.");
        return n;
    }

    /// <summary>Features [n, width] (or [n, ...], flattened) and labels [n] from two .npy files.</summary>
    public static Dataset ReadPair(string featuresPath, string labelsPath, bool classification = true)
    {
        var x = Read(featuresPath);
        var y = Read(labelsPath);
        int n = CheckFeatures(x);
        if (y.Shape.Length == 0 || y.Shape[0] != n)
            throw new InvalidDataException($".npy files '{featuresPath}' and '{labelsPath}': expected {n} labels (one per sample); found shape ({string.Join(", ", y.Shape)}).");
        int width = (int)(x.Count / n);
        var features = ToFloat(x);
        if (!classification)
        {
            int outs = (int)(y.Count / n);
            if (outs == 0)
                throw new InvalidDataException($".npy file '{labelsPath}': shape ({string.Join(", ", y.Shape)}) has a zero-sized target dimension; expected at least one target per sample.");
            return new Dataset(features, null, ToFloat(y), width, outs);
        }
        if (y.Shape.Length != 1) throw new InvalidDataException($".npy file '{labelsPath}': expected 1-dimensional class labels; found shape ({string.Join(", ", y.Shape)}).");
        var labels = new int[n];
        for (int i = 0; i < n; i++)
        {
            double v = y.Data[i];
            // Below int.MaxValue so that the class count (largest + 1) is an int too.
            if (v < 0 || v != Math.Floor(v) || v >= int.MaxValue)
                throw new InvalidDataException(
                    $".npy file '{labelsPath}': label {Text(v)} of sample {i} is not a class index (a whole number >= 0 and below {int.MaxValue}).");
            labels[i] = (int)v;
        }
        return new Dataset(features, labels, null, width, labels.Max() + 1);
    }
}
