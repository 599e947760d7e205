"""Writes one version of a set of model files for the `diff --stats` tests, and prints what numpy
says changed from the previous version: the independent computation the tests compare with.

usage: write_stats_pair.py OUTDIR VERSION [--names FILE]
VERSION 1, 2, 3: each a training step from the one before. Files: bf16.safetensors (written by
hand: numpy has no bfloat16), f16.safetensors and f32.safetensors (the safetensors package),
model.pth (a torch.save layout, fp32 and fp16), model.gguf (gguf-py: F32, F16 and a Q8_0 tensor).
Every version moves some tensors a little, leaves others alone, and version 2 also puts a NaN and
an Inf in one tensor, turns a zero-initialised tensor (a LoRA B) non-zero, changes an integer
tensor and adds a tensor. --names FILE adds, to bf16.safetensors, tensors named by the lines of
FILE (hostile names for the HTML report test).

Output (JSON): {file: {tensor: figures}}, figures for every tensor whose bytes changed from
VERSION - 1 (nothing for VERSION 1): changed_elements, elements, rel_l2 (null when the old norm
is 0), l2, max_abs, non_finite; or changed_blocks and blocks for Q8_0. Norms and differences are
over the element pairs where both values are finite; non_finite counts the new version's NaN/Inf.
"""
import json, os, struct, sys, tempfile
from collections import OrderedDict

import numpy as np
import gguf
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(__file__))
import torch_layout  # noqa: E402

out, version = sys.argv[1], int(sys.argv[2])
extra_names = []
if "--names" in sys.argv:
    with open(sys.argv[sys.argv.index("--names") + 1], encoding="utf-8") as f:
        extra_names = [l.rstrip("\n") for l in f if l.strip()]


def weights(v):
    """float64 weights of version v: layers 0-3 with q, v, up; an embedding; a LoRA B; ids."""
    rng = np.random.default_rng(7)
    w = OrderedDict()
    for layer in range(4):
        for kind in ["self_attn.q_proj.weight", "self_attn.v_proj.weight", "mlp.up_proj.weight"]:
            w[f"model.layers.{layer}.{kind}"] = rng.standard_normal((32, 48))
    w["model.embed_tokens.weight"] = rng.standard_normal((64, 48))
    w["lora_B.weight"] = np.zeros((16, 48))
    for step in range(2, v + 1):
        srng = np.random.default_rng(100 + step)
        for name in list(w):
            # Each step moves q_proj everywhere, and layer `step`'s other tensors more.
            if "q_proj" in name:
                w[name] = w[name] + srng.standard_normal(w[name].shape) * 0.01
            elif f"layers.{step % 4}." in name:
                w[name] = w[name] + srng.standard_normal(w[name].shape) * 0.05 * step
        if step == 2:
            w["lora_B.weight"] = srng.standard_normal((16, 48)) * 0.001
            w["model.layers.1.mlp.up_proj.weight"][0, 0] = np.nan
            w["model.layers.1.mlp.up_proj.weight"][3, 5] = np.inf
    return w


def ids(v):
    return np.arange(12, dtype=np.int32) * (1 if v < 2 else 3)


def bf16_bits(a):
    """float64 -> bfloat16 bits (round to nearest even; NaN kept NaN)."""
    f = a.astype(np.float32)
    u = f.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    r[np.isnan(f)] = 0x7FC0
    return r


def bf16_values(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def write_safetensors_raw(path, tensors):
    """tensors: [(name, dtype, shape, bytes)]."""
    header, data, at = OrderedDict(), b"", 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [at, at + len(raw)]}
        data += raw
        at += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def q8_blocks(v):
    """A Q8_0 tensor as raw blocks (64 rows of 8 blocks of 34 bytes): version 2 and 3 change
    a few blocks."""
    b = np.random.default_rng(5).integers(0, 255, size=(64, 34 * 8), dtype=np.uint8)
    for step in range(2, v + 1):
        b[step, 0:34] ^= 0x5A
        b[10 * step, 34 * 3 + 7] ^= 1
    return b


