#!/usr/bin/python3
"""The PyTorch and ONNX side of Backprop's interop tests, used as a PyTorch user would.

Run with Debian's /usr/bin/python3 (python3-torch 1.13, python3-onnx 1.12). The functions that read
Backprop's files into torch (backprop_model, backprop_optimizer) are not defined here: they are the
README's snippet, executed from README.md, so the README's code is what the tests prove. The `safetensors`
package is not packaged for Debian; the stand-in next to this file follows the format's rules.

  probe                                     print the torch and onnx versions (exit 0 when both import)
  to-torch README W X OUT [W X OUT ...]     our weights file W into torch (strict), outputs on raw inputs X
  make-model ARCH SEED OUT X PRED [--dtype bf16|f16] [--prefix P]
                                            a torch nn.Sequential (ARCH: "784,relu,dropout:0.3,64,tanh,10"),
                                            its state_dict saved as a plain safetensors file, and its
                                            outputs (eval mode) on X
  evaluate README W X Y OUT                 accuracy, confusion matrix and loss of W in torch, as JSON
  onnx-check FILE [FILE ...]                onnx.checker (full_check) and strict shape inference
  optim-step README CKPT X Y OUT            the checkpoint's model and optimizer in torch, one step on
                                            (X, Y), the parameters and optimizer state saved to OUT
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from safetensors.torch import save_file  # noqa: E402  (the stand-in)


def readme_snippet(readme):
    """The README's PyTorch snippet (the python block after the torch-snippet marker), executed."""
    text = open(readme, encoding="utf-8").read()
    m = re.search(r"<!-- torch-snippet -->\s*```python\n(.*?)```", text, re.S)
    if not m:
        sys.exit(f"{readme}: no python block after <!-- torch-snippet -->")
    scope = {}
    exec(compile(m.group(1), f"{readme} (torch snippet)", "exec"), scope)
    return scope


def load_x(path):
    return torch.as_tensor(np.load(path)).to(torch.float32)


def to_torch(readme, jobs):
    s = readme_snippet(readme)
    for w, x, out in zip(jobs[0::3], jobs[1::3], jobs[2::3]):
        model, preprocess = s["backprop_model"](w)
        model.eval()
        with torch.no_grad():
            y = model(preprocess(np.load(x)))
        np.save(out, y.numpy().astype(np.float32))
        print(f"{w}: {model}")


ACTS = {
    "relu": lambda p: nn.ReLU(), "leaky_relu": lambda p: nn.LeakyReLU(p or 0.01), "elu": lambda p: nn.ELU(p or 1.0),
    "tanh": lambda p: nn.Tanh(), "sigmoid": lambda p: nn.Sigmoid(), "gelu": lambda p: nn.GELU(),
    "gelu_tanh": lambda p: nn.GELU(approximate="tanh"), "silu": lambda p: nn.SiLU(),
    "dropout": lambda p: nn.Dropout(p or 0.5),
}


def make_model(arch, seed, out, x, pred, dtype=None, prefix=None):
    torch.manual_seed(int(seed))
    parts = arch.split(",")
    width, mods = int(parts[0]), []
    for p in parts[1:]:
        if p.isdigit():
            mods.append(nn.Linear(width, int(p)))
            width = int(p)
        else:
            name, _, arg = p.partition(":")
            mods.append(ACTS[name](float(arg) if arg else None))
    model = nn.Sequential(*mods)
    # A wider spread than the default init, so that outputs differ clearly between samples.
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                m.weight.mul_(2.0)
                m.bias.uniform_(-0.5, 0.5)
    sd = model.state_dict()
    if dtype:
        sd = {k: v.to({"bf16": torch.bfloat16, "f16": torch.float16}[dtype]) for k, v in sd.items()}
        model.load_state_dict({k: v.float() for k, v in sd.items()})  # the outputs of the weights as stored
    if prefix:
        sd = {prefix + k: v for k, v in sd.items()}
    save_file(sd, out)
    model.eval()
    with torch.no_grad():
        np.save(pred, model(load_x(x)).numpy().astype(np.float32))
    print(f"{out}: {model}")


def evaluate(readme, w, x, y, out):
    s = readme_snippet(readme)
    model, preprocess = s["backprop_model"](w)
    model.eval()
    with torch.no_grad():
        logits = model(preprocess(np.load(x)))
    labels = torch.as_tensor(np.load(y)).to(torch.int64)
    pred = logits.argmax(dim=1)
    c = logits.shape[1]
    confusion = torch.zeros(c, c, dtype=torch.int64)
    for t, p in zip(labels.tolist(), pred.tolist()):
        confusion[t, p] += 1
    result = {
        "samples": int(labels.numel()),
        "accuracy": float((pred == labels).double().mean()),
        "loss": float(nn.functional.cross_entropy(logits.double(), labels)),
        "confusion": confusion.tolist(),
    }
    with open(out, "w") as f:
        json.dump(result, f)
    print(json.dumps({k: result[k] for k in ("samples", "accuracy", "loss")}))


def onnx_check(files):
    import onnx
    from onnx import shape_inference
    for path in files:
        model = onnx.load(path)
        onnx.checker.check_model(model, full_check=True)
        inferred = shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
        outs = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in inferred.graph.output}
        print(f"{path}: ok, opset {model.opset_import[0].version}, outputs {outs}")


def optim_step(readme, ckpt, x, y, out):
    s = readme_snippet(readme)
    model, _ = s["backprop_model"](ckpt)
    opt, desc = s["backprop_optimizer"](ckpt, model)
    model.train()
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(load_x(x)), torch.as_tensor(np.load(y)).to(torch.int64))
    loss.backward()
    if desc["clip_norm"] > 0:
        nn.utils.clip_grad_norm_(model.parameters(), desc["clip_norm"])
    opt.step()
    names = [n for n, _ in model.named_parameters()]
    tensors = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            tensors[f"optimizer.{k}.{names[i]}"] = v.detach().clone().float() if torch.is_tensor(v) else torch.tensor(float(v))
    save_file(tensors, out)
    print(f"{ckpt}: {desc['class']} step, loss {float(loss):.6f}")


def main(argv):
    if not argv:
        sys.exit(__doc__)
    cmd, args = argv[0], argv[1:]
    if cmd == "probe":
        import onnx
        print(f"torch {torch.__version__} onnx {onnx.__version__}")
    elif cmd == "to-torch":
        to_torch(args[0], args[1:])
    elif cmd == "make-model":
        opts = dict(zip(args[5::2], args[6::2]))
        make_model(*args[:5], dtype=opts.get("--dtype"), prefix=opts.get("--prefix"))
    elif cmd == "evaluate":
        evaluate(*args)
    elif cmd == "onnx-check":
        onnx_check(args)
    elif cmd == "optim-step":
        optim_step(*args)
    else:
        sys.exit(f"unknown command {cmd}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv[1:])
