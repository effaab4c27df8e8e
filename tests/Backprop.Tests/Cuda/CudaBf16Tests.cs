// Precision = Bf16 on the Cuda backend: to_bf16 mirrors of each GEMM's operands and cuBLASLt GEMMs with CUDA_R_16BF operands and
// float32 accumulation. On the emulated device (cuBLASLt's definition in double over the bf16 values) a prediction equals a double
// reference over the rounded operands; training in bf16 leaves the float32 run yet stays close to it; the step's listing shows the
// conversions and the bf16 GEMMs. On a real GPU the same tests run where one is present (unverified here: no device was lent).
using Backprop.Engine;
using Backprop.Kernels;
using Backprop.Kernels.Cpu;
using Backprop.Kernels.Cuda;
using NUnit.Framework;

namespace Backprop.Tests.Cuda;

[TestFixture]
[NonParallelizable]
public class CudaBf16Tests
{
    public static readonly string[] Devices = CudaBackendTests.Devices;

    private static IGpuDevice Open(string device) => CudaBackendTests.Open(device);

    private static TrainingOptions Options(GemmPrecision precision) => new()
    {
        MaxBatch = 24, Threads = 1, Backend = Backend.Cuda, Seed = 5, Precision = precision, Optimizer = new Adam { LearningRate = 5e-3 },
    };

    // Round to nearest even on the bits (what to_bf16 and __float2bfloat16_rn do for finite values).
    private static double Bf16(float x)
    {
        uint u = BitConverter.SingleToUInt32Bits(x);
        u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
        return BitConverter.UInt32BitsToSingle(u);
    }

    [Test]
    public void Predict_InBf16_EqualsADoubleReferenceOverTheRoundedOperands([ValueSource(nameof(Devices))] string device)
    {
        using var gpu = Open(device);
        const int batch = 7, inW = 12, hidden = 20, outW = 6;
        using var m = new Model(new Sequential(inW).Dense(hidden, "relu").Dense(outW).ToSpec(LossKind.CrossEntropy), Options(GemmPrecision.Bf16), gpu);
        var x = TestData.Floats(batch * inW, 1);
        var output = new float[batch * outW];
        m.Predict(x, output);
        float[] w1 = m.GetWeights(0), b1 = m.GetBias(0), w2 = m.GetWeights(1), b2 = m.GetBias(1);
        var h = new float[batch * hidden];
        for (int i = 0; i < batch; i++)
            for (int j = 0; j < hidden; j++)
            {
                double s = 0;
                for (int k = 0; k < inW; k++) s += Bf16(x[i * inW + k]) * Bf16(w1[j * inW + k]);
                h[i * hidden + j] = Math.Max(0f, (float)(s + b1[j]));
            }
        for (int i = 0; i < batch; i++)
            for (int j = 0; j < outW; j++)
            {
                double s = 0;
                for (int k = 0; k < hidden; k++) s += Bf16(h[i * hidden + k]) * Bf16(w2[j * hidden + k]);
                double want = (float)(s + b2[j]);
                Assert.That(output[i * outW + j], Is.EqualTo(want).Within(1e-5 * (1 + Math.Abs(want))), $"output [{i}, {j}]");
            }
    }

    [Test]
    public void TrainingInBf16_LeavesTheFloat32Run_ButStaysClose_AndListsItsConversions([ValueSource(nameof(Devices))] string device)
    {
        using var gpu = Open(device);
        var spec = new Sequential(12).Dense(16, "relu").Dropout(0.2).Dense(10, "gelu_tanh").Dense(4).ToSpec(LossKind.CrossEntropy);
        using var bf = new Model(spec, Options(GemmPrecision.Bf16), gpu);
        using var fp = new Model(spec, Options(GemmPrecision.Fp32), gpu);
        Assert.That(bf.Options.Precision, Is.EqualTo(GemmPrecision.Bf16));
        for (int t = 0; t < 20; t++)
        {
            var x = TestData.Floats(24 * 12, 50 + t);
            var y = new int[24];
            for (int i = 0; i < 24; i++) y[i] = (int)Math.Abs(x[i * 12] * 7) % 4;
            double a = bf.Step(x, y), b = fp.Step(x, y);
            Assert.That(a, Is.EqualTo(b).Within(0.05 * b), $"loss at step {t + 1}: bf16 {a}, float32 {b}");
        }
        Assert.That(bf.GetWeights(0), Is.Not.EqualTo(fp.GetWeights(0)), "the bf16 run's weights equal the float32 run's: its GEMMs were not bf16");
        var listing = bf.StepListing(24);
        Assert.That(listing.Count(l => l.StartsWith("to_bf16", StringComparison.Ordinal)), Is.EqualTo(3 * 2 + 3),
            "each operand converted once: input and weights per forward, dZ per dW; dW reuses the forward's input, dX its dZ and weights");
        Assert.That(listing.Where(l => l.Contains("cublasLtMatmul")).All(l => l.Contains(" bf16 ")), Is.True, string.Join("\n", listing));
        Assert.That(fp.StepListing(24).Any(l => l.Contains("to_bf16") || l.Contains(" bf16 ")), Is.False, "float32 lists no conversion");
    }
}
