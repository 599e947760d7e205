#!/usr/bin/env bash
# Issue 20, steady state: what a long checkpoint series costs per version with each `delta_depth`.
# bench/deltas.sh commits 21 versions, which is one period of the default chain shape (a version
# stays whole every 21 versions with `delta_depth = 8`); a deeper bound keeps versions whole more
# rarely, which only a longer series shows. Here: 65 checkpoints of one training run
# (bench/delta/train.py, steps 0, 10, …, 640), committed in order into a fresh repository per
# `delta_depth`, against z4ai 0.2.0 `compress_delta` of each version against its parent measured
# in the same run.
#
#   bench/deltas_long.sh                              # bf16 and fp32, depths 8 12 16 (~8 min)
#   NSHARD=/path/to/nshard PY=/path/to/python bench/deltas_long.sh
#   DATA=/tmp/delta-long bench/deltas_long.sh         # reuse a `train.py --steps 640 --until 640` output
#   DTYPES=bf16 DEPTHS="8 16" bench/deltas_long.sh    # quicker
#
# Measured per dtype and depth: the store after all versions (files under .shard/objects, minus
# the first version's stored bytes) per later version, vs the mean of z4ai `compress_delta`;
# versions kept whole; the deepest chain; checkout of the deepest version vs the newest (best of
# 3, work file removed, `--force`, then `sync`). Commits run with `delta_background = false` (the
# same encodings as the background repack; the bench need not wait for it).
# Writes the report to stdout and to bench/deltas/LONG.md (RESULTS= to change, RESULTS= to skip).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# shellcheck source=bench/lib.sh
source bench/lib.sh
trap 'exit 130' INT TERM

CMDLINE=""
for v in NSHARD NSHARD_REV PY DATA DTYPES DEPTHS BENCH_DIR; do
  if [ -n "${!v+x}" ]; then CMDLINE+="$v=$(printf %q "${!v}") "; fi
done
CMDLINE+="bench/deltas_long.sh"
DTYPES=${DTYPES:-bf16 fp32}
DEPTHS=${DEPTHS:-8 12 16}
UNTIL=640
RESULTS=${RESULTS-$ROOT/bench/deltas/LONG.md}
STEPS=$(seq 0 10 $UNTIL | xargs)
START=$(now)

bench_nshard
for tool in openssl jq; do
  command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }
