// `backprop train`: trains an MLP on an IDX dataset (Fashion-MNIST by default) and ends with the
// line "test accuracy 0.xxxx". Every choice has a flag; bad input exits with 2 and one message.
using System.CommandLine;
using System.Globalization;
using Backprop.Engine;
using Backprop.Engine.Checkpoints;
using Backprop.Engine.Data;
using Backprop.Engine.Training;
using Backprop.Kernels;

namespace Backprop.Cli;

internal static class TrainCommand
{
    public const string DefaultData = "/usr/share/datasets/fashion-mnist";

    public static Command Create(TextWriter stdout)
    {
        var o = new Dictionary<string, Option>();
        Option<T> Add<T>(string name, string description, T def)
        {
            var opt = new Option<T>(name) { Description = description, DefaultValueFactory = _ => def };
            o[name] = opt;
            return opt;
        }
        var data = Add("--data", "Folder with the data: IDX train-/t10k- files (gzip or raw), train.csv/test.csv, or train_x/train_y/test_x/test_y.npy.", DefaultData);
        var format = Add("--format", "idx, csv or npy.", "idx");
        var labelColumn = Add("--label-column", "CSV label column: a name or an index (-1 = last); default 'label' if present, else the last.", "");
        var layers = Add("--layers", "Hidden layer sizes, comma-separated (the input and output widths come from the data).", "512,256");
        var activation = Add("--activation", "Hidden activation: relu, leaky_relu[:slope], elu[:alpha], tanh, sigmoid, gelu, gelu_tanh, silu.", "relu");
        var dropout = Add("--dropout", "Dropout after each hidden layer.", 0.2);
        var lossOpt = Add("--loss", "Loss (cross_entropy for class labels).", "cross_entropy");
        var smoothing = Add("--label-smoothing", "Cross-entropy label smoothing.", 0.0);
        var optimizer = Add("--optimizer", "sgd, adam, adamw, rmsprop, adagrad.", "adam");
        var lr = Add("--lr", "Base learning rate.", 1e-3);
        var momentum = Add("--momentum", "SGD/RMSprop momentum.", 0.0);
        var nesterov = Add("--nesterov", "SGD Nesterov momentum.", false);
        var wd = Add("--weight-decay", "Weight decay (L2; decoupled for adamw; default 0, 0.01 for adamw).", 0.0);
        var beta1 = Add("--beta1", "Adam/AdamW β1.", 0.9);
        var beta2 = Add("--beta2", "Adam/AdamW β2.", 0.999);
        var eps = new Option<double?>("--eps") { Description = "Optimizer ε (default: the optimizer's own: 1e-8, 1e-10 for adagrad)." };
        o["--eps"] = eps;
        var clipNorm = Add("--clip-norm", "Clip the global gradient norm (0 = off).", 0.0);
        var schedule = Add("--schedule", "constant, step, exponential, cosine, linear.", "cosine");
        var warmup = Add("--warmup", "Linear warm-up steps in front of the schedule.", 0);
        var stepSize = Add("--step-size", "StepLR step size in steps.", 1000);
        var gamma = Add("--gamma", "StepLR/ExponentialLR factor.", 0.5);
        var batch = Add("--batch", "Batch size.", 128);
        var epochs = Add("--epochs", "Epochs.", 15);
        var seed = Add("--seed", "Seed of initialization, dropout and shuffling.", 1);
        var threads = Add("--threads", "Threads.", Environment.ProcessorCount);
        var backend = Add("--backend", "cpu (fused kernels), blas (OpenBLAS + elementwise passes) or cuda (GPU 0: cuBLAS + our CUDA kernels, the step as a CUDA graph).", "cpu");
        var tf32 = new Option<bool>("--tf32") { Description = "With --backend cuda: allow TF32 tensor-core GEMMs (faster, ~1e-3 relative error)." };
        var init = Add("--init", "he_uniform, he_normal, xavier_uniform, xavier_normal, pytorch.", "he_uniform");
        var normalize = Add("--normalize", "scale (x/255), standardize (train statistics) or none.", "scale");
        var validation = Add("--validation", "Fraction of the training set held out for validation.", 0.0);
        var patience = Add("--patience", "Early stopping patience in epochs (needs --validation).", 0);
        var checkpointEvery = Add("--checkpoint-every", "Save OUTPUT/checkpoint.safetensors every N steps (0 = never).", 0L);
        var stopAfter = Add("--stop-after-steps", "Stop after N optimizer steps in all, saving a checkpoint (0 = run every epoch).", 0L);
        var resume = new Option<DirectoryInfo?>("--resume") { Description = "Continue the run whose DIR/checkpoint.safetensors was saved (architecture and options come from it)." };
        var inputWidth = Add("--input-width", "Expected features per sample (checked against the data; 0 = take it from the data).", 0);
        var output = new Option<DirectoryInfo?>("--output") { Description = "Folder for metrics.csv, metrics.json, curves.png, confusion.csv and model.safetensors." };
        var cmd = new Command("train", "Train an MLP (Fashion-MNIST from the Debian package by default) and report test accuracy.");
        foreach (var opt in o.Values) cmd.Options.Add(opt);
        cmd.Options.Add(output);
        cmd.Options.Add(resume);
        cmd.Options.Add(tf32);
        cmd.SetAction(p =>
        {
            var hidden = Flags.Layers(p.GetValue(layers)!);
            var act = Flags.Activation("--activation", p.GetValue(activation)!);
            var loss = Flags.Loss(p.GetValue(lossOpt)!);
            if (loss != LossKind.CrossEntropy) throw new UsageException($"--loss {p.GetValue(lossOpt)} needs target values; IDX data has class labels, so use cross_entropy.");
            double drop = p.GetValue(dropout);
            if (!(drop >= 0 && drop < 1)) throw new UsageException($"--dropout must be in [0, 1); got {Inv(drop)}.");
            var settings = ParseOptimizer(p, optimizer, lr, momentum, nesterov, wd, beta1, beta2, eps, clipNorm);
            int b = p.GetValue(batch), ep = p.GetValue(epochs), th = p.GetValue(threads);
            if (b < 1) throw new UsageException($"--batch must be at least 1; got {b}.");
            if (ep < 1) throw new UsageException($"--epochs must be at least 1; got {ep}.");
            if (th < 1 || th > 1024) throw new UsageException($"--threads must be in [1, 1024]; got {th}.");
            var be = Flags.Backend(p.GetValue(backend)!);
            var initScheme = Flags.Init(p.GetValue(init)!);
            var norm = Flags.Choice("--normalize", p.GetValue(normalize)!,
                ("scale", Normalization.Scale01), ("standardize", Normalization.Standardize), ("none", Normalization.None));
            var resumeDir = p.GetValue(resume);
            var dir = p.GetValue(output) ?? resumeDir;
            long every = p.GetValue(checkpointEvery), stop = p.GetValue(stopAfter);
            if ((every != 0 || stop != 0) && dir is null) throw new UsageException("--checkpoint-every and --stop-after-steps need --output DIR (where the checkpoint goes).");
            var fit = new FitOptions { Epochs = ep, ValidationFraction = p.GetValue(validation), Patience = p.GetValue(patience), CheckpointEvery = every, StopAfterSteps = stop };
            int iw = p.GetValue(inputWidth);
            if (iw < 0) throw new UsageException($"--input-width must be >= 0; got {iw}.");
            var (trainSet, testSet) = Flags.Choice("--format", p.GetValue(format)!, ("idx", "idx"), ("csv", "csv"), ("npy", "npy")) switch
            {
                "idx" => LoadIdx(p.GetValue(data)!),
                var f => LoadOther(p.GetValue(data)!, f, f == "csv" ? p.GetValue(labelColumn)! : ""),
            };
            if (iw > 0 && iw != trainSet.Width)
                throw new UsageException($"the data has {trainSet.Width} features per sample but the first layer expects {iw} (--input-width).");
            int stepsPerEpoch = (int)Math.Ceiling(trainSet.Count * (1 - fit.ValidationFraction) / b);
            var sched = ParseSchedule(p.GetValue(schedule)!, p.GetValue(warmup), p.GetValue(stepSize), p.GetValue(gamma), ep * stepsPerEpoch);
            var options = new TrainingOptions
            {
                Loss = loss, LabelSmoothing = p.GetValue(smoothing), Optimizer = settings, Schedule = sched, MaxBatch = b,
                Seed = (ulong)p.GetValue(seed), Threads = th, Backend = be, Init = initScheme, AllowTf32 = p.GetValue(tf32),
            };
            if (p.GetValue(tf32) && be != Backend.Cuda) throw new UsageException($"--tf32 applies to --backend cuda; the backend is {be.ToString().ToLowerInvariant()}.");
            try
            {
                options.Validate();
                fit.Validate();
            }
            catch (ArgumentException e) { throw new UsageException(Flags.Message(e)); }

            if (norm == Normalization.Standardize)
            {
                var (mean, std) = trainSet.FeatureStats();
                trainSet.Normalize(norm, mean, std);
                testSet.Normalize(norm, mean, std);
            }
            else
            {
                trainSet.Normalize(norm);
                testSet.Normalize(norm);
            }
            Model model;
            if (resumeDir is not null)
            {
                string ckpt = Path.Combine(resumeDir.FullName, "checkpoint.safetensors");
                try
                {
                    var info = Checkpoint.ReadInfo(ckpt);
                    if (info.Spec.InputWidth != trainSet.Width)
                        throw new UsageException($"the checkpoint's model takes {info.Spec.InputWidth} features but the data has {trainSet.Width}.");
                    try { model = new Model(info.Spec, info.Options with { Threads = th }); }
                    catch (InvalidOperationException e) when (info.Options.Backend == Backend.Cuda) { throw new UsageException(e.Message); }
                    try { Checkpoint.LoadTraining(model, ckpt); }
                    catch { model.Dispose(); throw; }
                    fit = fit with { Start = info.Position };
                    stdout.WriteLine($"resuming {ckpt} at step {info.Step} (epoch {info.Position.Epoch}, batch {info.Position.NextBatch})");
                }
                catch (Exception e) when (e is FileNotFoundException or InvalidDataException) { throw new UsageException(e.Message); }
            }
            else
            {
                var net = new Sequential(trainSet.Width);
                foreach (int h in hidden)
                {
                    net.Dense(h, act);
                    if (drop > 0) net.Dropout(drop);
                }
                net.Dense(Math.Max(2, Math.Max(trainSet.Outputs, testSet.Outputs)));
                try { model = net.Compile(options); }
                catch (InvalidOperationException e) when (be == Backend.Cuda) { throw new UsageException(e.Message); } // no CUDA device, cuBLAS or NVRTC
            }
            using (model)
            {
                if (dir is not null)
                {
                    Directory.CreateDirectory(dir.FullName);
                    string path = Path.Combine(dir.FullName, "checkpoint.safetensors");
                    fit = fit with { OnCheckpoint = pos => Checkpoint.SaveTraining(model, path, pos) };
                }
                return TrainRunner.Run(model, trainSet, testSet, fit, dir, stdout);
            }
        });
        return cmd;
    }

