#!/usr/bin/env bash
# Issue 6 benchmark: storage and commit speed of each chunking/codec choice on deterministic
# checkpoint and dataset histories (nshard-gen), against `openssl dgst -sha256` in the same run.
#
#   bench/formats.sh                          # 1 GiB checkpoints in bf16 and fp32, 256 MiB datasets
#   SIZE=256MiB DSIZE=64MiB bench/formats.sh  # quicker
#   DTYPES=bf16 bench/formats.sh              # one dtype
#   FORMATS="pth gguf" DATASET_FORMATS= bench/formats.sh   # only the PyTorch and GGUF rows
#
# FORMATS (default "safetensors pth gguf"): the model files. safetensors comes from nshard-gen;
# pth (a PyTorch zip checkpoint laid out as torch.save writes it) and gguf (written by gguf-py) are
# the same checkpoint and each of its versions rewritten by bench/convert_model.py with exactly the
# same tensor bytes, so the changed tensors' zstd size is the same reference. They are committed
# with FORMAT_CONFIGS (default "blocks cdc": format-aware, and plain CDC for contrast) and the
# histories FORMAT_KINDS (default last-layers:2 low-rank:q,v metadata; `metadata` edits the
# header: safetensors __metadata__, the pickle's metadata dict, GGUF key/values). The Python
# writers run in a virtual environment under the target directory (gguf, numpy from PyPI).
#
# Choices committed for real, selected through the temp repo's `.shard/config.toml` `[chunking]`:
#   cdc           FastCDC 1/4/16 MiB, layout none: plain CDC + zstd
#   fixed         fixed 4 MiB blocks, layout none: + zstd
#   tensor        FastCDC 1/4/16 MiB, layout tensor-aligned: + byte grouping (the default before
#                 tensor blocks)
#   blocks        FastCDC 1/4/16 MiB, layout tensor-blocks: 4 MiB blocks inside tensors, CDC for
#                 everything else, + byte grouping (the default)
#   tensor-fixed  fixed 4 MiB inside tensors and in every other file, tensor-aligned (not run by
#                 default: blocks stores the same on models and keeps CDC for other files)
# and two that config.toml cannot express, simulated with `nshard-gen store-sim` (same planner,
# chunker and encoder, nothing written, no timing):
#   cdc+bg        plain CDC, every chunk byte-grouped by the file's main dtype
#   tensor+zstd   tensor-aligned CDC, plain zstd (no byte grouping)
#
# For each history v1 → v2: "push" is what v2 adds to a store that holds v1: the bytes of its new
# chunk objects (object file sizes, as `nshard push` sends them to a remote holding v1, without the
# small manifest object and without directory entries, counted the same way for the real and the
# simulated rows); "×ref" divides it
# by the changed tensors' (or rows') bytes compressed with zstd -1 (nshard-gen's changed_zstd_bytes);
# "reuse" is the share of v2's bytes found in existing chunks. Commit times are wall seconds (v1:
# best of 3 commits into a fresh repository; v2: one run) divided by the best of 3
# `openssl dgst -sha256` runs on the same file; peak RSS is the largest of the v1 commits.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZE=${SIZE:-1GiB}
DSIZE=${DSIZE:-256MiB}
DTYPES=${DTYPES:-bf16 fp32}
KINDS=${KINDS:-tensors:5% last-layers:2 low-rank:q,v metadata add-tensor all-slight}
CONFIGS=${CONFIGS:-cdc fixed tensor blocks}
FORMATS=${FORMATS:-safetensors pth gguf}
FORMAT_CONFIGS=${FORMAT_CONFIGS:-blocks cdc}
FORMAT_KINDS=${FORMAT_KINDS:-last-layers:2 low-rank:q,v metadata}
DATASET_FORMATS=${DATASET_FORMATS-csv jsonl}
cd "$ROOT"
cargo build --release -q -p nshard -p nshard-bench
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
NSHARD="$TARGET/release/nshard"
GEN="$TARGET/release/nshard-gen"
PY=python3
if [[ " $FORMATS " == *" gguf "* ]]; then
  PY="$TARGET/bench-venv/bin/python"
  if ! "$PY" -c "import gguf, numpy" 2>/dev/null; then
    [ -x "$PY" ] || python3 -m venv "$TARGET/bench-venv"
    "$PY" -m pip install -q gguf numpy
  fi