done
deltas_python
HELPER="$ROOT/bench/deltas/deltas.py"
bench_workdir deltas-long
export XDG_CONFIG_HOME="$W/xdg"
mkdir -p "$XDG_CONFIG_HOME"
log() { echo "[$(date +%T)] $*" >&2; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
objects() { find .shard/objects -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f %%", 100 * a / b }'; }

if [ -z "${DATA:-}" ]; then
  DATA="$W/data"
  log "training the checkpoint series (bench/delta/train.py --steps $UNTIL --until $UNTIL, ~4 min)"
  "$PY" "$ROOT/bench/delta/train.py" --out "$DATA" --steps $UNTIL --until $UNTIL >"$W/train.log"
fi
[ -d "$DATA/step_$(printf %04d $UNTIL)" ] || { echo "no step $UNTIL in $DATA" >&2; exit 1; }
PAIRS=$(echo "$STEPS" | awk '{ for (i = 2; i <= NF; i++) printf "%s:%s ", $(i - 1), $i }')
N=$(echo "$STEPS" | wc -w)

# checkout_best ID EXPECT : best of 3 (work file removed, checkout --force, sync) into T.
checkout_best() {
  local best="" t0 t1 t i
  for i in 1 2 3; do
    rm -f model.safetensors
    sync
    t0=$(now)
    "$NSHARD" checkout model.safetensors --version "$1" --force >/dev/null
    sync
    t1=$(now)
    t=$(secs "$t0" "$t1")
    if [ -z "$best" ] || lt "$t" "$best"; then best=$t; fi
  done
  cmp -s model.safetensors "$2" || { echo "checkout of $1 does not match $2" >&2; exit 1; }
  T=$best
}

REPORT="$W/report.md"
{
  echo "# Long checkpoint series: steady-state cost per version by \`delta_depth\`"
  echo
  echo "Produced by \`bench/deltas_long.sh\` (one run). Command: \`$CMDLINE\`. nshard: \`$("$NSHARD" --version)\`${NSHARD_REV:+ ($NSHARD_REV)}. z4ai $("$PY" -c 'import z4ai; print(z4ai.__version__)'). Machine: nproc $(nproc), $(uname -m)."
  echo
  echo "Series: bench/delta/train.py (AdamW MLP, 7.61 M parameters, lr 1e-5 phase), $N checkpoints 10 steps apart (steps 0 … $UNTIL), each a safetensors file, committed in order into a fresh repository per row (\`delta_background = false\`). \"per version\" = (store after all $N versions − the first version's stored bytes) / $((N - 1)); reference: mean over the $((N - 1)) versions of z4ai \`compress_delta(version, parent)\` summed over the tensors. Checkout: best of 3, \`sync\` included."
  echo
  echo "| dtype | delta_depth | per version (% of file) | vs z4ai \`compress_delta\` | versions stored whole (besides the newest) | deepest chain | checkout deepest / newest |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
} >"$REPORT"

for dt in $DTYPES; do
  log "[$dt] safetensors files and z4ai references ($N versions)"
  "$PY" "$HELPER" safetensors --data "$DATA" --dtype "$dt" --steps "$STEPS" --out "$W/st-$dt"
  "$PY" "$HELPER" refs --data "$DATA" --dtype "$dt" --dir "$W/st-$dt" --steps "$STEPS" \
    --pairs "$PAIRS" --out "$W/refs-$dt.json" 2>/dev/null
  size=$(stat -c %s "$W/st-$dt/step_0000.safetensors")
  z4mean=$(jq '[.delta[]] | add / length' "$W/refs-$dt.json")
  for depth in $DEPTHS; do
    log "[$dt] delta_depth $depth: committing $N versions"
    cd "$W"; rm -rf "repo"; mkdir repo; cd repo
    "$NSHARD" init -q >/dev/null
    { echo "delta_depth = $depth"; echo "delta_background = false"; cat .shard/config.toml; } >.shard/config.toml.new
    mv .shard/config.toml.new .shard/config.toml
    ids=() mans=() first=0
    i=0
    for s in $STEPS; do
      cp "$W/st-$dt/step_$(printf %04d "$s").safetensors" model.safetensors
      [ "$i" -gt 0 ] || "$NSHARD" track model.safetensors >/dev/null
      "$NSHARD" commit -q -m "step $s" >/dev/null
      [ "$i" -gt 0 ] || first=$(objects)
      cp model.safetensors.shard.json "$W/man-$i.json"
      mans+=("$W/man-$i.json")
      ids+=("$(sha256sum model.safetensors.shard.json | cut -c1-64)")
      i=$((i + 1))
    done
    total=$(objects)
    "$PY" "$HELPER" chains --objects .shard/objects --manifests "${mans[@]}" >"$W/chains.json"
    whole=$(jq '[.[:-1][] | select(.delta_chunks == 0)] | length' "$W/chains.json")
    deep=$(jq 'to_entries | max_by([.value.depth, .key]) | .key' "$W/chains.json")
    ddepth=$(jq ".[$deep].depth" "$W/chains.json")
    dstep=$(echo "$STEPS" | tr ' ' '\n' | sed -n "$((deep + 1))p")
    checkout_best "${ids[$((N - 1))]}" "$W/st-$dt/step_$(printf %04d $UNTIL).safetensors"
    tnew=$T
    checkout_best "${ids[$deep]}" "$W/st-$dt/step_$(printf %04d "$dstep").safetensors"
    tdeep=$T
    per=$(awk -v t="$total" -v f="$first" -v n="$N" 'BEGIN { printf "%.0f", (t - f) / (n - 1) }')
    echo "| $dt | $depth | $(pct "$per" "$size") | $(awk -v a="$per" -v b="$z4mean" 'BEGIN { printf "**%.2f×** (%.2f %%)", a / b, 100 * b / '"$size"' }') | $whole | $ddepth (step $dstep) | $(awk -v a="$tdeep" -v b="$tnew" 'BEGIN { printf "%.2f× (%.3f / %.3f s)", a / b, a, b }') |" >>"$REPORT"
    cd "$W"; rm -rf repo
  done
done
echo >>"$REPORT"
echo "Run time $(awk -v a="$START" -v b="$(now)" 'BEGIN { printf "%.1f", (b - a) / 60 }') min." >>"$REPORT"
cat "$REPORT"
if [ -n "$RESULTS" ]; then cp "$REPORT" "$RESULTS"; fi
