// The fitted networks as ML.NET model parameters. ML.NET's own prediction transformers (multiclass, binary, regression)
// score them through IValueMapper, one row at a time with the engine's allocation-free Predict, and save them into the
// model zip: each writes its network as a safetensors entry (the engine's weights file, spec included) beside ML.NET's
// own entries, and loads it back by the loader signature in the zip, with no registration step.
using Backprop.Engine;
using Backprop.Engine.Checkpoints;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using Microsoft.ML.Trainers;

namespace Backprop.MLNet;

// A compiled network and the scratch rows of its one-row scoring; scoring calls are serialized (the engine's model
// runs one call at a time; ML.NET may score from several cursors).
internal sealed class NetworkScorer : IDisposable
{
    public const string EntryName = "Network.safetensors";
    private readonly float[] _x, _y;
    private readonly Lock _lock = new();

    public NetworkScorer(Model model)
    {
        Model = model;
        _x = new float[model.Spec.InputWidth];
        _y = new float[model.Spec.OutputWidth];
    }

    public Model Model { get; }
    public int Inputs => _x.Length;
    public int Outputs => _y.Length;

    /// <summary>The network's outputs for one feature vector (dense or sparse) into <paramref name="output"/>.</summary>
    public void Predict(in VBuffer<float> features, Span<float> output)
    {
        if (features.Length != _x.Length)
            throw Contracts.Except($"the feature vector has {features.Length} values; this network takes {_x.Length}.");
        lock (_lock)
        {
            if (features.IsDense) features.GetValues().CopyTo(_x);
            else
            {
                Array.Clear(_x);
                var idx = features.GetIndices();
                var val = features.GetValues();
                for (int i = 0; i < idx.Length; i++) _x[idx[i]] = val[i];
            }
            Model.Predict(_x, _y);
            _y.CopyTo(output);
        }
    }

    /// <summary>The network's one output for one feature vector (the binary and regression networks).</summary>
    public float PredictOne(in VBuffer<float> features)
    {
        Span<float> z = stackalloc float[1];
        Predict(in features, z);
        return z[0];
    }

    /// <summary><paramref name="ctx"/>, checked to be at a model of <paramref name="version"/> (ML.NET's loaders call this before the base constructor).</summary>
    public static ModelLoadContext CheckAt(ModelLoadContext ctx, VersionInfo version)
    {
        Contracts.CheckValue(ctx, nameof(ctx));
        ctx.CheckAtModel(version);
        return ctx;
    }

    public void Save(ModelSaveContext ctx) => ctx.SaveBinaryStream(EntryName, w =>
    {
        w.Flush();
        Checkpoint.SaveWeights(Model, w.BaseStream);
    });

    /// <summary>The network of a model zip entry, checked to have one of the <paramref name="losses"/> and <paramref name="outputs"/> outputs (0: any).</summary>
    public static NetworkScorer Load(IHost host, ModelLoadContext ctx, LossKind[] losses, int outputs)
    {
        byte[]? bytes = null;
        if (!ctx.TryLoadBinaryStream(EntryName, r =>
        {
            using var copy = new MemoryStream();
            r.BaseStream.CopyTo(copy);
            bytes = copy.ToArray();
        }))
            throw host.ExceptDecode($"the model zip has no '{EntryName}' in '{ctx.Directory}': it was not written by Backprop.MLNet, or it is damaged.");
        string source = $"{ctx.Directory}/{EntryName} in the model zip";
        SafeTensorsFile file;
        ModelSpec spec;
        try
        {
            file = SafeTensorsFile.Parse(bytes!, source);
            spec = Checkpoint.ReadSpec(file);
        }
        catch (InvalidDataException e) { throw host.ExceptDecode(e, e.Message); }
        if (!losses.Contains(spec.Loss) || outputs > 0 && spec.OutputWidth != outputs)
            throw host.ExceptDecode($"{source} holds a {spec.Describe()} network with the {spec.Loss} loss; this model expects the {string.Join(" or ", losses)} loss" +
                (outputs > 0 ? $" and {outputs} outputs." : "."));
        var model = new Model(spec, new TrainingOptions { Loss = spec.Loss, MaxBatch = 128 });
        try { Checkpoint.LoadWeights(model, file); }
        catch (InvalidDataException e)
        {
            model.Dispose();
            throw host.ExceptDecode(e, e.Message);
        }
        return new NetworkScorer(model);
    }

    public void Dispose() => Model.Dispose();
}

/// <summary>A fitted Backprop network for multiclass classification: the scores are the softmax class probabilities.</summary>
public sealed class BackpropMulticlassModelParameters : ModelParametersBase<VBuffer<float>>, IValueMapper, IDisposable
{
    internal const string LoaderSignature = "BackpropMulticlassNet";
    private readonly NetworkScorer _net;
    private readonly VectorDataViewType _inputType, _outputType;

