// ONNX export of a trained network for inference: opset 17, IR version 8, input "input"
// [batch, in] and output "output" [batch, out] with a dynamic batch dimension. Each Dense layer is a
// Gemm (transB = 1, so W stays [out, in] as stored); activations map to ONNX operators: Relu,
// LeakyRelu(alpha), Elu(alpha), Tanh, Sigmoid; those opset 17 has no operator for are written as
// their defining formulas, exactly: GELU = 0.5·x·(1 + Erf(x/√2)), GELU-tanh =
// 0.5·x·(1 + Tanh(√(2/π)·(x + 0.044715·x³))), SiLU = x·Sigmoid(x). Softmax over the classes is optional.
// The input preprocessing, when given, is the graph's first nodes, with the trainer's float32 operations:
// Mul by 1/255 (scale) or Sub the mean, then Div by the std (standardize), so the model takes raw inputs.
// A LayerNorm is LayerNormalization (axis −1, its epsilon; opset 17), a BatchNorm BatchNormalization in
// inference form (the running statistics as its mean and var inputs), a residual block its body's nodes,
// its projection's Gemm when it has one, and an Add. Initializers carry the state_dict names.
// Field numbers follow onnx.proto (ModelProto, GraphProto, NodeProto, TensorProto, ValueInfoProto).
using Backprop.Engine.Checkpoints;
using Backprop.Engine.Data;
using Backprop.Engine.Planning;
using Backprop.Kernels;

namespace Backprop.Engine.Export;

/// <summary>Writes a model as an ONNX file.</summary>
public static class OnnxExporter
{
    private const int Float = 1;      // TensorProto.DataType.FLOAT
    private const int AttrFloat = 1, AttrInt = 2;

    /// <summary>
    /// Writes <paramref name="model"/> to <paramref name="path"/>; with <paramref name="softmax"/> the output is class probabilities;
    /// with <paramref name="preprocessing"/> the graph takes raw inputs and scales them as the trainer did.
    /// </summary>
    public static void Export(Model<float> model, string path, bool softmax = false, Preprocessing? preprocessing = null)
    {
        AtomicFile.WriteAllBytes(path, Build(model, softmax, preprocessing));
    }

