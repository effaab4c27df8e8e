// Writes a model's parameters as safetensors: an 8-byte little-endian header length N, N bytes of
// JSON {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ..., "__metadata__": {...}}
// (padded with spaces to a multiple of 8), then the raw little-endian data: float32, or for inference
// files float16 / bfloat16 (round to nearest even; a value beyond the type's range is refused). Names follow a
// PyTorch state_dict of the equivalent nn.Sequential ("0.weight" [out, in], "0.bias", "2.weight", ...),
// so safetensors.torch.load_file + load_state_dict read it unchanged. The file is written to a
// temporary name in the same folder and renamed, so a crash never leaves a half-written file.
// Test seams: with BACKPROP_TEST_KILL_AFTER_BYTES=N in the environment, the process kills itself (SIGKILL,
// as `kill -9` would: no finally block runs) once N bytes of a file have been written, so a test can
// interrupt a write at a chosen byte instead of racing a timer; with BACKPROP_TEST_FAIL_AFTER_BYTES=N the
// write fails there with an IOException, as a full disk does.
using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace Backprop.Engine.Checkpoints;

/// <summary>The element types weights can be written in.</summary>
public enum TensorDtype
{
    /// <summary>float32 (training checkpoints are always F32).</summary>
    F32,
    /// <summary>IEEE float16: 11 significant bits, largest finite value 65504.</summary>
    F16,
    /// <summary>bfloat16: float32's range with 8 significant bits.</summary>
    BF16,
}

/// <summary>Saves parameters in the safetensors format.</summary>
public static class SafeTensorsWriter
{
    /// <summary>The environment variable of the kill-after-N-bytes test seam.</summary>
    internal const string KillAfterBytesVariable = "BACKPROP_TEST_KILL_AFTER_BYTES";

    /// <summary>The environment variable of the fail-after-N-bytes test seam.</summary>
    internal const string FailAfterBytesVariable = "BACKPROP_TEST_FAIL_AFTER_BYTES";

    private static readonly long s_killAfter = Bytes(KillAfterBytesVariable), s_failAfter = Bytes(FailAfterBytesVariable);

    private static long Bytes(string variable) =>
        long.TryParse(Environment.GetEnvironmentVariable(variable), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long n) ? n : -1;

