// The three trainers in ML.NET's shape: estimators deriving from its TrainerEstimatorBase, checked against the input
// schema by ML.NET, producing its own prediction transformers (the Score, PredictedLabel and Probability columns its
// evaluators expect). Each reads its training (and validation) view once into the engine and trains there.
using Backprop.Engine;
using Backprop.Engine.Data;
using Backprop.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using Microsoft.ML.Trainers;

[assembly: LoadableClass(typeof(BackpropMulticlassModelParameters), null, typeof(SignatureLoadModel), "Backprop multiclass network", BackpropMulticlassModelParameters.LoaderSignature)]
[assembly: LoadableClass(typeof(BackpropBinaryModelParameters), null, typeof(SignatureLoadModel), "Backprop binary network", BackpropBinaryModelParameters.LoaderSignature)]
[assembly: LoadableClass(typeof(BackpropRegressionModelParameters), null, typeof(SignatureLoadModel), "Backprop regression network", BackpropRegressionModelParameters.LoaderSignature)]

namespace Backprop.MLNet;

/// <summary>Trains a dense network on a key-typed label (softmax cross-entropy); the scores are class probabilities.</summary>
public sealed class BackpropMulticlassTrainer : TrainerEstimatorBase<MulticlassPredictionTransformer<BackpropMulticlassModelParameters>, BackpropMulticlassModelParameters>
{
    internal const string LoadName = "BackpropMulticlass";
    private static readonly TrainerInfo s_info = new(normalization: true, caching: false, supportValid: true);
    private readonly Options _options;

    /// <summary>Options of <see cref="BackpropMulticlassTrainer"/>.</summary>
    public sealed class Options : BackpropTrainerOptionsBase;

    internal BackpropMulticlassTrainer(IHostEnvironment env, Options options)
        : base(Contracts.CheckRef(env, nameof(env)).Register(LoadName), TrainerUtils.MakeR4VecFeature(BackpropTrainerOptionsBase.Checked(options).FeatureColumnName),
            TrainerUtils.MakeU4ScalarColumn(options.LabelColumnName)) => _options = options;

    /// <inheritdoc />
    public override TrainerInfo Info => s_info;
    /// <inheritdoc />
    protected override PredictionKind PredictionKind => PredictionKind.MulticlassClassification;

    /// <summary>Trains on <paramref name="trainData"/>, early-stopping on <paramref name="validationData"/> when the options give a patience.</summary>
    public MulticlassPredictionTransformer<BackpropMulticlassModelParameters> Fit(IDataView trainData, IDataView validationData) => TrainTransformer(trainData, validationData);

    /// <inheritdoc />
    protected override SchemaShape.Column[] GetOutputColumnsCore(SchemaShape inputSchema)
    {
        if (!inputSchema.TryFindColumn(LabelColumn.Name, out var labelCol)) throw Host.ExceptSchemaMismatch(nameof(inputSchema), "label", LabelColumn.Name);
        var predicted = new SchemaShape(labelCol.Annotations.Where(x => x.Name == AnnotationUtils.Kinds.KeyValues).Concat(AnnotationUtils.GetTrainerOutputAnnotation()));
        return
        [
            new SchemaShape.Column(DefaultColumnNames.Score, SchemaShape.Column.VectorKind.Vector, NumberDataViewType.Single, false, new SchemaShape(AnnotationUtils.AnnotationsForMulticlassScoreColumn(labelCol))),
            new SchemaShape.Column(DefaultColumnNames.PredictedLabel, SchemaShape.Column.VectorKind.Scalar, NumberDataViewType.UInt32, true, predicted),
        ];
    }

    /// <inheritdoc />
    protected override MulticlassPredictionTransformer<BackpropMulticlassModelParameters> MakeTransformer(BackpropMulticlassModelParameters model, DataViewSchema trainSchema) =>
        new(Host, model, trainSchema, FeatureColumn.Name, LabelColumn.Name);

