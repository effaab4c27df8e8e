// IDX files (MNIST, Fashion-MNIST, KMNIST, EMNIST): big-endian header
//   bytes 0-1: 0, byte 2: element type (0x08 = ubyte), byte 3: number of dimensions d,
//   then d big-endian int32 sizes, then prod(sizes) elements. Gzip-compressed files (magic 1f 8b)
//   are read through GZipStream. Every inconsistency is an error naming the file, what was expected
//   and what was found.
using System.Buffers.Binary;
using System.IO.Compression;

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
        byte[] bytes;
        using (var fs = File.OpenRead(path))
        {
            int b0 = fs.ReadByte(), b1 = fs.ReadByte();
            fs.Position = 0;
            if (b0 == 0x1f && b1 == 0x8b)
            {
                using var gz = new GZipStream(fs, CompressionMode.Decompress);
                using var ms = new MemoryStream();
                try { gz.CopyTo(ms); }
                catch (InvalidDataException e) { throw new InvalidDataException($"IDX file '{path}': the gzip stream is corrupt ({e.Message}).", e); }
                bytes = ms.ToArray();
            }
            else
            {
                bytes = new byte[fs.Length];
                fs.ReadExactly(bytes);
            }
        }
        return Parse(path, bytes);
    }

    /// <summary>Parses IDX bytes already in memory; <paramref name="path"/> names them in errors.</summary>
    public static IdxArray Parse(string path, byte[] bytes)
    {
        if (bytes.Length < 4) throw new InvalidDataException($"IDX file '{path}': expected at least a 4-byte header; found {bytes.Length} bytes.");
        if (bytes[0] != 0 || bytes[1] != 0)
            throw new InvalidDataException($"IDX file '{path}': expected magic bytes 00 00 at the start; found {bytes[0]:x2} {bytes[1]:x2} (not an IDX file).");
        if (bytes[2] != 0x08)
            throw new InvalidDataException($"IDX file '{path}': expected element type 0x08 (unsigned byte); found 0x{bytes[2]:x2}.");
        int d = bytes[3];
        if (d < 1 || d > 4) throw new InvalidDataException($"IDX file '{path}': expected 1 to 4 dimensions; found {d}.");
        int header = 4 + 4 * d;
        if (bytes.Length < header) throw new InvalidDataException($"IDX file '{path}': expected a {header}-byte header for {d} dimensions; the file has {bytes.Length} bytes.");
        var dims = new int[d];
        long count = 1;
        for (int i = 0; i < d; i++)
        {
            dims[i] = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(4 + 4 * i));
            if (dims[i] < 0) throw new InvalidDataException($"IDX file '{path}': dimension {i} is negative ({dims[i]}).");
            count *= dims[i];
        }
        if (bytes.Length - header != count)
            throw new InvalidDataException(
                $"IDX file '{path}': dimensions [{string.Join(", ", dims)}] need {count} data bytes after the {header}-byte header; found {bytes.Length - header} (truncated or padded file).");
        return new IdxArray(path, dims, bytes.AsSpan(header).ToArray());
    }

    /// <summary>
    /// Reads an image file and a label file and checks that they agree. With <paramref name="classes"/> given, labels
    /// must be below it; otherwise the number of classes is the largest label + 1.
    /// </summary>
    public static Dataset ReadPair(string imagesPath, string labelsPath, int? classes = null)
    {
        var images = Read(imagesPath);
        var labels = Read(labelsPath);
        if (images.Dimensions.Length < 2)
            throw new InvalidDataException($"IDX file '{imagesPath}': expected images with at least 2 dimensions (count, pixels…); found [{string.Join(", ", images.Dimensions)}].");
        if (labels.Dimensions.Length != 1)
            throw new InvalidDataException($"IDX file '{labelsPath}': expected labels with 1 dimension; found [{string.Join(", ", labels.Dimensions)}].");
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
        int width = images.ItemSize;
        var x = new float[(long)images.Count * width];
        for (long i = 0; i < x.Length; i++) x[i] = images.Data[i];
        return new Dataset(x, y, null, width, classes ?? maxLabel + 1);
    }
}
