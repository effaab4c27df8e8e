// Small valid inputs for each target, written with the engine's own writers where it has them (weights and
// training checkpoints), so the seeds are what this version writes. ./build.sh Fuzz starts afl-fuzz from these
// plus the corpus in tests/fuzz-corpus/<target>/; the same files are kept there as seed-*.
using System.Text;
using Backprop.Engine;
using Backprop.Engine.Checkpoints;
using Backprop.Engine.Data;
using Backprop.Engine.Training;
using Backprop.Kernels;

namespace Backprop.Fuzz;

/// <summary>Writes the seed files of a target.</summary>
public static class Seeds
{
    /// <summary>Writes the seeds of <paramref name="target"/> into <paramref name="dir"/>; returns their paths.</summary>
    public static IReadOnlyList<string> Write(string target, string dir)
    {
        Directory.CreateDirectory(dir);
        var files = target switch
        {
            "idx" => Idx(),
            "csv" => Csv(),
            "npy" => Npy(),
            "safetensors" => SafeTensors(dir, training: false),
            "checkpoint" => SafeTensors(dir, training: true),
            _ => throw new ArgumentException($"unknown fuzz target '{target}'; expected one of {string.Join(", ", Targets.Names)}.", nameof(target)),
        };
        var paths = new List<string>();
        foreach (var (name, bytes) in files)
        {
            string path = Path.Combine(dir, "seed-" + name);
            File.WriteAllBytes(path, bytes);
            paths.Add(path);
        }
        return paths;
    }

    private static List<(string, byte[])> Idx()
    {
        var images = Targets.IdxBytes([3, 2, 2], [0, 1, 2, 3, 4, 5, 6, 7, 250, 251, 254, 255]);
        var labels = Targets.IdxBytes([3], [0, 2, 1]);
        var flat = Targets.IdxBytes([2, 3], [9, 8, 7, 6, 5, 4]);
        return [("images.idx", images), ("labels.idx", labels), ("flat.idx", flat),
            ("images.idx.gz", Targets.Gzip(images)), ("labels.idx.gz", Targets.Gzip(labels))];
    }

    private static List<(string, byte[])> Csv() =>
    [
        ("header.csv", Encoding.ASCII.GetBytes("a,b,label\n1,2,0\n3,4.5,1\n-1e3,0.25,2\n")),
        ("plain.csv", Encoding.ASCII.GetBytes("0.5,1,1\n2,3,0\n\n4,-5,1\n")),
        ("regression.csv", Encoding.ASCII.GetBytes("x,y,target\r\n1.5e-3,2,-0.75\r\n3,4,12.5\r\n")),
    ];

    private static List<(string, byte[])> Npy()
    {
        static byte[] F4(params float[] v) => v.SelectMany(BitConverter.GetBytes).ToArray();
        static byte[] F8(params double[] v) => v.SelectMany(BitConverter.GetBytes).ToArray();
        static byte[] I8(params long[] v) => v.SelectMany(BitConverter.GetBytes).ToArray();
        static byte[] I4(params int[] v) => v.SelectMany(BitConverter.GetBytes).ToArray();
        return
        [
            ("features-f4.npy", Targets.NpyBytes("<f4", [3, 2], F4(0, 0.5f, -1, 2, 1e3f, 3))),
            ("features-f8.npy", Targets.NpyBytes("<f8", [2, 2], F8(0.25, -4, 1e-3, 7))),
            ("images-u1.npy", Targets.NpyBytes("|u1", [2, 2, 2], [0, 1, 2, 3, 252, 253, 254, 255])),
            ("labels-i8.npy", Targets.NpyBytes("<i8", [3], I8(0, 2, 1))),
            ("labels-i4.npy", Targets.NpyBytes("<i4", [3], I4(1, 0, 1))),
            ("v2-f4.npy", Targets.NpyBytes("<f4", [2, 3], F4(1, 2, 3, 4, 5, 6), major: 2)),
        ];
    }