    private static string Inv(double v) => Flags.Inv(v);

    // True when the user wrote the flag (not its default).
    private static bool Given(ParseResult p, Option o) => p.GetResult(o) is { Implicit: false };

    // The optimizer's settings type takes only its own hyper-parameters; a flag for another algorithm is an error.
    private static OptimizerSettings ParseOptimizer(ParseResult p, Option<string> optimizer, Option<double> lr, Option<double> momentum, Option<bool> nesterov,
        Option<double> wd, Option<double> beta1, Option<double> beta2, Option<double?> eps, Option<double> clipNorm)
    {
        string name = p.GetValue(optimizer)!;
        var kind = Flags.Choice("--optimizer", name, ("sgd", OptimizerKind.Sgd), ("adam", OptimizerKind.Adam), ("adamw", OptimizerKind.AdamW),
            ("rmsprop", OptimizerKind.RMSprop), ("adagrad", OptimizerKind.Adagrad));
        void Only(Option flag, string which, params OptimizerKind[] kinds)
        {
            if (Given(p, flag) && !kinds.Contains(kind))
                throw new UsageException($"{flag.Name} applies to {which}; the optimizer is {name.ToLowerInvariant()}.");
        }
        Only(momentum, "sgd and rmsprop", OptimizerKind.Sgd, OptimizerKind.RMSprop);
        Only(nesterov, "sgd", OptimizerKind.Sgd);
        Only(beta1, "adam and adamw", OptimizerKind.Adam, OptimizerKind.AdamW);
        Only(beta2, "adam and adamw", OptimizerKind.Adam, OptimizerKind.AdamW);
        Only(eps, "adam, adamw, rmsprop and adagrad", OptimizerKind.Adam, OptimizerKind.AdamW, OptimizerKind.RMSprop, OptimizerKind.Adagrad);
        var d = OptimizerSettings.ForKind(kind);
        double rate = p.GetValue(lr), mu = p.GetValue(momentum), b1 = p.GetValue(beta1), b2 = p.GetValue(beta2);
        double decay = Given(p, wd) ? p.GetValue(wd) : d.WeightDecay;
        double Eps(double def) => p.GetValue(eps) ?? def;
        OptimizerSettings s = d switch
        {
            Sgd => new Sgd(rate, mu, nesterov: p.GetValue(nesterov), weightDecay: decay),
            AdamW a => new AdamW(rate, b1, b2, Eps(a.Eps), decay),
            Adam a => new Adam(rate, b1, b2, Eps(a.Eps), decay),
            RmsProp r => new RmsProp(rate, eps: Eps(r.Eps), weightDecay: decay, momentum: mu),
            Adagrad g => new Adagrad(rate, weightDecay: decay, eps: Eps(g.Eps)),
            _ => throw new UsageException($"--optimizer {name} has no settings."),
        };
        return s with { ClipNorm = p.GetValue(clipNorm) };
    }

