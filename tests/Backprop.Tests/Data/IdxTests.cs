// IDX loading: a valid file round-trips (raw and gzip), each corruption (empty and zero-width arrays,
// sizes beyond one array, broken gzip streams included) gives its message, and the real Fashion-MNIST
// files from the Debian package load and train.
using System.Buffers.Binary;
using System.IO.Compression;
using Backprop.Engine;
using Backprop.Engine.Data;
using Backprop.Engine.Training;
using Backprop.Kernels;
using Backprop.Kernels.Cpu.Optim;
using NUnit.Framework;

namespace Backprop.Tests.Data;

[TestFixture]
public class IdxTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "backprop-idx-" + Guid.NewGuid().ToString("N")));

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, true);

    /// <summary>
    /// A learnable IDX data set in <paramref name="folder"/>: train-/t10k- images of 4x4 bytes in 3 classes (class c lights up
    /// row c), <paramref name="train"/> and <paramref name="test"/> samples (the CLI tests' small run).
    /// </summary>
    internal static void WriteThreeClassSet(string folder, int train = 300, int test = 60)
    {
        void Make(string prefix, int n, int seed)
        {
            var r = new Random(seed);
            var px = new byte[n * 16];
            var lab = new byte[n];
            for (int i = 0; i < n; i++)
            {
                lab[i] = (byte)(i % 3);
                for (int j = 0; j < 16; j++) px[i * 16 + j] = (byte)(j / 4 == i % 3 ? 200 + r.Next(50) : r.Next(60));
            }
            File.WriteAllBytes(Path.Combine(folder, $"{prefix}-images-idx3-ubyte"), Encode([n, 4, 4], px));
            File.WriteAllBytes(Path.Combine(folder, $"{prefix}-labels-idx1-ubyte"), Encode([n], lab));
        }
        Make("train", train, 1);
        Make("t10k", test, 2);
    }

    internal static byte[] Encode(int[] dims, byte[] data, byte type = 0x08)
    {
        var b = new byte[4 + 4 * dims.Length + data.Length];
        b[2] = type;
        b[3] = (byte)dims.Length;
        for (int i = 0; i < dims.Length; i++) BinaryPrimitives.WriteInt32BigEndian(b.AsSpan(4 + 4 * i), dims[i]);
        data.CopyTo(b, 4 + 4 * dims.Length);
        return b;
    }

    private string Write(string name, byte[] bytes, bool gzip = false)
    {
        string path = Path.Combine(_dir, name);
        if (gzip)
        {
            using var fs = File.Create(path);
            using var gz = new GZipStream(fs, CompressionLevel.Fastest);
            gz.Write(bytes);
        }
        else File.WriteAllBytes(path, bytes);
        return path;
    }

    [TestCase(false)]
    [TestCase(true)]
    public void ValidFiles_RoundTrip(bool gzip)
    {
        var pixels = Enumerable.Range(0, 3 * 2 * 2).Select(i => (byte)(i * 20)).ToArray();
        string img = Write("img", Encode([3, 2, 2], pixels), gzip);
        string lab = Write("lab", Encode([3], [2, 0, 1]), gzip);
        var d = Idx.ReadPair(img, lab, classes: 3);
        Assert.That(d.Count, Is.EqualTo(3));
        Assert.That(d.Width, Is.EqualTo(4));
        Assert.That(d.Labels, Is.EqualTo(new[] { 2, 0, 1 }));
        Assert.That(d.Features, Is.EqualTo(pixels.Select(p => (float)p).ToArray()));
        d.Normalize(Normalization.Scale01);
        Assert.That(d.Features[^1], Is.EqualTo(220f / 255f).Within(1e-6));
    }

    [Test]
    public void Corruptions_NameTheFileAndTheProblem()
    {
        string Err(byte[] bytes)
        {
            string p = Write("bad-" + Guid.NewGuid().ToString("N"), bytes);
            return Assert.Throws<InvalidDataException>(() => Idx.Read(p))!.Message;
        }
        var good = Encode([2, 3], new byte[6]);
        var wrongMagic = (byte[])good.Clone();
        wrongMagic[0] = 0x50;
        Assert.That(Err(wrongMagic), Does.Contain("expected magic bytes 00 00").And.Contain("found 50 00").And.Contain("bad-"));
        Assert.That(Err(Encode([2, 3], new byte[6], type: 0x0D)), Does.Contain("expected element type 0x08 (unsigned byte); found 0x0d"));
        Assert.That(Err(good[..^1]), Does.Contain("dimensions [2, 3] need 6 data bytes after the 12-byte header; found 5"));
        Assert.That(Err([.. good, 7]), Does.Contain("found 7"));
        Assert.That(Err(good[..6]), Does.Contain("expected a 12-byte header for 2 dimensions; the file has 6 bytes"));
        Assert.That(Err([0, 0]), Does.Contain("expected at least a 4-byte header; found 2 bytes"));

        string img = Write("i", Encode([3, 2], new byte[6]));
        string lab = Write("l", Encode([2], [1, 1]));
        Assert.That(Assert.Throws<InvalidDataException>(() => Idx.ReadPair(img, lab))!.Message, Does.Contain("expected as many labels as images; found 3 images and 2 labels"));
        string lab2 = Write("l2", Encode([3], [1, 12, 1]));
        Assert.That(Assert.Throws<InvalidDataException>(() => Idx.ReadPair(img, lab2, classes: 10))!.Message, Does.Contain("label 12 of sample 1 is outside [0, 10)"));
        Assert.That(Idx.ReadPair(img, lab2).Outputs, Is.EqualTo(13), "without a class count: largest label + 1");
        string notGz = Write("broken.gz", [0x1f, 0x8b, 1, 2, 3]);
        Assert.That(Assert.Throws<InvalidDataException>(() => Idx.Read(notGz))!.Message, Does.Contain("gzip stream is corrupt").Or.Contain("expected at least"));
        Assert.That(Assert.Throws<FileNotFoundException>(() => Idx.Read(Path.Combine(_dir, "missing")))!.Message, Does.Contain("does not exist"));
    }

    [Test]
    public void ZeroSamplesAndZeroWidthImages_AreRefused()
    {
        string Err(byte[] images, byte[] labels) => Assert.Throws<InvalidDataException>(() =>
            Idx.ReadPair(Write("i-" + Guid.NewGuid().ToString("N"), images), Write("l-" + Guid.NewGuid().ToString("N"), labels)))!.Message;
        Assert.That(Err(Encode([0, 2, 2], []), Encode([0], [])), Does.Contain("i-").And.Contain("dimensions [0, 2, 2] hold no samples; expected at least one image"));
        Assert.That(Err(Encode([3, 0, 4], []), Encode([3], [0, 1, 2])),
            Does.Contain("dimensions [3, 0, 4] give zero-width images (dimension 1 is 0); expected at least one pixel per image"));
        Assert.That(Err(Encode([3, 28, 0], []), Encode([3], [0, 1, 2])), Does.Contain("dimensions [3, 28, 0] give zero-width images (dimension 2 is 0)"));
        Assert.That(Err(Encode([2, 2], new byte[4]), Encode([0], [])), Does.Contain("l-").And.Contain("dimensions [0] hold no samples; expected at least one label"));
    }

    [Test]
    public void DimensionsBeyondOneArray_AreRefused_BeforeAnyAllocation()
    {
        string Err(byte[] bytes, bool gzip = false)
        {
            string p = Write("big-" + Guid.NewGuid().ToString("N"), bytes, gzip);
            return Assert.Throws<InvalidDataException>(() => Idx.Read(p))!.Message;
        }
        Assert.That(Err(Encode([65536, 65536, 65536], new byte[8])), Does.Contain("dimensions [65536, 65536, 65536] describe 281474976710656 bytes; at most 2147483591 fit in one array"));
        Assert.That(Err(Encode([int.MaxValue, int.MaxValue, int.MaxValue, int.MaxValue], [])), Does.Contain("describe 21267647892944572736998860269687930881 bytes"), "no long overflow");
        Assert.That(Err(Encode([0, 65536, 65536], [])), Does.Contain("dimensions [0, 65536, 65536] describe 4294967296 bytes per item"), "an empty array of items too big for an int");
        Assert.That(Err(Encode([65536, 65536, 65536], new byte[8]), gzip: true), Does.Contain("describe 281474976710656 bytes"));
        // A gzip header that claims 1 GiB of pixels over 6 real ones: refused without decompressing into 1 GiB.
        long before = GC.GetAllocatedBytesForCurrentThread();
        Assert.That(Err(Encode([1024, 1024, 1024], new byte[6]), gzip: true), Does.Contain("dimensions [1024, 1024, 1024] need 1073741824 data bytes after the 16-byte header; found 6 after decompression"));
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.LessThan(16L << 20), "memory follows the stream, not the header's claim");
    }

    [Test]
    public void GzipProblems_AreInvalidData_WithTheSameMessagesAsRawFiles()
    {
        string Err(byte[] bytes, bool gzip = true)
        {
            string p = Write("gz-" + Guid.NewGuid().ToString("N"), bytes, gzip);
            return Assert.Throws<InvalidDataException>(() => Idx.Read(p))!.Message;
        }
        var good = Encode([2, 3], new byte[6]);
        Assert.That(Err(good[..^1]), Does.Contain("dimensions [2, 3] need 6 data bytes after the 12-byte header; found 5 after decompression (truncated or padded file)"));
        Assert.That(Err([.. good, 1, 2, 3]), Does.Contain("need 6 data bytes after the 12-byte header; found 9 after decompression"));
        Assert.That(Err(good[..7]), Does.Contain("expected a 12-byte header for 2 dimensions; the file has 7 bytes after decompression"));
        Assert.That(Err([0, 0, 8]), Does.Contain("expected at least a 4-byte header; found 3 bytes after decompression"));
        Assert.That(Err([0, 0, 8, 9]), Does.Contain("expected 1 to 4 dimensions; found 9"));
        var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true)) gz.Write(good);
        var crc = ms.ToArray();
        crc[^8] ^= 0xFF; // the CRC-32 of the trailer
        Assert.That(Err(crc, gzip: false), Does.Contain("the gzip stream is corrupt"));
        var body = ms.ToArray();
        body[10] |= 0x06; // the first deflate block header: block type 3, which does not exist
        Assert.That(Err(body, gzip: false), Does.Contain("the gzip stream is corrupt"));
        string img = Write("img.gz", Encode([2, 3], [1, 2, 3, 4, 5, 6]), gzip: true);
        string lab = Write("lab.gz", Encode([2], [1, 0]), gzip: true);
        var d = Idx.ReadPair(img, lab);
        Assert.That((d.Count, d.Width, d.Features[5]), Is.EqualTo((2, 3, 6f)));
    }

    public const string FashionDir = "/usr/share/datasets/fashion-mnist";

    [Test]
    public void FashionMnist_Loads_AndATwoLayerNetPasses080OnA6000SampleSubset()
    {
        // Deps installs the data, so on this project's machines its absence is a failure, not a skip.
        Assert.That(Directory.Exists(FashionDir), Is.True, $"{FashionDir} is missing: run ./build.sh Deps (apt-get install dataset-fashion-mnist)");
        var train = Idx.ReadPair(Path.Combine(FashionDir, "train-images-idx3-ubyte.gz"), Path.Combine(FashionDir, "train-labels-idx1-ubyte.gz"));
        var test = Idx.ReadPair(Path.Combine(FashionDir, "t10k-images-idx3-ubyte.gz"), Path.Combine(FashionDir, "t10k-labels-idx1-ubyte.gz"));
        Assert.That((train.Count, train.Width, test.Count), Is.EqualTo((60000, 784, 10000)));
        var sub = train.Slice(0, 6000);
        var testSub = test.Slice(0, 2000);
        sub.Normalize(Normalization.Scale01);
        testSub.Normalize(Normalization.Scale01);
        using var model = new Sequential(784).Dense(128, "relu").Dense(10).Compile(new TrainingOptions
        {
            MaxBatch = 64, Threads = 2, Seed = 7, Optimizer = new Adam() { LearningRate = 2e-3 },
        });
        var fit = new Trainer(model).Fit(sub, testSub, new FitOptions { Epochs = 4 });
        Assert.That(fit.Epochs[^1].TestAccuracy, Is.GreaterThan(0.80), string.Join(", ", fit.Epochs.Select(e => e.TestAccuracy)));
        Assert.That(fit.Epochs[^1].TrainLoss, Is.LessThan(fit.Epochs[0].TrainLoss));
    }
}
