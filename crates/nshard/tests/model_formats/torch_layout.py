"""Writes a PyTorch zip checkpoint the way torch.save (>= 1.6) lays it out, without torch:
ROOT/data.pkl (pickle protocol 2; tensors are torch._utils._rebuild_tensor_v2 calls on persistent
ids ('storage', torch.<T>Storage, key, 'cpu', numel)), ROOT/byteorder, ROOT/data/<key> (raw
storage bytes, each aligned to 64 bytes by an extra field), ROOT/version. torch names ROOT after
the file (`archive` in older versions).
"""
import io, pickle, struct, sys, types, zipfile
from collections import OrderedDict

import numpy as np

torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")
sys.modules["torch"] = torch
sys.modules["torch._utils"] = utils
torch._utils = utils


def _rebuild_tensor_v2(*a):
    raise RuntimeError("never called")


utils._rebuild_tensor_v2 = _rebuild_tensor_v2
_rebuild_tensor_v2.__module__ = "torch._utils"
storage_types = {}
for cls in ["FloatStorage", "HalfStorage"]:
    t = type(cls, (), {"__module__": "torch"})
    setattr(torch, cls, t)
    storage_types[cls] = t


class Storage:
    def __init__(self, key, cls, numel):
        self.key, self.cls, self.numel = key, cls, numel


class Tensor:
    def __init__(self, storage, shape):
        self.storage, self.shape = storage, shape

    def __reduce__(self):
        stride = tuple(int(np.prod(self.shape[i + 1:])) for i in range(len(self.shape)))
        return (_rebuild_tensor_v2, (self.storage, 0, tuple(self.shape), stride, False, OrderedDict()))


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", storage_types[obj.cls], obj.key, "cpu", obj.numel)
        return None


def save(path, root, tensors, wrap="model"):
    """Writes `tensors` (name -> float16/float32 array, in order) under `{wrap: state, "epoch": 3}`
    with the zip root folder `root`. Returns [(key, name, array)] in storage order."""
    state = OrderedDict()
    blobs = []
    for i, (name, arr) in enumerate(tensors.items()):
        cls = "HalfStorage" if arr.dtype == np.float16 else "FloatStorage"
        state[name] = Tensor(Storage(str(i), cls, arr.size), list(arr.shape))
        blobs.append((str(i), name, arr))
    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump({wrap: state, "epoch": 3})
    with open(path, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
        def add(name, data):
            zi = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            at = f.tell() + 30 + len(name) + 4
            pad = (64 - at % 64) % 64
            zi.extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad
            z.writestr(zi, data)
        add(f"{root}/data.pkl", buf.getvalue())
        add(f"{root}/byteorder", b"little")
        for key, _, arr in blobs:
            add(f"{root}/data/{key}", arr.tobytes())
        add(f"{root}/version", b"3\n")
    return blobs