fi
CONVERT=""   # pth or gguf while those rows run: v2 is mutated from SRC_V1 and converted
SRC_V1=""
WORK=$(mktemp -d "${TMPDIR:-/tmp}/nshard-bench-formats.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
RES="$WORK/results.tsv"   # dtype  history  config  field  value
: >"$RES"
rec() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RES"; }

config_toml() {
  local algo layout
  case $1 in
    cdc) algo=cdc layout=none ;;
    fixed) algo=fixed layout=none ;;
    tensor) algo=cdc layout=tensor-aligned ;;
    blocks) algo=cdc layout=tensor-blocks ;;
    tensor-fixed) algo=fixed layout=tensor-aligned ;;
  esac
  echo 'track = []'
  echo '[chunking]'
  if [ "$algo" = cdc ]; then
    printf 'algorithm = "fastcdc-2020"\nmin_size = 1048576\navg_size = 4194304\nmax_size = 16777216\n'
  else
    printf 'algorithm = "fixed"\nsize = 4194304\n'
  fi
  echo "layout = \"$layout\""
}

# timed NAME CMD... : runs CMD (stdout to $WORK/out), wall seconds and peak RSS into T / M.
timed() {
  sync
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/stderr" || {
    cat "$WORK/stderr" >&2; echo "failed: $*" >&2; exit 1; }
  read -r T M < <(tail -n 1 "$WORK/time")
}
best_sha() {
  local best="" f=$1
  cat "$f" >/dev/null
  for _ in 1 2 3; do
    timed openssl dgst -sha256 "$f"
    if [ -z "$best" ] || awk "BEGIN{exit !($T < $best)}"; then best=$T; fi
  done
  SHA=$best
}
# objects: bytes of the chunk objects in the store, counted as the simulated rows count them (file
# sizes only: no directory entries, no manifest objects). chunk_objects FILE subtracts the
# manifest object of FILE's current manifest from the total.
object_files() { find .shard/objects -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }
manifest_object() {
  local id; id=$(sha256sum "$1.shard.json" | cut -c1-64)
  stat -c %s ".shard/objects/${id:0:2}/${id:2}"
}
chunk_objects() { echo $(($(object_files) - $(manifest_object "$1"))); }

# Disk stays small: v1 is committed once per choice into a template repository; each history is
# committed into a hard-link clone of it (nshard only ever replaces files by rename, so the
# template is never modified), measured, and deleted; each v2 is generated when needed.

# gen_v2 DTYPE HISTORY SEED V1 OUT : writes v2, records its reference sizes.
gen_v2() {
  if [ -n "$CONVERT" ]; then
    "$GEN" mutate --kind "$2" --from "$SRC_V1" --seed "$3" --out "$5.st" >"$WORK/g"
    "$PY" "$ROOT/bench/convert_model.py" "$CONVERT" "$5.st" "$5"
    rm -f "$5.st"
  else
    "$GEN" mutate --kind "$2" --from "$4" --seed "$3" --out "$5" >"$WORK/g"
  fi
  rec "$1" "$2" - ref "$(jq .changed_zstd_bytes "$WORK/g")"
  rec "$1" "$2" - changed "$(jq .changed_bytes "$WORK/g")"
}

# sim_one DTYPE NAME V1 V2 ARGS... : a store-sim row (the push excludes the small manifest object).
sim_one() {
  local dtype=$1 cfg=$2 v1=$3 v2=$4 h=$5; shift 5
  "$GEN" store-sim "$@" "$v1" "$v2" >"$WORK/sim"
  rec "$dtype" v1 "$cfg" stored "$(head -n 1 "$WORK/sim" | jq .stored_added)"
  local line; line=$(tail -n 1 "$WORK/sim")
  rec "$dtype" "$h" "$cfg" push "$(jq .stored_added <<<"$line")"
  rec "$dtype" "$h" "$cfg" new_raw "$(jq .new_raw <<<"$line")"
  rec "$dtype" "$h" "$cfg" size "$(jq .size <<<"$line")"
}

