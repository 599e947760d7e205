#!/usr/bin/env python3
"""Measure delta and standalone codecs for checkpoint chunks (issue 20).

Reads the series written by train.py (DATA/step_NNNN/{bf16,fp16,fp32}/NAME.bin) and,
per tensor, in chunks of 4 MiB (the store's block size), measures the stored size as a
percentage of the raw bytes for many transform x coder combinations, plus z4ai and ZipNN
on the same chunks.  Single process; z4ai/ZipNN are held to one thread.

    python measure.py sizes  --data /tmp/delta-data --out results-sizes.json
    python measure.py speed  --data /tmp/delta-data --out results-speed.json
    python measure.py chain  --data /tmp/delta-data --out results-chain.json

Sizes of the entropy-coder rows:
  kt-*   ideal adaptive arithmetic coding (Krichevsky-Trofimov estimator, alpha 1/2, counts
         start empty in every chunk): the exact code length an adaptive order-0/order-k
         arithmetic/range coder with that context reaches up to a few bytes; it needs no table.
  ans-*  real bytes from constriction's rANS coder with static per-chunk (per-context)
         frequency tables, table bytes included (zstd-compressed varint counts).
Every zstd row stores a plane raw when compression does not pay (as the store does) and
counts 9 bytes of framing per plane and 16 per object.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from math import lgamma, log

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.cpu_count = lambda: 1  # z4ai sizes its thread pools from this: keep it to one core
import numpy as np  # noqa: E402
import zstandard as zstd  # noqa: E402

CHUNK = 4 << 20
OBJ_HDR = 16
PLANE_HDR = 9
UINT = {"bf16": np.uint16, "fp16": np.uint16, "fp32": np.uint32}
WIDTH = {"bf16": 2, "fp16": 2, "fp32": 4}
Z4_CODE = {"bf16": "bf16", "fp16": "fp16", "fp32": "fp32"}
ZIPNN_CODE = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
LN2 = log(2.0)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def tensor_names(data):
    return json.load(open(os.path.join(data, "tensors.json")))["order"]


def load(data, step, dt):
    d = os.path.join(data, f"step_{step:04d}", dt)
    return {n: np.fromfile(os.path.join(d, n + ".bin"), dtype="<" + np.dtype(UINT[dt]).str[1:])
            for n in tensor_names(data)}


def chunks(tensors, dt):
    """(name, index, uint array) for every 4 MiB chunk of every tensor."""
    per = CHUNK // WIDTH[dt]
    out = []
    for n, a in tensors.items():
        for i in range(0, max(a.size, 1), per):
            out.append((n, i // per, a[i:i + per]))
    return out


# ---------------------------------------------------------------------------------------------
# transforms (all bijective on unsigned integer arrays of the element width)
# ---------------------------------------------------------------------------------------------
def bits(u):
    return u.dtype.itemsize * 8


def rot1(u):
    """Rotate left by one bit: sign goes to bit 0, the exponent becomes the top byte
    (exactly for bf16 and fp32; fp16's top byte is 5 exponent + 3 mantissa bits)."""
    b = bits(u)
    return (u << u.dtype.type(1)) | (u >> u.dtype.type(b - 1))


def unrot1(u):
    b = bits(u)
    return (u >> u.dtype.type(1)) | (u << u.dtype.type(b - 1))


def ordered(u):
    """Sign-magnitude float bits -> two's complement order-preserving integer bits."""
    b = bits(u)
    mask = u.dtype.type((1 << (b - 1)) - 1)
    neg = (u >> u.dtype.type(b - 1)).astype(bool)
    return np.where(neg, u ^ mask, u)


unordered = ordered  # it is an involution


def zigzag(d):
    b = bits(d)
    s = d.view(np.dtype("i%d" % d.dtype.itemsize))
    return ((s << 1) ^ (s >> (b - 1))).view(d.dtype)


def unzigzag(z):
    one = z.dtype.type(1)
    return (z >> one) ^ (np.zeros_like(z) - (z & one))


def planes(u):
    """Little-endian byte planes: planes[k] = byte k of every element (k = 0 is the LSB)."""
    w = u.dtype.itemsize
    v = u.view(np.uint8).reshape(-1, w)
    return [np.ascontiguousarray(v[:, k]) for k in range(w)]


def unplanes(ps, dtype):
    w = len(ps)
    out = np.empty((ps[0].size, w), dtype=np.uint8)
    for k in range(w):
        out[:, k] = ps[k]
    return out.reshape(-1).view(dtype)


def top_byte(u):
    return (u >> u.dtype.type(bits(u) - 8)).astype(np.uint8)


DELTA = {
    # name: (forward(child, parent) -> uint array, inverse(delta, parent) -> child)
    "xor": (lambda c, p: c ^ p, lambda d, p: d ^ p),
    "xor-rot1": (lambda c, p: rot1(c ^ p), lambda d, p: unrot1(d) ^ p),
    "sub": (lambda c, p: c - p, lambda d, p: d + p),
    "sub-zz": (lambda c, p: zigzag(c - p), lambda d, p: unzigzag(d) + p),
    "osub-zz": (lambda c, p: zigzag(ordered(c) - ordered(p)),
                lambda d, p: unordered(unzigzag(d) + ordered(p))),
}
STANDALONE = {
    "id": (lambda c: c, lambda d: d),
    "rot1": (rot1, unrot1),
}


# ---------------------------------------------------------------------------------------------
# coders
# ---------------------------------------------------------------------------------------------
_cctx = {}


def zc(level, long=False):
    key = (level, long)
    if key not in _cctx:
        if long:
            p = zstd.ZstdCompressionParameters.from_level(level, enable_ldm=True, window_log=27)
            _cctx[key] = zstd.ZstdCompressor(compression_params=p)
        else:
            _cctx[key] = zstd.ZstdCompressor(level=level)
    return _cctx[key]


class _NshardPlaneCompressor:
    """The store's plane compressor today (crates/nshard-core/src/codec/encode.rs): level 1,
    fast strategy, min match 7, hash log 16, target length 100000, literal compression on.
    python-zstandard cannot set the literal mode, so this goes to libzstd through ctypes."""

    def __init__(self):
        import ctypes
        import ctypes.util
        lib = ctypes.CDLL(ctypes.util.find_library("zstd") or "libzstd.so.1")
        lib.ZSTD_createCCtx.restype = ctypes.c_void_p
        lib.ZSTD_CCtx_setParameter.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        lib.ZSTD_CCtx_setParameter.restype = ctypes.c_size_t
        lib.ZSTD_compress2.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                       ctypes.c_void_p, ctypes.c_size_t]
        lib.ZSTD_compress2.restype = ctypes.c_size_t
        lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
        lib.ZSTD_compressBound.argtypes = [ctypes.c_size_t]
        lib.ZSTD_compressBound.restype = ctypes.c_size_t
        self.lib, self.ct = lib, ctypes
        self.cctx = lib.ZSTD_createCCtx()
        # ZSTD_c_compressionLevel 100, hashLog 102, minMatch 105, targetLength 106, strategy 107
        # (ZSTD_fast = 1), ZSTD_c_literalCompressionMode = experimentalParam5 = 1002 (enable = 1)
        for k, v in ((100, 1), (107, 1), (105, 7), (102, 16), (106, 100000), (1002, 1)):
            assert not lib.ZSTD_isError(lib.ZSTD_CCtx_setParameter(self.cctx, k, v)), k

    def compress(self, data):
        cap = self.lib.ZSTD_compressBound(len(data))
        buf = self.ct.create_string_buffer(cap)
        n = self.lib.ZSTD_compress2(self.cctx, buf, cap, data, len(data))
        assert not self.lib.ZSTD_isError(n)
        out = buf.raw[:n]
        assert zstd.ZstdDecompressor().decompress(out, max_output_size=len(data)) == data
        return out