    /// <summary>The ONNX ModelProto bytes.</summary>
    public static byte[] Build(Model<float> model, bool softmax = false, Preprocessing? preprocessing = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var spec = model.Spec;
        preprocessing?.Validate(spec.InputWidth);
        var graph = new Protobuf().String(2, "backprop_mlp");
        var nodes = new List<Protobuf>();
        var inits = new List<Protobuf>();
        int counter = 0;
        string Fresh(string stem) => $"{stem}_{counter++}";
        string Const(float v)
        {
            string name = Fresh("const");
            inits.Add(Tensor(name, [], [v]));
            return name;
        }
        void Node(string op, string[] inputs, string output, params Protobuf[] attrs)
        {
            var n = new Protobuf();
            foreach (var i in inputs) n.String(1, i);
            n.String(2, output).String(3, Fresh(op.ToLowerInvariant())).String(4, op);
            foreach (var a in attrs) n.Message(5, a);
            nodes.Add(n);
        }

        string x = "input";
        switch (preprocessing?.Kind)
        {
            case Normalization.Scale01:
                inits.Add(Tensor("preprocess_scale", [], [1f / 255f]));
                Node("Mul", [x, "preprocess_scale"], x = Fresh("scaled"));
                break;
            case Normalization.Standardize:
                inits.Add(Tensor("preprocess_mean", [spec.InputWidth], preprocessing.Mean!));
                inits.Add(Tensor("preprocess_std", [spec.InputWidth], preprocessing.Std!));
                string centered = Fresh("centered");
                Node("Sub", [x, "preprocess_mean"], centered);
                Node("Div", [centered, "preprocess_std"], x = Fresh("standardized"));
                break;
        }
        int dense = 0, norm = 0, batchNorm = 0;
        var normSites = spec.NormSites;
        var bnSites = spec.BatchNormSites;
        string DenseLayer(int l, string x, bool last)
        {
            var s = spec.Layers[l];
            string prefix = spec.DenseSites[l].Prefix;
            inits.Add(Tensor($"{prefix}weight", [s.Units, spec.Width(l)], model.GetWeights(l)));
            inits.Add(Tensor($"{prefix}bias", [s.Units], model.GetBias(l)));
            string z = last && s.Activation.Kind == ActivationKind.Identity && !softmax ? "output" : Fresh("z");
            Node("Gemm", [x, $"{prefix}weight", $"{prefix}bias"], z, AttrI("transB", 1));
            string y = last && !softmax ? "output" : Fresh("h");
            switch (s.Activation.Kind)
            {
                case ActivationKind.Identity: y = z; break;
                case ActivationKind.ReLU: Node("Relu", [z], y); break;
                case ActivationKind.LeakyReLU: Node("LeakyRelu", [z], y, AttrF("alpha", (float)s.Activation.EffectiveParameter)); break;
                case ActivationKind.ELU: Node("Elu", [z], y, AttrF("alpha", (float)s.Activation.EffectiveParameter)); break;
                case ActivationKind.Tanh: Node("Tanh", [z], y); break;
                case ActivationKind.Sigmoid: Node("Sigmoid", [z], y); break;
                case ActivationKind.SiLU:
                {
                    string sg = Fresh("sig");
                    Node("Sigmoid", [z], sg);
                    Node("Mul", [z, sg], y);
                    break;
                }
                case ActivationKind.GELU:
                {
                    string a = Fresh("t"), e = Fresh("t"), p = Fresh("t"), h = Fresh("t");
                    Node("Div", [z, Const(MathF.Sqrt(2f))], a);
                    Node("Erf", [a], e);
                    Node("Add", [e, Const(1f)], p);
                    Node("Mul", [z, p], h);
                    Node("Mul", [h, Const(0.5f)], y);
                    break;
                }
                case ActivationKind.GELUTanh:
                {
                    string x2 = Fresh("t"), x3 = Fresh("t"), c = Fresh("t"), sum = Fresh("t"), u = Fresh("t"), t = Fresh("t"), p = Fresh("t"), h = Fresh("t");
                    Node("Mul", [z, z], x2);
                    Node("Mul", [x2, z], x3);
                    Node("Mul", [x3, Const(0.044715f)], c);
                    Node("Add", [z, c], sum);
                    Node("Mul", [sum, Const(MathF.Sqrt(2f / MathF.PI))], u);
                    Node("Tanh", [u], t);
                    Node("Add", [t, Const(1f)], p);
                    Node("Mul", [z, p], h);
                    Node("Mul", [h, Const(0.5f)], y);
                    break;
                }
                default:
                    throw new NotSupportedException($"layer {l}: activation {s.Activation} has no ONNX export.");
            }
            return y;
        }
        // The modules in order from x of the given width; the top level's last Dense layer writes "output" itself.
        (string X, int Width) Sequence(IReadOnlyList<ModuleSpec> mods, string x, int width, bool top)
        {
            for (int i = 0; i < mods.Count; i++)
                switch (mods[i])
                {
                    case LayerSpec d:
                        x = DenseLayer(dense++, x, top && i == mods.Count - 1);
                        width = d.Units;
                        break;
                    case LayerNormSpec ln:
                    {
                        var site = normSites[norm++];
                        var (w, b) = (site.Prefix + "weight", site.Prefix + "bias");
                        inits.Add(Tensor(w, [site.Width], model.Read(model.Plan.Norms[site.Index].Weight).ToArray()));
                        inits.Add(Tensor(b, [site.Width], model.Read(model.Plan.Norms[site.Index].Bias).ToArray()));
                        string y = Fresh("ln");
                        Node("LayerNormalization", [x, w, b], y, AttrI("axis", -1), AttrF("epsilon", (float)ln.Eps));
                        x = y;
                        break;
                    }
                    case BatchNormSpec bn:
                    {
                        var site = bnSites[batchNorm];
                        var slots = model.Plan.BatchNorms[batchNorm++];
                        string[] names = [site.Prefix + "weight", site.Prefix + "bias", site.Prefix + "running_mean", site.Prefix + "running_var"];
                        Slot[] from = [slots.Weight, slots.Bias, slots.RunningMean, slots.RunningVar];
                        for (int k = 0; k < 4; k++) inits.Add(Tensor(names[k], [site.Width], model.Read(from[k]).ToArray()));
                        string y = Fresh("bn");
                        Node("BatchNormalization", names.Prepend(x).ToArray(), y, AttrF("epsilon", (float)bn.Eps), AttrF("momentum", (float)(1 - bn.Momentum)));
                        x = y;
                        break;
                    }
                    case ResidualSpec r:
                    {
                        var (f, inner) = Sequence(r.Body, x, width, top: false);
                        // A block that changes the width projects its input: the Dense layer right after its body's.
                        string skip = inner != width ? DenseLayer(dense++, x, last: false) : x;
                        string y = Fresh("res");
                        Node("Add", [skip, f], y);
                        (x, width) = (y, inner);
                        break;
                    }
                }
            return (x, width);
        }
        x = Sequence(spec.Tree, x, spec.InputWidth, top: true).X;
        if (softmax) Node("Softmax", [x], "output", AttrI("axis", 1));
        else if (x != "output") Node("Identity", [x], "output");

        foreach (var n in nodes) graph.Message(1, n);
        foreach (var t in inits) graph.Message(5, t);
        graph.Message(11, ValueInfo("input", spec.InputWidth));
        graph.Message(12, ValueInfo("output", spec.OutputWidth));
        return new Protobuf()
            .Int(1, 8)                                   // ir_version
            .String(2, "backprop")                       // producer_name
            .String(3, typeof(OnnxExporter).Assembly.GetName().Version?.ToString() ?? "0")
            .Message(7, graph)
            .Message(8, new Protobuf().String(1, "").Int(2, 17)) // opset_import: default domain, 17
            .ToArray();
    }

    private static Protobuf AttrI(string name, long v) => new Protobuf().String(1, name).Int(3, v).Int(20, AttrInt);
    private static Protobuf AttrF(string name, float v) => new Protobuf().String(1, name).Float(2, v).Int(20, AttrFloat);

    private static Protobuf Tensor(string name, int[] dims, float[] data)
    {
        var t = new Protobuf();
        foreach (var d in dims) t.Int(1, d);
        t.Int(2, Float).String(8, name);
        var raw = new byte[data.Length * 4];
        for (int i = 0; i < data.Length; i++) System.Buffers.Binary.BinaryPrimitives.WriteSingleLittleEndian(raw.AsSpan(4 * i), data[i]);
        return t.Bytes(9, raw);
    }

    private static Protobuf ValueInfo(string name, int width)
    {
        var shape = new Protobuf()
            .Message(1, new Protobuf().String(2, "batch"))      // dim_param: dynamic batch
            .Message(1, new Protobuf().Int(1, width));           // dim_value
        var tensorType = new Protobuf().Int(1, Float).Message(2, shape);
        return new Protobuf().String(1, name).Message(2, new Protobuf().Message(1, tensorType));
    }
}