    private static LrSchedule ParseSchedule(string name, int warmup, int stepSize, double gamma, int totalSteps)
    {
        if (warmup < 0) throw new UsageException($"--warmup must be >= 0; got {warmup}.");
        var s = Flags.Choice("--schedule", name, ("constant", ScheduleKind.Constant), ("step", ScheduleKind.Step), ("exponential", ScheduleKind.Exponential),
            ("cosine", ScheduleKind.Cosine), ("linear", ScheduleKind.Linear)) switch
        {
            ScheduleKind.Step => new LrSchedule { Kind = ScheduleKind.Step, StepSize = stepSize, Gamma = gamma },
            ScheduleKind.Exponential => new LrSchedule { Kind = ScheduleKind.Exponential, Gamma = gamma },
            ScheduleKind.Cosine => new LrSchedule { Kind = ScheduleKind.Cosine, TMax = Math.Max(1, totalSteps - warmup), EtaMin = 0 },
            ScheduleKind.Linear => new LrSchedule { Kind = ScheduleKind.Linear, StartFactor = 1, EndFactor = 0.01, TotalIters = Math.Max(1, totalSteps - warmup) },
            _ => new LrSchedule { Kind = ScheduleKind.Constant },
        };
        return s with { WarmupSteps = warmup };
    }