def nshard_plane_cctx():
    if "nshard" not in _cctx:
        _cctx["nshard"] = _NshardPlaneCompressor()
    return _cctx["nshard"]


def sampled_entropy(b):
    if b.size <= 65536:
        s = b
    else:
        win = 16384
        step = (b.size - win) // 3
        s = np.concatenate([b[i * step:i * step + win] for i in range(4)])
    h = np.bincount(s, minlength=256)
    p = h[h > 0] / s.size
    return float(-(p * np.log2(p)).sum())


def zsize_plane(b, cctx, gate=False):
    if gate and sampled_entropy(b) >= 7.7:
        return b.size
    n = len(cctx.compress(b.tobytes()))
    return min(n, b.size)


def zsize_planes(ps, cctx, gate=False):
    return OBJ_HDR + sum(PLANE_HDR + zsize_plane(p, cctx, gate) for p in ps)


def _lgv(x):
    # vectorised log-gamma via math.lgamma on unique values (counts repeat a lot)
    u, inv = np.unique(x, return_inverse=True)
    lu = np.array([lgamma(float(t)) for t in u])
    return lu[inv]


def kt_bits(sym, ctx=None, alphabet=256, alpha=0.5):
    """Exact code length (bits) of adaptive KT coding of `sym` given context ids `ctx`."""
    sym = sym.astype(np.int64)
    if ctx is None:
        key = sym
    else:
        key = ctx.astype(np.int64) * alphabet + sym
    pair = np.bincount(key)
    pair = pair[pair > 0].astype(np.float64)
    if ctx is None:
        ctxc = np.array([float(sym.size)])
    else:
        ctxc = np.bincount(ctx.astype(np.int64)).astype(np.float64)
        ctxc = ctxc[ctxc > 0]
    nats = (_lgv(ctxc + alphabet * alpha).sum() - ctxc.size * lgamma(alphabet * alpha)
            - (_lgv(pair + alpha).sum() - pair.size * lgamma(alpha)))
    return nats / LN2


def kt_bytes(sym, ctx=None, alphabet=256):
    return kt_bits(sym, ctx, alphabet) / 8.0


def ctx_prev(b):
    c = np.empty_like(b)
    c[0] = 0
    c[1:] = b[:-1]
    return c


def ctx_pair(a, b):
    return a.astype(np.int64) * 256 + b.astype(np.int64)


# --- real rANS (constriction) with static per-context tables -----------------------------------
def _varint(vals):
    out = bytearray()
    for v in vals:
        v = int(v)
        while v >= 0x80:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)
    return bytes(out)


