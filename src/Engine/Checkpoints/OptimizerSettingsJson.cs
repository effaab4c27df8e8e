// JSON form of the optimizer settings in a checkpoint's metadata: one flat object, "Kind" naming the
// algorithm, then the shared fields and the algorithm's own (Kind, LearningRate, WeightDecay, L1,
// ClipValue, ClipNorm, Momentum, Beta1, …). Reading takes the algorithm's torch defaults for what is not
// given and ignores fields the algorithm lacks, so checkpoints written before the settings were typed
// (every field of every algorithm in one object) still load.
using System.Text.Json;
using System.Text.Json.Serialization;
using Backprop.Kernels;

namespace Backprop.Engine.Checkpoints;

internal sealed class OptimizerSettingsJson : JsonConverter<OptimizerSettings>
{
    public override OptimizerSettings Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        using var doc = JsonDocument.ParseValue(ref reader);
        var o = doc.RootElement;
        if (o.ValueKind != JsonValueKind.Object) throw new JsonException($"optimizer settings must be a JSON object; got {o.ValueKind}.");
        if (!o.TryGetProperty("Kind", out var k) || k.ValueKind != JsonValueKind.String || !Enum.TryParse<OptimizerKind>(k.GetString(), out var kind)
            || !Enum.IsDefined(kind))
            throw new JsonException($"optimizer settings need a Kind of {string.Join(", ", Enum.GetNames<OptimizerKind>())}; got {(o.TryGetProperty("Kind", out var v) ? v.GetRawText() : "none")}.");
        double D(string name, double def) => o.TryGetProperty(name, out var e) ? e.ValueKind switch
        {
            JsonValueKind.Number => e.GetDouble(),
            JsonValueKind.String when double.TryParse(e.GetString(), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var d) => d,
            _ => throw new JsonException($"optimizer setting {name} must be a number; got {e.GetRawText()}."),
        } : def;
        bool B(string name, bool def) => o.TryGetProperty(name, out var e) ? e.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new JsonException($"optimizer setting {name} must be true or false; got {e.GetRawText()}."),
        } : def;
        OptimizerSettings s = OptimizerSettings.ForKind(kind) switch
        {
            Sgd d => d with { Momentum = D("Momentum", d.Momentum), Dampening = D("Dampening", d.Dampening), Nesterov = B("Nesterov", d.Nesterov) },
            Adam a => a with { Beta1 = D("Beta1", a.Beta1), Beta2 = D("Beta2", a.Beta2), Eps = D("Eps", a.Eps), Amsgrad = B("Amsgrad", a.Amsgrad) },
            RmsProp r => r with { Alpha = D("Alpha", r.Alpha), Eps = D("Eps", r.Eps), Momentum = D("Momentum", r.Momentum), Centered = B("Centered", r.Centered) },
            Adagrad g => g with { LrDecay = D("LrDecay", g.LrDecay), InitialAccumulatorValue = D("InitialAccumulatorValue", g.InitialAccumulatorValue), Eps = D("Eps", g.Eps) },
            var other => other,
        };
        return s with
        {
            LearningRate = D("LearningRate", s.LearningRate),
            WeightDecay = D("WeightDecay", s.WeightDecay),
            L1 = D("L1", s.L1),
            ClipValue = D("ClipValue", s.ClipValue),
            ClipNorm = D("ClipNorm", s.ClipNorm),
        };
    }

    public override void Write(Utf8JsonWriter writer, OptimizerSettings value, JsonSerializerOptions options)
    {
        writer.WriteStartObject();
        writer.WriteString("Kind", value.Kind.ToString());
        void N(string name, double v)
        {
            if (double.IsFinite(v)) writer.WriteNumber(name, v);
            else writer.WriteString(name, v.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        N("LearningRate", value.LearningRate);
        N("WeightDecay", value.WeightDecay);
        N("L1", value.L1);
        N("ClipValue", value.ClipValue);
        N("ClipNorm", value.ClipNorm);
        switch (value)
        {
            case Sgd d: N("Momentum", d.Momentum); N("Dampening", d.Dampening); writer.WriteBoolean("Nesterov", d.Nesterov); break;
            case Adam a: N("Beta1", a.Beta1); N("Beta2", a.Beta2); N("Eps", a.Eps); writer.WriteBoolean("Amsgrad", a.Amsgrad); break;
            case RmsProp r: N("Alpha", r.Alpha); N("Eps", r.Eps); N("Momentum", r.Momentum); writer.WriteBoolean("Centered", r.Centered); break;
            case Adagrad g: N("LrDecay", g.LrDecay); N("InitialAccumulatorValue", g.InitialAccumulatorValue); N("Eps", g.Eps); break;
        }
        writer.WriteEndObject();
    }
}