    private static (Dataset Train, Dataset Test) LoadOther(string folder, string format, string labelColumn)
    {
        if (!Directory.Exists(folder)) throw new UsageException($"--data folder '{folder}' does not exist.");
        string Need(string name)
        {
            var path = Path.Combine(folder, name);
            return File.Exists(path) ? path : throw new UsageException($"--data folder '{folder}' has no {name} (--format {format}).");
        }
        try
        {
            var (train, test) = format == "csv"
                ? (Csv.Read(Need("train.csv"), labelColumn), Csv.Read(Need("test.csv"), labelColumn))
                : (Npy.ReadPair(Need("train_x.npy"), Need("train_y.npy")), Npy.ReadPair(Need("test_x.npy"), Need("test_y.npy")));
            if (train.Width != test.Width)
                throw new UsageException($"the training data has {train.Width} features and the test data {test.Width}; they must match.");
            return (train, test);
        }
        catch (Exception e) when (e is InvalidDataException or ArgumentException) { throw new UsageException(e.Message.Split(" (Parameter")[0]); }
    }

    internal static (Dataset Train, Dataset Test) LoadIdx(string folder)
    {
        if (!Directory.Exists(folder))
            throw new UsageException($"--data folder '{folder}' does not exist" + (folder == DefaultData ? " (install it with: apt-get install dataset-fashion-mnist, or ./build.sh Deps)." : "."));
        string Find(string stem)
        {
            foreach (var name in new[] { stem, stem + ".gz" })
            {
                var path = Path.Combine(folder, name);
                if (File.Exists(path)) return path;
            }
            throw new UsageException($"--data folder '{folder}' has no {stem}[.gz].");
        }
        try
        {
            var train = Idx.ReadPair(Find("train-images-idx3-ubyte"), Find("train-labels-idx1-ubyte"));
            var test = Idx.ReadPair(Find("t10k-images-idx3-ubyte"), Find("t10k-labels-idx1-ubyte"));
            if (train.Width != test.Width)
                throw new UsageException($"the training images have {train.Width} pixels and the test images {test.Width}; they must match.");
            return (train, test);
        }
        catch (InvalidDataException e) { throw new UsageException(e.Message); }
    }
}
