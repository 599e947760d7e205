"""Writes model files with the formats' own writers (gguf, safetensors) and a PyTorch zip
checkpoint the way torch.save lays it out, then prints what each writer says the file holds.

usage: write_models.py OUTDIR VARIANT
VARIANT 1 is the first version; VARIANT 2 re-randomises one tensor ("blk.1.ffn" / "layer1.weight"
/ "ffn") and nothing else, differently in each file. Output: one JSON object {file: [tensor, ...]} with each tensor's name,
dtype, shape, absolute offset and size, read back independently of nshard (gguf.GGUFReader,
the safetensors header, zipfile).
"""
import io, json, os, pickle, struct, sys, types, zipfile
from collections import OrderedDict

import numpy as np
import gguf
from safetensors.numpy import save_file

out, variant = sys.argv[1], int(sys.argv[2])


def arrays(v, salt):
    rng = np.random.default_rng(1)
    a = OrderedDict()
    a["embed"] = rng.standard_normal((256, 512)).astype(np.float16)  # 256 KiB
    a["norm"] = rng.standard_normal(512).astype(np.float32)  # 2 KiB
    a["ffn"] = rng.standard_normal((128, 1024)).astype(np.float32)  # 512 KiB
    a["head"] = rng.standard_normal((512, 256)).astype(np.float16)  # 256 KiB
    if v == 2:
        a["ffn"] = np.random.default_rng(99 + salt).standard_normal((128, 1024)).astype(np.float32)
    return a


result = {}

# GGUF, written by gguf-py: plain and quantized (Q8_0 as raw blocks) tensors.
path = os.path.join(out, "model.gguf")
w = gguf.GGUFWriter(path, "llama")
w.add_string("general.name", "tiny")
w.add_array("tokenizer.ggml.tokens", ["a", "b", "c"])
names = {"embed": "token_embd.weight", "norm": "output_norm.weight", "ffn": "blk.1.ffn",
         "head": "output.weight"}
for k, arr in arrays(variant, 0).items():
    w.add_tensor(names[k], arr)
q_blocks = np.random.default_rng(5).integers(0, 255, size=(64, 34 * 8), dtype=np.uint8)
w.add_tensor("blk.0.attn_q.weight", q_blocks, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
r = gguf.GGUFReader(path)
result["model.gguf"] = [
    {"name": t.name, "dtype": t.tensor_type.name, "shape": [int(x) for x in t.shape],
     "offset": int(t.data_offset), "size": int(t.n_bytes)}
    for t in r.tensors
]

# safetensors, written by the safetensors package.
path = os.path.join(out, "model.safetensors")
save_file(dict(arrays(variant, 1)), path, metadata={"format": "np"})
with open(path, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
dt = {"float16": "F16", "float32": "F32"}
result["model.safetensors"] = [
    {"name": k, "dtype": v["dtype"], "shape": v["shape"], "offset": 8 + n + v["data_offsets"][0],
     "size": v["data_offsets"][1] - v["data_offsets"][0]}
    for k, v in header.items() if k != "__metadata__"
]

# A PyTorch zip checkpoint laid out as torch.save (>= 1.6) writes it: archive/data.pkl (pickle
# protocol 2; tensors are torch._utils._rebuild_tensor_v2 calls on persistent ids
# ('storage', torch.<T>Storage, key, 'cpu', numel)), archive/byteorder, archive/data/<key>
# (raw storage bytes, each aligned to 64 bytes by an extra field), archive/version.
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


state = OrderedDict()
blobs = []
pt_names = {"embed": "embed.weight", "norm": "norm.weight", "ffn": "layer1.weight", "head": "head.weight"}
for i, (k, arr) in enumerate(arrays(variant, 2).items()):
    cls = "HalfStorage" if arr.dtype == np.float16 else "FloatStorage"
    state[pt_names[k]] = Tensor(Storage(str(i), cls, arr.size), list(arr.shape))
    blobs.append((str(i), arr.tobytes(), "F16" if arr.dtype == np.float16 else "F32", list(arr.shape), pt_names[k]))
buf = io.BytesIO()
Pickler(buf, protocol=2).dump({"model": state, "epoch": 3})
path = os.path.join(out, "model.pth")
with open(path, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
    def add(name, data):
        zi = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
        at = f.tell() + 30 + len(name) + 4
        pad = (64 - at % 64) % 64
        zi.extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad
        z.writestr(zi, data)
    add("archive/data.pkl", buf.getvalue())
    add("archive/byteorder", b"little")
    for key, data, _, _, _ in blobs:
        add(f"archive/data/{key}", data)
    add("archive/version", b"3\n")
with zipfile.ZipFile(path) as z:
    infos = {i.filename: i for i in z.infolist()}
tensors = []
for key, data, dtype, shape, name in blobs:
    i = infos[f"archive/data/{key}"]
    start = i.header_offset + 30 + len(i.filename) + len(i.extra)
    tensors.append({"name": "model." + name, "dtype": dtype, "shape": shape, "offset": start, "size": len(data)})
result["model.pth"] = tensors

print(json.dumps(result))