# run_choice DTYPE CONFIG NAME V1 SIMS HISTORIES... : commits V1 with CONFIG, then each history
# on top of it. SIMS=1 also runs the simulated choices on each (v1, v2) pair.
run_choice() {
  local dtype=$1 cfg=$2 name=$3 v1=$4 sims=$5; shift 5
  local tpl="$WORK/template" repo="$WORK/repo" v2="$WORK/v2" seed=2 h best="" rss=0
  # v1 into a fresh repository, 3 times (the machine is shared): the best time, the largest RSS.
  for _ in 1 2 3; do
    cd "$WORK"; rm -rf "$tpl"; mkdir "$tpl"; cd "$tpl"
    "$NSHARD" init -q >/dev/null
    config_toml "$cfg" >.shard/config.toml
    ln -f "$v1" "$name"
    "$NSHARD" track "$name" >/dev/null
    timed "$NSHARD" commit -q -m v1
    if [ -z "$best" ] || awk "BEGIN{exit !($T < $best)}"; then best=$T; fi
    if [ "$M" -gt "$rss" ]; then rss=$M; fi
  done
  rec "$dtype" v1 "$cfg" stored "$(chunk_objects "$name")"
  rec "$dtype" v1 "$cfg" secs "$best"
  rec "$dtype" v1 "$cfg" rss "$rss"
  for h in "$@"; do
    gen_v2 "$dtype" "$h" $seed "$v1" "$v2"
    seed=$((seed + 1))
    rm -rf "$repo"; cp -al "$tpl" "$repo"; cd "$repo"
    local before; before=$(object_files)
    ln -f "$v2" "$name"
    timed "$NSHARD" commit --json -m "$h"
    # The re-encoding of v1 as deltas that commit left to the background, untimed (the store
    # must not change while it is measured).
    "$NSHARD" repack -q >/dev/null
    # v2's manifest object is left out, as in the simulated rows.
    rec "$dtype" "$h" "$cfg" push $(($(object_files) - $(manifest_object "$name") - before))
    rec "$dtype" "$h" "$cfg" new_raw "$(jq '.[0].new_bytes' "$WORK/out")"
    rec "$dtype" "$h" "$cfg" size "$(jq '.[0].size' "$WORK/out")"
    rec "$dtype" "$h" "$cfg" secs "$T"
    cd "$WORK"; rm -rf "$repo"
    if [ "$sims" = 1 ]; then
      sim_one "$dtype" cdc+bg "$v1" "$v2" "$h" --codec file-dtype
      sim_one "$dtype" tensor+zstd "$v1" "$v2" "$h" --tensor-aligned --codec zstd
    fi
    rm -f "$v2"
  done
  cd "$WORK"; rm -rf "$tpl"
}

for dtype in $DTYPES; do
  echo "[$dtype] generating $SIZE v1" >&2
  "$GEN" model --size "$SIZE" --dtype "$dtype" --seed 1 --out "$WORK/v1" >"$WORK/g"
  if [[ " $FORMATS " == *" safetensors "* ]]; then
    rec "$dtype" v1 - bytes "$(jq .bytes "$WORK/g")"
    best_sha "$WORK/v1"; rec "$dtype" v1 - sha "$SHA"
    sims=1
    for cfg in $CONFIGS; do
      echo "[$dtype] $cfg: committing v1 and its histories" >&2
      # shellcheck disable=SC2086
      run_choice "$dtype" "$cfg" model.safetensors "$WORK/v1" $sims $KINDS
      sims=0
    done
  fi
  for fmt in pth gguf; do
    [[ " $FORMATS " == *" $fmt "* ]] || continue
    echo "[$dtype.$fmt] converting v1" >&2
    "$PY" "$ROOT/bench/convert_model.py" "$fmt" "$WORK/v1" "$WORK/v1.$fmt"
    rec "$dtype.$fmt" v1 - bytes "$(stat -c %s "$WORK/v1.$fmt")"
    best_sha "$WORK/v1.$fmt"; rec "$dtype.$fmt" v1 - sha "$SHA"
    CONVERT=$fmt SRC_V1="$WORK/v1"
    for cfg in $FORMAT_CONFIGS; do
      echo "[$dtype.$fmt] $cfg: committing v1 and its histories" >&2
      # shellcheck disable=SC2086
      run_choice "$dtype.$fmt" "$cfg" "model.$fmt" "$WORK/v1.$fmt" 0 $FORMAT_KINDS
    done
    CONVERT="" SRC_V1=""
    rm -f "$WORK/v1.$fmt"
  done
  rm -f "$WORK/v1"
