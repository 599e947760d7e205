#!/usr/bin/env bash
# Issue 6 benchmark: storage and commit speed of each chunking/codec choice on deterministic
# checkpoint and dataset histories (nshard-gen), against `openssl dgst -sha256` in the same run.
#
#   bench/formats.sh                          # 1 GiB checkpoints in bf16 and fp32, 256 MiB datasets
#   SIZE=256MiB DSIZE=64MiB bench/formats.sh  # quicker
#   DTYPES=bf16 bench/formats.sh              # one dtype
#
# Choices committed for real, selected through the temp repo's `.shard/config.toml` `[chunking]`:
#   cdc           FastCDC 1/4/16 MiB, layout none: plain CDC + zstd
#   fixed         fixed 4 MiB blocks, layout none: + zstd
#   tensor        FastCDC 1/4/16 MiB, layout tensor-aligned: + byte grouping (the default)
#   tensor-fixed  fixed 4 MiB inside tensors, tensor-aligned: + byte grouping
# and two that config.toml cannot express, simulated with `nshard-gen store-sim` (same planner,
# chunker and encoder, nothing written, no timing):
#   cdc+bg        plain CDC, every chunk byte-grouped by the file's main dtype
#   tensor+zstd   tensor-aligned CDC, plain zstd (no byte grouping)
#
# For each history v1 → v2: "push" is what v2 adds to a store that holds v1 (new chunk objects and
# the manifest object: exactly what `nshard push` sends to a remote holding v1); "×ref" divides it
# by the changed tensors' (or rows') bytes compressed with zstd -1 (nshard-gen's changed_zstd_bytes);
# "reuse" is the share of v2's bytes found in existing chunks. Commit times are wall seconds of one
# run divided by the best of 3 `openssl dgst -sha256` runs on the same file.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZE=${SIZE:-1GiB}
DSIZE=${DSIZE:-256MiB}
DTYPES=${DTYPES:-bf16 fp32}
KINDS=${KINDS:-tensors:5% last-layers:2 low-rank:q,v metadata add-tensor all-slight}
CONFIGS="cdc fixed tensor tensor-fixed"
cd "$ROOT"
cargo build --release -q -p nshard -p nshard-bench
NSHARD="$ROOT/target/release/nshard"
GEN="$ROOT/target/release/nshard-gen"
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
objects() { du -sb .shard/objects | cut -f1; }

# commit_history DTYPE CONFIG FILE V1 V2... : commits V1 then each V2 (history name = V2's
# basename) in a fresh repo with CONFIG, recording sizes and times.
commit_history() {
  local dtype=$1 cfg=$2 name=$3 v1=$4; shift 4
  local repo="$WORK/repo"
  rm -rf "$repo"; mkdir "$repo"; cd "$repo"
  "$NSHARD" init -q >/dev/null
  config_toml "$cfg" >.shard/config.toml
  ln -f "$v1" "$name"
  "$NSHARD" track "$name" >/dev/null
  timed "$NSHARD" commit -q -m v1
  local s1; s1=$(objects)
  rec "$dtype" v1 "$cfg" stored "$s1"
  rec "$dtype" v1 "$cfg" secs "$T"
  rec "$dtype" v1 "$cfg" rss "$M"
  local prev=$s1 v2
  for v2 in "$@"; do
    ln -f "$v2" "$name"
    timed "$NSHARD" commit --json -m "$(basename "$v2")"
    local now; now=$(objects)
    local h; h=$(basename "$v2")
    rec "$dtype" "$h" "$cfg" push $((now - prev))
    rec "$dtype" "$h" "$cfg" new_raw "$(jq '.[0].new_bytes' "$WORK/out")"
    rec "$dtype" "$h" "$cfg" size "$(jq '.[0].size' "$WORK/out")"
    rec "$dtype" "$h" "$cfg" secs "$T"
    # Back to v1, so that every history starts from v1's store (nothing new is stored).
    ln -f "$v1" "$name"
    "$NSHARD" commit -q -m back >/dev/null
    prev=$(objects)
  done
  cd "$ROOT"
  rm -rf "$repo"
}