    private static List<(string, byte[])> SafeTensors(string dir, bool training)
    {
        var result = new List<(string, byte[])>();
        void Save(string name, ModelSpec spec, TrainingOptions options, Action<Model, string> save)
        {
            using var model = new Model(spec, options with { Threads = 1 });
            var x = Enumerable.Range(0, 2 * spec.InputWidth).Select(i => (float)Math.Sin(i)).ToArray();
            if (spec.Loss == LossKind.CrossEntropy) model.Step(x, [0, 1]);
            else model.Step(x, Enumerable.Range(0, 2 * spec.OutputWidth).Select(i => (float)i / 4).ToArray());
            string path = Path.Combine(dir, "tmp-" + name);
            save(model, path);
            result.Add((name, File.ReadAllBytes(path)));
            File.Delete(path);
        }
        var small = Targets.FixedSpec;
        var deeper = new Sequential(4).Dense(6, "gelu").Dropout(0.25).Dense(3, "tanh").Dense(2).ToSpec(LossKind.CrossEntropy, labelSmoothing: 0.1);
        var regression = new Sequential(3).Dense(4, "leaky_relu:0.2").Dense(1).ToSpec(LossKind.Huber, huberDelta: 0.5);
        if (!training)
        {
            Save("small.safetensors", small, new TrainingOptions { MaxBatch = 2 }, (m, p) => Checkpoint.SaveWeights(m, p));
            Save("deeper.safetensors", deeper, new TrainingOptions { MaxBatch = 2, LabelSmoothing = 0.1 },
                (m, p) => Checkpoint.SaveWeights(m, p, new Preprocessing(Normalization.Standardize, [0.5f, -1, 2, 0], [1, 2, 0.5f, 4])));
            Save("regression.safetensors", regression, new TrainingOptions { MaxBatch = 2, Loss = LossKind.Huber, HuberDelta = 0.5 },
                (m, p) => Checkpoint.SaveWeights(m, p, new Preprocessing(Normalization.Scale01), TensorDtype.BF16));
            // A plain PyTorch state_dict of nn.Sequential(Linear(6, 5), ReLU(), Linear(5, 3)) in F16, as safetensors.torch.save_file writes it.
            string sd = Path.Combine(dir, "tmp-state-dict");
            SafeTensorsWriter.Write(sd,
            [
                ("0.weight", [5, 6], Enumerable.Range(0, 30).Select(i => (float)Math.Cos(i) / 4).ToArray()),
                ("0.bias", [5], [0.5f, -0.25f, 0, 1, -1]),
                ("2.weight", [3, 5], Enumerable.Range(0, 15).Select(i => (float)Math.Sin(i) / 2).ToArray()),
                ("2.bias", [3], [0.125f, 0, -0.5f]),
            ], dtype: TensorDtype.F16);
            result.Add(("state-dict-f16.safetensors", File.ReadAllBytes(sd)));
            File.Delete(sd);
            return result;
        }
        var run = new TrainingRun(5, 0.1, 2, 10, new Preprocessing(Normalization.Standardize, [0.5f, -1, 2, 0, 1, 3], [1, 2, 0.5f, 1, 1, 4]), "data", "csv", "label", 3);
        Save("adam.ckpt.safetensors", small, new TrainingOptions { MaxBatch = 2, Optimizer = new Adam(amsgrad: true) },
            (m, p) => Checkpoint.SaveTraining(m, p, new TrainingPosition(1, 1), run));
        Save("sgd.ckpt.safetensors", deeper, new TrainingOptions
        {
            MaxBatch = 2, LabelSmoothing = 0.1, Optimizer = new Sgd(0.1, momentum: 0.9, nesterov: true),
            Schedule = new LrSchedule { Kind = ScheduleKind.Cosine, TMax = 10, WarmupSteps = 2 },
        }, (m, p) => Checkpoint.SaveTraining(m, p, new TrainingPosition(2, 0)));
        Save("rmsprop.ckpt.safetensors", regression, new TrainingOptions
        {
            MaxBatch = 2, Loss = LossKind.Huber, HuberDelta = 0.5, Optimizer = new RmsProp(momentum: 0.5, centered: true),
        }, (m, p) => Checkpoint.SaveTraining(m, p, new TrainingPosition(1, 3),
            new TrainingRun(3, 0, 0, 0, new Preprocessing(Normalization.None), null, "npy", null, null)));
        return result;
    }
}
