"""safetensors.torch.load_file / save_file of the stand-in package (see __init__.py)."""
import json
import struct

import torch as _torch

from . import NAMES, _parse


def load_file(path, device="cpu"):
    with open(path, "rb") as f:
        return _parse(f.read())[1]


def save_file(tensors, path, metadata=None):
    header, chunks, at = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        raw = t.view(-1).view(dtype=_torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [at, at + len(raw)]}
        chunks.append(raw)
        at += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)
