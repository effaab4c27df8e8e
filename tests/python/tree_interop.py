#!/usr/bin/python3
"""The PyTorch side of Backprop's module-tree interop test (tests/Backprop.Tests/Interop/TreeInteropTests.cs).

Run with Debian's /usr/bin/python3 (python3-torch 1.13, python3-numpy). Nothing of Backprop's is used here: the
safetensors file is parsed by hand (8-byte little-endian header length, the JSON header, raw little-endian data), the
torch module tree is rebuilt from the model description in its __metadata__ "spec" (Dense = nn.Linear and, unless the
identity, its activation module, and nn.Dropout when it has dropout; LayerNorm = nn.LayerNorm; BatchNorm =
nn.BatchNorm1d; Residual = the module below, with `body` and, only when the body changes the width, `proj`), and the
tensors go in with load_state_dict(strict=True): every name and shape must be the tree's, nothing missing or extra.

  probe                         print the torch and numpy versions (exit 0 when both import)
  run W X OUT [W X OUT ...]     each weights file W into its torch tree (strict), eval mode, outputs on the float32
                                inputs X (.npy) saved to OUT (.npy, float32), and OUT.json: the tree as torch prints
                                it, its state_dict keys in order, and each num_batches_tracked as loaded (dtype, value)
"""
import json
import struct
import sys

import numpy as np
import torch
from torch import nn


class Residual(nn.Module):
    """y = x + body(x), or proj(x) + body(x) when the block changes the width (proj: nn.Linear with bias)."""

    def __init__(self, body, proj=None):
        super().__init__()
        self.body = body
        if proj is not None:
            self.proj = proj

    def forward(self, x):
        return (self.proj(x) if hasattr(self, "proj") else x) + self.body(x)


def read_safetensors(path):
    """(tensors by name, __metadata__) of a safetensors file of F32 tensors."""
    assert sys.byteorder == "little", "torch.frombuffer reads native order; the file is little-endian"
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    data = blob[8 + n:]
    tensors = {}
    for name, t in header.items():
        if t["dtype"] != "F32":
            sys.exit(f"{path}: tensor {name} is {t['dtype']}; this reader takes F32 only")
        begin, end = t["data_offsets"]
        count = int(np.prod(t["shape"], dtype=np.int64))
        if end - begin != 4 * count:
            sys.exit(f"{path}: tensor {name}: {end - begin} bytes for shape {t['shape']}")
        raw = bytearray(data[begin:end])
        flat = torch.frombuffer(raw, dtype=torch.float32) if count else torch.empty(0, dtype=torch.float32)
        tensors[name] = flat.reshape(t["shape"]).clone()
    return tensors, meta


def activation(a):
    kind, p = a["Kind"], a.get("Parameter")
    given = p is not None and p == p  # NaN: the default parameter
    return {
        "Identity": lambda: None,
        "ReLU": lambda: nn.ReLU(),
        "LeakyReLU": lambda: nn.LeakyReLU(p if given else 0.01),
        "ELU": lambda: nn.ELU(p if given else 1.0),
        "Tanh": lambda: nn.Tanh(),
        "Sigmoid": lambda: nn.Sigmoid(),
        "GELU": lambda: nn.GELU(),
        "GELUTanh": lambda: nn.GELU(approximate="tanh"),
        "SiLU": lambda: nn.SiLU(),
    }[kind]()


def build(modules, width):
    """The torch modules of a spec module list on inputs of `width` features, and the width they leave."""
    out = []
    for m in modules:
        kind = m["kind"]
        if kind == "dense":
            out.append(nn.Linear(width, m["Units"]))
            width = m["Units"]
            act = activation(m["Activation"])
            if act is not None:
                out.append(act)
            if m.get("Dropout", 0) > 0:
                out.append(nn.Dropout(m["Dropout"]))
        elif kind == "layer_norm":
            out.append(nn.LayerNorm(width, eps=m["Eps"]))
        elif kind == "batch_norm":
            out.append(nn.BatchNorm1d(width, eps=m["Eps"], momentum=m["Momentum"]))
        elif kind == "residual":
            body, w = build(m["Body"], width)
            out.append(Residual(nn.Sequential(*body), nn.Linear(width, w) if w != width else None))
            width = w
        else:
            sys.exit(f"unknown module kind {kind!r} in the spec")
    return out, width


def model_of(path):
    tensors, meta = read_safetensors(path)
    spec = json.loads(meta["spec"])  # Python's json takes NaN (an activation without a parameter)
    modules = spec["Modules"] if spec.get("Modules") is not None else [dict(m, kind="dense") for m in spec["Layers"]]
    mods, _ = build(modules, spec["InputWidth"])
    model = nn.Sequential(*mods)
    model.load_state_dict(tensors, strict=True)
    return model


def run(jobs):
    for w, x, out in zip(jobs[0::3], jobs[1::3], jobs[2::3]):
        model = model_of(w)
        model.eval()
        with torch.no_grad():
            y = model(torch.as_tensor(np.load(x)).to(torch.float32))
        np.save(out, y.numpy().astype(np.float32))
        report = {
            "module": str(model),
            "state_dict_keys": list(model.state_dict().keys()),
            "num_batches_tracked": {k: {"dtype": str(v.dtype), "value": v.item()}
                                    for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")},
        }
        with open(out + ".json", "w") as f:
            json.dump(report, f, indent=1)
        print(f"{w}: {model}")


def main(argv):
    if not argv:
        sys.exit(__doc__)
    cmd, args = argv[0], argv[1:]
    if cmd == "probe":
        print(f"torch {torch.__version__} numpy {np.__version__}")
    elif cmd == "run":
        if not args or len(args) % 3:
            sys.exit(f"run takes W X OUT triples\n{__doc__}")
        run(args)
    else:
        sys.exit(f"unknown command {cmd}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv[1:])
