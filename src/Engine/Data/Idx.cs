// IDX files (MNIST, Fashion-MNIST, KMNIST, EMNIST): big-endian header
//   bytes 0-1: 0, byte 2: element type (0x08 = ubyte), byte 3: number of dimensions d,
//   then d big-endian int32 sizes, then prod(sizes) elements. Gzip-compressed files (magic 1f 8b)
//   are read through GZipStream, no further than the header says. Every inconsistency (a corrupt gzip
//   stream, sizes beyond one .NET array, no samples, zero-width images included) is an
//   InvalidDataException naming the file, what was expected and what was found.
using System.Buffers.Binary;
using System.IO.Compression;
using System.Numerics;

namespace Backprop.Engine.Data;

/// <summary>An IDX array of unsigned bytes: its dimensions and its data.</summary>
public sealed record IdxArray(string Path, int[] Dimensions, byte[] Data)
{
    /// <summary>The first dimension (number of items).</summary>
    public int Count => Dimensions[0];
    /// <summary>Elements per item (product of the other dimensions; 1 for labels).</summary>
    public int ItemSize => Dimensions.Skip(1).Aggregate(1, (a, b) => a * b);
}

/// <summary>Reads and validates IDX files.</summary>
public static class Idx
{
    /// <summary>Reads an IDX file of unsigned bytes (raw or gzip), checking magic, dimensions and length.</summary>
    public static IdxArray Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"IDX file '{path}' does not exist.", path);
        using var fs = File.OpenRead(path);
        int b0 = fs.ReadByte(), b1 = fs.ReadByte();
        fs.Position = 0;
        if (b0 == 0x1f && b1 == 0x8b) return ReadGzip(path, fs);
        if (fs.Length > Array.MaxLength) throw new InvalidDataException($"IDX file '{path}': the file has {fs.Length} bytes; at most {Array.MaxLength} can be read.");
        var bytes = new byte[fs.Length];
        fs.ReadExactly(bytes);
        return Parse(path, bytes);
    }

    /// <summary>Parses IDX bytes already in memory; <paramref name="path"/> names them in errors.</summary>
    public static IdxArray Parse(string path, byte[] bytes)
    {
        int d = Preamble(path, bytes, "");
        var dims = Dimensions(path, bytes, d, "");
        CheckLength(path, dims, bytes.Length - (4 + 4 * d), "");
        return new IdxArray(path, dims, bytes.AsSpan(4 + 4 * d).ToArray());
    }

    /// <summary>
    /// Decompresses as far as the header says and no further: the header first, then the data bytes it
    /// needs (grown as they arrive, so a header that claims more than the stream holds costs only what it holds),
    /// then counts what is left, so a truncated or padded stream gets the same message as a raw file.
    /// </summary>
    private static IdxArray ReadGzip(string path, Stream fs)
    {
        const string Where = " after decompression";
        using var gz = new GZipStream(fs, CompressionMode.Decompress);
        var head = new byte[4 + 4 * 4];
        int got = Fill(path, gz, head.AsSpan(0, 4));
        int d = Preamble(path, head.AsSpan(0, got), Where);
        got += Fill(path, gz, head.AsSpan(4, 4 * d));
        var dims = Dimensions(path, head.AsSpan(0, got), d, Where);
        long count = Elements(dims);
        var data = new byte[Math.Min(count, 1 << 20)];
        int filled = 0;
        while (filled < count)
        {
            if (filled == data.Length) Array.Resize(ref data, (int)Math.Min(count, 2L * data.Length));
            filled += Fill(path, gz, data.AsSpan(filled));
            if (filled < data.Length) break; // the stream ended
        }
        long found = filled;
        if (filled == count)
        {
            var rest = new byte[1 << 16];
            for (int n; (n = Fill(path, gz, rest)) > 0;) found += n;
        }
        CheckLength(path, dims, found, Where);
        return new IdxArray(path, dims, data);
    }

    /// <summary>Reads until <paramref name="buffer"/> is full or the stream ends; a corrupt stream is named as such.</summary>
    private static int Fill(string path, GZipStream gz, Span<byte> buffer)
    {
        try { return gz.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false); }
        catch (InvalidDataException e) { throw new InvalidDataException($"IDX file '{path}': the gzip stream is corrupt ({e.Message}).", e); }
    }

    /// <summary>Checks the first 4 bytes (magic, element type, number of dimensions) and returns the number of dimensions.</summary>
    private static int Preamble(string path, ReadOnlySpan<byte> bytes, string where)
    {
        if (bytes.Length < 4)
            throw new InvalidDataException($"IDX file '{path}': expected at least a 4-byte header; found {bytes.Length} bytes{where}.");
        if (bytes[0] != 0 || bytes[1] != 0)
            throw new InvalidDataException($"IDX file '{path}': expected magic bytes 00 00 at the start; found {bytes[0]:x2} {bytes[1]:x2} (not an IDX file).");
        if (bytes[2] != 0x08)
            throw new InvalidDataException($"IDX file '{path}': expected element type 0x08 (unsigned byte); found 0x{bytes[2]:x2}.");
        int d = bytes[3];
        if (d < 1 || d > 4) throw new InvalidDataException($"IDX file '{path}': expected 1 to 4 dimensions; found {d}.");
        return d;
    }

    /// <summary>The <paramref name="d"/> sizes after the preamble, each >= 0, whose products fit in one .NET array.</summary>
    private static int[] Dimensions(string path, ReadOnlySpan<byte> bytes, int d, string where)
    {
        int header = 4 + 4 * d;
        if (bytes.Length < header) throw new InvalidDataException($"IDX file '{path}': expected a {header}-byte header for {d} dimensions; the file has {bytes.Length} bytes{where}.");
        var dims = new int[d];
        for (int i = 0; i < d; i++)
        {
            dims[i] = BinaryPrimitives.ReadInt32BigEndian(bytes[(4 + 4 * i)..]);
            if (dims[i] < 0) throw new InvalidDataException($"IDX file '{path}': dimension {i} is negative ({dims[i]}).");
        }
        // The whole array and one item (all but the first dimension) must each fit: with a first dimension of 0
        // the whole is empty, but the item size is still what a reader multiplies by.
        var total = dims.Aggregate(BigInteger.One, (a, x) => a * x);
        var item = dims.Skip(1).Aggregate(BigInteger.One, (a, x) => a * x);
        if (total > Array.MaxLength || item > Array.MaxLength)
            throw new InvalidDataException(
                $"IDX file '{path}': dimensions [{string.Join(", ", dims)}] describe {(total > Array.MaxLength ? total : item)} bytes{(total > Array.MaxLength ? "" : " per item")}; at most {Array.MaxLength} fit in one array.");
        return dims;
    }

    private static long Elements(int[] dims) => dims.Aggregate(1L, (a, x) => a * x);

    private static void CheckLength(string path, int[] dims, long found, string where)
    {
        long count = Elements(dims);
        int header = 4 + 4 * dims.Length;
        if (found != count)
            throw new InvalidDataException(
                $"IDX file '{path}': dimensions [{string.Join(", ", dims)}] need {count} data bytes after the {header}-byte header; found {found}{where} (truncated or padded file).");
    }

    /// <summary>
    /// Reads an image file and a label file and checks that they agree. With <paramref name="classes"/> given, labels
    /// must be below it; otherwise the number of classes is the largest label + 1.
    /// </summary>
    public static Dataset ReadPair(string imagesPath, string labelsPath, int? classes = null)
    {
        var images = Read(imagesPath);
        var labels = Read(labelsPath);
        CheckImages(images);
        if (labels.Dimensions.Length != 1)
            throw new InvalidDataException($"IDX file '{labelsPath}': expected labels with 1 dimension; found [{string.Join(", ", labels.Dimensions)}].");
        if (labels.Count == 0)
            throw new InvalidDataException($"IDX file '{labelsPath}': dimensions [{string.Join(", ", labels.Dimensions)}] hold no samples; expected at least one label.");
        if (images.Count != labels.Count)
            throw new InvalidDataException($"IDX files '{imagesPath}' and '{labelsPath}': expected as many labels as images; found {images.Count} images and {labels.Count} labels.");
        var y = new int[labels.Count];
        int maxLabel = 0;
        for (int i = 0; i < y.Length; i++)
        {
            y[i] = labels.Data[i];
            if (y[i] >= classes)
                throw new InvalidDataException($"IDX file '{labelsPath}': label {y[i]} of sample {i} is outside [0, {classes}).");
            maxLabel = Math.Max(maxLabel, y[i]);
        }
        return new Dataset(Pixels(images), y, null, images.ItemSize, classes ?? maxLabel + 1);
    }

    /// <summary>Reads an image file alone, without labels (for predictions).</summary>
    public static Dataset ReadImages(string imagesPath)
    {
        var images = Read(imagesPath);
        CheckImages(images);
        return new Dataset(Pixels(images), null, null, images.ItemSize, 0);
    }

    private static float[] Pixels(IdxArray images)
    {
        var x = new float[(long)images.Count * images.ItemSize];
        for (long i = 0; i < x.Length; i++) x[i] = images.Data[i];
        return x;
    }

    // Images: at least 2 dimensions, at least one image, at least one pixel per image.
    private static void CheckImages(IdxArray images)
    {
        string imagesPath = images.Path;
        if (images.Dimensions.Length < 2)
            throw new InvalidDataException($"IDX file '{imagesPath}': expected images with at least 2 dimensions (count, pixels…); found [{string.Join(", ", images.Dimensions)}].");
        if (images.Count == 0)
            throw new InvalidDataException($"IDX file '{imagesPath}': dimensions [{string.Join(", ", images.Dimensions)}] hold no samples; expected at least one image.");
        int zero = Array.IndexOf(images.Dimensions, 0, 1);
        if (zero > 0)
            throw new InvalidDataException(
                $"IDX file '{imagesPath}': dimensions [{string.Join(", ", images.Dimensions)}] give zero-width images (dimension {zero} is 0); expected at least one pixel per image.");
    }
}