    internal BackpropMulticlassModelParameters(IHostEnvironment env, Model network) : base(env, LoaderSignature)
    {
        _net = new NetworkScorer(network);
        (_inputType, _outputType) = (new(NumberDataViewType.Single, _net.Inputs), new(NumberDataViewType.Single, _net.Outputs));
    }

    private BackpropMulticlassModelParameters(IHostEnvironment env, ModelLoadContext ctx) : base(env, LoaderSignature, NetworkScorer.CheckAt(ctx, GetVersionInfo()))
    {
        _net = NetworkScorer.Load(Host, ctx, [LossKind.CrossEntropy], 0);
        (_inputType, _outputType) = (new(NumberDataViewType.Single, _net.Inputs), new(NumberDataViewType.Single, _net.Outputs));
    }

    private static VersionInfo GetVersionInfo() => new("BPMCNET1", 0x00010001, 0x00010001, 0x00010001,
        typeof(BackpropMulticlassModelParameters).Assembly.FullName, LoaderSignature, null);


    /// <summary>The engine's network (for checkpoints, <c>Predict</c> on batches, ONNX export with <c>OnnxExporter</c>); disposed with these parameters.</summary>
    public Model Network => _net.Model;
    /// <summary>Classes.</summary>
    public int NumberOfClasses => _net.Outputs;

    /// <inheritdoc />
    protected override PredictionKind PredictionKind => PredictionKind.MulticlassClassification;

    /// <inheritdoc />
    protected override void SaveCore(ModelSaveContext ctx)
    {
        base.SaveCore(ctx);
        ctx.SetVersionInfo(GetVersionInfo());
        _net.Save(ctx);
    }

    DataViewType IValueMapper.InputType => _inputType;
    DataViewType IValueMapper.OutputType => _outputType;

    ValueMapper<TIn, TOut> IValueMapper.GetMapper<TIn, TOut>()
    {
        Host.Check(typeof(TIn) == typeof(VBuffer<float>) && typeof(TOut) == typeof(VBuffer<float>), "Backprop maps float vectors to float vectors.");
        int classes = _net.Outputs;
        ValueMapper<VBuffer<float>, VBuffer<float>> map = (in VBuffer<float> src, ref VBuffer<float> dst) =>
        {
            var editor = VBufferEditor.Create(ref dst, classes);
            _net.Predict(in src, editor.Values);
            Softmax(editor.Values);
            dst = editor.Commit();
        };
        return (ValueMapper<TIn, TOut>)(Delegate)map;
    }

    // Probabilities from logits, the largest subtracted first (as the engine's cross-entropy does).
    internal static void Softmax(Span<float> z)
    {
        float max = float.NegativeInfinity;
        foreach (float v in z) max = Math.Max(max, v);
        double sum = 0;
        for (int i = 0; i < z.Length; i++) sum += z[i] = MathF.Exp(z[i] - max);
        float inv = (float)(1 / sum);
        for (int i = 0; i < z.Length; i++) z[i] *= inv;
    }

    /// <summary>Frees the network's memory and threads.</summary>
    public void Dispose() => _net.Dispose();
}

/// <summary>A fitted Backprop network for binary classification: one logit; the score is the logit, the probability its sigmoid.</summary>
public sealed class BackpropBinaryModelParameters : ModelParametersBase<float>, IValueMapperDist, IDistPredictorProducing<float, float>, IDisposable
{
    internal const string LoaderSignature = "BackpropBinaryNet";
    private readonly NetworkScorer _net;
    private readonly VectorDataViewType _inputType;

    internal BackpropBinaryModelParameters(IHostEnvironment env, Model network) : base(env, LoaderSignature)
    {
        _net = new NetworkScorer(network);
        _inputType = new(NumberDataViewType.Single, _net.Inputs);
    }

    private BackpropBinaryModelParameters(IHostEnvironment env, ModelLoadContext ctx) : base(env, LoaderSignature, NetworkScorer.CheckAt(ctx, GetVersionInfo()))
    {
        _net = NetworkScorer.Load(Host, ctx, [LossKind.BceWithLogits], 1);
        _inputType = new(NumberDataViewType.Single, _net.Inputs);
    }

    private static VersionInfo GetVersionInfo() => new("BPBINET1", 0x00010001, 0x00010001, 0x00010001,
        typeof(BackpropBinaryModelParameters).Assembly.FullName, LoaderSignature, null);


    /// <summary>The engine's network (one output: the logit); disposed with these parameters.</summary>
    public Model Network => _net.Model;

    /// <inheritdoc />
    protected override PredictionKind PredictionKind => PredictionKind.BinaryClassification;

    /// <inheritdoc />
    protected override void SaveCore(ModelSaveContext ctx)
    {
        base.SaveCore(ctx);
        ctx.SetVersionInfo(GetVersionInfo());
        _net.Save(ctx);
    }

    DataViewType IValueMapper.InputType => _inputType;
    DataViewType IValueMapper.OutputType => NumberDataViewType.Single;
    DataViewType IValueMapperDist.DistType => NumberDataViewType.Single;