    /// <inheritdoc />
    protected override BackpropMulticlassModelParameters TrainModelCore(TrainContext trainContext)
    {
        Host.CheckValue(trainContext, nameof(trainContext));
        var label = trainContext.TrainingSet.Schema.Label ?? throw Host.Except("the training data has no label column.");
        if (label.Type is not KeyDataViewType key || key.Count == 0 || key.Count > int.MaxValue)
            throw Host.ExceptParam(nameof(trainContext), $"the label column '{label.Name}' is {label.Type}; expected a key type of known size (MapValueToKey the label).");
        int classes = (int)key.Count;
        if (classes < 2) throw Host.Except($"the label column '{label.Name}' has {classes} class; a classifier needs at least 2.");
        var (train, validation) = NetworkTraining.Read(Host, trainContext, LabelKind.Key, classes);
        var model = NetworkTraining.Train(Host, _options, train, validation, LossKind.CrossEntropy, classes, $"multiclass, {classes} classes");
        return new BackpropMulticlassModelParameters(Host, model);
    }
}

/// <summary>Trains a dense network with one logit on a Boolean label (binary cross-entropy); the probability is the logit's sigmoid.</summary>
public sealed class BackpropBinaryTrainer : TrainerEstimatorBase<BinaryPredictionTransformer<BackpropBinaryModelParameters>, BackpropBinaryModelParameters>
{
    internal const string LoadName = "BackpropBinary";
    private static readonly TrainerInfo s_info = new(normalization: true, caching: false, supportValid: true);
    private readonly Options _options;

    /// <summary>Options of <see cref="BackpropBinaryTrainer"/>.</summary>
    public sealed class Options : BackpropTrainerOptionsBase;

    internal BackpropBinaryTrainer(IHostEnvironment env, Options options)
        : base(Contracts.CheckRef(env, nameof(env)).Register(LoadName), TrainerUtils.MakeR4VecFeature(BackpropTrainerOptionsBase.Checked(options).FeatureColumnName),
            TrainerUtils.MakeBoolScalarLabel(options.LabelColumnName)) => _options = options;

    /// <inheritdoc />
    public override TrainerInfo Info => s_info;
    /// <inheritdoc />
    protected override PredictionKind PredictionKind => PredictionKind.BinaryClassification;

    /// <summary>Trains on <paramref name="trainData"/>, early-stopping on <paramref name="validationData"/> when the options give a patience.</summary>
    public BinaryPredictionTransformer<BackpropBinaryModelParameters> Fit(IDataView trainData, IDataView validationData) => TrainTransformer(trainData, validationData);

    /// <inheritdoc />
    protected override SchemaShape.Column[] GetOutputColumnsCore(SchemaShape inputSchema) =>
    [
        new SchemaShape.Column(DefaultColumnNames.Score, SchemaShape.Column.VectorKind.Scalar, NumberDataViewType.Single, false, new SchemaShape(AnnotationUtils.GetTrainerOutputAnnotation())),
        new SchemaShape.Column(DefaultColumnNames.Probability, SchemaShape.Column.VectorKind.Scalar, NumberDataViewType.Single, false, new SchemaShape(AnnotationUtils.GetTrainerOutputAnnotation(true))),
        new SchemaShape.Column(DefaultColumnNames.PredictedLabel, SchemaShape.Column.VectorKind.Scalar, BooleanDataViewType.Instance, false, new SchemaShape(AnnotationUtils.GetTrainerOutputAnnotation())),
    ];

    /// <inheritdoc />
    protected override BinaryPredictionTransformer<BackpropBinaryModelParameters> MakeTransformer(BackpropBinaryModelParameters model, DataViewSchema trainSchema) =>
        new(Host, model, trainSchema, FeatureColumn.Name);

    /// <inheritdoc />
    protected override BackpropBinaryModelParameters TrainModelCore(TrainContext trainContext)
    {
        Host.CheckValue(trainContext, nameof(trainContext));
        var (train, validation) = NetworkTraining.Read(Host, trainContext, LabelKind.Boolean, 2);
        var model = NetworkTraining.Train(Host, _options, train, validation, LossKind.BceWithLogits, 1, "binary");
        return new BackpropBinaryModelParameters(Host, model);
    }
}

/// <summary>Trains a dense network with one output on a Single label.</summary>
public sealed class BackpropRegressionTrainer : TrainerEstimatorBase<RegressionPredictionTransformer<BackpropRegressionModelParameters>, BackpropRegressionModelParameters>
{
    internal const string LoadName = "BackpropRegression";
    private static readonly TrainerInfo s_info = new(normalization: true, caching: false, supportValid: true);
    private readonly Options _options;