done

for fmt in $DATASET_FORMATS; do
  echo "[$fmt] generating $DSIZE dataset" >&2
  "$GEN" dataset --size "$DSIZE" --format "$fmt" --seed 1 --out "$WORK/v1" >"$WORK/g"
  rec "$fmt" v1 - bytes "$(jq .bytes "$WORK/g")"
  best_sha "$WORK/v1"; rec "$fmt" v1 - sha "$SHA"
  for cfg in cdc fixed; do
    echo "[$fmt] $cfg: committing v1 and its histories" >&2
    run_choice "$fmt" "$cfg" "data.$fmt" "$WORK/v1" 0 append:10% insert:1%
  done
  rm -f "$WORK/v1"
done

cp "$RES" "${RESULTS:-/dev/null}" 2>/dev/null || true
# shellcheck disable=SC2086
ALL_CONFIGS=$(printf "%s\n" $CONFIGS $FORMAT_CONFIGS | awk '!seen[$0]++' | xargs)
awk -F'\t' -v sims="cdc+bg tensor+zstd" -v configs="$ALL_CONFIGS" '
  { v[$1 SUBSEP $2 SUBSEP $3 SUBSEP $4] = $5
    if (!($1 in seen_d)) { seen_d[$1] = 1; ds[++nd] = $1 }
    if ($2 != "v1" && !(($1, $2) in seen_h)) { seen_h[$1, $2] = 1; hs[$1, ++nh[$1]] = $2 } }
  function mib(x) { return sprintf("%.1f", x / 1048576) }
  function val(d, h, c, f) { return v[d SUBSEP h SUBSEP c SUBSEP f] }
  END {
    n = split(configs " " sims, cs, " ")
    print "Whole file (v1): stored share of the raw bytes, and commit wall time / openssl sha256 wall time"
    print ""
    hdr = "| file | size MiB |"; sep = "| --- | ---: |"
    for (i = 1; i <= n; i++) { hdr = hdr " " cs[i] " |"; sep = sep " ---: |" }
    print hdr; print sep
    for (k = 1; k <= nd; k++) {
      d = ds[k]; size = val(d, "v1", "-", "bytes"); sha = val(d, "v1", "-", "sha")
      line = "| " d " | " mib(size) " |"
      for (i = 1; i <= n; i++) {
        s = val(d, "v1", cs[i], "stored")
        if (s == "") { line = line " — |"; continue }
        cell = sprintf("%.1f %%", 100 * s / size)
        t = val(d, "v1", cs[i], "secs")
        if (t != "") cell = cell sprintf(", %.2f×, %d MiB", t / sha, val(d, "v1", cs[i], "rss") / 1024)
        line = line " " cell " |"
      }
      print line
    }
    print ""
    print "v2 pushed on top of v1: MiB (× the changed bytes after zstd -1; share of v2 reused; pushed bytes as a share of the file; commit time / sha256)"
    print ""
    hdr = "| file | history | changed MiB (zstd) |"; sep = "| --- | --- | ---: |"
    for (i = 1; i <= n; i++) { hdr = hdr " " cs[i] " |"; sep = sep " ---: |" }
    print hdr; print sep
    for (k = 1; k <= nd; k++) {
      d = ds[k]; sha = val(d, "v1", "-", "sha")
      for (j = 1; j <= nh[d]; j++) {
        h = hs[d, j]; ref = val(d, h, "-", "ref")
        line = "| " d " | " h " | " mib(val(d, h, "-", "changed")) " (" mib(ref) ") |"
        for (i = 1; i <= n; i++) {
          p = val(d, h, cs[i], "push")
          if (p == "") { line = line " — |"; continue }
          size = val(d, h, cs[i], "size"); nr = val(d, h, cs[i], "new_raw")
          cell = sprintf("%s (%.2f×, %.1f %%, %.2f %% of file", mib(p), p / ref, 100 * (size - nr) / size, 100 * p / size)
          t = val(d, h, cs[i], "secs")
          if (t != "") cell = cell sprintf(", %.2f×", t / sha)
          line = line " " cell ") |"
        }
        print line
      }
    }
  }' "$RES"