def ans_encode(sym, ctx=None):
    """Encode bytes `sym` with static per-context order-0 tables (contexts known to the decoder).
    Returns (payload bytes, table bytes, state) -- sizes are real."""
    import constriction
    if ctx is None:
        ctx = np.zeros(sym.size, dtype=np.int64)
    ctx = ctx.astype(np.int64)
    order = np.argsort(ctx, kind="stable")
    cs = ctx[order]
    ss = sym[order].astype(np.int32)
    bounds = np.flatnonzero(np.diff(cs)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [cs.size]])
    enc = constriction.stream.stack.AnsCoder()
    table = bytearray()
    models = []
    for s0, e0 in zip(starts, ends):
        g = ss[s0:e0]
        hist = np.bincount(g, minlength=256)
        present = np.flatnonzero(hist)
        table += _varint([cs[s0], present.size]) + bytes(present.astype(np.uint8)) + _varint(hist[present])
        models.append((g, present, hist[present]))
    # encode in reverse so that decoding runs forward over contexts
    for g, present, cnt in reversed(models):
        if present.size == 1:
            continue  # a single-symbol context costs nothing beyond its table entry
        lut = np.zeros(256, dtype=np.int32)
        lut[present] = np.arange(present.size, dtype=np.int32)
        m = constriction.stream.model.Categorical(cnt.astype(np.float64), perfect=False)
        enc.encode_reverse(lut[g], m)
    payload = enc.get_compressed()
    tbl = zc(19).compress(bytes(table))
    return payload, tbl, models


def ans_size_sym(sym, ctx=None):
    """ans_size for symbols of any alphabet (remapped to 0..n-1 with the map in the table)."""
    u, inv = np.unique(sym, return_inverse=True)
    if u.size <= 256:
        return ans_size(inv.astype(np.uint8), ctx) + 2 * u.size
    raise ValueError("alphabet too large")


def ans_size(sym, ctx=None):
    payload, tbl, _ = ans_encode(sym, ctx)
    return payload.nbytes + len(tbl) + 8


def ans_decode(payload, models, n):
    """Decode (tables already parsed into `models`); returns per-context symbol groups."""
    import constriction
    dec = constriction.stream.stack.AnsCoder(payload)
    out = []
    for g, present, cnt in models:
        if present.size == 1:
            out.append(np.full(g.size, present[0], dtype=np.uint8))
            continue
        m = constriction.stream.model.Categorical(cnt.astype(np.float64), perfect=False)
        idx = dec.decode(m, g.size)
        out.append(present[idx].astype(np.uint8))
    return out


# ---------------------------------------------------------------------------------------------
# peers
# ---------------------------------------------------------------------------------------------
def z4ai_mod():
    import z4ai
    return z4ai


_zipnn = {}


def zipnn_size(raw_bytes, dt):
    if dt not in _zipnn:
        import io
        import contextlib
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            from zipnn import ZipNN
        _zipnn[dt] = ZipNN(input_format="byte", bytearray_dtype=ZIPNN_CODE[dt], threads=1)
    z = _zipnn[dt]
    # zipnn 0.5.4 rewrites its input buffer in place (bit reorder): give it a private copy
    blob = z.compress(bytes(bytearray(raw_bytes)))
    back = z.decompress(blob)
    assert bytes(back) == raw_bytes, "zipnn round trip"
    return len(blob)


def z4_size(raw_bytes, dt):
    z4 = z4ai_mod()
    blob = z4.compress(raw_bytes, dtype=Z4_CODE[dt])
    assert bytes(z4.decompress(blob)) == raw_bytes
    return len(blob)


def z4_delta_size(cur, ref, dt):
    z4 = z4ai_mod()
    blob = z4.compress_delta(cur, ref, dtype=Z4_CODE[dt])
    assert bytes(z4.decompress_delta(blob, ref)) == cur
    return len(blob)


# ---------------------------------------------------------------------------------------------
# size grid
# ---------------------------------------------------------------------------------------------
def standalone_sizes(u, dt, full):
    """Sizes (bytes) of one chunk stored on its own."""
    raw = u.tobytes()
    r = {}
    r["zstd-1 (raw bytes)"] = min(len(zc(1).compress(raw)), len(raw)) + OBJ_HDR
    r["zstd-3 (raw bytes)"] = min(len(zc(3).compress(raw)), len(raw)) + OBJ_HDR
    ps = planes(u)
    r["nshard today (planes, tuned zstd-1)"] = zsize_planes(ps, nshard_plane_cctx(), gate=True)
    for lvl in (1, 3) + ((19,) if full else ()):
        r[f"planes + zstd-{lvl}"] = zsize_planes(ps, zc(lvl))
    rp = planes(rot1(u))
    for lvl in (1, 3):
        r[f"rot1 planes + zstd-{lvl}"] = zsize_planes(rp, zc(lvl))
    hi = len(ps) - 1
    r["planes + kt-o0"] = OBJ_HDR + sum(kt_bytes(p) for p in ps)
    r["rot1 planes + kt-o0"] = OBJ_HDR + sum(kt_bytes(p) for p in rp)
    # top plane: order-1 (previous byte); lower planes: context = the next higher byte
    r["rot1 planes + kt-o1 (top: prev byte; others: higher byte)"] = OBJ_HDR + kt_bytes(rp[hi], ctx_prev(rp[hi])) + sum(
        kt_bytes(rp[k], rp[k + 1]) for k in range(hi))
    r["rot1 planes + kt (top: o0; others: ctx higher byte)"] = OBJ_HDR + kt_bytes(rp[hi]) + sum(
        kt_bytes(rp[k], rp[k + 1]) for k in range(hi))
    # real coder: static order-0 tables per plane (top) / per higher-byte context (others)
    r["rot1 planes + ans-o0 (real)"] = OBJ_HDR + sum(
        ans_size(p) if sampled_entropy(p) < 7.7 else p.size for p in rp)
    r["rot1 top plane ans-o0, others ans ctx higher byte (real)"] = OBJ_HDR + ans_size(rp[hi]) + sum(
        min(ans_size(rp[k], rp[k + 1]), rp[k].size) for k in range(hi))
    r["z4ai compress"] = z4_size(raw, dt)
    r["zipnn compress"] = zipnn_size(raw, dt)
    return r


