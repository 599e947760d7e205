#!/usr/bin/env python3
"""Helpers for bench/deltas.sh (reverse deltas, issue 20). numpy, zstandard, z4ai 0.2.0.

  deltas.py safetensors --data D --dtype bf16 --steps 0,10,...,400 --out DIR
      one safetensors file per checkpoint of bench/delta/train.py's series, written by hand:
      8-byte LE header length, JSON header {name: {dtype, shape, data_offsets}} padded with
      spaces to a multiple of 8, then the tensors' bytes in the series' tensor order.
  deltas.py refs --data D --dtype bf16 --dir DIR --steps ... --pairs 0:10,...,200:400 --out J
      the same-run references: per step z4ai `compress` (summed over tensors) and zstd level 3
      of the whole file; per pair z4ai `compress_delta(new, parent)` (summed over tensors).
      Every z4ai frame is round-trip checked.
  deltas.py synth --out DIR --tensors 16 --elems 16777216 --versions 3 --seed 1
      v1..vN.safetensors: fp32 tensors of random normal * 0.02, each later version every weight
      of the one before times (1 + 0.004 * normal). Written tensor by tensor (a few tensors in
      memory at a time).
  deltas.py chains --objects .shard/objects --manifests M1 M2 ...
      per manifest (one version): chunks, chunks stored as deltas, longest chain of deltas from a
      chunk to an object stored whole (object headers: b"NSOB", byte 4 == 2 (format version),
      byte 5 == 3 (delta codec), base object id in bytes 16..48).
  deltas.py report --res results.tsv --work W --cmd "..." --nproc N
      the markdown report (reads W/refs-DTYPE.json and the results).
"""
import argparse
import json
import os
import statistics
import struct
import sys

import numpy as np

ST_DTYPE = {"bf16": "BF16", "fp16": "F16", "fp32": "F32"}
UINT = {"bf16": "<u2", "fp16": "<u2", "fp32": "<u4"}


# ---------------------------------------------------------------------------------------------
# safetensors
# ---------------------------------------------------------------------------------------------
def st_header(entries):
    """entries: (name, st_dtype, shape, nbytes) in file order -> the header bytes incl. length."""
    header, off = {}, 0
    for name, dt, shape, n in entries:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h


def series_tensors(data, step, dt):
    meta = json.load(open(os.path.join(data, "tensors.json")))
    d = os.path.join(data, f"step_{step:04d}", dt)
    return [(n, meta["shapes"][n], np.fromfile(os.path.join(d, n + ".bin"), dtype=UINT[dt]))
            for n in meta["order"]]


def cmd_safetensors(a):
    os.makedirs(a.out, exist_ok=True)
    for step in a.steps:
        ts = series_tensors(a.data, step, a.dtype)
        path = os.path.join(a.out, f"step_{step:04d}.safetensors")
        with open(path + ".tmp", "wb") as f:
            f.write(st_header([(n, ST_DTYPE[a.dtype], s, u.nbytes) for n, s, u in ts]))
            for _, _, u in ts:
                f.write(u.tobytes())
        os.replace(path + ".tmp", path)


# ---------------------------------------------------------------------------------------------
# references
# ---------------------------------------------------------------------------------------------
def cmd_refs(a):
    import z4ai
    import zstandard as zstd

    def z4(b):
        blob = z4ai.compress(b, dtype=a.dtype)
        assert bytes(z4ai.decompress(blob)) == b, "z4ai round trip"
        return len(blob)

    def z4d(c, p):
        blob = z4ai.compress_delta(c, p, dtype=a.dtype)
        assert bytes(z4ai.decompress_delta(blob, p)) == c, "z4ai delta round trip"
        return len(blob)

    z3 = zstd.ZstdCompressor(level=3)
    out = {"z4ai": z4ai.__version__, "compress": {}, "zstd3": {}, "file": {}, "raw": {},
           "delta": {}}
    def tensors(step):
        return [u.tobytes() for _, _, u in series_tensors(a.data, step, a.dtype)]

    for step in a.steps:
        path = os.path.join(a.dir, f"step_{step:04d}.safetensors")
        raw = open(path, "rb").read()
        ts = tensors(step)
        out["file"][step] = len(raw)
        out["raw"][step] = sum(len(t) for t in ts)
        out["zstd3"][step] = len(z3.compress(raw))
        out["compress"][step] = sum(z4(t) for t in ts)
        print(f"  refs {a.dtype} step {step}: z4ai {100 * out['compress'][step] / len(raw):.2f} %, "
              f"zstd-3 {100 * out['zstd3'][step] / len(raw):.2f} %", file=sys.stderr, flush=True)
    names = json.load(open(os.path.join(a.data, "tensors.json")))["order"]
    out["delta_t"], out["rdelta_t"] = {}, {}
    for p, c in a.pairs:
        P, C = tensors(p), tensors(c)
        fwd = [z4d(x, y) for x, y in zip(C, P)]   # the new version against its parent
        rev = [z4d(y, x) for x, y in zip(C, P)]   # the parent against the new one (nshard's way)
        out["delta"][f"{p}:{c}"] = sum(fwd)
        out["delta_t"][f"{p}:{c}"] = dict(zip(names, fwd))
        out["rdelta_t"][f"{p}:{c}"] = dict(zip(names, rev))
    json.dump(out, open(a.out, "w"), indent=1)


