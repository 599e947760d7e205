"""Writes model files with the formats' own writers (gguf, safetensors) and a PyTorch zip
checkpoint the way torch.save lays it out, then prints what each writer says the file holds.

usage: write_models.py OUTDIR VARIANT
VARIANT 1 is the first version; VARIANT 2 re-randomises one tensor ("blk.1.ffn" / "layer1.weight"
/ "ffn") and nothing else, differently in each file. Output: one JSON object {file: [tensor, ...]} with each tensor's name,
dtype, shape, absolute offset and size, read back independently of nshard (gguf.GGUFReader,
the safetensors header, zipfile).
"""
import json, os, struct, sys, zipfile
from collections import OrderedDict

import numpy as np
import gguf
from safetensors.numpy import save_file

import torch_layout

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

# A PyTorch zip checkpoint laid out as torch.save writes it (see torch_layout.py).
pt_names = {"embed": "embed.weight", "norm": "norm.weight", "ffn": "layer1.weight", "head": "head.weight"}
path = os.path.join(out, "model.pth")
blobs = torch_layout.save(
    path, "archive", OrderedDict((pt_names[k], arr) for k, arr in arrays(variant, 2).items()))
with zipfile.ZipFile(path) as z:
    infos = {i.filename: i for i in z.infolist()}
tensors = []
for key, name, arr in blobs:
    i = infos[f"archive/data/{key}"]
    start = i.header_offset + 30 + len(i.filename) + len(i.extra)
    dtype = "F16" if arr.dtype == np.float16 else "F32"
    tensors.append({"name": "model." + name, "dtype": dtype, "shape": list(arr.shape), "offset": start,
                    "size": arr.nbytes})
result["model.pth"] = tensors

print(json.dumps(result))