def bit_length(u):
    """Number of significant bits of each unsigned element (0 for 0)."""
    _, e = np.frexp(u.astype(np.float64))
    return e.astype(np.int64)


def bucket_symbols(d, extra):
    """Split unsigned values into (bit length, `extra` bits right below the leading 1) -- the
    entropy-coded symbol -- and the remaining low bits, sent raw.  Returns (sym, raw bit count)."""
    k = bit_length(d)
    sh = np.maximum(k - 1 - extra, 0)
    top = (d.astype(np.uint64) >> sh.astype(np.uint64)).astype(np.int64)  # leading 1 + extra bits
    # the top bits without the leading 1 (k <= extra: all of the value is in `top`)
    low = np.where(k > 0, top - (np.int64(1) << np.minimum(k - 1, extra)), 0)
    sym = k * (1 << extra) + low
    return sym, int(sh.sum())


def delta_sizes(c, p, dt, full):
    """Sizes (bytes) of chunk `c` stored as a delta against its parent chunk `p`."""
    r = {}
    pexp = top_byte(rot1(p))  # the parent's exponent byte (fp16: 5 exp + 3 mantissa bits)
    for tname, (fwd, inv) in DELTA.items():
        d = fwd(c, p)
        assert np.array_equal(inv(d, p), c), tname
        db = d.tobytes()
        ps = planes(d)
        hi = len(ps) - 1
        main = tname in ("xor", "xor-rot1", "osub-zz")
        r[f"{tname} | bytes + zstd-3"] = OBJ_HDR + min(len(zc(3).compress(db)), len(db))
        for lvl in (1, 3) + ((9, 19) if (full and main) else ()):
            r[f"{tname} | planes + zstd-{lvl}"] = zsize_planes(ps, zc(lvl))
        if full and main:
            r[f"{tname} | planes + zstd-3 --long"] = zsize_planes(ps, zc(3, long=True))
            r[f"{tname} | bytes + zstd-19"] = OBJ_HDR + min(len(zc(19).compress(db)), len(db))
        r[f"{tname} | planes + kt-o0"] = OBJ_HDR + sum(kt_bytes(q) for q in ps)
        r[f"{tname} | planes + kt-o1 prev byte"] = OBJ_HDR + sum(kt_bytes(q, ctx_prev(q)) for q in ps)
        r[f"{tname} | planes + kt ctx higher plane byte"] = OBJ_HDR + kt_bytes(ps[hi]) + sum(
            kt_bytes(ps[k], ps[k + 1]) for k in range(hi))
        r[f"{tname} | planes + kt ctx parent exp"] = OBJ_HDR + sum(kt_bytes(q, pexp) for q in ps)
        r[f"{tname} | planes + kt ctx parent exp + higher plane byte"] = OBJ_HDR + kt_bytes(ps[hi], pexp) + sum(
            kt_bytes(ps[k], ctx_pair(pexp, ps[k + 1])) for k in range(hi))
        if main:
            r[f"{tname} | planes + ans-o0 (real)"] = OBJ_HDR + sum(min(ans_size(q), q.size) for q in ps)
            r[f"{tname} | planes + ans ctx parent exp (real)"] = OBJ_HDR + sum(
                min(ans_size(q, pexp), q.size) for q in ps)
        if tname in ("xor", "osub-zz"):
            # sparse: bitmap of changed elements + the changed elements' values
            mask = c != p
            bm = np.packbits(mask)
            vals = d[mask]
            vps = planes(vals) if vals.size else []
            r[f"{tname} | sparse: bitmap zstd-3 + value planes zstd-3"] = (
                OBJ_HDR + PLANE_HDR + len(zc(3).compress(bm.tobytes())) + sum(
                    PLANE_HDR + zsize_plane(q, zc(3)) for q in vps))
            r[f"{tname} | sparse: bitmap kt ctx parent exp + values kt ctx parent exp"] = (
                OBJ_HDR + kt_bits(mask.astype(np.uint8), pexp, alphabet=2) / 8 + sum(
                    kt_bytes(q, pexp[mask]) for q in vps))
        if tname in ("xor", "osub-zz"):
            # bit-length buckets: entropy-code (bit length, next bits) with ctx parent exp,
            # store the bits below raw (as lossless audio/image coders do for residuals)
            for extra in (0, 2):
                sym, rawbits = bucket_symbols(d, extra)
                alph = (bits(d) + 1) << extra
                r[f"{tname} | bucket(+{extra} bits) kt ctx parent exp + raw low bits"] = (
                    OBJ_HDR + kt_bits(sym, pexp, alphabet=alph) / 8 + rawbits / 8)
                if extra == 2 or dt == "fp32":
                    r[f"{tname} | bucket(+{extra} bits) ans ctx parent exp + raw low bits (real)"] = (
                        OBJ_HDR + ans_size_sym(sym, pexp) + (rawbits + 7) // 8)
    r["z4ai compress_delta"] = z4_delta_size(c.tobytes(), p.tobytes(), dt)
    return r


def cmd_sizes(a):
    dts = a.dtypes.split(",")
    res = {"chunk": CHUNK, "data": a.data, "standalone": {}, "delta": {}}
    t0 = time.time()
    for dt in dts:
        # standalone: the version at --standalone-step (default 200), also step 0 of the series
        for step in a.standalone_steps:
            cs = chunks(load(a.data, step, dt), dt)
            tot, raw = {}, 0
            for name, i, u in cs:
                raw += u.nbytes
                for k, v in standalone_sizes(u, dt, a.full).items():
                    tot[k] = tot.get(k, 0) + v
            res["standalone"][f"{dt}@{step}"] = {"raw": raw, "sizes": tot}
            print(f"[{time.time()-t0:5.0f}s] standalone {dt} step {step}: {raw} bytes", flush=True)
        for (ps, cs_) in a.pairs:
            P = chunks(load(a.data, ps, dt), dt)
            C = chunks(load(a.data, cs_, dt), dt)
            tot, raw, same = {}, 0, 0
            for (n1, i1, up), (n2, i2, uc) in zip(P, C):
                assert (n1, i1) == (n2, i2)
                raw += uc.nbytes
                same += int(np.count_nonzero(up == uc))
                for k, v in delta_sizes(uc, up, dt, a.full).items():
                    tot[k] = tot.get(k, 0) + v
            nel = raw // WIDTH[dt]
            res["delta"][f"{dt}:{ps}->{cs_}"] = {"raw": raw, "identical": same / nel, "sizes": tot}
            print(f"[{time.time()-t0:5.0f}s] delta {dt} {ps}->{cs_}: {100*same/nel:.1f} % identical", flush=True)
        json.dump(res, open(a.out, "w"), indent=1)
    print_sizes(res)


def print_sizes(res):
    for k, v in res["standalone"].items():
        print(f"\n## standalone {k}")
        for m, s in sorted(v["sizes"].items(), key=lambda kv: kv[1]):
            print(f"  {100*s/v['raw']:7.2f} %  {m}")
    for k, v in res["delta"].items():
        print(f"\n## delta {k} ({100*v['identical']:.1f} % identical)")
        for m, s in sorted(v["sizes"].items(), key=lambda kv: kv[1])[:40]:
            print(f"  {100*s/v['raw']:7.2f} %  {m}")


# ---------------------------------------------------------------------------------------------
# speed
# ---------------------------------------------------------------------------------------------
class Codec:
    """A complete encode/decode path for one chunk (real bytes, round-trip checked)."""

    def __init__(self, name, enc, dec):
        self.name, self.enc, self.dec = name, enc, dec


_dctx = zstd.ZstdDecompressor()


def _zenc_planes(ps, cctx):
    out = []
    for q in ps:
        b = cctx.compress(q.tobytes())
        out.append((True, b, q.size) if len(b) < q.size else (False, q.tobytes(), q.size))
    return out


def _zdec_planes(blobs):
    return [np.frombuffer(_dctx.decompress(b, max_output_size=n) if z else b, dtype=np.uint8)
            for z, b, n in blobs]


def make_codecs(dt):
    U = UINT[dt]
    cs = {}

    def add(c):
        cs[c.name] = c

    def delta_planes_zstd(tname, lvl):
        fwd, inv = DELTA[tname]
        cctx = zc(lvl)

        def enc(c, p):
            return _zenc_planes(planes(fwd(c, p)), cctx)

        def dec(blob, p):
            return inv(unplanes(_zdec_planes(blob), U), p)
        return Codec(f"delta {tname} | planes + zstd-{lvl}", enc, dec)

    def delta_planes_ans(tname, ctx):
        fwd, inv = DELTA[tname]

        def enc(c, p):
            cx = top_byte(rot1(p)) if ctx else None
            return [ans_encode(q, cx) if sampled_entropy(q) < 7.9 else (False, q.tobytes(), q.size)
                    for q in planes(fwd(c, p))]

        def dec(blob, p):
            if ctx:
                order = np.argsort(top_byte(rot1(p)), kind="stable")
            ps = []
            for b in blob:
                if isinstance(b[0], bool):
                    ps.append(np.frombuffer(b[1], dtype=np.uint8))
                    continue
                payload, tbl, models = b
                zstd.ZstdDecompressor().decompress(tbl)  # table bytes (parsed models reused)
                groups = ans_decode(payload, models, p.size)
                if ctx:
                    q = np.empty(p.size, dtype=np.uint8)
                    q[order] = np.concatenate(groups)
                else:
                    q = groups[0]
                ps.append(q)
            return inv(unplanes(ps, U), p)
        return Codec(f"delta {tname} | planes + ans {'ctx parent exp' if ctx else 'o0'}", enc, dec)

    def standalone_planes_zstd(lvl, rot):
        cctx = zc(lvl)
        f, g = STANDALONE["rot1" if rot else "id"]

        def enc(c, p):
            return _zenc_planes(planes(f(c)), cctx)

        def dec(blob, p):
            return g(unplanes(_zdec_planes(blob), U))
        return Codec(f"standalone {'rot1 ' if rot else ''}planes + zstd-{lvl}", enc, dec)

    def standalone_nshard():
        cctx = nshard_plane_cctx()

        def enc(c, p):
            out = []
            for q in planes(c):
                if sampled_entropy(q) < 7.7:
                    b = cctx.compress(q.tobytes())
                    if len(b) < q.size:
                        out.append((True, b, q.size))
                        continue
                out.append((False, q.tobytes(), q.size))
            return out

        def dec(blob, p):
            return unplanes(_zdec_planes(blob), U)
        return Codec("standalone nshard today (planes, tuned zstd-1)", enc, dec)

    def standalone_planes_ans():
        def enc(c, p):
            return [ans_encode(q) if sampled_entropy(q) < 7.7 else (False, q.tobytes(), q.size)
                    for q in planes(rot1(c))]

        def dec(blob, p):
            ps = []
            for b in blob:
                if isinstance(b[0], bool):
                    ps.append(np.frombuffer(b[1], dtype=np.uint8))
                else:
                    payload, tbl, models = b
                    zstd.ZstdDecompressor().decompress(tbl)
                    ps.append(ans_decode(payload, models, None)[0])
            return unrot1(unplanes(ps, U))
        return Codec("standalone rot1 planes + ans-o0", enc, dec)

    def z4(delta):
        z4m = z4ai_mod()
        if delta:
            return Codec("delta z4ai compress_delta",
                         lambda c, p: z4m.compress_delta(c.tobytes(), p.tobytes(), dtype=Z4_CODE[dt]),
                         lambda b, p: np.frombuffer(z4m.decompress_delta(b, p.tobytes()), dtype=U))
        return Codec("standalone z4ai compress",
                     lambda c, p: z4m.compress(c.tobytes(), dtype=Z4_CODE[dt]),
                     lambda b, p: np.frombuffer(bytes(z4m.decompress(b)), dtype=U))

    add(delta_planes_ans("osub-zz", True))
    add(delta_planes_ans("osub-zz", False))
    add(delta_planes_ans("xor", True))
    add(delta_planes_zstd("osub-zz", 1))
    add(delta_planes_zstd("xor", 1))
    add(delta_planes_zstd("xor", 3))
    add(z4(True))
    add(standalone_planes_ans())
    add(standalone_nshard())
    add(standalone_planes_zstd(1, True))
    add(z4(False))
    return cs


def blob_size(b):
    if isinstance(b, (bytes, bytearray)):
        return len(b)
    if isinstance(b, list):
        return sum(blob_size(x) for x in b)
    if isinstance(b, tuple):
        if len(b) == 3 and isinstance(b[0], (bool, np.bool_)):
            return len(b[1]) + PLANE_HDR
        payload, tbl, _ = b
        return payload.nbytes + len(tbl) + PLANE_HDR
    raise TypeError(type(b))


def openssl_time(path, reps=3):
    best = 1e9
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run(["openssl", "dgst", "-sha256", path], check=True, capture_output=True)
        best = min(best, time.perf_counter() - t)
    return best


def cmd_speed(a):
    res = {}
    for dt in a.dtypes.split(","):
        ps, cs_ = a.pairs[0]
        P = [u for _, _, u in chunks(load(a.data, ps, dt), dt)]
        C = [u for _, _, u in chunks(load(a.data, cs_, dt), dt)]
        raw = sum(u.nbytes for u in C)
        with tempfile.NamedTemporaryFile(dir="/tmp", delete=False) as f:
            for u in C:
                f.write(u.tobytes())
            path = f.name
        os.system(f"cat {path} > /dev/null")  # page cache
        t_ssl = openssl_time(path)
        t_py = min(_time(lambda: [hashlib.sha256(u.tobytes()).digest() for u in C]) for _ in range(3))
        os.unlink(path)
        r = {"raw": raw, "pair": f"{ps}->{cs_}",
             "openssl dgst -sha256 (file, incl. process start)": raw / t_ssl / 1e6,
             "sha256 per 4 MiB chunk (hashlib = OpenSSL)": raw / t_py / 1e6, "codecs": {}}
        print(f"{dt}: openssl {r['openssl dgst -sha256 (file, incl. process start)']:.0f} MB/s, "
              f"hashlib {r['sha256 per 4 MiB chunk (hashlib = OpenSSL)']:.0f} MB/s", flush=True)
        for codec in make_codecs(dt).values():
            blobs = [codec.enc(c, p) for c, p in zip(C, P)]
            for b, c, p in zip(blobs, C, P):
                assert np.array_equal(codec.dec(b, p), c), codec.name
            size = sum(blob_size(b) for b in blobs)
            te = min(_time(lambda: [codec.enc(c, p) for c, p in zip(C, P)]) for _ in range(a.reps))
            td = min(_time(lambda: [codec.dec(b, p) for b, p in zip(blobs, P)]) for _ in range(a.reps))
            r["codecs"][codec.name] = {"size_pct": 100 * size / raw, "enc_MBps": raw / te / 1e6,
                                       "dec_MBps": raw / td / 1e6}
            print(f"  {codec.name:50s} {100*size/raw:6.2f} %  enc {raw/te/1e6:7.0f} MB/s  "
                  f"dec {raw/td/1e6:7.0f} MB/s", flush=True)
        # the bare constriction kernel (Rust, called once per plane): one static model per plane
        import constriction
        q = np.concatenate([planes(DELTA["osub-zz"][0](c, p))[0] for c, p in zip(C, P)])
        hist = np.bincount(q, minlength=256)
        present = np.flatnonzero(hist)
        lut = np.zeros(256, dtype=np.int32)
        lut[present] = np.arange(present.size, dtype=np.int32)
        symbols = lut[q]
        model = constriction.stream.model.Categorical(hist[present].astype(np.float64), perfect=False)

        def kenc():
            e = constriction.stream.stack.AnsCoder()
            e.encode_reverse(symbols, model)
            return e.get_compressed()
        comp = kenc()
        te = min(_time(kenc) for _ in range(a.reps))
        td = min(_time(lambda: constriction.stream.stack.AnsCoder(comp).decode(model, symbols.size))
                 for _ in range(a.reps))
        r["constriction kernel, Msymbols/s (low plane of osub-zz, one model)"] = {
            "enc": symbols.size / te / 1e6, "dec": symbols.size / td / 1e6,
            "bits_per_symbol": 32 * comp.size / symbols.size}
        print(f"  constriction kernel: enc {symbols.size/te/1e6:.0f} Msym/s, dec {symbols.size/td/1e6:.0f} Msym/s",
              flush=True)
        res[dt] = r
        json.dump(res, open(a.out, "w"), indent=1)


def _time(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


# ---------------------------------------------------------------------------------------------
# chains
# ---------------------------------------------------------------------------------------------
def cmd_chain(a):
    """Series 0, 10, ..., 200: each version stored as a delta against its parent (a chain) and,
    for comparison, against the keyframe at step 0 (a star); then the read cost of each chain
    level: decode + apply + SHA-256 of every chunk, reconstructing through the chain."""
    steps = list(range(0, 201, 10))
    res = {}
    for dt in a.dtypes.split(","):
        codecs = make_codecs(dt)
        dcodec = codecs[a.delta_codec]
        kcodec = codecs[a.key_codec]
        series = [[u for _, _, u in chunks(load(a.data, s, dt), dt)] for s in steps]
        raw = sum(u.nbytes for u in series[0])
        kb = [kcodec.enc(u, None) for u in series[0]]
        key_size = sum(blob_size(b) + OBJ_HDR for b in kb)
        rows, chain = [], []
        for k in range(1, len(steps)):
            bc = [dcodec.enc(c, p) for c, p in zip(series[k], series[k - 1])]
            bs = [dcodec.enc(c, p) for c, p in zip(series[k], series[0])]
            chain.append(bc)
            cat = np.concatenate(series[k])
            rows.append({"step": steps[k], "depth": k,
                         "vs_parent_pct": 100 * sum(blob_size(b) + OBJ_HDR for b in bc) / raw,
                         "vs_keyframe0_pct": 100 * sum(blob_size(b) + OBJ_HDR for b in bs) / raw,
                         "identical_vs_parent": float(np.mean(cat == np.concatenate(series[k - 1]))),
                         "identical_vs_keyframe": float(np.mean(cat == np.concatenate(series[0])))})
            print(f"  step {steps[k]:3d}: vs parent {rows[-1]['vs_parent_pct']:6.2f} %  vs keyframe(0) "
                  f"{rows[-1]['vs_keyframe0_pct']:6.2f} %", flush=True)

        def read(depth, verify_all=True):
            """Check out version `depth`: keyframe, then `depth` deltas; SHA-256 of every object
            read (verify_all) or only of the result (a mismatch there would then re-check bases)."""
            cur = []
            for b in kb:
                u = kcodec.dec(b, None)
                if verify_all or depth == 0:
                    hashlib.sha256(u.tobytes()).digest()
                cur.append(u)
            for lvl, bc in enumerate(chain[:depth], start=1):
                nxt = []
                for b, p in zip(bc, cur):
                    u = dcodec.dec(b, p)
                    if verify_all or lvl == depth:
                        hashlib.sha256(u.tobytes()).digest()
                    nxt.append(u)
                cur = nxt
            return cur
        got = read(len(chain))
        for u, ref in zip(got, series[-1]):
            assert np.array_equal(u, ref)  # the reconstructed base is the true parent (lossless)
        t_depth = {d: min(_time(lambda: read(d)) for _ in range(a.reps)) for d in (0, 1, 2, 5, 10, 20)}
        t20_final = min(_time(lambda: read(20, verify_all=False)) for _ in range(a.reps))
        slope = (t_depth[20] - t_depth[0]) / 20
        slope_final = (t20_final - t_depth[0]) / 20
        res[dt] = {"raw": raw, "delta_codec": dcodec.name, "key_codec": kcodec.name,
                   "keyframe_pct": 100 * key_size / raw, "read_s_by_depth": t_depth,
                   "keyframe_read_MBps": raw / t_depth[0] / 1e6,
                   "per_level_s": slope, "per_level_MBps": raw / slope / 1e6,
                   "per_level_s_verify_result_only": slope_final,
                   "sha256_MBps": raw / min(_time(lambda: [hashlib.sha256(u.tobytes()).digest()
                                                           for u in series[0]]) for _ in range(3)) / 1e6,
                   "rows": rows}
        print(f"{dt}: keyframe {100*key_size/raw:.1f} %; checkout (decode+verify) depth 0: "
              f"{raw/t_depth[0]/1e6:.0f} MB/s; each delta level adds {slope*1e3:.1f} ms "
              f"({raw/slope/1e6:.0f} MB/s), {slope_final*1e3:.1f} ms verifying only the result; depth->s: " +
              ", ".join(f"{d}:{t:.3f}" for d, t in t_depth.items()), flush=True)
        json.dump(res, open(a.out, "w"), indent=1)


def quantized_bits(sym, ctx, precision):
    """Code length with static per-context tables quantized to `precision` bits (every present
    symbol gets >= 1; the most frequent takes the rounding slack), as a rANS with that scale needs.
    Returns (bits with quantized tables, bits with exact tables)."""
    key = ctx.astype(np.int64) * 256 + sym
    h = np.bincount(key, minlength=256 * 256).reshape(256, 256).astype(np.float64)
    qb = eb = 0.0
    M = float(1 << precision)
    for row in h:
        n = row.sum()
        if n == 0:
            continue
        pres = row > 0
        if pres.sum() == 1:
            continue
        q = np.where(pres, np.maximum(1, np.round(row * M / n)), 0)
        q[np.argmax(row)] += M - q.sum()
        qb += float(-(row[pres] * np.log2(q[pres] / M)).sum())
        eb += float(-(row[pres] * np.log2(row[pres] / n)).sum())
    return qb, eb


def cmd_precision(a):
    res = {}
    for dt in a.dtypes.split(","):
        for ps, cs_ in a.pairs:
            P = chunks(load(a.data, ps, dt), dt)
            C = chunks(load(a.data, cs_, dt), dt)
            tot = {}
            for (_, _, up), (_, _, uc) in zip(P, C):
                d = DELTA["osub-zz"][0](uc, up)
                pexp = top_byte(rot1(up))
                for q in planes(d):
                    if sampled_entropy(q) >= 7.9:
                        continue
                    for prec in (11, 12, 14, 15, 16):
                        qb, eb = quantized_bits(q, pexp, prec)
                        tot[prec] = tot.get(prec, 0.0) + qb
                        tot["exact"] = tot.get("exact", 0.0) + (eb if prec == 11 else 0)
            key = f"{dt}:{ps}->{cs_}"
            res[key] = {str(k): v / 8 for k, v in tot.items()}
            print(key, "  ".join(f"{k}-bit: +{100*(v/tot['exact']-1):.2f} %" for k, v in tot.items()
                                  if k != "exact"), flush=True)
    json.dump(res, open(a.out, "w"), indent=1)


def cmd_kernels(a):
    """Compiled rANS kernels on our delta planes, single thread: z4ai's C order-0 rANS (4-way
    interleaved, 14-bit tables, ryg_rans-style) and its order-1 rANS (one table per context byte,
    4 segments) -- the same kind of loop a Rust implementation with per-context tables runs."""
    from z4ai import rans, rans_o1
    res = {}
    for dt in a.dtypes.split(","):
        ps, cs_ = a.pairs[0]
        P = [u for _, _, u in chunks(load(a.data, ps, dt), dt)]
        C = [u for _, _, u in chunks(load(a.data, cs_, dt), dt)]
        raw = sum(u.nbytes for u in C)
        pl = [planes(DELTA["osub-zz"][0](c, p)) for c, p in zip(C, P)]
        r = {"raw": raw}
        for k in range(WIDTH[dt]):
            qs = [x[k] for x in pl]
            n = sum(q.size for q in qs)
            for name, mod in (("o0", rans), ("o1", rans_o1)):
                blobs = [mod.compress(q.tobytes()) for q in qs]
                assert all(mod.decompress(b) == q.tobytes() for b, q in zip(blobs, qs))
                te = min(_time(lambda: [mod.compress(q.tobytes()) for q in qs]) for _ in range(a.reps))
                td = min(_time(lambda: [mod.decompress(b) for b in blobs]) for _ in range(a.reps))
                r[f"plane {k} {name}"] = {"bits_per_symbol": 8 * sum(len(b) for b in blobs) / n,
                                          "enc_Msym_s": n / te / 1e6, "dec_Msym_s": n / td / 1e6}
                print(f"{dt} plane {k} rANS {name}: {8*sum(len(b) for b in blobs)/n:.3f} bits/sym, "
                      f"enc {n/te/1e6:.0f} Msym/s, dec {n/td/1e6:.0f} Msym/s", flush=True)
        res[dt] = r
    json.dump(res, open(a.out, "w"), indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["sizes", "speed", "chain", "precision", "kernels"])
    ap.add_argument("--data", default="/tmp/delta-data")
    ap.add_argument("--out", default=None)
    ap.add_argument("--dtypes", default="bf16,fp32,fp16")
    ap.add_argument("--pairs", default="190:200,200:400")
    ap.add_argument("--standalone", default="200")
    ap.add_argument("--full", action="store_true", help="also zstd 9/19/--long rows (slow)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--delta-codec", default="delta osub-zz | planes + ans ctx parent exp")
    ap.add_argument("--key-codec", default="standalone rot1 planes + ans-o0")
    a = ap.parse_args()
    a.pairs = [tuple(int(x) for x in p.split(":")) for p in a.pairs.split(",")]
    a.standalone_steps = [int(x) for x in a.standalone.split(",") if x]
    a.out = a.out or f"results-{a.cmd}.json"
    {"sizes": cmd_sizes, "speed": cmd_speed, "chain": cmd_chain, "precision": cmd_precision,
     "kernels": cmd_kernels}[a.cmd](a)


if __name__ == "__main__":
    main()