    /// <summary>Options of <see cref="BackpropRegressionTrainer"/>: no dropout by default, and the label standardized for training.</summary>
#pragma warning disable CA1051 // ML.NET's options are public fields
    public sealed class Options : BackpropTrainerOptionsBase
    {
        /// <summary>The loss.</summary>
        public BackpropRegressionLoss Loss = BackpropRegressionLoss.SquaredError;
        /// <summary>Train on the label standardized with the training rows' mean and standard deviation, and map the scores back (default): the learning rate then suits any label's scale.</summary>
        public bool NormalizeLabel = true;

        /// <summary>Regression's defaults: the engine's network without dropout.</summary>
        public Options() => Dropout = 0;

        internal override void Validate()
        {
            base.Validate();
            if (!Enum.IsDefined(Loss))
                throw new ArgumentOutOfRangeException(nameof(Loss), Loss, $"unknown regression loss {(int)Loss}; expected SquaredError, Huber or AbsoluteError.");
        }
    }
#pragma warning restore CA1051

    internal BackpropRegressionTrainer(IHostEnvironment env, Options options)
        : base(Contracts.CheckRef(env, nameof(env)).Register(LoadName), TrainerUtils.MakeR4VecFeature(BackpropTrainerOptionsBase.Checked(options).FeatureColumnName),
            TrainerUtils.MakeR4ScalarColumn(options.LabelColumnName)) => _options = options;

    /// <inheritdoc />
    public override TrainerInfo Info => s_info;
    /// <inheritdoc />
    protected override PredictionKind PredictionKind => PredictionKind.Regression;

    /// <summary>Trains on <paramref name="trainData"/>, early-stopping on <paramref name="validationData"/> when the options give a patience.</summary>
    public RegressionPredictionTransformer<BackpropRegressionModelParameters> Fit(IDataView trainData, IDataView validationData) => TrainTransformer(trainData, validationData);

    /// <inheritdoc />
    protected override SchemaShape.Column[] GetOutputColumnsCore(SchemaShape inputSchema) =>
    [
        new SchemaShape.Column(DefaultColumnNames.Score, SchemaShape.Column.VectorKind.Scalar, NumberDataViewType.Single, false, new SchemaShape(AnnotationUtils.GetTrainerOutputAnnotation())),
    ];

    /// <inheritdoc />
    protected override RegressionPredictionTransformer<BackpropRegressionModelParameters> MakeTransformer(BackpropRegressionModelParameters model, DataViewSchema trainSchema) =>
        new(Host, model, trainSchema, FeatureColumn.Name);

    /// <inheritdoc />
    protected override BackpropRegressionModelParameters TrainModelCore(TrainContext trainContext)
    {
        Host.CheckValue(trainContext, nameof(trainContext));
        var (train, validation) = NetworkTraining.Read(Host, trainContext, LabelKind.Float, 0);
        double mean = 0, scale = 1;
        if (_options.NormalizeLabel)
        {
            double sum = 0, sq = 0;
            foreach (float y in train.Targets!) sum += y;
            mean = sum / train.Count;
            foreach (float y in train.Targets!) sq += (y - mean) * (y - mean);
            double std = Math.Sqrt(sq / train.Count);
            scale = std > 0 && double.IsFinite(std) ? std : 1;
            Standardize(train.Targets!, mean, scale);
            if (validation is not null) Standardize(validation.Targets!, mean, scale);
        }
        var loss = _options.Loss switch
        {
            BackpropRegressionLoss.Huber => LossKind.Huber,
            BackpropRegressionLoss.AbsoluteError => LossKind.L1,
            _ => LossKind.Mse,
        };
        var model = NetworkTraining.Train(Host, _options, train, validation, loss, 1, "regression");
        return new BackpropRegressionModelParameters(Host, model, mean, scale);
    }

    private static void Standardize(float[] y, double mean, double scale)
    {
        for (int i = 0; i < y.Length; i++) y[i] = (float)((y[i] - mean) / scale);
    }
}