    /// <summary>
    /// Writes <paramref name="tensors"/> to <paramref name="path"/> atomically, with string metadata, as <paramref name="dtype"/>
    /// (an <see cref="ArgumentException"/> naming the tensor and element when a value does not fit F16 or BF16); the tensors named
    /// in <paramref name="keepFloat32"/> stay F32 (counts a narrow type would round).
    /// </summary>
    public static void Write(string path, IReadOnlyList<(string Name, int[] Shape, float[] Data)> tensors, IReadOnlyDictionary<string, string>? metadata = null,
        TensorDtype dtype = TensorDtype.F32, IReadOnlySet<string>? keepFloat32 = null)
    {
        var (json, narrow) = Header(tensors, metadata, dtype, keepFloat32);
        AtomicFile.Write(path, tmp =>
        {
            using var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None);
            WriteTo(fs, json, tensors, narrow, seams: true);
            fs.Flush(flushToDisk: true);
        });
    }

    /// <summary>
    /// Writes <paramref name="tensors"/> to <paramref name="stream"/> in the safetensors format (as <see cref="Write(string, IReadOnlyList{ValueTuple{string, int[], float[]}}, IReadOnlyDictionary{string, string}?, TensorDtype, IReadOnlySet{string}?)"/>
    /// writes a file): for containers that hold the bytes themselves, such as an ML.NET model zip.
    /// </summary>
    public static void Write(Stream stream, IReadOnlyList<(string Name, int[] Shape, float[] Data)> tensors, IReadOnlyDictionary<string, string>? metadata = null,
        TensorDtype dtype = TensorDtype.F32, IReadOnlySet<string>? keepFloat32 = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var (json, narrow) = Header(tensors, metadata, dtype, keepFloat32);
        WriteTo(stream, json, tensors, narrow, seams: false);
    }

    private static (byte[] Json, List<byte[]?> Narrow) Header(IReadOnlyList<(string Name, int[] Shape, float[] Data)> tensors, IReadOnlyDictionary<string, string>? metadata,
        TensorDtype dtype, IReadOnlySet<string>? keepFloat32)
    {
        if (!Enum.IsDefined(dtype)) throw new ArgumentOutOfRangeException(nameof(dtype), dtype, $"dtype must be F32, F16 or BF16; got {(int)dtype}.");
        var header = new Dictionary<string, object>();
        if (metadata is { Count: > 0 }) header["__metadata__"] = metadata;
        long offset = 0;
        var narrow = new List<byte[]?>(); // per tensor: its narrow bytes, or null for F32
        foreach (var (name, shape, data) in tensors)
        {
            var own = keepFloat32 is not null && keepFloat32.Contains(name) ? TensorDtype.F32 : dtype;
            long bytes = (long)data.Length * (own == TensorDtype.F32 ? 4 : 2);
            header[name] = new Dictionary<string, object> { ["dtype"] = own.ToString(), ["shape"] = shape, ["data_offsets"] = new[] { offset, offset + bytes } };
            offset += bytes;
            narrow.Add(own != TensorDtype.F32 ? Narrow(name, data, own) : null);
        }
        return (Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header)), narrow);
    }

    // The 8-byte header length, the header padded with spaces to 8 bytes, the tensors' bytes in order. The file writer's
    // test seams (a full disk, a kill part-way) count the bytes written.
    private static void WriteTo(Stream fs, byte[] json, IReadOnlyList<(string Name, int[] Shape, float[] Data)> tensors, List<byte[]?> narrow, bool seams)
    {
        int padded = (json.Length + 7) / 8 * 8;
        long written = 0;
        void Put(ReadOnlySpan<byte> bytes)
        {
            if (seams && s_failAfter >= 0 && written + bytes.Length > s_failAfter)
                throw new IOException($"No space left on device ({FailAfterBytesVariable}={s_failAfter}, a test seam)");
            if (seams && s_killAfter >= 0 && written + bytes.Length > s_killAfter)
            {
                fs.Write(bytes[..(int)Math.Max(0, s_killAfter - written)]);
                fs.Flush();
                if (fs is FileStream f) f.Flush(flushToDisk: true);
                System.Diagnostics.Process.GetCurrentProcess().Kill();
                Thread.Sleep(Timeout.Infinite);
            }
            fs.Write(bytes);
            written += bytes.Length;
        }
        Span<byte> buf = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(buf, (ulong)padded);
        Put(buf);
        Put(json);
        Span<byte> space = stackalloc byte[8];
        space.Fill((byte)' ');
        Put(space[..(padded - json.Length)]);
        for (int t = 0; t < tensors.Count; t++)
        {
            if (narrow[t] is { } bytes)
            {
                Put(bytes);
                continue;
            }
            var data = tensors[t].Data;
            if (BitConverter.IsLittleEndian) Put(System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan()));
            else foreach (var v in data) { BinaryPrimitives.WriteSingleLittleEndian(buf, v); Put(buf[..4]); }
        }
    }

    /// <summary>float32 to bfloat16 bits, rounding to nearest even (NaN stays a quiet NaN).</summary>
    public static ushort ToBFloat16(float v)
    {
        if (float.IsNaN(v)) return 0x7FC0;
        uint bits = BitConverter.SingleToUInt32Bits(v);
        return (ushort)((bits + 0x7FFFu + ((bits >> 16) & 1)) >> 16);
    }

    // The little-endian F16 or BF16 bytes of one tensor; a finite value that would become infinite is refused.
    private static byte[] Narrow(string name, float[] data, TensorDtype dtype)
    {
        var r = new byte[data.Length * 2];
        for (int i = 0; i < data.Length; i++)
        {
            float v = data[i];
            if (dtype == TensorDtype.F16)
            {
                var h = (Half)v;
                if (float.IsFinite(v) && Half.IsInfinity(h))
                    throw new ArgumentException($"tensor '{name}' element {i} is {v.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}, beyond F16's range (±65504); write it as F32 or BF16.", nameof(data));
                BinaryPrimitives.WriteHalfLittleEndian(r.AsSpan(2 * i), h);
            }
            else
            {
                ushort b = ToBFloat16(v);
                if (float.IsFinite(v) && (b & 0x7F80) == 0x7F80)
                    throw new ArgumentException($"tensor '{name}' element {i} is {v.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}, beyond BF16's range; write it as F32.", nameof(data));
                BinaryPrimitives.WriteUInt16LittleEndian(r.AsSpan(2 * i), b);
            }
        }
        return r;
    }
}
