#!/usr/bin/env python3
"""Deterministic directories of many files for bench/datasets.sh (standard library only).

usage:
  gen_dataset.py make DIR COUNT SIZE [SEED]   write COUNT files of about SIZE bytes into DIR
  gen_dataset.py mutate DIR PCT SEED LIST     change, add and remove PCT % of DIR's files each;
                                              write the changed and added paths (relative to DIR)
                                              to LIST, one per line

Files are spread over subdirectories of at most 1 000 files. Their content cycles through three
kinds, so the set compresses the way mixed real datasets do, neither like zeros nor like noise:
  *.jsonl   JSON records (ids, labels, timestamps, floats, short texts)
  *.csv     rows of the same fields
  *.bin     "sensor/image-like" bytes: a slowly varying signal with 4 bits of noise per byte
The same arguments always write the same bytes.
"""
import os
import random
import re
import sys

WORDS = (
    "the of and to in is was for on that with as by at from his her an which are were this be had "
    "not but have one all they their there been has more when who will no if out so said what up "
    "its about into than them can only other new some could time these two may then first any my "
    "now such like our over man me even most made after also did many before must through back "
    "years where much your way well down should because each just those people how too little "
    "state good very make world still own see men work long get here between both life being under"
).split()
LABELS = ["cat", "dog", "car", "tree", "person", "bird", "boat", "plane", "horse", "truck"]
SPLITS = ["train", "train", "train", "val", "test"]
# 16 byte values the noise of a .bin file is drawn from (4 bits of entropy per byte).
NOISE = bytes.maketrans(bytes(range(256)), bytes((i % 16) for i in range(256)))


def record(rng, i):
    n = rng.randrange(6, 18)
    text = " ".join(rng.choice(WORDS) for _ in range(n))
    return (
        i,
        rng.choice(SPLITS),
        rng.choice(LABELS),
        1_700_000_000 + rng.randrange(50_000_000),
        round(rng.random(), 6),
        round(rng.gauss(0.0, 1.0), 4),
        text,
    )


def jsonl(rng, size):
    out, n, i = [], 0, 0
    while n < size:
        r = record(rng, i)
        line = (
            '{"id": %d, "split": "%s", "label": "%s", "ts": %d, "score": %s, "z": %s, '
            '"caption": "%s"}\n' % r
        )
        out.append(line)
        n += len(line)
        i += 1
    return "".join(out).encode()[:size]


def csv(rng, size):
    out = ["id,split,label,ts,score,z,caption\n"]
    n, i = len(out[0]), 0
    while n < size:
        line = '%d,%s,%s,%d,%s,%s,"%s"\n' % record(rng, i)
        out.append(line)
        n += len(line)
        i += 1
    return "".join(out).encode()[:size]


def binary(rng, size):
    # A signal whose level drifts slowly (a step every 64..4096 bytes), plus 4-bit noise drawn
    # at rng.randbytes' speed, deterministically.
    noise = rng.randbytes(size).translate(NOISE)
    out = bytearray(size)
    pos, level = 0, rng.randrange(0, 240)
    while pos < size:
        run = min(size - pos, rng.randrange(64, 4096))
        level = min(240, max(0, level + rng.randrange(-6, 7)))
        out[pos:pos + run] = noise[pos:pos + run].translate(SHIFT[level])
        pos += run
    return bytes(out)


SHIFT = [bytes(((level + i) & 0xFF) for i in range(256)) for level in range(241)]


DATA_NAME = re.compile(r"^f(\d{6})\.(?:jsonl|csv|bin)$")
KINDS = [("jsonl", jsonl), ("csv", csv), ("bin", binary)]


def name(i):
    ext = KINDS[i % 3][0]
    return os.path.join("d%03d" % (i // 1000), "f%06d.%s" % (i, ext))


def content(i, size, seed):
    rng = random.Random(seed * 1_000_003 + i)
    # Sizes vary by ±25 % around SIZE, as real files do.
    n = max(1, int(size * (0.75 + 0.5 * rng.random())))
    return KINDS[i % 3][1](rng, n)


def write(root, rel, data):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def make(root, count, size, seed):
    for i in range(count):
        write(root, name(i), content(i, size, seed))
    print('{"files": %d}' % count)


def existing(root):
    found = []
    for d, _, files in os.walk(root):
        for f in files:
            rel = os.path.relpath(os.path.join(d, f), root)
            m = DATA_NAME.match(f)
            if m:  # other files (a tool's metadata beside the data) are left alone
                found.append((int(m.group(1)), rel))
    return sorted(found)


def mutate(root, pct, seed, listing):
    files = existing(root)
    k = max(1, round(len(files) * pct / 100))
    rng = random.Random(seed)
    picked = rng.sample(files, 2 * k)
    changed, removed = picked[:k], picked[k:]
    size = sum(os.path.getsize(os.path.join(root, rel)) for _, rel in files) // len(files)
    out = []
    for i, rel in changed:
        write(root, rel, content(i, size, seed + 7))
        out.append(rel)
    for _, rel in removed:
        os.remove(os.path.join(root, rel))
    top = files[-1][0] + 1
    for i in range(top, top + k):
        write(root, name(i), content(i, size, seed + 7))
        out.append(name(i))
    with open(listing, "w") as f:
        f.write("".join(r + "\n" for r in out))
    print('{"changed": %d, "added": %d, "removed": %d}' % (k, k, k))


def main():
    a = sys.argv[1:]
    if len(a) >= 4 and a[0] == "make":
        make(a[1], int(a[2]), int(a[3]), int(a[4]) if len(a) > 4 else 1)
    elif len(a) == 5 and a[0] == "mutate":
        mutate(a[1], float(a[2]), int(a[3]), a[4])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