# simulate DTYPE NAME ARGS... V1 V2... : store-sim rows (push excludes the small manifest object).
simulate() {
  local dtype=$1 cfg=$2; shift 2
  local args=() files=()
  while [ "$1" != -- ]; do args+=("$1"); shift; done; shift
  "$GEN" store-sim "${args[@]}" "$@" >"$WORK/sim"
  local first=1 line h
  while read -r line; do
    h=$(basename "$(jq -r .file <<<"$line")")
    if [ $first = 1 ]; then
      rec "$dtype" v1 "$cfg" stored "$(jq .stored_added <<<"$line")"; first=0
    else
      rec "$dtype" "$h" "$cfg" push "$(jq .stored_added <<<"$line")"
      rec "$dtype" "$h" "$cfg" new_raw "$(jq .new_raw <<<"$line")"
      rec "$dtype" "$h" "$cfg" size "$(jq .size <<<"$line")"
    fi
  done <"$WORK/sim"
}

for dtype in $DTYPES; do
  D="$WORK/$dtype"; mkdir -p "$D"
  echo "[$dtype] generating $SIZE v1 and its histories" >&2
  "$GEN" model --size "$SIZE" --dtype "$dtype" --seed 1 --out "$D/v1" >"$WORK/g"
  rec "$dtype" v1 - bytes "$(jq .bytes "$WORK/g")"
  V2S=(); seed=2
  for kind in $KINDS; do
    "$GEN" mutate --kind "$kind" --from "$D/v1" --seed $seed --out "$D/$kind" >"$WORK/g"
    rec "$dtype" "$kind" - ref "$(jq .changed_zstd_bytes "$WORK/g")"
    rec "$dtype" "$kind" - changed "$(jq .changed_bytes "$WORK/g")"
    V2S+=("$D/$kind"); seed=$((seed + 1))
  done
  best_sha "$D/v1"; rec "$dtype" v1 - sha "$SHA"
  for cfg in $CONFIGS; do
    echo "[$dtype] committing with $cfg" >&2
    commit_history "$dtype" "$cfg" model.safetensors "$D/v1" "${V2S[@]}"
  done
  echo "[$dtype] simulating cdc+bg and tensor+zstd" >&2
  simulate "$dtype" cdc+bg --codec file-dtype -- "$D/v1" "${V2S[@]}"
  simulate "$dtype" tensor+zstd --tensor-aligned --codec zstd -- "$D/v1" "${V2S[@]}"
  rm -rf "$D"
done

for fmt in csv jsonl; do
  D="$WORK/$fmt"; mkdir -p "$D"
  echo "[$fmt] generating $DSIZE dataset and its histories" >&2
  "$GEN" dataset --size "$DSIZE" --format "$fmt" --seed 1 --out "$D/v1" >"$WORK/g"
  rec "$fmt" v1 - bytes "$(jq .bytes "$WORK/g")"
  V2S=(); seed=2
  for kind in append:10% insert:1%; do
    "$GEN" mutate --kind "$kind" --from "$D/v1" --seed $seed --out "$D/$kind" >"$WORK/g"
    rec "$fmt" "$kind" - ref "$(jq .changed_zstd_bytes "$WORK/g")"
    rec "$fmt" "$kind" - changed "$(jq .changed_bytes "$WORK/g")"
    V2S+=("$D/$kind"); seed=$((seed + 1))
  done
  best_sha "$D/v1"; rec "$fmt" v1 - sha "$SHA"
  for cfg in cdc fixed; do
    echo "[$fmt] committing with $cfg" >&2
    commit_history "$fmt" "$cfg" "data.$fmt" "$D/v1" "${V2S[@]}"
  done
  rm -rf "$D"
done

cp "$RES" "${RESULTS:-/dev/null}" 2>/dev/null || true
awk -F'\t' -v sims="cdc+bg tensor+zstd" -v configs="$CONFIGS" '
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
    print "v2 pushed on top of v1: MiB (× the changed bytes after zstd -1; share of v2 reused; commit time / sha256)"
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
          cell = sprintf("%s (%.2f×, %.1f %%", mib(p), p / ref, 100 * (size - nr) / size)
          t = val(d, h, cs[i], "secs")
          if (t != "") cell = cell sprintf(", %.2f×", t / sha)
          line = line " " cell ") |"
        }
        print line
      }
    }
  }' "$RES"
