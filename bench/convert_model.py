#!/usr/bin/env python3
"""Rewrites a safetensors checkpoint (from nshard-gen) as a PyTorch zip checkpoint or a GGUF file
holding exactly the same tensor bytes, for bench/formats.sh.

usage: convert_model.py pth|gguf IN.safetensors OUT

pth:  laid out as torch.save (>= 1.6) writes it: archive/data.pkl (pickle protocol 2 of
      {"state_dict": {name: torch._utils._rebuild_tensor_v2(storage, ...)}, "metadata": {...}}, the
      storages as persistent ids ('storage', torch.<T>Storage, key, 'cpu', numel)),
      archive/byteorder, archive/data/<key> (one per tensor, each aligned to 64 bytes by a zip
      extra field, as torch does), archive/version; stored, not compressed. torch itself is not
      needed (its pickle globals are stand-ins that are never called).
gguf: written by gguf-py's GGUFWriter (needs `pip install gguf numpy`): the safetensors
      __metadata__ entries become string key/values `safetensors.<key>`, tensors keep their names,
      BF16/F16/F32 types and bytes.
The safetensors __metadata__ is carried into the header of either format, so an nshard-gen
`metadata` mutation becomes a header change there too.
"""
import io
import json
import pickle
import struct
import sys
import types
import zipfile
from collections import OrderedDict


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        meta = header.pop("__metadata__", {}) or {}
        tensors = []
        for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            a, b = t["data_offsets"]
            f.seek(base + a)
            tensors.append((name, t["dtype"], t["shape"], f.read(b - a)))
    return meta, tensors


def write_pth(meta, tensors, out):
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    torch._utils = utils

    def _rebuild_tensor_v2(*a):
        raise RuntimeError("never called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    storage = {"BF16": "BFloat16Storage", "F16": "HalfStorage", "F32": "FloatStorage"}
    width = {"BF16": 2, "F16": 2, "F32": 4}
    classes = {}
    for cls in storage.values():
        classes[cls] = type(cls, (), {"__module__": "torch"})
        setattr(torch, cls, classes[cls])

    class Storage:
        def __init__(self, key, cls, numel):
            self.key, self.cls, self.numel = key, cls, numel

    class Tensor:
        def __init__(self, st, shape):
            self.st, self.shape = st, shape

        def __reduce__(self):
            stride, acc = [], 1
            for d in reversed(self.shape):
                stride.insert(0, acc)
                acc *= d
            return (_rebuild_tensor_v2,
                    (self.st, 0, tuple(self.shape), tuple(stride), False, OrderedDict()))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                return ("storage", classes[obj.cls], obj.key, "cpu", obj.numel)
            return None

    state = OrderedDict()
    for i, (name, dtype, shape, data) in enumerate(tensors):
        state[name] = Tensor(Storage(str(i), storage[dtype], len(data) // width[dtype]), shape)
    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump({"state_dict": state, "metadata": dict(meta)})
    with open(out, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
        def add(name, data):
            zi = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            at = f.tell() + 30 + len(name) + 4
            pad = (64 - at % 64) % 64
            zi.extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad
            z.writestr(zi, data)
        add("archive/data.pkl", buf.getvalue())
        add("archive/byteorder", b"little")
        for i, (_, _, _, data) in enumerate(tensors):
            add(f"archive/data/{i}", data)
        add("archive/version", b"3\n")


def write_gguf(meta, tensors, out):
    import numpy as np
    import gguf

    types_ = {"BF16": (np.uint16, gguf.GGMLQuantizationType.BF16),
              "F16": (np.float16, None), "F32": (np.float32, None)}
    w = gguf.GGUFWriter(out, "llama")
    w.add_string("general.name", "nshard-gen")
    for k, v in sorted(meta.items()):
        w.add_string(f"safetensors.{k}", str(v))
    for name, dtype, shape, data in tensors:
        np_type, raw = types_[dtype]
        arr = np.frombuffer(data, dtype=np_type).reshape(shape)
        if raw is None:
            w.add_tensor(name, arr)
        else:
            w.add_tensor(name, arr, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("pth", "gguf"):
        sys.exit(__doc__)
    meta, tensors = read_safetensors(sys.argv[2])
    (write_pth if sys.argv[1] == "pth" else write_gguf)(meta, tensors, sys.argv[3])


if __name__ == "__main__":
    main()
