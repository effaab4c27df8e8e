"""A minimal stand-in for the `safetensors` package (not packaged for Debian), for Backprop's tests.

It follows the format's rules: an 8-byte little-endian header length N, N bytes of UTF-8 JSON (an object
of tensors {"dtype", "shape", "data_offsets": [begin, end]} and an optional "__metadata__" object of
strings), then the data section, which the tensors cover exactly (contiguous, no gap, no overlap).
Only what the tests and the README's snippet use: safe_open(...).metadata()/keys()/get_tensor() and
safetensors.torch.load_file/save_file.
"""
import json
import struct

import torch as _torch

DTYPES = {"F32": _torch.float32, "F64": _torch.float64, "F16": _torch.float16, "BF16": _torch.bfloat16,
          "I64": _torch.int64, "I32": _torch.int32, "U8": _torch.uint8}
NAMES = {v: k for k, v in DTYPES.items()}


def _parse(data):
    if len(data) < 8:
        raise ValueError("safetensors: shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError(f"safetensors: header length {n} exceeds the file")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", None)
    body = data[8 + n:]
    spans = sorted((v["data_offsets"][0], v["data_offsets"][1], k) for k, v in header.items())
    at = 0
    for begin, end, name in spans:
        if begin != at:
            raise ValueError(f"safetensors: tensor {name} begins at {begin}, expected {at} (gap or overlap)")
        at = end
    if at != len(body):
        raise ValueError(f"safetensors: tensors end at {at} but the data section has {len(body)} bytes")
    tensors = {}
    for name, v in header.items():
        begin, end = v["data_offsets"]
        dtype = DTYPES[v["dtype"]]
        raw = bytearray(body[begin:end])
        t = _torch.frombuffer(raw, dtype=dtype) if raw else _torch.empty(0, dtype=dtype)
        tensors[name] = t.reshape(v["shape"]).clone()
    return meta, tensors


class safe_open:  # noqa: N801 (the package's name)
    def __init__(self, path, framework="pt", device="cpu"):
        if framework != "pt":
            raise ValueError("this stand-in reads framework='pt' only")
        with open(path, "rb") as f:
            self._meta, self._tensors = _parse(f.read())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def metadata(self):
        return self._meta

    def keys(self):
        return list(self._tensors.keys())

    def get_tensor(self, name):
        return self._tensors[name]
