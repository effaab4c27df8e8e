// CSV and .npy loaders: valid files round-trip (Python 2 shapes included); each corruption, non-finite
// value, empty or zero-width array and unsupported layout gives its message.
using System.Text;
using Backprop.Engine.Data;
using NUnit.Framework;

namespace Backprop.Tests.Data;

[TestFixture]
public class CsvNpyTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "backprop-csv-" + Guid.NewGuid().ToString("N")));

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, true);

    private string Write(string name, string text) { var p = Path.Combine(_dir, name); File.WriteAllText(p, text); return p; }

    [Test]
    public void Csv_WithHeaderByName_WithoutHeaderByIndex_AndRegression()
    {
        var a = Csv.Read(Write("a.csv", "x1,label,x2\n1.5,2,3\n-1,0,4e-1\n"));
        Assert.That(a.Width, Is.EqualTo(2));
        Assert.That(a.Labels, Is.EqualTo(new[] { 2, 0 }));
        Assert.That(a.Features, Is.EqualTo(new[] { 1.5f, 3f, -1f, 0.4f }));
        Assert.That(a.Outputs, Is.EqualTo(3));
        var b = Csv.Read(Write("b.csv", "0.5,0.25,1\n0.1,0.2,0\n"), labelColumn: "-1");
        Assert.That(b.Labels, Is.EqualTo(new[] { 1, 0 }));
        Assert.That(b.Features, Is.EqualTo(new[] { 0.5f, 0.25f, 0.1f, 0.2f }));
        var c = Csv.Read(Write("c.csv", "y,x\n0.5,1\n1.5,2\n"), labelColumn: "y", classification: false);
        Assert.That(c.Targets, Is.EqualTo(new[] { 0.5f, 1.5f }));
    }

    [Test]
    public void Csv_Corruptions()
    {
        Assert.That(Assert.Throws<InvalidDataException>(() => Csv.Read(Write("r.csv", "a,b,label\n1,2,0\n1,2\n")))!.Message,
            Does.Contain("line 3: expected 3 fields like the first row; found 2"));
        Assert.That(Assert.Throws<InvalidDataException>(() => Csv.Read(Write("n.csv", "a,label\n1,0\nx,1\n")))!.Message,
            Does.Contain("line 3 column 1: expected a number; found 'x'"));
        Assert.That(Assert.Throws<InvalidDataException>(() => Csv.Read(Write("l.csv", "a,label\n1,0.5\n")))!.Message,
            Does.Contain("expected a class label (a whole number >= 0) in column 2; found '0.5'"));
        Assert.That(Assert.Throws<ArgumentException>(() => Csv.Read(Write("m.csv", "a,b\n1,0\n"), labelColumn: "target"))!.Message,
            Does.Contain("no column named 'target'"));
        Assert.That(Assert.Throws<ArgumentException>(() => Csv.Read(Write("i.csv", "1,0\n"), labelColumn: "5"))!.Message,
            Does.Contain("label column index 5 is outside the 2 columns"));
        Assert.That(Assert.Throws<InvalidDataException>(() => Csv.Read(Write("e.csv", "")))!.Message, Does.Contain("the file is empty"));
    }

    internal static byte[] NpyBytes(string descr, int[] shape, byte[] data, bool fortran = false, int version = 1) =>
        NpyRaw($"{{'descr': '{descr}', 'fortran_order': {(fortran ? "True" : "False")}, 'shape': ({string.Join(", ", shape)}{(shape.Length == 1 ? "," : "")}), }}", data, version);

    /// <summary>A .npy file around the header dict as given (padded to 64 bytes, as NumPy writes it); the version byte as given.</summary>
    internal static byte[] NpyRaw(string header, byte[] data, int version = 1)
    {
        int pre = version == 1 ? 10 : 12;
        int total = (pre + header.Length + 1 + 63) / 64 * 64;
        header = header.PadRight(total - pre - 1) + "\n";
        var ms = new MemoryStream();
        ms.Write([0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', (byte)version, 0]);
        if (version == 1) ms.Write(BitConverter.GetBytes((ushort)header.Length));
        else ms.Write(BitConverter.GetBytes((uint)header.Length));
        ms.Write(Encoding.Latin1.GetBytes(header));
        ms.Write(data);
        return ms.ToArray();
    }

    private string WriteNpy(string name, byte[] bytes) { var p = Path.Combine(_dir, name); File.WriteAllBytes(p, bytes); return p; }

    [TestCase("<f4", 1)]
    [TestCase("<f8", 2)]
    [TestCase("|u1", 1)]
    public void Npy_RoundTrips(string descr, int version)
    {
        double[] values = [1, 2, 3, 4, 5, 6];
        byte[] data = descr switch
        {
            "<f4" => values.SelectMany(v => BitConverter.GetBytes((float)v)).ToArray(),
            "<f8" => values.SelectMany(BitConverter.GetBytes).ToArray(),
            _ => values.Select(v => (byte)v).ToArray(),
        };
        var x = WriteNpy("x.npy", NpyBytes(descr, [3, 2], data, version: version));
        var y = WriteNpy("y.npy", NpyBytes("|u1", [3], [1, 0, 2]));
        var d = Npy.ReadPair(x, y);
        Assert.That(d.Features, Is.EqualTo(values.Select(v => (float)v).ToArray()));
        Assert.That(d.Labels, Is.EqualTo(new[] { 1, 0, 2 }));
        Assert.That(d.Width, Is.EqualTo(2));
    }

    [Test]
    public void Npy_Corruptions()
    {
        string Err(byte[] b) => Assert.Throws<InvalidDataException>(() => Npy.Read(WriteNpy("bad-" + Guid.NewGuid().ToString("N") + ".npy", b)))!.Message;
        Assert.That(Err(NpyBytes("<i2", [2], new byte[4])), Does.Contain("dtype '<i2' is not supported"));
        Assert.That(Err(NpyBytes(">f4", [2], new byte[8])), Does.Contain("dtype '>f4' is not supported"));
        Assert.That(Err(NpyBytes("<f4", [2, 2], new byte[16], fortran: true)), Does.Contain("Fortran (column-major) order is not supported"));
        Assert.That(Err(NpyBytes("<f4", [2, 2], new byte[12])), Does.Contain("needs 16 data bytes; found 12"));
        Assert.That(Err([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]), Does.Contain("expected the magic \\x93NUMPY"));
        var x = WriteNpy("x.npy", NpyBytes("<f4", [3, 1], new byte[12]));
        var y = WriteNpy("y.npy", NpyBytes("|u1", [2], [0, 1]));
        Assert.That(Assert.Throws<InvalidDataException>(() => Npy.ReadPair(x, y))!.Message, Does.Contain("expected 3 labels (one per sample); found shape (2)"));
    }

    [Test]
    public void Csv_NonFiniteAndOutOfRangeValues_NameLineAndColumn()
    {
        string Err(string text, bool classification = true) =>
            Assert.Throws<InvalidDataException>(() => Csv.Read(Write("bad-" + Guid.NewGuid().ToString("N") + ".csv", text), classification: classification))!.Message;
        Assert.That(Err("a,b,label\n1,2,0\n3,NaN,1\n"), Does.Contain("line 3 column 2: expected a finite number; found 'NaN'").And.Contain("bad-"));
        Assert.That(Err("a,label\nInfinity,0\n"), Does.Contain("line 2 column 1: expected a finite number; found 'Infinity'"));
        Assert.That(Err("a,label\n1,-infinity\n"), Does.Contain("line 2 column 2: expected a finite number; found '-infinity'"));
        Assert.That(Err("y,x\n-Infinity,1\n", classification: false), Does.Contain("line 2 column 1: expected a finite number; found '-Infinity'"), "regression targets too");
        Assert.That(Err("a,label\n1e400,0\n"), Does.Contain("line 2 column 1: expected a finite number; found '1e400'"), "beyond double: parses as Infinity");
        Assert.That(Err("a,label\n1,0\n-1e39,0\n"), Does.Contain("line 3 column 1: found '-1e39', outside the float32 range"));
        Assert.That(Err("a,y\n1,3e38\n2,4e38\n", classification: false), Does.Contain("line 3 column 2: found '4e38', outside the float32 range"));
        Assert.That(Err("a,label\n1,2147483647\n"), Does.Contain("line 2: class label '2147483647' in column 2 is too large; expected below 2147483647"));
        Assert.That(Err("a,label\n1,1e300\n"), Does.Contain("class label '1e300' in column 2 is too large"));
        Assert.That(Csv.Read(Write("max.csv", "a,label\n3.4e38,2147483646\n")).Outputs, Is.EqualTo(int.MaxValue), "the largest class index still counts as an int");
    }

    [Test]
    public void Csv_HeaderOnly_HoldsNoSamples()
    {
        Assert.That(Assert.Throws<InvalidDataException>(() => Csv.Read(Write("h.csv", "a,b,label\n\n  \n")))!.Message,
            Does.Contain("h.csv': the file holds no samples"));
        Assert.That(Assert.Throws<InvalidDataException>(() => Csv.Read(Write("h2.csv", "1,2,3\n"), hasHeader: true))!.Message,
            Does.Contain("holds no samples"));
        Assert.That(Assert.Throws<InvalidDataException>(() => Csv.Read(Write("w.csv", "label\n1\n")))!.Message,
            Does.Contain("expected at least 2 columns (features and a label); found 1"), "zero features per sample");
    }

    private static byte[] Floats(params float[] v) => v.SelectMany(BitConverter.GetBytes).ToArray();
    private static byte[] Doubles(params double[] v) => v.SelectMany(BitConverter.GetBytes).ToArray();

    [Test]
    public void Npy_NonFiniteValues_NameTheElementAndItsIndex()
    {
        var y = WriteNpy("y.npy", NpyBytes("|u1", [2], [0, 1]));
        string Err(byte[] x, byte[]? labels = null, bool classification = true) => Assert.Throws<InvalidDataException>(() =>
            Npy.ReadPair(WriteNpy("x-" + Guid.NewGuid().ToString("N") + ".npy", x), labels is null ? y : WriteNpy("y-" + Guid.NewGuid().ToString("N") + ".npy", labels), classification))!.Message;
        Assert.That(Err(NpyBytes("<f4", [2, 2], Floats(1, 2, float.NaN, 4))), Does.Contain("x-").And.Contain("element 2 (index [1, 0]) is NaN; expected finite numbers"));
        Assert.That(Err(NpyBytes("<f8", [2, 3], Doubles(0, 0, 0, 0, 0, double.PositiveInfinity))), Does.Contain("element 5 (index [1, 2]) is Infinity"));
        Assert.That(Err(NpyBytes("<f4", [2, 1, 2], Floats(0, float.NegativeInfinity, 0, 0))), Does.Contain("element 1 (index [0, 0, 1]) is -Infinity"));
        Assert.That(Err(NpyBytes("<f8", [2, 2], Doubles(0, 0, 0, 1e300))), Does.Contain("element 3 (index [1, 1]) is 1E+300, outside the float32 range"));
        var x = NpyBytes("<f4", [2, 1], Floats(1, 2));
        Assert.That(Err(x, NpyBytes("<f4", [2], Floats(0, float.NaN)), classification: false), Does.Contain("y-").And.Contain("element 1 (index [1]) is NaN"), "targets too");
        Assert.That(Err(x, NpyBytes("<f8", [2, 2], Doubles(0, 0, -1e39, 0)), classification: false), Does.Contain("element 2 (index [1, 0]) is -1E+39, outside the float32 range"));
        Assert.That(Err(x, NpyBytes("<f8", [2], Doubles(0, double.NaN))), Does.Contain("element 1 (index [1]) is NaN"), "class labels too");
        Assert.That(Err(x, NpyBytes("<i4", [2], [.. BitConverter.GetBytes(0), .. BitConverter.GetBytes(int.MaxValue)])),
            Does.Contain("label 2147483647 of sample 1 is not a class index (a whole number >= 0 and below 2147483647)"));
    }

    [Test]
    public void Npy_ZeroSamplesAndZeroWidth_AreRefused()
    {
        string Err(byte[] x, byte[] y, bool classification = true) => Assert.Throws<InvalidDataException>(() =>
            Npy.ReadPair(WriteNpy("x-" + Guid.NewGuid().ToString("N") + ".npy", x), WriteNpy("y-" + Guid.NewGuid().ToString("N") + ".npy", y), classification))!.Message;
        Assert.That(Err(NpyBytes("<f4", [0, 4], []), NpyBytes("|u1", [0], [])), Does.Contain("shape (0, 4) holds no samples; expected at least one"));
        Assert.That(Err(NpyBytes("<f4", [3, 0], []), NpyBytes("|u1", [3], [0, 1, 2])),
            Does.Contain("shape (3, 0) has a zero-sized feature dimension (dimension 1); expected at least one feature per sample"));
        Assert.That(Err(NpyBytes("<f4", [3, 2, 0], []), NpyBytes("|u1", [3], [0, 1, 2])), Does.Contain("shape (3, 2, 0) has a zero-sized feature dimension (dimension 2)"));
        Assert.That(Err(NpyBytes("<f4", [3, 1], new byte[12]), NpyBytes("<f4", [3, 0], []), classification: false),
            Does.Contain("shape (3, 0) has a zero-sized target dimension; expected at least one target per sample"));
    }

    [Test]
    public void Npy_PythonTwoLongSuffixes_Load()
    {
        var data = Floats(1, 2, 3, 4, 5, 6);
        var x = WriteNpy("x.npy", NpyRaw("{'descr': '<f4', 'fortran_order': False, 'shape': (3L, 2L), }", data));
        var y = WriteNpy("y.npy", NpyRaw("{'descr': '|u1', 'fortran_order': False, 'shape': (3L,), }", [1, 0, 2]));
        Assert.That(Npy.Read(x).Shape, Is.EqualTo(new[] { 3, 2 }));
        var d = Npy.ReadPair(x, y);
        Assert.That((d.Count, d.Width), Is.EqualTo((3, 2)));
        Assert.That(d.Labels, Is.EqualTo(new[] { 1, 0, 2 }));
    }

    [Test]
    public void Npy_BadShapes_NameTheShape()
    {
        string Err(string shape) =>
            Assert.Throws<InvalidDataException>(() => Npy.Read(WriteNpy("s-" + Guid.NewGuid().ToString("N") + ".npy", NpyRaw($"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}", new byte[8]))))!.Message;
        Assert.That(Err("(100000, 100000)"), Does.Contain("shape (100000, 100000) holds 10000000000 elements; at most 2147483591 fit in one array"));
        Assert.That(Err("(2147483647, 2147483647, 2147483647)"), Does.Contain("shape (2147483647, 2147483647, 2147483647) holds 9903520300447984150353281023 elements"));
        Assert.That(Err("(4294967296, 2)"), Does.Contain("shape (4294967296, 2) has dimension 4294967296 at position 0; expected at most 2147483647"));
        Assert.That(Err("(99999999999999999999999L,)"), Does.Contain("has dimension 99999999999999999999999 at position 0"));
        Assert.That(Err("(2, x)"), Does.Contain("shape (2, x) has 'x' at position 1; expected whole numbers >= 0"));
        Assert.That(Err("(-2, 1)"), Does.Contain("shape (-2, 1) has '-2' at position 0; expected whole numbers >= 0"));
        Assert.That(Err("(2,, 1)"), Does.Contain("has '' at position 1"));
        Assert.That(Err("(3, 1)"), Does.Contain("shape (3, 1) of '<f4' needs 12 data bytes; found 8"));
    }

    [TestCase(1, 9, "a version 1.0 preamble is 10 bytes (magic, version, 2-byte header length); the file has 9 (truncated header)")]
    [TestCase(2, 10, "a version 2.0 preamble is 12 bytes (magic, version, 4-byte header length); the file has 10 (truncated header)")]
    [TestCase(3, 11, "a version 3.0 preamble is 12 bytes (magic, version, 4-byte header length); the file has 11 (truncated header)")]
    [TestCase(1, 40, "the version 1.0 header claims 118 bytes but the file has 30 after the 10-byte preamble (truncated header)")]
    [TestCase(2, 40, "the version 2.0 header claims 116 bytes but the file has 28 after the 12-byte preamble (truncated header)")]
    [TestCase(3, 100, "the version 3.0 header claims 116 bytes but the file has 88 after the 12-byte preamble (truncated header)")]
    [TestCase(2, 7, "expected a 2-byte version after the magic; the file ends after 7 bytes")]
    public void Npy_ShortHeaders_NameVersionAndByteCounts(int version, int keep, string message)
    {
        var full = NpyBytes("<f4", [2, 2], new byte[16], version: version);
        var p = WriteNpy("short.npy", full[..keep]);
        Assert.That(Assert.Throws<InvalidDataException>(() => Npy.Read(p))!.Message, Does.Contain(message).And.Contain("short.npy"));
    }

    [Test]
    public void Npy_HeaderLengthBeyondInt_IsATruncatedHeader()
    {
        var b = NpyBytes("<f4", [2], new byte[8], version: 2);
        BitConverter.GetBytes(uint.MaxValue).CopyTo(b, 8);
        Assert.That(Assert.Throws<InvalidDataException>(() => Npy.Read(WriteNpy("h.npy", b)))!.Message,
            Does.Contain("the version 2.0 header claims 4294967295 bytes but the file has"));
    }

    [Test]
    public void Npy_UnsupportedLayouts_NameWhatWasSeenAndWhatIsAccepted()
    {
        string Err(byte[] b) => Assert.Throws<InvalidDataException>(() => Npy.Read(WriteNpy("u-" + Guid.NewGuid().ToString("N") + ".npy", b)))!.Message;
        const string accepted = "expected float32 ('<f4'), float64 ('<f8'), uint8 ('|u1'), int32 ('<i4') or int64 ('<i8')";
        Assert.That(Err(NpyBytes("|O", [2], new byte[16])), Does.Contain("dtype '|O' (an object array of pickled Python objects) is not supported").And.Contain(accepted));
        Assert.That(Err(NpyBytes("<c16", [2], new byte[32])), Does.Contain("dtype '<c16' is not supported; " + accepted));
        Assert.That(Err(NpyBytes("<U3", [2], new byte[24])), Does.Contain("dtype '<U3' is not supported"));
        Assert.That(Err(NpyBytes(">f8", [2], new byte[16])), Does.Contain("dtype '>f8' is not supported (big-endian)").And.Contain(".astype('<f8')"));
        Assert.That(Err(NpyRaw("{'descr': [('x', '<f4'), ('y', '<i4')], 'fortran_order': False, 'shape': (2,), }", new byte[16])),
            Does.Contain("structured (record) dtypes are not supported; found {'descr': [('x', '<f4')").And.Contain("expected a plain float32"));
        Assert.That(Err(NpyBytes("<f4", [2, 2], new byte[16], fortran: true)), Does.Contain("found 'fortran_order': True, expected False (C order)"));
        Assert.That(Err(NpyRaw("{'descr': '<f4', 'shape': (2,), }", new byte[8])), Does.Contain("expected a header dict with descr, fortran_order and shape; found {'descr': '<f4', 'shape': (2,), }"));
        Assert.That(Err(NpyBytes("<f4", [2], new byte[8], version: 4)), Does.Contain("expected format version 1, 2 or 3; found 4"));
    }
}
