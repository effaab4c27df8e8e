// A minimal protocol-buffers writer (varint, fixed32, length-delimited fields) for the ONNX export;
// no protobuf package is needed for the handful of messages an MLP uses.
using System.Buffers;
using System.Text;

namespace Backprop.Engine.Export;

internal sealed class Protobuf
{
    private readonly ArrayBufferWriter<byte> _s = new();

    public byte[] ToArray() => _s.WrittenSpan.ToArray();

    private void WriteByte(byte b)
    {
        _s.GetSpan(1)[0] = b;
        _s.Advance(1);
    }

    private void Varint(ulong v)
    {
        while (v >= 0x80) { WriteByte((byte)(v | 0x80)); v >>= 7; }
        WriteByte((byte)v);
    }

    private void Key(int field, int wire) => Varint((ulong)((field << 3) | wire));

    public Protobuf Int(int field, long v) { Key(field, 0); Varint((ulong)v); return this; }

    public Protobuf Float(int field, float v)
    {
        Key(field, 5);
        Span<byte> b = stackalloc byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteSingleLittleEndian(b, v);
        _s.Write((ReadOnlySpan<byte>)b);
        return this;
    }

    public Protobuf Bytes(int field, ReadOnlySpan<byte> bytes) { Key(field, 2); Varint((ulong)bytes.Length); _s.Write(bytes); return this; }

    public Protobuf String(int field, string s) => Bytes(field, Encoding.UTF8.GetBytes(s));

    public Protobuf Message(int field, Protobuf m) => Bytes(field, m.ToArray());
}
