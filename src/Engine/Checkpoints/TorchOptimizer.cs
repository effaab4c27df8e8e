// What torch.optim needs to continue a backprop checkpoint, stored in its "torch_optimizer" metadata: the
// class, the keyword arguments that build it (the hyper-parameters in torch's names, the learning rate the
// next step uses under the schedule), how its per-parameter "step" is held (a float32 scalar tensor for
// Adam, AdamW and Adagrad; a Python int for RMSprop in torch 1.13; none for SGD), and backprop's gradient
// extensions (clipping, L1) that torch applies outside the optimizer. The per-parameter state tensors are
// the checkpoint's "optimizer.<state>.<param>" tensors, "step" among them.
using System.Text.Json;
using System.Text.Json.Serialization;
using Backprop.Kernels;

namespace Backprop.Engine.Checkpoints;

/// <summary>The torch.optim description of a checkpoint's optimizer.</summary>
/// <param name="Class">The torch.optim class name (Adam, AdamW, SGD, RMSprop, Adagrad).</param>
/// <param name="Kwargs">Its constructor's keyword arguments (lr: the next step's learning rate).</param>
/// <param name="Step">How the per-parameter step is held: "tensor", "int", or "none".</param>
/// <param name="ClipNorm">torch.nn.utils.clip_grad_norm_'s max_norm before each step (0: none).</param>
/// <param name="ClipValue">torch.nn.utils.clip_grad_value_'s clip_value before each step (0: none).</param>
/// <param name="L1">l1·sign(p) added to each gradient before the step (0: none).</param>
public sealed record TorchOptimizer(
    [property: JsonPropertyName("class")] string Class,
    [property: JsonPropertyName("kwargs")] IReadOnlyDictionary<string, JsonElement> Kwargs,
    [property: JsonPropertyName("step")] string Step,
    [property: JsonPropertyName("clip_norm")] double ClipNorm,
    [property: JsonPropertyName("clip_value")] double ClipValue,
    [property: JsonPropertyName("l1")] double L1)
{
    /// <summary>The name of the per-parameter step among the checkpoint's optimizer tensors.</summary>
    public const string StepState = "step";

    /// <summary>Whether torch.optim keeps a per-parameter step for this optimizer.</summary>
    public static bool HasStep(OptimizerKind kind) => kind != OptimizerKind.Sgd;

    /// <summary>The description of <paramref name="s"/> with <paramref name="lr"/> as the learning rate of the next step.</summary>
    public static TorchOptimizer Of(OptimizerSettings s, double lr)
    {
        ArgumentNullException.ThrowIfNull(s);
        var kw = new Dictionary<string, object> { ["lr"] = lr, ["weight_decay"] = s.WeightDecay };
        string cls;
        switch (s)
        {
            case Sgd g:
                cls = "SGD";
                kw["momentum"] = g.Momentum;
                kw["dampening"] = g.Dampening;
                kw["nesterov"] = g.Nesterov;
                break;
            case Adam a: // AdamW too
                cls = a is AdamW ? "AdamW" : "Adam";
                kw["betas"] = new[] { a.Beta1, a.Beta2 };
                kw["eps"] = a.Eps;
                kw["amsgrad"] = a.Amsgrad;
                break;
            case RmsProp r:
                cls = "RMSprop";
                kw["alpha"] = r.Alpha;
                kw["eps"] = r.Eps;
                kw["momentum"] = r.Momentum;
                kw["centered"] = r.Centered;
                break;
            case Adagrad g:
                cls = "Adagrad";
                kw["lr_decay"] = g.LrDecay;
                kw["initial_accumulator_value"] = g.InitialAccumulatorValue;
                kw["eps"] = g.Eps;
                break;
            default:
                throw new ArgumentException($"optimizer {s.Kind} has no torch.optim description.", nameof(s));
        }
        var kwargs = kw.ToDictionary(p => p.Key, p => JsonSerializer.SerializeToElement(p.Value));
        string step = s.Kind switch { OptimizerKind.Sgd => "none", OptimizerKind.RMSprop => "int", _ => "tensor" };
        return new TorchOptimizer(cls, kwargs, step, s.ClipNorm, s.ClipValue, s.L1);
    }
}
