#!/usr/bin/env python3
"""Make a checkpoint series with a real optimiser (numpy only, deterministic).

Model: a 4-layer SiLU MLP (512 -> 2048 -> 2048 -> 1024 -> 256, 7.6 M parameters)
trained with AdamW (beta1 0.9, beta2 0.999, eps 1e-8, weight decay 0.01) on a
synthetic regression task: a fixed random "teacher" MLP (512 -> 64 -> 256, tanh)
plus label noise; a fresh batch of 128 inputs each step.  fp32 master weights.

Two phases, one run:
  * phase 1 ("pre-training", not recorded): --pre-steps steps at --pre-lr (1e-3),
    so the weights are trained, not i.i.d. initialisation, and Adam's moments are warm;
  * phase 2 (recorded): --lr (default 1e-5, a fine-tune / late-schedule rate; chosen so
    that ~87 % of bf16 values are bit-identical after 10 steps, as in issue 20)
    for 400 steps; checkpoints at steps 0, 10, ..., 200 and 400 of this phase.

Each checkpoint is written under OUT/step_NNNN/ as one raw file per tensor per dtype:
  fp32/NAME.bin  (the master weights, little-endian float32)
  bf16/NAME.bin  (round-to-nearest-even from fp32, little-endian uint16 bit patterns)
  fp16/NAME.bin  (numpy's float32 -> float16 cast, also round-to-nearest-even)
and OUT/tensors.json lists names and shapes.  It prints the % of values bit-identical
between versions 10 and 200 steps apart for each dtype.

    python train.py --out /tmp/delta-data
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402

DIMS = [512, 2048, 2048, 1024, 256]
TEACHER = [512, 64, 256]


def to_bf16_bits(a32):
    """fp32 -> bf16 bit patterns, round to nearest, ties to even (finite inputs)."""
    u = np.ascontiguousarray(a32, dtype=np.float32).view(np.uint32)
    bias = ((u >> 16) & 1) + np.uint32(0x7FFF)
    return ((u + bias) >> 16).astype(np.uint16)


def init_params(rng):
    params = {}
    for i in range(len(DIMS) - 1):
        fan_in, fan_out = DIMS[i], DIMS[i + 1]
        params[f"layers.{i}.weight"] = (rng.standard_normal((fan_out, fan_in), dtype=np.float32)
                                        * np.float32(np.sqrt(2.0 / fan_in)))
        params[f"layers.{i}.bias"] = np.zeros(fan_out, dtype=np.float32)
    return params


def teacher_fn(rng):
    ws = [rng.standard_normal((TEACHER[i + 1], TEACHER[i]), dtype=np.float32)
          * np.float32(1.5 / np.sqrt(TEACHER[i])) for i in range(len(TEACHER) - 1)]

    def f(x):
        h = x
        for j, w in enumerate(ws):
            h = h @ w.T
            if j < len(ws) - 1:
                h = np.tanh(h)
        return h
    return f


def forward_backward(params, x, y):
    n_layers = len(DIMS) - 1
    acts = [x]
    pre = []
    sigs = []
    h = x
    for i in range(n_layers):
        z = h @ params[f"layers.{i}.weight"].T + params[f"layers.{i}.bias"]
        pre.append(z)
        if i < n_layers - 1:
            sig = 1.0 / (1.0 + np.exp(-z))
            sigs.append(sig)
            h = z * sig  # SiLU
        else:
            h = z
        acts.append(h)
    diff = h - y
    loss = float(np.mean(diff * diff))
    g = (2.0 / diff.size) * diff
    grads = {}
    for i in reversed(range(n_layers)):
        if i < n_layers - 1:
            s = sigs[i]
            g = g * (s * (1.0 + pre[i] * (1.0 - s)))  # d SiLU / dz
        grads[f"layers.{i}.weight"] = g.T @ acts[i]
        grads[f"layers.{i}.bias"] = g.sum(axis=0)
        if i > 0:
            g = g @ params[f"layers.{i}.weight"]
    return loss, grads


class AdamW:
    def __init__(self, params, b1=0.9, b2=0.999, eps=1e-8, wd=0.01):
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.b1, self.b2, self.eps, self.wd, self.t = b1, b2, eps, wd, 0

    def step(self, params, grads, lr):
        self.t += 1
        c1 = 1 - self.b1 ** self.t
        c2 = 1 - self.b2 ** self.t
        for k, p in params.items():
            g = grads[k].astype(np.float32)
            m, v = self.m[k], self.v[k]
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            upd = (m / c1) / (np.sqrt(v / c2) + self.eps)
            if self.wd and p.ndim > 1:
                upd += self.wd * p
            p -= np.float32(lr) * upd.astype(np.float32)


def save(params, out, step):
    d = os.path.join(out, f"step_{step:04d}")
    for dt in ("fp32", "bf16", "fp16"):
        os.makedirs(os.path.join(d, dt), exist_ok=True)
    for k, p in params.items():
        p.astype("<f4").tofile(os.path.join(d, "fp32", k + ".bin"))
        to_bf16_bits(p).astype("<u2").tofile(os.path.join(d, "bf16", k + ".bin"))
        p.astype("<f2").tofile(os.path.join(d, "fp16", k + ".bin"))


def load_all(out, step, dt):
    d = os.path.join(out, f"step_{step:04d}", dt)
    names = json.load(open(os.path.join(out, "tensors.json")))["order"]
    w = {"fp32": "<u4", "bf16": "<u2", "fp16": "<u2"}[dt]
    return np.concatenate([np.fromfile(os.path.join(d, n + ".bin"), dtype=w) for n in names])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/delta-data")
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument("--pre-steps", type=int, default=300)
    ap.add_argument("--pre-lr", type=float, default=1e-3)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--every", type=int, default=10,
                    help="save a checkpoint every this many recorded steps")
    ap.add_argument("--until", type=int, default=200,
                    help="... up to this step (and step 400 when --steps reaches it)")
    a = ap.parse_args()
    if a.until > a.steps:
        ap.error("--until must not exceed --steps")

    rng = np.random.default_rng(a.seed)
    params = init_params(rng)
    teacher = teacher_fn(np.random.default_rng(a.seed + 1))
    data_rng = np.random.default_rng(a.seed + 2)
    os.makedirs(a.out, exist_ok=True)
    json.dump({"order": list(params), "shapes": {k: list(v.shape) for k, v in params.items()},
               "args": vars(a), "dims": DIMS},
              open(os.path.join(a.out, "tensors.json"), "w"), indent=1)
    n_params = sum(p.size for p in params.values())
    print(f"model {DIMS}: {n_params/1e6:.2f} M parameters; AdamW wd 0.01; batch {a.batch}")
    opt = AdamW(params)
    save_at = set(range(0, a.until + 1, a.every)) | ({400} if a.steps >= 400 else set())
    t0 = time.time()
    total = a.pre_steps + a.steps
    for it in range(total + 1):
        rec = it - a.pre_steps  # recorded-phase step
        if rec >= 0 and rec in save_at:
            save(params, a.out, rec)
        if it == total:
            break
        x = data_rng.standard_normal((a.batch, DIMS[0]), dtype=np.float32)
        y = teacher(x) + np.float32(0.1) * data_rng.standard_normal((a.batch, DIMS[-1]), dtype=np.float32)
        loss, grads = forward_backward(params, x, y)
        lr = a.pre_lr if rec < 0 else a.lr
        opt.step(params, grads, lr)
        if it % 50 == 0 or it == total - 1:
            print(f"step {it:4d} (recorded {rec:4d}) lr {lr:g} loss {loss:.4f}  {time.time()-t0:.0f}s",
                  flush=True)

    print("\n% of values bit-identical to the parent version:")
    for dt in ("bf16", "fp16", "fp32"):
        pairs = [(0, 10), (190, 200), (200, 400), (0, 200)]
        res = []
        for p, c in pairs:
            A, B = load_all(a.out, p, dt), load_all(a.out, c, dt)
            res.append(f"{p}->{c}: {100.0*np.mean(A == B):5.1f} %")
        print(f"  {dt}: " + "   ".join(res))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
