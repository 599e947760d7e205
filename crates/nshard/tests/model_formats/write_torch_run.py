"""Writes a Transformer-like PyTorch checkpoint (4 encoder layers of d_model 256, fp32: 29 tensors,
most of them below 1 MiB) the way torch.save lays it out, with the zip root folder ROOT.

usage: write_torch_run.py PATH ROOT VARIANT
VARIANT 2 and 3 re-randomise one 1 MiB tensor (layers.2.linear1.weight), differently, and nothing
else. Prints that tensor's size in bytes.
"""
import sys
from collections import OrderedDict

import numpy as np

import torch_layout

path, root, variant = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = np.random.default_rng(7)
d, ff = 256, 1024
t = OrderedDict()
for layer in range(4):
    p = f"layers.{layer}."
    for name, shape in [("self_attn.in_proj_weight", (3 * d, d)), ("self_attn.in_proj_bias", (3 * d,)),
                        ("self_attn.out_proj.weight", (d, d)), ("self_attn.out_proj.bias", (d,)),
                        ("linear1.weight", (ff, d)), ("linear1.bias", (ff,)),
                        ("linear2.weight", (d, ff)), ("linear2.bias", (d,)),
                        ("norm1.weight", (d,)), ("norm1.bias", (d,)),
                        ("norm2.weight", (d,)), ("norm2.bias", (d,))]:
        t[p + name] = (0.02 * rng.standard_normal(shape)).astype(np.float32)
t["norm.weight"] = np.ones(d, dtype=np.float32)
changed = "layers.2.linear1.weight"
if variant > 1:
    t[changed] = (0.02 * np.random.default_rng(97 + variant).standard_normal((ff, d))).astype(np.float32)
torch_layout.save(path, root, t, wrap="state_dict")
print(t[changed].nbytes)
