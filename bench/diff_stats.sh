#!/usr/bin/env bash
# Issue 25 benchmark: `nshard diff --stats` of two versions of a bf16 checkpoint in which every
# weight moved (nshard-gen `all-slight`), against `nshard checkout` of both versions in the same
# run (the stats decode the same bytes and write nothing; target ≤ 1.0×), and `openssl dgst
# -sha256` of both files as a yardstick. Also the peak RSS of the stats (target ≤ 200 MiB at
# 1 GiB), and of `log --stats` over the two versions.
#
#   bench/diff_stats.sh                      # 1 GiB versions, best of 3 (~4 min on 2 cores + build)
#   SIZE=256MiB REPS=1 bench/diff_stats.sh   # quicker
#   NSHARD=/path/to/nshard bench/diff_stats.sh
#   PY=/path/to/python bench/diff_stats.sh   # any Python 3 (only its resource module is used)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
trap 'exit 130' INT TERM

SIZE=${SIZE:-1GiB}
REPS=${REPS:-3}
PY=${PY:-python3}
if [ -z "${NSHARD:-}" ]; then
  bench_build
else
  GEN="$BENCH_TARGET/release/nshard-gen"
  [ -x "$GEN" ] || (cargo build --release -q -p nshard-bench)
fi
bench_workdir diff-stats
cd "$W"
log() { echo "[diff_stats] $*" >&2; }

log "generating two $SIZE bf16 versions (every weight moved ~1 %)"
"$GEN" model --size "$SIZE" --dtype bf16 --seed 1 -o v1.safetensors >/dev/null
"$GEN" mutate --kind all-slight --seed 2 --from v1.safetensors -o v2.safetensors >/dev/null
BYTES=$(stat -c %s v1.safetensors)

mkdir repo && cd repo
git init -q
"$NSHARD" init -q >/dev/null
cp ../v1.safetensors model.safetensors
"$NSHARD" track model.safetensors >/dev/null
"$NSHARD" commit -q -m v1 >/dev/null
V1=$(sha256sum model.safetensors.shard.json | cut -c1-64)
cp ../v2.safetensors model.safetensors
"$NSHARD" commit -q -m v2 >/dev/null
"$NSHARD" repack -q >/dev/null   # v1 re-encoded as deltas (commit leaves it to the background)
V2=$(sha256sum model.safetensors.shard.json | cut -c1-64)

lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
best() { # best VAR CMD… : best wall time of REPS runs (after sync)
  local var=$1 b="" t0 t1 t i
  shift
  for ((i = 0; i < REPS; i++)); do
    sync
    t0=$(now)
    "$@" >/dev/null
    t1=$(now)
    t=$(secs "$t0" "$t1")
    if [ -z "$b" ] || lt "$t" "$b"; then b=$t; fi
  done
  printf -v "$var" '%s' "$b"
}
checkout_both() {
  rm -f model.safetensors
  "$NSHARD" checkout -q model.safetensors --version "$V1" --force
  rm -f model.safetensors
  "$NSHARD" checkout -q model.safetensors --version "$V2" --force
  sync
}
sha_both() { openssl dgst -sha256 ../v1.safetensors ../v2.safetensors; }
peak_mib() { # peak RSS of CMD…, MiB
  "$PY" -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)
assert r.returncode == 0
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)' "$@"
}

log "timing (best of $REPS)"
best T_STATS "$NSHARD" diff --stats --json --from "$V1" --to "$V2" model.safetensors
best T_CHECKOUT checkout_both
best T_SHA sha_both
best T_LOG "$NSHARD" log --stats --json model.safetensors
RSS_STATS=$(peak_mib "$NSHARD" diff --stats --json --from "$V1" --to "$V2" model.safetensors)
RSS_LOG=$(peak_mib "$NSHARD" log --stats --json model.safetensors)
TENSORS=$("$NSHARD" diff --stats --json --from "$V1" --to "$V2" model.safetensors |
  "$PY" -c 'import json, sys; d = json.load(sys.stdin)["tensors"]; print(d["changed"], "of", d["total"])')

cat <<EOF
## diff --stats: two $SIZE bf16 versions, every weight moved ($(date -u +%Y-%m-%d), $(nproc) cores)

Command: SIZE=$SIZE REPS=$REPS bench/diff_stats.sh ($BYTES bytes per version; $TENSORS tensors changed)

| what | time (s) | ratio |
|---|---|---|
| \`nshard checkout\` of both versions (reference) | $T_CHECKOUT | 1.00× |
| \`nshard diff --stats\` | $T_STATS | $(ratio "$T_STATS" "$T_CHECKOUT")× checkout, $(ratio "$T_STATS" "$T_SHA")× sha256 |
| \`nshard log --stats\` (both versions) | $T_LOG | $(ratio "$T_LOG" "$T_CHECKOUT")× checkout |
| \`openssl dgst -sha256\` of both files | $T_SHA | $(ratio "$T_SHA" "$T_CHECKOUT")× checkout |

Peak RSS: \`diff --stats\` $RSS_STATS MiB, \`log --stats\` $RSS_LOG MiB (target ≤ 200 MiB).
EOF
