// Sample: embed the trainer in a program. It makes up a regression problem,
// y = sin(3·x0) + x1² − 0.5·x2, trains a small MLP on it with MSE, then predicts.
using Backprop.Engine;
using Backprop.Engine.Data;
using Backprop.Engine.Training;
using Backprop.Kernels;

const int n = 4000, features = 3;
var rng = new Random(42);
float[] x = new float[n * features], y = new float[n];
for (int i = 0; i < n; i++)
{
    for (int j = 0; j < features; j++) x[i * features + j] = (float)(rng.NextDouble() * 2 - 1);
    y[i] = MathF.Sin(3 * x[i * features]) + x[i * features + 1] * x[i * features + 1] - 0.5f * x[i * features + 2];
}
var all = new Dataset(x, null, y, features, 1);
var train = all.Slice(0, 3200);
var test = all.Slice(3200, 800);

using var model = new Sequential(features)
    .Dense(64, "tanh")
    .Dense(64, "tanh")
    .Dense(1)
    .Compile(new TrainingOptions
    {
        Loss = LossKind.Mse,
        Optimizer = new Adam(lr: 3e-3),
        MaxBatch = 64,
        Seed = 7,
    });

var fit = new Trainer(model).Fit(train, test, new FitOptions { Epochs = 40 });
Console.WriteLine($"epochs: {fit.Epochs.Count}, test MSE {fit.Epochs[^1].TestLoss:F5} (variance of y: {Variance(test.Targets!):F3})");

var sample = new float[] { 0.3f, -0.5f, 0.8f };
var prediction = new float[1];
model.Predict(sample, prediction);
float truth = MathF.Sin(0.9f) + 0.25f - 0.4f;
Console.WriteLine($"f(0.3, -0.5, 0.8): predicted {prediction[0]:F4}, true {truth:F4}");
return fit.Epochs[^1].TestLoss < 0.01 ? 0 : 1;

static double Variance(float[] v)
{
    double m = v.Average(f => (double)f);
    return v.Average(f => (f - m) * (f - m));
}
