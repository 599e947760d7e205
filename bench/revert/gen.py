# Four bf16 checkpoints of one run (4 tensors of 1024x1024, each step every weight x (1 + 0.002 N(0,1))), step0..step3.safetensors in the current directory.
import json, struct, sys
import numpy as np
def to_bf16(a):
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    return ((u + ((u >> 16) & 1) + np.uint32(0x7FFF)) >> 16).astype(np.uint16)
def write(path, tensors):
    hdr = {}; off = 0; blobs = []
    for name, arr in tensors.items():
        b = to_bf16(arr).tobytes()
        hdr[name] = {"dtype": "BF16", "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        off += len(b); blobs.append(b)
    h = json.dumps(hdr).encode(); h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h); [f.write(b) for b in blobs]
rng = np.random.default_rng(7)
w = {f"layer{i}.weight": rng.standard_normal((1024, 1024), dtype=np.float32) * 0.02 for i in range(4)}
for step in range(4):
    write(f"step{step}.safetensors", w)
    w = {k: v * (1 + 0.002 * rng.standard_normal(v.shape, dtype=np.float32)) for k, v in w.items()}