def files(v):
    """{file: {tensor: (kind, values as float64 or raw bytes)}} of version v, after writing."""
    w = weights(v)
    got = {}

    # bf16 by hand.
    bits = {n: bf16_bits(a) for n, a in w.items()}
    raw = [(n, "BF16", a.shape, bits[n].tobytes()) for n, a in w.items()]
    raw.append(("token_ids", "I32", (12,), ids(v).tobytes()))
    if v >= 2:
        raw.append(("model.layers.3.new_adapter.weight", "BF16", (4, 4), bf16_bits(np.ones((4, 4))).tobytes()))
    for i, name in enumerate(extra_names):
        raw.append((name, "BF16", (2, 2), bf16_bits(np.full((2, 2), float(v * (i + 1)))).tobytes()))
    write_safetensors_raw(os.path.join(out, "bf16.safetensors"), raw)
    got["bf16.safetensors"] = {n: ("float", bf16_values(bits[n])) for n in w}

    for dtype, fname in [(np.float16, "f16.safetensors"), (np.float32, "f32.safetensors")]:
        arrs = OrderedDict((n, a.astype(dtype)) for n, a in w.items())
        save_file(dict(arrs), os.path.join(out, fname))
        got[fname] = {n: ("float", a.astype(np.float64)) for n, a in arrs.items()}

    # PyTorch layout: q_proj in fp16, the rest fp32.
    pt = OrderedDict()
    for n, a in w.items():
        pt[n] = a.astype(np.float16 if "q_proj" in n else np.float32)
    torch_layout.save(os.path.join(out, "model.pth"), "archive", pt)
    got["model.pth"] = {"model." + n: ("float", a.astype(np.float64)) for n, a in pt.items()}

    # GGUF: F32 and F16 tensors and raw Q8_0 blocks.
    path = os.path.join(out, "model.gguf")
    g = gguf.GGUFWriter(path, "llama")
    g.add_string("general.name", "stats")
    gg = OrderedDict()
    for n, a in w.items():
        name = n.replace("model.layers.", "blk.")
        arr = a.astype(np.float16 if "v_proj" in n else np.float32)
        g.add_tensor(name, arr)
        gg[name] = ("float", arr.astype(np.float64))
    qb = q8_blocks(v)
    g.add_tensor("blk.0.attn_q8.weight", qb, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    gg["blk.0.attn_q8.weight"] = ("blocks", qb.tobytes())
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()
    got["model.gguf"] = gg
    return got


def figures(old, new):
    kind, a = old
    _, b = new
    if kind == "blocks":
        x = np.frombuffer(a, np.uint8).reshape(-1, 34)
        y = np.frombuffer(b, np.uint8).reshape(-1, 34)
        changed = int((x != y).any(axis=1).sum())
        return None if changed == 0 else {"changed_blocks": changed, "blocks": len(x)}
    a, b = a.ravel(), b.ravel()
    same_bits = (a == b) | (np.isnan(a) & np.isnan(b))
    # Bits: compare the values as stored (all our values round-trip through float64 exactly).
    changed = int((~same_bits).sum())
    if changed == 0:
        return None
    ok = np.isfinite(a) & np.isfinite(b)
    d = b[ok] - a[ok]
    l2 = float(np.sqrt(np.sum(d * d)))
    old_norm = float(np.sqrt(np.sum(a[ok] * a[ok])))
    return {
        "changed_elements": changed,
        "elements": int(a.size),
        "rel_l2": None if old_norm == 0 else l2 / old_norm,
        "l2": l2,
        "max_abs": float(np.max(np.abs(d))) if d.size else 0.0,
        "non_finite": int((~np.isfinite(b)).sum()),
    }


new = files(version)
result = {f: {} for f in new}
if version > 1:
    here = out
    with tempfile.TemporaryDirectory() as out:
        old = files(version - 1)
    out = here
    for f, tensors in new.items():
        for name, t in tensors.items():
            if name in old[f]:
                fig = figures(old[f][name], t)
                if fig is not None:
                    result[f][name] = fig
print(json.dumps(result))
