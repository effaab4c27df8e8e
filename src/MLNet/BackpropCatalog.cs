// The trainers on ML.NET's catalogs, as its own trainers are reached: mlContext.MulticlassClassification.Trainers.Backprop(...).
using Backprop.MLNet;
using Microsoft.ML.Data;

namespace Microsoft.ML;

/// <summary>Backprop's dense-network trainers on the ML.NET catalogs.</summary>
public static class BackpropCatalog
{
    /// <summary>A dense-network multiclass trainer with the default options but the columns and the hidden layers given.</summary>
    /// <param name="catalog">The multiclass trainers catalog.</param>
    /// <param name="labelColumnName">The label column: a key type.</param>
    /// <param name="featureColumnName">The feature column: a vector of Single.</param>
    /// <param name="hiddenLayers">Units of each hidden layer (null: 512, 256).</param>
    /// <param name="numberOfEpochs">Passes over the training data.</param>
    public static BackpropMulticlassTrainer Backprop(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features, int[]? hiddenLayers = null, int numberOfEpochs = 15)
    {
        return catalog.Backprop(Short<BackpropMulticlassTrainer.Options>(labelColumnName, featureColumnName, hiddenLayers, numberOfEpochs));
    }

    /// <summary>A dense-network multiclass trainer with <paramref name="options"/>.</summary>
    public static BackpropMulticlassTrainer Backprop(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog, BackpropMulticlassTrainer.Options options)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new BackpropMulticlassTrainer(CatalogUtils.GetEnvironment(catalog), options);
    }

    /// <summary>A dense-network binary trainer with the default options but the columns and the hidden layers given.</summary>
    /// <param name="catalog">The binary trainers catalog.</param>
    /// <param name="labelColumnName">The label column: Boolean.</param>
    /// <param name="featureColumnName">The feature column: a vector of Single.</param>
    /// <param name="hiddenLayers">Units of each hidden layer (null: 512, 256).</param>
    /// <param name="numberOfEpochs">Passes over the training data.</param>
    public static BackpropBinaryTrainer Backprop(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
        string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features, int[]? hiddenLayers = null, int numberOfEpochs = 15)
    {
        return catalog.Backprop(Short<BackpropBinaryTrainer.Options>(labelColumnName, featureColumnName, hiddenLayers, numberOfEpochs));
    }

    /// <summary>A dense-network binary trainer with <paramref name="options"/>.</summary>
    public static BackpropBinaryTrainer Backprop(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog, BackpropBinaryTrainer.Options options)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new BackpropBinaryTrainer(CatalogUtils.GetEnvironment(catalog), options);
    }

    /// <summary>A dense-network regression trainer with the default options but the columns and the hidden layers given.</summary>
    /// <param name="catalog">The regression trainers catalog.</param>
    /// <param name="labelColumnName">The label column: Single.</param>
    /// <param name="featureColumnName">The feature column: a vector of Single.</param>
    /// <param name="hiddenLayers">Units of each hidden layer (null: 512, 256).</param>
    /// <param name="numberOfEpochs">Passes over the training data.</param>
    public static BackpropRegressionTrainer Backprop(this RegressionCatalog.RegressionTrainers catalog,
        string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features, int[]? hiddenLayers = null, int numberOfEpochs = 15)
    {
        return catalog.Backprop(Short<BackpropRegressionTrainer.Options>(labelColumnName, featureColumnName, hiddenLayers, numberOfEpochs));
    }

    /// <summary>A dense-network regression trainer with <paramref name="options"/>.</summary>
    public static BackpropRegressionTrainer Backprop(this RegressionCatalog.RegressionTrainers catalog, BackpropRegressionTrainer.Options options)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new BackpropRegressionTrainer(CatalogUtils.GetEnvironment(catalog), options);
    }

    // The options of a short form: the defaults but the columns, the hidden layers (when given) and the epochs.
    private static T Short<T>(string labelColumnName, string featureColumnName, int[]? hiddenLayers, int numberOfEpochs) where T : BackpropTrainerOptionsBase, new()
    {
        var options = new T { LabelColumnName = labelColumnName, FeatureColumnName = featureColumnName, NumberOfEpochs = numberOfEpochs };
        if (hiddenLayers is not null) options.HiddenLayers = hiddenLayers;
        return options;
    }
}
