// The safetensors reader's rules, one test per rule: each bad file is refused with an
// InvalidDataException whose message names the file, the tensor and the value seen.
// Files are built by hand (8-byte length, header text, data bytes) so each breaks exactly one rule.
using System.Buffers.Binary;
using System.Text;
using Backprop.Engine.Checkpoints;
using NUnit.Framework;

namespace Backprop.Tests.Checkpoints;

[TestFixture]
public class SafeTensorsReaderTests
{
    private string _dir = "";
    private int _files;

    [SetUp]
    public void SetUp() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "backprop-st-" + Guid.NewGuid().ToString("N")));

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, true);

    private const string A8 = "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";

    /// <summary>A file of the 8-byte length (the header's UTF-8 length unless given), the header bytes and the data.</summary>
    private string Bytes(byte[] header, byte[] data, ulong? length = null)
    {
        string path = Path.Combine(_dir, $"f{_files++}.safetensors");
        var b = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(b, length ?? (ulong)header.Length);
        header.CopyTo(b, 8);
        data.CopyTo(b, 8 + header.Length);
        File.WriteAllBytes(path, b);
        return path;
    }

    private string Make(string header, int dataBytes = 8, ulong? length = null) => Bytes(Encoding.UTF8.GetBytes(header), new byte[dataBytes], length);

    private static byte[] Floats(params float[] v)
    {
        var b = new byte[4 * v.Length];
        for (int i = 0; i < v.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(b.AsSpan(4 * i), v[i]);
        return b;
    }

    private static byte[] Doubles(params double[] v)
    {
        var b = new byte[8 * v.Length];
        for (int i = 0; i < v.Length; i++) BinaryPrimitives.WriteDoubleLittleEndian(b.AsSpan(8 * i), v[i]);
        return b;
    }

    private static void Refused(string path, string expected)
    {
        var e = Assert.Throws<InvalidDataException>(() => SafeTensorsFile.Read(path))!;
        Assert.That(e.Message, Does.Contain(expected));
        Assert.That(e.Message, Does.StartWith($"safetensors file '{path}'"), "the message names the file");
    }

    [Test]
    public void AValidFile_Reads_InAnyHeaderOrder_WithZeroSizeTensors_AndTrailingSpaces()
    {
        string p = Bytes(Encoding.UTF8.GetBytes(
            "{\"b\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[8,16]},\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[8,8]},"
            + "\"__metadata__\":{\"k\":\"v\"}," + A8 + ",\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[16,20]}}   "),
            [.. Floats(1.5f, -2), .. Doubles(0.25), .. Floats(7)]);
        var f = SafeTensorsFile.Read(p);
        Assert.That(f.Tensors.Keys, Is.EquivalentTo(new[] { "a", "b", "z", "s" }));
        Assert.That(f.Metadata["k"], Is.EqualTo("v"));
        Assert.That(f.ReadFloat("a"), Is.EqualTo(new[] { 1.5f, -2f }));
        Assert.That(f.ReadFloat("b"), Is.EqualTo(new[] { 0.25f }));
        Assert.That(f.ReadFloat("z"), Is.Empty);
        Assert.That(f.ReadFloat("s"), Is.EqualTo(new[] { 7f }));
        Assert.That(f.Tensors["z"].Shape, Is.EqualTo(new[] { 0, 3 }));
        Assert.That(SafeTensorsFile.Read(Make("{}", 0)).Tensors, Is.Empty);
        Assert.That(Assert.Throws<KeyNotFoundException>(() => f.ReadFloat("nope"))!.Message, Does.Contain("has no tensor 'nope'"));
    }

    [Test]
    public void TheHeaderLength_MustFitTheFile_AndTheLimit()
    {
        string tiny = Path.Combine(_dir, "tiny.safetensors");
        File.WriteAllBytes(tiny, [1, 2, 3]);
        Refused(tiny, "expected an 8-byte header length; the file has 3 bytes");
        Refused(Make("{" + A8 + "}", length: 1000), "the header length 1000 exceeds the");
        Refused(Make("{" + A8 + "}", length: ulong.MaxValue), $"the header length {ulong.MaxValue} exceeds the limit of 100000000 bytes");
        Refused(Make("{" + A8 + "}", length: 100_000_001), "exceeds the limit of 100000000 bytes");
    }

    [Test]
    public void TheHeader_MustBeUtf8Json_AndAnObject()
    {
        Refused(Bytes([(byte)'{', (byte)'"', 0xFF, (byte)'"', (byte)':', (byte)'1', (byte)'}'], []), "not valid UTF-8 (byte 0xFF at header offset 2)");
        Refused(Bytes([0xEF, 0xBB, 0xBF, .. Encoding.UTF8.GetBytes("{}")], []), "not valid JSON");
        Refused(Make("{" + A8 + ",}"), "not valid JSON");
        Refused(Make("{" + A8), "not valid JSON");
        Refused(Make(""), "not valid JSON");
        Refused(Make("[1,2]", 0), "the header must be a JSON object; found array [1,2]");
        Refused(Make("\"x\"", 0), "the header must be a JSON object; found string");
        Refused(Make("{\"\\ud800\":{}}", 0), "is not valid text");
        Refused(Make("{\"__metadata__\":{\"k\":\"\\udc00x\"}}", 0), "is not valid text");
    }

    [Test]
    public void Metadata_MustBeAnObjectOfStrings_WithoutDuplicates()
    {
        Refused(Make("{\"__metadata__\":[\"a\"]," + A8 + "}"), "__metadata__ must be an object of strings; found array [\"a\"]");
        Refused(Make("{\"__metadata__\":null," + A8 + "}"), "__metadata__ must be an object of strings; found null");
        Refused(Make("{\"__metadata__\":{\"step\":3}," + A8 + "}"), "__metadata__ entry 'step' must be a string; found number 3");
        Refused(Make("{\"__metadata__\":{\"k\":{\"x\":1}}," + A8 + "}"), "__metadata__ entry 'k' must be a string; found object");
        Refused(Make("{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}," + A8 + "}"), "__metadata__ has the key 'k' twice");
        Refused(Make("{\"__metadata__\":{},\"__metadata__\":{}," + A8 + "}"), "the header has the key '__metadata__' twice");
    }

    [Test]
    public void ATensorEntry_HasExactlyDtypeShapeAndDataOffsets_OnceEach()
    {
        Refused(Make("{" + A8 + "," + A8 + "}"), "the header has the tensor 'a' twice");
        Refused(Make("{\"a\":\"F32\"}"), "tensor 'a': expected an object with dtype, shape and data_offsets; found string \"F32\"");
        Refused(Make("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"), "tensor 'a': the field 'dtype' appears twice");
        Refused(Make("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"offsets\":[0,8]}}"), "tensor 'a': unknown field 'offsets'");
        Refused(Make("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}"), "tensor 'a': missing dtype");
        Refused(Make("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}"), "tensor 'a': missing shape");
        Refused(Make("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}"), "tensor 'a': missing data_offsets");
    }

    [Test]
    public void Dtype_IsAStringOfASupportedType()
    {
        Refused(Make("{\"a\":{\"dtype\":32,\"shape\":[2],\"data_offsets\":[0,8]}}"), "tensor 'a': dtype must be a string; found number 32");
        Refused(Make("{\"a\":{\"dtype\":\"I8\",\"shape\":[8],\"data_offsets\":[0,8]}}"), "tensor 'a': dtype I8 is not supported; expected F32, F64, F16 or BF16");
        Refused(Make("{\"a\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}"), "dtype f32 is not supported");
    }

    [Test]
    public void Shape_IsAnArrayOfNonNegativeIntegers_WhoseProductFits()
    {
        string S(string shape) => Make("{\"a\":{\"dtype\":\"F32\",\"shape\":" + shape + ",\"data_offsets\":[0,8]}}");
        Refused(S("2"), "tensor 'a': shape must be an array of integers; found number 2");
        Refused(S("[-2]"), "tensor 'a': shape entries must be integers in [0, 2147483647]; found -2 at index 0");
        Refused(S("[1,2.5]"), "found 2.5 at index 1");
        Refused(S("[2e0]"), "found 2e0 at index 0");
        Refused(S("[\"2\"]"), "found \"2\" at index 0");
        Refused(S("[2147483648]"), "found 2147483648 at index 0");
        Refused(S("[2147483647,2147483647,2147483647]"), "tensor 'a': shape [2147483647, 2147483647, 2147483647] of F32 has more bytes than a 64-bit size holds");
        Refused(S("[2147483647,2147483647,2147483647,0]"), "has more bytes than a 64-bit size holds");
        Refused(S("[1073741824,1073741824,8]"), "has more bytes than a 64-bit size holds");
    }

    [Test]
    public void DataOffsets_AreTwoOrderedIntegers_InsideTheData_SpanningTheShape()
    {
        string O(string offsets, int data = 8) => Make("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":" + offsets + "}}", data);
        Refused(O("[0]"), "tensor 'a': data_offsets must be [begin, end], two integers >= 0; found [0]");
        Refused(O("[0,8,8]"), "found [0,8,8]");
        Refused(O("{\"begin\":0}"), "found {\"begin\":0}");
        Refused(O("[-8,0]"), "tensor 'a': data_offsets begin must be an integer in [0, 9223372036854775807]; found -8");
        Refused(O("[0,8.0]"), "data_offsets end must be an integer in [0, 9223372036854775807]; found 8.0");
        Refused(O("[0,\"8\"]"), "data_offsets end must be an integer in [0, 9223372036854775807]; found \"8\"");
        Refused(O("[0,99999999999999999999]"), "found 99999999999999999999");
        Refused(O("[8,0]"), "tensor 'a': data_offsets [8, 0] end before they begin; expected begin <= end");
        Refused(O("[0,8]", data: 4), "tensor 'a': data_offsets [0, 8] are outside the 4-byte data section");
        Refused(O("[0,4]", data: 4), "tensor 'a': data_offsets span 4 bytes ([0, 4]) but shape [2] of F32 needs 8");
    }

    [Test]
    public void TheTensors_CoverTheDataSectionExactly()
    {
        const string B = "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":";
        Refused(Make("{" + A8 + "," + B + "[4,8]}}"), "tensors 'a' [0, 8] and 'b' [4, 8] overlap in the data section");
        Refused(Make("{" + A8 + "," + B + "[12,16]}}", 16), "tensor 'b' [12, 16] begins at 12 but 'a' [0, 8] ends at 8: the bytes [8, 12) belong to no tensor");
        Refused(Make("{" + B + "[4,8]}}"), "tensor 'b' [4, 8] begins at 4: the data section's bytes [0, 4) belong to no tensor");
        Refused(Make("{" + A8 + "}", 12), "the last tensor 'a' [0, 8] ends at 8 but the data section has 12 bytes: the bytes [8, 12) belong to no tensor");
        Refused(Make("{}", 3), "the header names no tensor but the data section has 3 bytes");
        Refused(Make("{\"__metadata__\":{\"k\":\"v\"}}", 1), "the header names no tensor but the data section has 1 bytes");
        // zero-size tensors take no bytes, wherever they sit
        Assert.That(SafeTensorsFile.Read(Make("{" + A8 + ",\"e\":{\"dtype\":\"F64\",\"shape\":[0],\"data_offsets\":[8,8]}}")).Tensors, Has.Count.EqualTo(2));
        Refused(Make("{" + A8 + ",\"e\":{\"dtype\":\"F64\",\"shape\":[0],\"data_offsets\":[4,4]}}"), "tensors 'a' [0, 8] and 'e' [4, 4] overlap");
    }

    [Test]
    public void ReadFloat_RefusesValuesThatAreNotFinite_NamingTheElement()
    {
        string F32 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}";
        string F64 = "{\"a\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[0,24]}}";
        void Rejects(string header, byte[] data, string expected)
        {
            string p = Bytes(Encoding.UTF8.GetBytes(header), data);
            var f = SafeTensorsFile.Read(p);
            var e = Assert.Throws<InvalidDataException>(() => f.ReadFloat("a"))!;
            Assert.That(e.Message, Is.EqualTo($"safetensors file '{p}': tensor 'a' {expected}; expected a finite value."));
        }
        Rejects(F32, Floats(1, float.NaN, 2), "element 1 is NaN");
        Rejects(F32, Floats(1, 2, float.PositiveInfinity), "element 2 is Infinity");
        Rejects(F32, Floats(float.NegativeInfinity, 0, 0), "element 0 is -Infinity");
        Rejects(F64, Doubles(0, 0, double.NaN), "element 2 is NaN");
        Rejects(F64, Doubles(double.NegativeInfinity, 0, 0), "element 0 is -Infinity");
        Rejects(F64, Doubles(0, 1e300, 0), "element 1 is 1E+300, beyond float's range");
        string ok = Bytes(Encoding.UTF8.GetBytes(F64), Doubles(float.MaxValue, -1e-300, 3));
        Assert.That(SafeTensorsFile.Read(ok).ReadFloat("a"), Is.EqualTo(new[] { float.MaxValue, -0f, 3f }));
    }
}
