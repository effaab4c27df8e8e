// CSV and .npy loaders: valid files round-trip; each corruption gives its message.
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

    private static byte[] NpyBytes(string descr, int[] shape, byte[] data, bool fortran = false, int version = 1)
    {
        string header = $"{{'descr': '{descr}', 'fortran_order': {(fortran ? "True" : "False")}, 'shape': ({string.Join(", ", shape)}{(shape.Length == 1 ? "," : "")}), }}";
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
}