    ValueMapper<TIn, TOut> IValueMapper.GetMapper<TIn, TOut>()
    {
        Host.Check(typeof(TIn) == typeof(VBuffer<float>) && typeof(TOut) == typeof(float), "Backprop maps float vectors to a float.");
        ValueMapper<VBuffer<float>, float> map = (in VBuffer<float> src, ref float score) => score = _net.PredictOne(in src);
        return (ValueMapper<TIn, TOut>)(Delegate)map;
    }

    ValueMapper<TIn, TOut, TDist> IValueMapperDist.GetMapper<TIn, TOut, TDist>()
    {
        Host.Check(typeof(TIn) == typeof(VBuffer<float>) && typeof(TOut) == typeof(float) && typeof(TDist) == typeof(float),
            "Backprop maps float vectors to a float score and a float probability.");
        ValueMapper<VBuffer<float>, float, float> map = (in VBuffer<float> src, ref float score, ref float probability) =>
        {
            score = _net.PredictOne(in src);
            probability = Sigmoid(score);
        };
        return (ValueMapper<TIn, TOut, TDist>)(Delegate)map;
    }

    internal static float Sigmoid(float z) => z >= 0 ? 1 / (1 + MathF.Exp(-z)) : MathF.Exp(z) / (1 + MathF.Exp(z));

    /// <summary>Frees the network's memory and threads.</summary>
    public void Dispose() => _net.Dispose();
}

/// <summary>A fitted Backprop network for regression: the score is the network's output, mapped back from the standardized label.</summary>
public sealed class BackpropRegressionModelParameters : ModelParametersBase<float>, IValueMapper, IDisposable
{
    internal const string LoaderSignature = "BackpropRegressionNet";
    private readonly NetworkScorer _net;
    private readonly VectorDataViewType _inputType;

    internal BackpropRegressionModelParameters(IHostEnvironment env, Model network, double labelMean, double labelScale) : base(env, LoaderSignature)
    {
        _net = new NetworkScorer(network);
        _inputType = new(NumberDataViewType.Single, _net.Inputs);
        (LabelMean, LabelScale) = (labelMean, labelScale);
    }

    private BackpropRegressionModelParameters(IHostEnvironment env, ModelLoadContext ctx) : base(env, LoaderSignature, NetworkScorer.CheckAt(ctx, GetVersionInfo()))
    {
        // The label's mapping first, then the network entry.
        LabelMean = ctx.Reader.ReadDouble();
        LabelScale = ctx.Reader.ReadDouble();
        if (!double.IsFinite(LabelMean) || !(LabelScale > 0) || !double.IsFinite(LabelScale))
            throw Host.ExceptDecode($"the label mapping in the model zip is mean {LabelMean}, scale {LabelScale}; expected finite values and a positive scale.");
        _net = NetworkScorer.Load(Host, ctx, [LossKind.Mse, LossKind.Huber, LossKind.L1], 1);
        _inputType = new(NumberDataViewType.Single, _net.Inputs);
    }

    private static VersionInfo GetVersionInfo() => new("BPRGNET1", 0x00010001, 0x00010001, 0x00010001,
        typeof(BackpropRegressionModelParameters).Assembly.FullName, LoaderSignature, null);


    /// <summary>The engine's network, trained on (label − <see cref="LabelMean"/>) / <see cref="LabelScale"/>; disposed with these parameters.</summary>
    public Model Network => _net.Model;
    /// <summary>The label mean subtracted before training (0 without label normalization).</summary>
    public double LabelMean { get; }
    /// <summary>The label scale divided by before training (1 without label normalization).</summary>
    public double LabelScale { get; }

    /// <inheritdoc />
    protected override PredictionKind PredictionKind => PredictionKind.Regression;

    /// <inheritdoc />
    protected override void SaveCore(ModelSaveContext ctx)
    {
        base.SaveCore(ctx);
        ctx.SetVersionInfo(GetVersionInfo());
        ctx.Writer.Write(LabelMean);
        ctx.Writer.Write(LabelScale);
        _net.Save(ctx);
    }

    DataViewType IValueMapper.InputType => _inputType;
    DataViewType IValueMapper.OutputType => NumberDataViewType.Single;

    ValueMapper<TIn, TOut> IValueMapper.GetMapper<TIn, TOut>()
    {
        Host.Check(typeof(TIn) == typeof(VBuffer<float>) && typeof(TOut) == typeof(float), "Backprop maps float vectors to a float.");
        ValueMapper<VBuffer<float>, float> map = (in VBuffer<float> src, ref float score) => score = (float)(_net.PredictOne(in src) * LabelScale + LabelMean);
        return (ValueMapper<TIn, TOut>)(Delegate)map;
    }

    /// <summary>Frees the network's memory and threads.</summary>
    public void Dispose() => _net.Dispose();
}
