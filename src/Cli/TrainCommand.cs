// `backprop train`: trains an MLP on an IDX dataset (Fashion-MNIST by default) and ends with the
// line "test accuracy 0.xxxx". Every choice has a flag; bad input exits with 2 and one message, before
// any training starts. `--resume DIR` continues the run its checkpoint describes, as the same run.
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
    public const string DefaultData = TrainData.DefaultFolder;

    public static Command Create(TextWriter stdout, TextWriter stderr)
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
        var archOpt = Add("--arch", Architecture.Help, "mlp");
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
        var batch = Add("--batch", "Batch size: the global batch of one optimizer step, however --accumulate and the processes of an MPI job split it.", 128);
        var accumulate = Add("--accumulate", "Split each batch into K micro-batches (per process) and sum their gradients before one update: the same step in the memory of a micro-batch.", 1);
        var distributed = Add("--distributed", "auto (join the MPI job when started by mpirun/srun), none, or mpi (use MPI; outside a launcher a job of one): data-parallel training, every process on its share of each batch.", "auto");
        var overlap = new Option<bool>("--overlap") { Description = "With --reduction fast and no --accumulate: start each layer's gradient sum during the backward pass (MPI_Iallreduce); pays on a network, not on one machine (README)." };
        o["--overlap"] = overlap;
        var reduction = Add("--reduction", "How an MPI job sums gradients: deterministic (in micro-batch order: bit for bit one process with --accumulate N) or fast (MPI_Allreduce).", "deterministic");
        var epochs = Add("--epochs", "Epochs.", 15);
        var seed = Add("--seed", "Seed of initialization, dropout and shuffling.", 1);
        var threads = Add("--threads", "Threads.", Environment.ProcessorCount);
        var backend = Add("--backend", "cpu (fused kernels), blas (OpenBLAS + elementwise passes) or cuda (GPU 0: cuBLAS + our CUDA kernels, the step as a CUDA graph).", "cpu");
        var precision = Add("--precision", "fp32 or bf16: with bf16 the dense layers' GEMMs multiply bf16 operands with float32 accumulation (needs AVX512_BF16); weights, optimizer, loss and update stay float32.", "fp32");
        var bf16Fallback = Add("--bf16-fallback", "With --precision bf16 on a machine that cannot run it: train in fp32 (with a warning) instead of exit 2.", false);
        var tf32 = new Option<bool>("--tf32") { Description = "With --backend cuda: allow TF32 tensor-core GEMMs (faster, ~1e-3 relative error)." };
        var initOpt = Add("--init", "he_uniform, he_normal, xavier_uniform, xavier_normal, pytorch.", "he_uniform");
        var normalize = Add("--normalize", "scale (x/255), standardize (train statistics) or none.", "scale");
        var validation = Add("--validation", "Fraction of the training set held out for validation.", 0.0);
        var patience = Add("--patience", "Early stopping patience in epochs (needs --validation).", 0);
        var checkpointEvery = Add("--checkpoint-every", "Save OUTPUT/checkpoint.safetensors every N steps (0 = never).", 0L);
        var stopAfter = Add("--stop-after-steps", "Stop after N optimizer steps in all, saving a checkpoint (0 = run every epoch).", 0L);
        var resume = new Option<DirectoryInfo?>("--resume") { Description = "Continue the run whose DIR/checkpoint.safetensors was saved: model, options, data, scaling and epochs come from it (--threads, --lr, --epochs, --checkpoint-every, --stop-after-steps may be given)." };
        var inputWidth = Add("--input-width", "Expected features per sample (checked against the data; 0 = take it from the data).", 0);
        var output = new Option<DirectoryInfo?>("--output") { Description = "Folder for metrics.csv, metrics.json, curves.png, confusion.csv, model.safetensors and checkpoints (checked before training; a folder holding an earlier run needs --overwrite)." };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace the earlier run in --output." };
        var classesOpt = new Option<int?>("--classes") { Description = "Number of classes (default: from the labels, refusing implausible results)." };
        var initFrom = new Option<FileInfo?>("--init-from")
        {
            Description = "Start from the weights of FILE (model.safetensors, a checkpoint, or a plain PyTorch state_dict) with a fresh optimizer: fine-tuning. " +
                "The layers come from the file; a state_dict's activations from --activation (one per hidden layer if they differ), its Dropout modules get --dropout.",
        };
        var dtype = Add("--dtype", "Element type of the final model.safetensors: f32, bf16 or f16 (checkpoints stay f32).", "f32");
        var cmd = new Command("train", "Train an MLP (Fashion-MNIST from the Debian package by default) and report test accuracy.");
        foreach (var opt in o.Values) cmd.Options.Add(opt);
        cmd.Options.Add(output);
        cmd.Options.Add(overwrite);
        cmd.Options.Add(classesOpt);
        cmd.Options.Add(initFrom);
        cmd.Options.Add(resume);
        cmd.Options.Add(tf32);
        cmd.SetAction(p =>
        {
            int th = p.GetValue(threads);
            if (th < 1 || th > 1024) throw new UsageException($"--threads must be in [1, 1024]; got {th}.");
            var resumeDir = p.GetValue(resume);
            int acc = p.GetValue(accumulate);
            if (acc < 1 || acc > 65536) throw new UsageException($"--accumulate must be in [1, 65536] micro-batches; got {acc}.");
            var mode = Flags.Choice("--reduction", p.GetValue(reduction)!, ("deterministic", ReductionMode.Deterministic), ("fast", ReductionMode.Fast));
            Flags.Choice("--distributed", p.GetValue(distributed)!, ("auto", 0), ("none", 0), ("mpi", 0));
            bool ov = p.GetValue(overlap);
            if (ov && mode != ReductionMode.Fast) throw new UsageException("--overlap applies to --reduction fast (the deterministic exchange folds round by round after the backward pass).");
            if (ov && Given(p, accumulate) && acc > 1) throw new UsageException($"--overlap needs --accumulate 1 (the sum can start only on a layer's final gradients); got {acc}.");
            DistributedLaunch? Launch() => DistributedLaunch.Start("--distributed", p.GetValue(distributed)!, mode, stderr, ov);
            if (resumeDir is not null) return Resume(p, cmd, resumeDir, th, o, output, Launch, stdout, stderr);

            var type = WeightsDtype(p.GetValue(dtype)!);
            var init = p.GetValue(initFrom);
            if (init is not null && Given(p, layers)) throw new UsageException("--layers cannot be given with --init-from: the layers come from the file.");
            var hidden = Flags.Layers(p.GetValue(layers)!);
            var arch = Architecture.Parse(p.GetValue(archOpt)!);
            if (arch.Residual && Given(p, layers)) throw new UsageException($"--layers cannot be given with --arch {p.GetValue(archOpt)}: the residual network's widths come from --arch.");
            if (init is not null && Given(p, archOpt)) throw new UsageException("--arch cannot be given with --init-from: the network comes from the file.");
            var act = init is null ? Flags.Activation("--activation", p.GetValue(activation)!) : default;
            var loss = Flags.Loss(p.GetValue(lossOpt)!);
            if (loss != LossKind.CrossEntropy) throw new UsageException($"--loss {p.GetValue(lossOpt)} needs target values; IDX data has class labels, so use cross_entropy.");
            double drop = p.GetValue(dropout);
            if (!(drop >= 0 && drop < 1)) throw new UsageException($"--dropout must be in [0, 1); got {Inv(drop)}.");
            var settings = ParseOptimizer(p, optimizer, lr, momentum, nesterov, wd, beta1, beta2, eps, clipNorm);
            int b = p.GetValue(batch), ep = p.GetValue(epochs);
            if (b < 1) throw new UsageException($"--batch must be at least 1; got {b}.");
            if (ep < 1) throw new UsageException($"--epochs must be at least 1; got {ep}.");
            var be = Flags.Backend(p.GetValue(backend)!);
            var initScheme = Flags.Init(p.GetValue(initOpt)!);
            var norm = Flags.Choice("--normalize", p.GetValue(normalize)!,
                ("scale", Normalization.Scale01), ("standardize", Normalization.Standardize), ("none", Normalization.None));
            string fmt = Flags.Choice("--format", p.GetValue(format)!, ("idx", "idx"), ("csv", "csv"), ("npy", "npy"));
            var dir = p.GetValue(output);
            long every = p.GetValue(checkpointEvery), stop = p.GetValue(stopAfter);
            if ((every != 0 || stop != 0) && dir is null) throw new UsageException("--checkpoint-every and --stop-after-steps need --output DIR (where the checkpoint goes).");
            var fit = new FitOptions { Epochs = ep, ValidationFraction = p.GetValue(validation), Patience = p.GetValue(patience), CheckpointEvery = every, StopAfterSteps = stop };
            int iw = p.GetValue(inputWidth);
            if (iw < 0) throw new UsageException($"--input-width must be >= 0; got {iw}.");
            if (p.GetValue(tf32) && be != Backend.Cuda) throw new UsageException($"--tf32 applies to --backend cuda; the backend is {be.ToString().ToLowerInvariant()}.");
            try { fit.Validate(); }
            catch (ArgumentException e) { throw new UsageException(Flags.Message(e)); }
            // The folder is checked before any data is read or any step is taken.
            if (dir is not null) RunFolder.Prepare("--output", dir, resuming: false, overwrite: p.GetValue(overwrite));

            string dataFolder = Path.GetFullPath(p.GetValue(data)!), labelCol = fmt == "csv" ? p.GetValue(labelColumn)! : "";
            var (trainSet, testSet) = TrainData.Load(dataFolder, fmt, labelCol);
            if (iw > 0 && iw != trainSet.Width)
                throw new UsageException($"the data has {trainSet.Width} features per sample but the first layer expects {iw} (--input-width).");
            int classes = TrainData.Classes(trainSet, testSet, p.GetValue(classesOpt));
            int stepsPerEpoch = StepsPerEpoch(trainSet.Count, fit.ValidationFraction, b, acc, arch.Norm == BlockNorm.Batch && arch.Residual);
            var sched = ParseSchedule(p.GetValue(schedule)!, p.GetValue(warmup), p.GetValue(stepSize), p.GetValue(gamma), ep * stepsPerEpoch);
            var options = new TrainingOptions
            {
                Loss = loss, LabelSmoothing = p.GetValue(smoothing), Optimizer = settings, Schedule = sched, MaxBatch = b,
                Seed = (ulong)p.GetValue(seed), Threads = th, Backend = be, Init = initScheme, AllowTf32 = p.GetValue(tf32), Accumulate = acc,
                Precision = Flags.Precision(p.GetValue(precision)!), PrecisionFallback = p.GetValue(bf16Fallback),
            };
            if (options.PrecisionFallback && options.Precision != Kernels.Cpu.GemmPrecision.Bf16)
                throw new UsageException("--bf16-fallback applies to --precision bf16; the precision is fp32.");
            try { options.Validate(); }
            catch (ArgumentException e) { throw new UsageException(Flags.Message(e)); }
            // What the world size decides is checked before MPI starts, from the launcher's variables: an error every rank
            // hits is then a usage error (exit 2) on each, not an abort of the job.
            if (Kernels.Mpi.MpiCommunicator.LauncherRank is var (_, size) && !string.Equals(p.GetValue(distributed), "none", StringComparison.OrdinalIgnoreCase)
                && (long)acc * size > b)
                throw new UsageException($"a batch of {b} cannot be split into {(long)acc * size} micro-batches (--accumulate {acc} x {size} processes); give --batch {(long)acc * size} or more.");
            using var launch = Launch();
            return Distributed(launch, stdout, stderr, (o1, o2) =>
            {
                options = options with { Distributed = launch?.Options };
                try { options.Validate(); }
                catch (ArgumentException e) { throw new UsageException(Flags.Message(e)); }
                if (launch is not null) o1.WriteLine($"distributed: {launch.Describe}");
                if (init is not null)
                    return FineTune(p, init.FullName, activation, dropout, normalize, lossOpt, initScheme: initOpt, trainSet, testSet, classes, options, fit, dir,
                        new TrainingRun(ep, fit.ValidationFraction, fit.Patience, every, new Preprocessing(norm), dataFolder, fmt, labelCol, classes), type, launch, o1, o2);
                return NewRun(net0(), options, trainSet, testSet, fit, dir, ep, every, norm, dataFolder, fmt, labelCol, classes, type, launch, o1, o2);
            });
            Sequential net0() => arch.Build(trainSet.Width, classes, hidden, act, drop);
        });
        return cmd;
    }

    private static int NewRun(Sequential net, TrainingOptions options, Dataset trainSet, Dataset testSet, FitOptions fit, DirectoryInfo? dir, int ep, long every,
        Normalization norm, string dataFolder, string fmt, string labelCol, int classes, TensorDtype type, DistributedLaunch? launch, TextWriter stdout, TextWriter stderr)
    {
        var pre = TrainData.Normalize(trainSet, testSet, norm);
        var run = new TrainingRun(ep, fit.ValidationFraction, fit.Patience, every, pre, dataFolder, fmt, labelCol, classes);
        using var model = Build(() => net.Compile(options), options, stderr);
        return TrainRunner.Run(model, trainSet, testSet, fit, dir, run, type, stdout, stderr, launch);
    }

    // Rank 0 of a job prints and writes, the other ranks run quietly; any failure of one rank stops the job (DistributedLaunch).
    private static int Distributed(DistributedLaunch? launch, TextWriter stdout, TextWriter stderr, Func<TextWriter, TextWriter, int> body)
    {
        if (launch is null) return body(stdout, stderr);
        try { return launch.Rank == 0 ? body(stdout, stderr) : body(TextWriter.Null, TextWriter.Null); }
        catch (Exception e)
        {
            launch.Abort(e is UsageException ? e.Message : Flags.Message(e));
            throw;
        }
    }

    // Flags a resumed run takes from its checkpoint; these may be given with --resume and change what they say.
    private static readonly string[] ResumeOverrides = ["--threads", "--lr", "--epochs", "--checkpoint-every", "--stop-after-steps", "--dtype", "--accumulate", "--distributed", "--reduction", "--overlap", "--bf16-fallback"];

    private static TensorDtype WeightsDtype(string text) => Flags.Choice("--dtype", text, ("f32", TensorDtype.F32), ("bf16", TensorDtype.BF16), ("f16", TensorDtype.F16));

    // `train --init-from FILE`: the model and its weights from FILE, a fresh optimizer; the file's preprocessing (a backprop
    // file's, with its statistics) or --normalize's (a state_dict's) scales the data.
    private static int FineTune(ParseResult p, string file, Option<string> activation, Option<double> dropout, Option<string> normalize, Option<string> lossOpt,
        Option<string> initScheme, Dataset trainSet, Dataset testSet, int classes, TrainingOptions options, FitOptions fit, DirectoryInfo? dir,
        TrainingRun run, TensorDtype type, DistributedLaunch? launch, TextWriter stdout, TextWriter stderr)
    {
        if (Given(p, initScheme)) throw new UsageException("--init cannot be given with --init-from: the weights come from the file.");
        if (Given(p, lossOpt)) throw new UsageException("--loss cannot be given with --init-from: train fits class labels with cross_entropy.");
        if (Path.GetFullPath(file) is var full && dir is not null && Path.GetDirectoryName(full) == Path.GetFullPath(dir.FullName).TrimEnd('/') &&
            Path.GetFileName(full) is "model.safetensors" or "checkpoint.safetensors")
            throw new UsageException($"--init-from '{file}' is in the --output folder, where this run writes its files; copy it elsewhere first.");
        double drop = p.GetValue(dropout);
        bool stateDict;
        try { stateDict = ModelFile.IsStateDict(SafeTensorsFile.Read(file)); }
        catch (Exception e) when (e is InvalidDataException or FileNotFoundException) { throw new UsageException(e.Message); }
        if (!stateDict && Given(p, dropout)) throw new UsageException($"--dropout cannot be given with --init-from '{file}': a backprop file records its dropout.");
        if (!stateDict && Given(p, activation)) throw new UsageException($"--activation cannot be given with --init-from '{file}': a backprop file records its activations.");
        // A backprop file's preprocessing is the model's (--normalize may only agree); a state_dict's is --normalize's, fitted here.
        var (info, pre) = ModelSource.Open("--init-from", file, stateDict && Given(p, activation) ? p.GetValue(activation) : null, null,
            !stateDict && Given(p, normalize) ? p.GetValue(normalize) : stateDict ? "none" : null, stderr, drop);
        if (stateDict && Given(p, dropout) && drop > 0 && info.Spec.Layers.All(l => l.Dropout == 0))
            throw new UsageException($"--dropout {Inv(drop)}: '{file}' has no Dropout modules (no module sits between its Linears without an activation of its own).");
        var spec = info.Spec;
        if (spec.Loss != LossKind.CrossEntropy)
            throw new UsageException($"--init-from '{file}' is a {spec.Loss} model; train fits class labels (cross_entropy).");
        if (spec.InputWidth != trainSet.Width)
            throw new UsageException($"--init-from '{file}' takes {spec.InputWidth} features per sample but the data has {trainSet.Width}.");
        if (spec.OutputWidth != classes)
            throw new UsageException($"--init-from '{file}' has {spec.OutputWidth} outputs but the data has {classes} classes (pass --classes {spec.OutputWidth} if the labels are a subset).");
        pre = stateDict ? TrainData.Normalize(trainSet, testSet, run.Preprocessing.Kind) : TrainData.Normalize(trainSet, testSet, pre.Kind, pre);
        using var model = Build(() => new Model(spec, options), options, stderr);
        try { Checkpoint.LoadWeights(model, info); }
        catch (InvalidDataException e) { throw new UsageException(e.Message); }
        model.SynchronizeParameters();
        stdout.WriteLine($"initialized from {file} ({info.Kind}); a fresh {options.Optimizer.Kind} optimizer");
        return TrainRunner.Run(model, trainSet, testSet, fit, dir, run with { Preprocessing = pre }, type, stdout, stderr, launch);
    }

    // `train --resume DIR`: the same run, from its checkpoint: model, options, data, scaling, epochs, validation split.
    private static int Resume(ParseResult p, Command cmd, DirectoryInfo dir, int threads, Dictionary<string, Option> o, Option<DirectoryInfo?> output,
        Func<DistributedLaunch?> launchJob, TextWriter stdout, TextWriter stderr)
    {
        if (p.GetValue(output) is { } other && Path.GetFullPath(other.FullName).TrimEnd('/') != Path.GetFullPath(dir.FullName).TrimEnd('/'))
            throw new UsageException($"--output '{other.FullName}' differs from --resume '{dir.FullName}': a resumed run writes to its own folder.");
        foreach (var opt in cmd.Options)
            if (Given(p, opt) && opt.Name is not ("--resume" or "--output") && !ResumeOverrides.Contains(opt.Name))
                throw new UsageException($"{opt.Name} cannot change a resumed run (the checkpoint fixes it); drop it, or start a new run in another folder. " +
                    $"With --resume these may be given: {string.Join(", ", ResumeOverrides)}.");
        string ckpt = Path.Combine(dir.FullName, "checkpoint.safetensors");
        if (!File.Exists(ckpt)) throw new UsageException($"--resume '{dir.FullName}' holds no checkpoint.safetensors (save one with --checkpoint-every or --stop-after-steps).");
        CheckpointInfo info;
        try { info = Checkpoint.ReadInfo(ckpt); }
        catch (InvalidDataException e) { throw new UsageException(e.Message); }
        var run = info.Run ?? throw new UsageException($"checkpoint '{ckpt}' does not record its run (data, scaling, epochs): it predates resumable runs; start a new run.");
        RunFolder.Prepare("--resume", dir, resuming: true, overwrite: false);
        var (trainSet, testSet) = TrainData.Load(run.Data ?? TrainData.DefaultFolder, run.Format ?? "idx", run.LabelColumn ?? "");
        if (trainSet.Width != info.Spec.InputWidth)
            throw new UsageException($"the checkpoint's model takes {info.Spec.InputWidth} features but its data '{run.Data}' now has {trainSet.Width}.");
        TrainData.Classes(trainSet, testSet, info.Spec.OutputWidth);
        TrainData.Normalize(trainSet, testSet, run.Preprocessing.Kind, run.Preprocessing);

        var options = info.Options with { Threads = threads, PrecisionFallback = Given(p, o["--bf16-fallback"]) && p.GetValue((Option<bool>)o["--bf16-fallback"]) };
        if (Given(p, o["--accumulate"])) options = options with { Accumulate = p.GetValue((Option<int>)o["--accumulate"]) };
        if (Given(p, o["--lr"]))
            options = options with { Optimizer = options.Optimizer with { LearningRate = p.GetValue((Option<double>)o["--lr"]) } };
        int epochs = run.Epochs;
        if (Given(p, o["--epochs"]))
        {
            epochs = p.GetValue((Option<int>)o["--epochs"]);
            if (epochs < info.Position.Epoch)
                throw new UsageException($"--epochs {epochs} ends before the checkpoint's position (epoch {info.Position.Epoch}); give at least {info.Position.Epoch}.");
            // A schedule that decays over the run decays over the new length.
            int total = epochs * StepsPerEpoch(trainSet.Count, run.ValidationFraction, options.MaxBatch, options.Accumulate, info.Spec.BatchNormSites.Count > 0)
                - options.Schedule.WarmupSteps;
            options = options with
            {
                Schedule = options.Schedule.Kind switch
                {
                    ScheduleKind.Cosine => options.Schedule with { TMax = Math.Max(1, total) },
                    ScheduleKind.Linear => options.Schedule with { TotalIters = Math.Max(1, total) },
                    _ => options.Schedule,
                },
            };
        }
        long every = Given(p, o["--checkpoint-every"]) ? p.GetValue((Option<long>)o["--checkpoint-every"]) : run.CheckpointEvery;
        var fit = new FitOptions
        {
            Epochs = epochs, ValidationFraction = run.ValidationFraction, Patience = run.Patience, CheckpointEvery = every,
            StopAfterSteps = p.GetValue((Option<long>)o["--stop-after-steps"]), Start = info.Position,
        };
        try
        {
            options.Validate();
            fit.Validate();
        }
        catch (ArgumentException e) { throw new UsageException(Flags.Message(e)); }
        using var launch = launchJob();
        return Distributed(launch, stdout, stderr, (stdout, stderr) =>
        {
            // The run's split of each batch into micro-batches is kept across world sizes, so the run continues bit for bit.
            int world = launch?.Size ?? 1;
            if (run.MicroBatches is int split)
            {
                if (!Given(p, o["--accumulate"]))
                {
                    if (split % world != 0)
                        throw new UsageException($"the run splits each batch into {split} micro-batches, which {world} processes cannot take in equal rounds; " +
                            $"pass --accumulate K to split it into K x {world} instead (the weights then match an uninterrupted run to rounding, not bit for bit).");
                    options = options with { Accumulate = split / world };
                }
                else if (options.Accumulate * world != split)
                    stderr.WriteLine($"warning: the run split each batch into {split} micro-batches; --accumulate {options.Accumulate} x {world} process(es) makes " +
                        $"{options.Accumulate * world}, so the weights match an uninterrupted run to rounding, not bit for bit.");
            }
            options = options with { Distributed = launch?.Options };
            try { options.Validate(); }
            catch (ArgumentException e) { throw new UsageException(Flags.Message(e)); }
            if (launch is not null) stdout.WriteLine($"distributed: {launch.Describe}");
            if (options.Accumulate > 1) stdout.WriteLine($"each batch in {options.Accumulate * world} micro-batches: --accumulate {options.Accumulate} x {world} process(es)");
            using var model = Build(() => new Model(info.Spec, options), options, stderr);
            try { Checkpoint.LoadTraining(model, ckpt); }
            catch (InvalidDataException e) { throw new UsageException(e.Message); }
            model.SynchronizeParameters(); // every rank read the file; rank 0's copy is the one
            stdout.WriteLine($"resuming {ckpt} at step {info.Step} (epoch {info.Position.Epoch}, batch {info.Position.NextBatch})");
            return TrainRunner.Run(model, trainSet, testSet, fit, dir, run with { Epochs = epochs, CheckpointEvery = every }, WeightsDtype(p.GetValue((Option<string>)o["--dtype"])!),
                stdout, stderr, launch);
        });
    }

    // A model the engine refuses to build (too large, no device) is a usage error: exit 2 and why.
    // Compiles the model (its errors are usage errors) and says so when bf16 was asked for and --bf16-fallback took fp32 instead.
    private static Model Build(Func<Model> make, TrainingOptions asked, TextWriter stderr)
    {
        if (asked.Precision == Kernels.Cpu.GemmPrecision.Bf16 && !asked.PrecisionFallback && asked.Backend == Backend.Cpu && Kernels.Cpu.Bf16Gemm.Unavailable is { } why)
            throw new UsageException($"--precision bf16 cannot run here: {why} Add --bf16-fallback to train in fp32 instead (or give --precision fp32 to a new run).");
        Model model;
        try { model = make(); }
        catch (Exception e) when (e is ArgumentException or InsufficientMemoryException or InvalidOperationException or NotSupportedException)
        {
            throw new UsageException(Flags.Message(e));
        }
        if (asked.Precision == Kernels.Cpu.GemmPrecision.Bf16 && model.Options.Precision != Kernels.Cpu.GemmPrecision.Bf16)
            stderr.WriteLine($"warning: bf16 precision cannot run here ({Kernels.Cpu.Bf16Gemm.Unavailable ?? $"the kernels are forced to the {asked.Isa} rung"}); training in fp32 (--bf16-fallback).");
        else if (model.Options.Precision == Kernels.Cpu.GemmPrecision.Bf16 && model.Options.Backend == Backend.Cpu && Bf16Rates.SlowerWarning(Bf16Rates.Measure()) is { } slower)
            stderr.WriteLine(slower);
        return model;
    }

    // The trainer's steps per epoch (its validation split, and a last batch a BatchNorm could not take left out).
    private static int StepsPerEpoch(int samples, double validation, int batch, int accumulate, bool batchNorm) =>
        Trainer.BatchesPerEpoch(validation > 0 ? samples - Math.Max(1, (int)Math.Round(samples * validation)) : samples, batch, accumulate, batchNorm);

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
}
