#!/usr/bin/env bash
# Issue 2 benchmark: speed and memory of `nshard commit` / `nshard checkout` on a 1 GiB bf16
# safetensors-like checkpoint (normal(0, 0.02) weights), against `openssl dgst -sha256` (uses the
# CPU's SHA instructions) and `cp` of the same file, measured in the same run.
#
#   bench/core.sh                # 1 GiB
#   SIZE=256MiB bench/core.sh    # smaller, quicker
#
# Every timed step starts after `sync`, so dirty pages of the previous step are not billed to it.
# The reference commands are timed 3 times and the best run is kept.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZE=${SIZE:-1GiB}
cd "$ROOT"
cargo build --release -q -p nshard -p nshard-bench
NSHARD="$ROOT/target/release/nshard"
GEN="$ROOT/target/release/nshard-gen"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/nshard-bench-core.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

echo "generating $SIZE bf16 checkpoint and a v2 with 5 % of tensors changed in $WORK" >&2
"$GEN" model --size "$SIZE" --dtype bf16 --seed 1 --out "$WORK/v1.safetensors" >/dev/null
"$GEN" mutate --kind tensors:5% --from "$WORK/v1.safetensors" --seed 2 --out "$WORK/v2.safetensors" >/dev/null
BYTES=$(stat -c %s "$WORK/v1.safetensors")

# measure NAME CMD... : wall seconds and peak RSS (KiB) of one run, into T_NAME / M_NAME.
measure() {
  local name=$1; shift
  sync
  /usr/bin/time -f "%e %M %U %S" -o "$WORK/time" "$@" >/dev/null 2>"$WORK/stderr" || {
    cat "$WORK/stderr" >&2; echo "failed: $*" >&2; exit 1; }
  read -r secs kib usr sys < <(tail -n 1 "$WORK/time")
  printf -v "T_$name" '%s' "$secs"
  printf -v "M_$name" '%s' "$kib"
  printf -v "C_$name" '%s' "$(awk "BEGIN{print $usr + $sys}")"
}
best_of_3() {
  local name=$1; shift
  local best="" cpu=""
  for _ in 1 2 3; do
    measure tmp "$@"
    if [ -z "$best" ] || awk "BEGIN{exit !($T_tmp < $best)}"; then best=$T_tmp; cpu=$C_tmp; fi
    rm -f "$WORK/copy"
  done
  printf -v "T_$name" '%s' "$best"
  printf -v "C_$name" '%s' "$cpu"
}

# object_bytes: bytes of the object files in the store (chunks and manifest objects); directory
# entries are not data and are not counted.
object_bytes() { find .shard/objects -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }

cat "$WORK/v1.safetensors" >/dev/null   # warm the page cache, as for every command below
best_of_3 sha openssl dgst -sha256 "$WORK/v1.safetensors"
best_of_3 cp cp "$WORK/v1.safetensors" "$WORK/copy"
# nshard fsyncs what it writes (objects on commit, the file on checkout); cp does not. `cp` then
# `sync` is the durable reference.
best_of_3 cpsync sh -c 'cp "$1" "$2" && sync' sh "$WORK/v1.safetensors" "$WORK/copy"

REPO="$WORK/repo"
mkdir "$REPO" && cd "$REPO"
"$NSHARD" init -q >/dev/null
cp "$WORK/v1.safetensors" model.safetensors
"$NSHARD" track model.safetensors >/dev/null
measure commit1 "$NSHARD" commit -q -m v1
STORED1=$(object_bytes)
measure recommit "$NSHARD" commit -q -m unchanged
cp "$WORK/v2.safetensors" model.safetensors
measure commit2 "$NSHARD" commit -q -m v2
# Commit leaves the re-encoding of v1 as deltas to a background repack: wait for it (untimed),
# so that it neither changes the store while it is measured nor competes with the checkout.
"$NSHARD" repack -q >/dev/null
STORED2=$(object_bytes)
rm model.safetensors
measure checkout "$NSHARD" checkout -q
cmp model.safetensors "$WORK/v2.safetensors"

ratio() { awk "BEGIN{printf \"%.2f\", $1 / $2}"; }
mib() { awk "BEGIN{printf \"%.1f MiB\", $1 / 1048576}"; }
cat <<TABLE
file: $(mib "$BYTES") bf16 safetensors-like, v2 = 5 % of tensors re-randomised

CPU s = user + system time of the process (all threads); load from other processes inflates wall
time far more than CPU time.

| step | wall s | ratio (wall) | CPU s | target | peak RSS |
| --- | ---: | ---: | ---: | --- | ---: |
| openssl dgst -sha256 (best of 3) | $T_sha | 1.00 | $C_sha | reference | |
| cp (best of 3) | $T_cp | 1.00 | $C_cp | reference | |
| cp + sync (best of 3) | $T_cpsync | $(ratio "$T_cpsync" "$T_cp") × cp | $C_cpsync | durable reference | |
| nshard commit v1 | $T_commit1 | $(ratio "$T_commit1" "$T_sha") × sha256 | $C_commit1 | ≤ 2.2 × sha256 | $((M_commit1 / 1024)) MiB |
| nshard commit v2 (5 % of tensors changed) | $T_commit2 | $(ratio "$T_commit2" "$T_sha") × sha256 | $C_commit2 | ≤ 1.2 × sha256 | $((M_commit2 / 1024)) MiB |
| nshard commit, file unchanged | $T_recommit | | $C_recommit | ≤ 0.1 s | $((M_recommit / 1024)) MiB |
| nshard checkout v2 | $T_checkout | $(ratio "$T_checkout" "$T_cp") × cp, $(ratio "$T_checkout" "$T_cpsync") × cp+sync | $C_checkout | ≤ 1.5 × cp+sync | $((M_checkout / 1024)) MiB |

peak RSS target: ≤ 200 MiB.

stored after v1: $(mib "$STORED1") ($(ratio "$STORED1*100" "$BYTES") % of the file); after v2: $(mib "$STORED2") (v2 added $(mib $((STORED2 - STORED1))))
TABLE