# ---------------------------------------------------------------------------------------------
# the 1 GiB fp32 files
# ---------------------------------------------------------------------------------------------
def cmd_synth(a):
    os.makedirs(a.out, exist_ok=True)
    n = a.elems
    rows = 1 << (int(np.log2(n)) // 2)
    shape = [rows, n // rows] if rows * (n // rows) == n else [n]
    hdr = st_header([(f"layers.{i}.weight", "F32", shape, 4 * n) for i in range(a.tensors)])
    paths = [os.path.join(a.out, f"v{k + 1}.safetensors") for k in range(a.versions)]
    files = [open(p + ".tmp", "wb") for p in paths]
    for f in files:
        f.write(hdr)
    for i in range(a.tensors):
        rng = np.random.default_rng([a.seed, i])
        w = rng.standard_normal(n, dtype=np.float32)
        w *= np.float32(0.02)
        for k, f in enumerate(files):
            if k:
                m = rng.standard_normal(n, dtype=np.float32)
                m *= np.float32(0.004)
                m += np.float32(1.0)
                w *= m
                del m
            w.astype("<f4", copy=False).tofile(f)
    for f, p in zip(files, paths):
        f.close()
        os.replace(p + ".tmp", p)


# ---------------------------------------------------------------------------------------------
# chains
# ---------------------------------------------------------------------------------------------
def cmd_chains(a):
    memo = {}

    def base_of(oid):
        p = os.path.join(a.objects, oid[:2], oid[2:])
        with open(p, "rb") as f:
            h = f.read(48)
        if len(h) == 48 and h[:4] == b"NSOB" and h[4] in (2, 3) and h[5] == 3:
            return h[16:48].hex()
        return None

    def depth(oid):
        seen = []
        cur = oid
        while cur not in memo:
            b = base_of(cur)
            if b is None:
                memo[cur] = 0
                break
            seen.append(cur)
            if len(seen) > 64:
                raise SystemExit(f"chain longer than 64 from {oid}")
            cur = b
        d = memo[cur]
        for o in reversed(seen):
            d += 1
            memo[o] = d
        return memo[oid]

    def stored(oid):
        return os.path.getsize(os.path.join(a.objects, oid[:2], oid[2:]))

    out = []
    for m in a.manifests:
        man = json.load(open(m))
        cs = [(c["offset"], c["size"], depth(c["id"]), stored(c["id"])) for c in man["chunks"]]
        # per tensor: is every chunk touching it inside it (only such chunks can be deltas), are
        # they all deltas now, and what they cost in the store
        tens = {}
        for t in man.get("tensors") or []:
            lo, hi = t["offset"], t["offset"] + t["size"]
            touch = [c for c in cs if c[0] < hi and c[0] + c[1] > lo]
            tens[t["name"]] = {"size": t["size"],
                               "own_chunks": all(lo <= c[0] and c[0] + c[1] <= hi for c in touch),
                               "all_delta": bool(touch) and all(c[2] > 0 for c in touch),
                               "stored": sum(c[3] for c in touch)}
        out.append({"manifest": m, "chunks": len(cs),
                    "delta_chunks": sum(1 for c in cs if c[2]),
                    "delta_raw": sum(c[1] for c in cs if c[2]),
                    "delta_stored": sum(c[3] for c in cs if c[2]),
                    "stored": sum(c[3] for c in cs),
                    "depth": max((c[2] for c in cs), default=0), "tensors": tens})
    json.dump(out, sys.stdout)


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
def cmd_report(a):
    R = {}
    for line in open(a.res):
        k, _, v = line.rstrip("\n").partition("\t")
        R[k] = v

    def f(k):
        return float(R[k])

    def has(k):
        return k in R

    def pct(x, ref):
        return f"{100 * x / ref:.2f} %"

    def mib(x):
        return f"{x / 2**20:.1f} MiB"

    def x(a_, b_, digits=2):
        return f"{a_ / b_:.{digits}f}×"

    dtypes = R["dtypes"].split()
    steps = [int(s) for s in R["steps"].split()]
    L = []
    p = L.append
    p("# Reverse deltas (issue 20): store size, commit and checkout cost")
    p("")
    p(f"Produced by `bench/deltas.sh` (one run; every ratio is against a reference measured in the"
      f" same run). Command: `{a.cmd}`. Machine: nproc {a.nproc}, {R.get('machine', '?')}. "
      f"nshard: `{R.get('nshard_version', '?')}` ({R.get('git', '?')}). z4ai "
      f"{R.get('z4ai', '?')}. Run time {float(R.get('runtime', 'nan')) / 60:.1f} min.")
    p("")
    p("Series: bench/delta/train.py (AdamW MLP, 7.61 M parameters, lr 1e-5 phase), checkpoints at"
      " steps 0, 10, …, 200 (21 versions) and 400, each written as a safetensors file; committed in"
      " order into a fresh repository (default config unless a row says otherwise). \"growth\" = the"
      " bytes of the files under `.shard/objects` after the commit minus before (chunk objects, the"
      " re-encoded previous version and the manifest object). References: z4ai 0.2.0"
      " `compress(tensor, dtype)` and `compress_delta(new, parent, dtype)` summed over the tensors"
      " (whole tensors, default threads), `zstd -3` = zstd level 3 of the whole file"
      " (python-zstandard, same libzstd). Times: wall seconds, best of"
      f" {R['reps']} unless noted, files in the page cache; `sync` is inside every timed"
      " checkout and cp.")
    p("")

    # --- sizes
    p("## Sizes (default `delta_depth`, 21 versions 10 steps apart)")
    p("")
    p("| | " + " | ".join(dtypes) + " |")
    p("| --- |" + " ---: |" * len(dtypes))
    rows = {k: [] for k in ("size", "first", "grow_mean", "grow_med", "d_mean",
                            "d_med", "z3", "total", "total_ref", "total_off", "pulled", "far", "far_z4",
                            "far_z3", "cover", "codec", "never", "check")}
    for dt in dtypes:
        ref = json.load(open(os.path.join(a.work, f"refs-{dt}.json")))
        size = f(f"{dt}.size")
        n = len(steps)
        grow = [f(f"{dt}.s.{i}.growth") for i in range(n)]
        first = grow[0]
        z4_first = ref["compress"][str(steps[0])]
        later = grow[1:]
        dz = [ref["delta"][f"{steps[i - 1]}:{steps[i]}"] for i in range(1, n)]
        z3 = [ref["zstd3"][str(steps[i])] for i in range(1, n)]
        total = f(f"{dt}.s.total")
        z4_total = sum(ref["compress"][str(s)] for s in steps)
        rows["size"].append(f"{mib(size)} ({int(size)} B)")
        rows["first"].append(f"{pct(first, size)} vs {pct(z4_first, size)}: **{x(first, z4_first, 3)}**")
        gm, gd = statistics.mean(later), statistics.median(later)
        dm, dd = statistics.mean(dz), statistics.median(dz)
        rows["grow_mean"].append(f"{pct(gm, size)} vs {pct(dm, size)}: **{x(gm, dm)}**")
        rows["grow_med"].append(f"{pct(gd, size)} vs {pct(dd, size)}: **{x(gd, dd)}**")
        rows["d_mean"].append(f"{pct(min(later), size)} … {pct(max(later), size)}")
        rows["d_med"].append(f"{pct(min(dz), size)} … {pct(max(dz), size)}")
        z3m = statistics.mean(z3)
        rows["z3"].append(f"{pct(gm, size)} vs {pct(z3m, size)}: **{x(gm, z3m)}**")
        rows["total"].append(f"{mib(total)} = {pct(total, n * size)} of {n} files")
        rows["total_ref"].append(f"{mib(total)} vs {mib(z4_total)}: **{x(total, z4_total)}**")
        if has(f"{dt}.pulled.total"):
            pt = f(f"{dt}.pulled.total")
            rows["pulled"].append(f"{mib(pt)} vs {mib(total)}: **{x(pt, total)}** "
                                  f"({int(f(f'{dt}.pulled.queued'))} versions queued, repack "
                                  f"{f(f'{dt}.pulled.repack'):.2f} s)")
        else:
            rows["pulled"].append("—")
        if has(f"{dt}.d.off.total"):
            off = f(f"{dt}.d.off.total")
            rows["total_off"].append(f"{mib(total)} vs {mib(off)}: **{x(total, off)}**")
        else:
            rows["total_off"].append("—")
        fg = f(f"{dt}.far.growth")
        fz = ref["delta"][f"{R['far_from']}:{R['far_to']}"]
        fz3 = ref["zstd3"][str(R["far_to"])]
        rows["far"].append(f"{pct(fg, size)}")
        rows["far_z4"].append(f"{pct(fg, size)} vs {pct(fz, size)}: **{x(fg, fz)}**")
        rows["far_z3"].append(f"{pct(fg, size)} vs {pct(fz3, size)}: **{x(fg, fz3)}**")
        far_pair = f"{R['far_from']}:{R['far_to']}"
        far_rev = sum(ref["rdelta_t"][far_pair].values())
        rows["far_z4"][-1] += (f" (reverse, `compress_delta({R['far_from']}, {R['far_to']})`:"
                               f" {pct(far_rev, size)})")
        ch = json.load(open(os.path.join(a.work, f"chains-{dt}-s.json")))
        olds = [i for i in range(n) if ch[i]["depth"] > 0]
        cover = [ch[i]["delta_raw"] / size for i in olds]
        rows["cover"].append(f"{100 * statistics.median(cover):.2f} % ({100 * min(cover):.2f} … "
                             f"{100 * max(cover):.2f} %, {len(olds)} versions)" if olds else "—")
        ns = nz = nr = 0
        for i in olds:
            if i + 1 >= n:
                continue
            rt = ref["rdelta_t"][f"{steps[i]}:{steps[i + 1]}"]
            for name, t in ch[i]["tensors"].items():
                if t["own_chunks"] and t["all_delta"]:
                    ns += t["stored"]
                    nz += rt[name]
                    nr += t["size"]
        rows["codec"].append(f"{pct(ns, nr)} vs {pct(nz, nr)}: **{x(ns, nz)}**" if nr else "—")
        never = [(k, t["size"]) for k, t in ch[-1]["tensors"].items() if not t["own_chunks"]]
        nb = sum(v for _, v in never)
        rows["never"].append(f"{len(never)} of {len(ch[-1]['tensors'])} tensors, "
                             f"{pct(nb, size)} of the file ({', '.join(k for k, _ in never)})")
        diffs = [f(f"{dt}.s.{i}.growth") - f(f"{dt}.s.{i}.json_net") for i in range(1, n)]
        rows["check"].append(f"{int(min(diffs))} … {int(max(diffs))} B")
    label = {
        "size": "file size",
        "first": "first version stored (% of file) vs z4ai `compress`",
        "grow_mean": "growth per new version, mean of 20 (% of file) vs z4ai `compress_delta`, mean",
        "grow_med": "growth per new version, median vs z4ai `compress_delta`, median",
        "d_mean": "growth per new version, min … max",
        "d_med": "z4ai `compress_delta` per version, min … max",
        "z3": "growth per new version, mean vs `zstd -3` of the new file, mean",
        "total": "store after 21 versions",
        "total_ref": "store after 21 versions vs Σ z4ai `compress` of the 21 versions",
        "total_off": "store after 21 versions vs the same with `delta = false`",
        "pulled": "a fresh clone's store after `pull --all-versions` from a directory remote and"
                  " its `nshard repack` vs the committer's store",
        "far": f"far apart: growth of {R['far_to']} on top of {R['far_from']} (% of file)",
        "far_z4": f"far apart vs z4ai `compress_delta({R['far_to']}, {R['far_from']})`",
        "far_z3": f"far apart vs `zstd -3` of step {R['far_to']}",
        "cover": "share of an older version's bytes stored as deltas (median over the versions"
                 " that have deltas; the rest: chunks spanning several tensors, the header)",
        "codec": "its delta objects vs z4ai `compress_delta(older, newer)` of the same tensors (tensors"
                 " whose chunks are all deltas, Σ over the older versions, % of their raw bytes)",
        "never": "tensors sharing a chunk with another tensor (never delta-encoded)",
        "check": "growth − (stored_bytes + delta_bytes_after − delta_bytes_before) from `commit --json` and the repack after it (manifest object etc.)",
    }
    for k, v in rows.items():
        p(f"| {label[k]} | " + " | ".join(v) + " |")
    p("")

    # --- commit time
    ta = int(R["time_at"])
    p("## Commit time")
    p("")
    p(f"A new version (step {steps[ta]}) committed on top of steps {steps[0]} … {steps[ta - 1]}"
      " (copies of one repository), vs `openssl dgst -sha256` of the same file. By default commit"
      " returns once the new version is stored and a background `nshard repack` re-encodes the"
      " previous one; the bench then runs `nshard repack` (it waits for the background one) and"
      " times it apart. Also: `delta_background = false` (commit re-encodes before returning) and"
      " `delta = false` (nothing re-encoded). Best of the runs. Series: every commit of the"
      " 21-version run, one run each (the repack after each commit not included).")
    p("")
    p("| | " + " | ".join(dtypes) + " |")
    p("| --- |" + " ---: |" * len(dtypes))
    rows = {k: [] for k in ("sha", "on", "rp", "sync", "off", "onoff", "speed", "series")}
    for dt in dtypes:
        sha = f(f"{dt}.sha")
        c, rp, cs, c0 = (f(f"{dt}.commit"), f(f"{dt}.repack"), f(f"{dt}.commit_sync"),
                         f(f"{dt}.commit_off"))
        rows["sha"].append(f"{sha:.3f} s ({f(f'{dt}.size') / sha / 1e6:.0f} MB/s)")
        rows["on"].append(f"{c:.3f} s: **{x(c, sha)}**")
        rows["rp"].append(f"{rp:.3f} s: **{x(rp, sha)}**")
        rows["sync"].append(f"{cs:.3f} s: **{x(cs, sha)}**")
        rows["off"].append(f"{c0:.3f} s: **{x(c0, sha)}**")
        rows["onoff"].append(f"**{x(c, c0)}**")
        ch = json.load(open(os.path.join(a.work, f"chains-{dt}-s.json")))
        raw = ch[ta - 1]["delta_raw"]
        rows["speed"].append(f"{raw / 2**20:.1f} MiB in {rp:.3f} s: {raw / max(rp, 1e-9) / 1e6:.0f} MB/s")
        ts = [f(f"{dt}.s.{i}.secs") for i in range(1, len(steps))]
        rows["series"].append(f"{statistics.median(ts):.3f} s ({min(ts):.3f} … {max(ts):.3f}): "
                              f"**{x(statistics.median(ts), sha)}**")
    for k, label in (("sha", "`openssl dgst -sha256`"),
                     ("on", "commit (default) vs sha256"),
                     ("rp", "the background re-encoding (`nshard repack` after it) vs sha256"),
                     ("sync", "commit with `delta_background = false` vs sha256"),
                     ("off", "commit with `delta = false` vs sha256"),
                     ("onoff", "commit default vs `delta = false`"),
                     ("speed", "re-encoding the previous version: its delta chunks' raw bytes / repack time"),
                     ("series", "series: median commit of versions 2…21 vs sha256")):
        p(f"| {label} | " + " | ".join(rows[k]) + " |")
    p("")

    # --- checkout
    p("## Checkout time (default `delta_depth`, after the 21 versions)")
    p("")
    p("Work file removed first, `nshard checkout FILE --version ID --force` then `sync`; the deepest"
      " version is the one with the longest chain of deltas (read from the object headers;"
      " the newest of those when several tie). Reference: `cp FILE x && sync` of the same file.")
    p("")
    p("| | " + " | ".join(dtypes) + " |")
    p("| --- |" + " ---: |" * len(dtypes))
    r = {k: [] for k in ("cp", "new", "deep", "ratio", "level", "map")}
    for dt in dtypes:
        cp_, nw, dp = f(f"{dt}.cp"), f(f"{dt}.co.new"), f(f"{dt}.co.deep")
        r["cp"].append(f"{cp_:.3f} s")
        r["new"].append(f"{nw:.3f} s: **{x(nw, cp_)}** cp")
        r["deep"].append(f"step {R[f'{dt}.deep.step']} (depth {R[f'{dt}.deep.depth']}): "
                         f"{dp:.3f} s: **{x(dp, cp_)}** cp")
        r["ratio"].append(f"**{x(dp, nw)}**")
        dep = int(R[f"{dt}.deep.depth"])
        lvl = (dp - nw) / dep if dep else float("nan")
        r["level"].append(f"{1000 * lvl:.0f} ms = {x(lvl, nw)} newest, "
                          f"{f(f'{dt}.size') / lvl / 1e6:.0f} MB/s" if dep and lvl > 0 else "—")
        r["map"].append(R[f"{dt}.depths"])
    p("| `cp FILE x && sync` | " + " | ".join(r["cp"]) + " |")
    p("| newest version (stored whole) | " + " | ".join(r["new"]) + " |")
    p("| deepest version | " + " | ".join(r["deep"]) + " |")
    p("| deepest / newest | " + " | ".join(r["ratio"]) + " |")
    p("| each delta level: (deepest − newest) / depth | " + " | ".join(r["level"]) + " |")
    p("| chain depth of versions 1…21 (oldest first) | " + " | ".join(r["map"]) + " |")
    p("")

    # --- sweep
    depths = R["depths"].split()
    p("## `delta_depth` sweep (21 versions, fresh repository per row)")
    p("")
    p(f"Store = files under `.shard/objects` after the 21 commits, as % of the 21 raw files and vs"
      f" Σ z4ai `compress` of the 21 versions. Checkout: deepest version vs newest, best of"
      f" {R['sweep_reps']}.")
    p("")
    hdr = "| delta_depth |"
    sep = "| --- |"
    for dt in dtypes:
        hdr += f" {dt} store | {dt} × z4ai | {dt} deepest (depth) | {dt} deepest / newest checkout |"
        sep += " ---: | ---: | ---: | ---: |"
    p(hdr)
    p(sep)
    for d in depths:
        line = f"| {'off (`delta = false`)' if d == 'off' else d} |"
        for dt in dtypes:
            ref = json.load(open(os.path.join(a.work, f"refs-{dt}.json")))
            z4_total = sum(ref["compress"][str(s)] for s in steps)
            size = f(f"{dt}.size")
            t = f(f"{dt}.d.{d}.total")
            nw, dp = f(f"{dt}.d.{d}.co.new"), f(f"{dt}.d.{d}.co.deep")
            line += (f" {mib(t)} ({pct(t, len(steps) * size)}) | {x(t, z4_total)} |"
                     f" step {R[f'{dt}.d.{d}.deep.step']} ({R[f'{dt}.d.{d}.deep.depth']}) |"
                     f" {x(dp, nw)} ({dp:.3f} / {nw:.3f} s) |")
        p(line)
    p("")

    # --- big
    if has("big.size"):
        size = f("big.size")
        sha = f("big.sha")
        cp_ = f("big.cp")
        p(f"## Peak memory and time on a {size / 2**30:.2f} GiB fp32 safetensors")
        p("")
        p(f"{R['big.desc']}. One run each, `/usr/bin/time -v` \"Maximum resident set size\"."
          f" `openssl dgst -sha256` {sha:.2f} s, `cp FILE x && sync` {cp_:.2f} s (best of"
          f" {R['reps']}).")
        p("")
        p("| operation | peak RSS | RSS / file | wall | vs reference | deltas (commit --json; the background run's log) |")
        p("| --- | ---: | ---: | ---: | ---: | --- |")
        for key, name, refn, refv in (
                ("big.c1", "commit v1 (first version)", "sha256", sha),
                ("big.c2", "commit v2 (default: v1 queued, re-encoded in the background)",
                 "sha256", sha),
                ("big.r2", "`nshard repack` after it (waits for the background run; its RSS is"
                 " the waiting process's)", "sha256", sha),
                ("big.c3", "commit v3 with `delta_background = false` (v2 re-encoded as deltas"
                 " before it returns)", "sha256", sha),
                ("big.co_new", "checkout v3 (newest, whole)", "cp", cp_),
                ("big.co_deep", f"checkout v1 (deepest, depth {R.get('big.deep.depth', '?')})",
                 "cp", cp_)):
            rss = f(key + ".rss") * 1024
            t = f(key + ".secs")
            dl = R.get(key + ".deltas", "")
            p(f"| {name} | {rss / 2**20:.0f} MiB | {rss / size:.2f}× | {t:.2f} s |"
              f" **{x(t, refv)}** {refn} | {dl} |")
        p("")

    # --- per version
    p("## Per version (default `delta_depth`)")
    p("")
    hdr = "| step |"
    sep = "| ---: |"
    for dt in dtypes:
        hdr += (f" {dt} depth | {dt} growth at commit | {dt} stored now (`log`) |"
                f" {dt} z4ai delta | {dt} commit s |")
        sep += " ---: | ---: | ---: | ---: | ---: |"
    p(hdr)
    p(sep)
    for i, s in enumerate(steps):
        line = f"| {s} |"
        for dt in dtypes:
            ref = json.load(open(os.path.join(a.work, f"refs-{dt}.json")))
            size = f(f"{dt}.size")
            dz = ref["delta"].get(f"{steps[i - 1]}:{s}") if i else None
            line += (f" {R[f'{dt}.s.{i}.depth']} | {pct(f(f'{dt}.s.{i}.growth'), size)} |"
                     f" {pct(f(f'{dt}.s.{i}.log'), size)} |"
                     f" {pct(dz, size) if dz else '—'} | {f(f'{dt}.s.{i}.secs'):.3f} |")
        p(line)
    p("")
    p("\"growth at commit\" includes the previous version's re-encoding (its standalone bytes"
      " replaced by its delta); \"stored now\" is what `nshard log --json` reports for the version"
      " after all 21 commits. The z4ai column is the forward delta of the step against the one"
      " before; nshard stores the reverse (the older version against the newer).")
    text = "\n".join(L) + "\n"
    sys.stdout.write(text)
    if a.out:
        open(a.out, "w").write(text)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="sub", required=True)
    s = sub.add_parser("safetensors")
    s.add_argument("--data", required=True)
    s.add_argument("--dtype", required=True)
    s.add_argument("--steps", required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("refs")
    s.add_argument("--data", required=True)
    s.add_argument("--dtype", required=True)
    s.add_argument("--dir", required=True)
    s.add_argument("--steps", required=True)
    s.add_argument("--pairs", required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("synth")
    s.add_argument("--out", required=True)
    s.add_argument("--tensors", type=int, default=16)
    s.add_argument("--elems", type=int, default=16 << 20)
    s.add_argument("--versions", type=int, default=3)
    s.add_argument("--seed", type=int, default=1)
    s = sub.add_parser("chains")
    s.add_argument("--objects", required=True)
    s.add_argument("--manifests", nargs="+", required=True)
    s = sub.add_parser("report")
    s.add_argument("--res", required=True)
    s.add_argument("--work", required=True)
    s.add_argument("--cmd", required=True)
    s.add_argument("--nproc", required=True)
    s.add_argument("--out")
    a = ap.parse_args()
    if hasattr(a, "steps") and isinstance(a.steps, str):
        a.steps = [int(x) for x in a.steps.replace(",", " ").split()]
    if hasattr(a, "pairs") and isinstance(a.pairs, str):
        a.pairs = [tuple(int(v) for v in q.split(":")) for q in a.pairs.replace(",", " ").split()]
    {"safetensors": cmd_safetensors, "refs": cmd_refs, "synth": cmd_synth, "chains": cmd_chains,
     "report": cmd_report}[a.sub](a)


if __name__ == "__main__":
    main()
