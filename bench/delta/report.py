#!/usr/bin/env python3
"""Print the markdown tables of RESULTS.md from the results-*.json files of measure.py.

    python report.py > tables.md
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DTS = ("bf16", "fp16", "fp32")


def load(name):
    p = os.path.join(HERE, name)
    return json.load(open(p)) if os.path.exists(p) else None


def pct(v, raw):
    return 100.0 * v / raw


def delta_table(res, standalone_step="200", top=None):
    cols = [k for dt in DTS for k in res["delta"] if k.startswith(dt + ":")]
    methods = sorted({m for k in cols for m in res["delta"][k]["sizes"]})
    # the new version stored whole, for reference
    ref = {}
    for k in cols:
        dt = k.split(":")[0]
        st = res["standalone"].get(f"{dt}@{standalone_step}")
        if st:
            ref[k] = {m: pct(v, st["raw"]) for m, v in st["sizes"].items()}
    rows = []
    for m in methods:
        vals = [res["delta"][k]["sizes"].get(m) for k in cols]
        vals = [None if v is None else pct(v, res["delta"][k]["raw"]) for v, k in zip(vals, cols)]
        rows.append((m, vals))
    full = [r for r in rows if all(v is not None for v in r[1])]
    part = [r for r in rows if not all(v is not None for v in r[1])]
    full.sort(key=lambda r: sum(r[1]))
    part.sort(key=lambda r: sum(v for v in r[1] if v is not None))
    best = [min(r[1][i] for r in rows if r[1][i] is not None) for i in range(len(cols))]
    head = ["new version vs its parent"] + [
        f"{k.split(':')[0]} {k.split(':')[1]} ({100*res['delta'][k]['identical']:.0f} % same)" for k in cols]
    out = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * len(cols)]
    for label, key in (("stored whole today (nshard, planes + tuned zstd-1)", "nshard today (planes, tuned zstd-1)"),
                       ("stored whole, z4ai compress", "z4ai compress")):
        if ref:
            out.append(f"| *{label}* | " + " | ".join(f"*{ref[k].get(key, float('nan')):.2f}*" for k in cols) + " |")
    for m, vals in (full + part)[:top]:
        cells = []
        for v, b in zip(vals, best):
            if v is None:
                cells.append("–")
            elif abs(v - b) < 1e-9:
                cells.append(f"**{v:.2f}**")
            else:
                cells.append(f"{v:.2f}")
        out.append(f"| {m.replace(' | ', ': ')} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def standalone_table(res):
    cols = [k for dt in DTS for k in res["standalone"] if k.startswith(dt + "@")]
    methods = sorted({m for k in cols for m in res["standalone"][k]["sizes"]})
    rows = []
    for m in methods:
        vals = [pct(res["standalone"][k]["sizes"][m], res["standalone"][k]["raw"])
                if m in res["standalone"][k]["sizes"] else None for k in cols]
        rows.append((m, vals))
    rows.sort(key=lambda r: sum(v for v in r[1] if v is not None))
    best = [min(r[1][i] for r in rows if r[1][i] is not None) for i in range(len(cols))]
    out = ["| first version, stored on its own | " + " | ".join(
        f"{k.split('@')[0]} step {k.split('@')[1]}" for k in cols) + " |",
        "| --- |" + " ---: |" * len(cols)]
    for m, vals in rows:
        out.append(f"| {m} | " + " | ".join(
            "–" if v is None else (f"**{v:.2f}**" if abs(v - b) < 1e-9 else f"{v:.2f}")
            for v, b in zip(vals, best)) + " |")
    return "\n".join(out)


def speed_table(res):
    out = []
    for dt, r in res.items():
        out.append(f"\n{dt}, pair {r['pair']}, {r['raw']/1e6:.1f} MB: `openssl dgst -sha256` of the same "
                   f"bytes as one file {r['openssl dgst -sha256 (file, incl. process start)']:.0f} MB/s; "
                   f"SHA-256 per 4 MiB chunk (OpenSSL via hashlib) "
                   f"{r['sha256 per 4 MiB chunk (hashlib = OpenSSL)']:.0f} MB/s\n")
        out.append("| codec (single thread, Python + numpy + native coder) | size % | encode MB/s | decode MB/s |")
        out.append("| --- | ---: | ---: | ---: |")
        for name, c in r["codecs"].items():
            out.append(f"| {name.replace(' | ', ': ')} | {c['size_pct']:.2f} | {c['enc_MBps']:.0f} | "
                       f"{c['dec_MBps']:.0f} |")
        k = r.get("constriction kernel, Msymbols/s (low plane of osub-zz, one model)")
        if k:
            out.append(f"\nconstriction's rANS kernel alone (one call per plane, one static model): encode "
                       f"{k['enc']:.0f} M symbols/s, decode {k['dec']:.0f} M symbols/s "
                       f"({k['bits_per_symbol']:.2f} bits/symbol).")
    return "\n".join(out)


def chain_table(res):
    out = []
    for dt, r in res.items():
        out.append(f"\n{dt}: delta codec `{r['delta_codec']}`, keyframe codec `{r['key_codec']}` "
                   f"({r['keyframe_pct']:.2f} % of raw)\n")
        out.append("| version (step) | depth | delta vs parent % | delta vs keyframe (step 0) % | "
                   "same as parent % | same as keyframe % |")
        out.append("| ---: | ---: | ---: | ---: | ---: | ---: |")
        for row in r["rows"]:
            if row["depth"] in (1, 2, 3, 5, 10, 15, 20):
                out.append(f"| {row['step']} | {row['depth']} | {row['vs_parent_pct']:.2f} | "
                           f"{row['vs_keyframe0_pct']:.2f} | {100*row['identical_vs_parent']:.1f} | "
                           f"{100*row['identical_vs_keyframe']:.1f} |")
        t = r["read_s_by_depth"]
        out.append("\n| checkout depth (keyframe + N deltas), decode + SHA-256 of every object | " +
                   " | ".join(str(d) for d in t) + " |")
        out.append("| --- |" + " ---: |" * len(t))
        out.append(f"| seconds for {r['raw']/1e6:.1f} MB | " + " | ".join(f"{v:.3f}" for v in t.values()) + " |")
        out.append(f"| × keyframe checkout | " + " | ".join(f"{v/t['0']:.2f}" for v in t.values()) + " |")
        out.append(f"\nEach delta level adds {r['per_level_s']*1e3:.0f} ms ({r['per_level_MBps']:.0f} MB/s of "
                   f"output) verifying every object, {r['per_level_s_verify_result_only']*1e3:.0f} ms verifying "
                   f"only the result; SHA-256 alone runs at {r['sha256_MBps']:.0f} MB/s.")
    return "\n".join(out)


def main():
    s = load("results-sizes.json")
    if s:
        print("## Delta sizes (% of raw), lr 1e-5 series\n")
        print(delta_table(s))
        print("\n## Standalone sizes (% of raw)\n")
        print(standalone_table(s))
    h = load("results-sizes-lr1e-3.json")
    if h:
        print("\n## Delta sizes (% of raw), lr 1e-3 series\n")
        print(delta_table(h, top=int(sys.argv[1]) if len(sys.argv) > 1 else 25))
        print("\n## Standalone sizes, lr 1e-3 series\n")
        print(standalone_table(h))
    sp = load("results-speed.json")
    if sp:
        print("\n## Throughput\n")
        print(speed_table(sp))
    ch = load("results-chain.json")
    if ch:
        print("\n## Chains\n")
        print(chain_table(ch))
    kn = load("results-kernels.json")
    if kn:
        print("\n## Compiled rANS kernels on the osub-zz delta planes (z4ai's C rANS, one thread)\n")
        print("| dtype / plane | coder | bits/symbol | encode M symbols/s | decode M symbols/s |")
        print("| --- | --- | ---: | ---: | ---: |")
        for dt, r in kn.items():
            for k, v in r.items():
                if k == "raw":
                    continue
                pl, _, name = k.partition(" ")[2].partition(" ")
                print(f"| {dt} plane {pl} | {name} | {v['bits_per_symbol']:.3f} | {v['enc_Msym_s']:.0f} | "
                      f"{v['dec_Msym_s']:.0f} |")
    pr = load("results-precision.json")
    if pr:
        print("\n## rANS table precision (cost over exact static tables)\n")
        for k, v in pr.items():
            print(f"- {k}: " + ", ".join(
                (f"{p}-bit +{100*(b/v['exact']-1):.2f} %" if b == b else f"{p}-bit n/a (naive normalisation "
                 f"fails on ~256-symbol contexts)") for p, b in v.items() if p != "exact"))


if __name__ == "__main__":
    main()
