#!/usr/bin/env bash
# Remote deltas benchmark: what a directory remote holds for a real checkpoint series pushed in the
# training loop (commit, push, commit, push …), before and after `nshard remote gc`, and what a
# fresh clone pulls from it. The series is bench/delta/train.py's (AdamW MLP, bf16 and fp32, steps
# 0, 10, …, 200: 21 versions, each written as a safetensors file, as in bench/deltas.sh).
#
#   bench/deltas_remote.sh                              # ~2 min on 2 cores (+ build, + training)
#   NSHARD=/path/to/nshard bench/deltas_remote.sh       # use that binary (default: cargo build --release)
#   NSHARD_REV=e9533b8 NSHARD=… bench/deltas_remote.sh  # what the report says that binary was built from
#   PY=/path/to/python bench/deltas_remote.sh           # a Python with numpy, zstandard, z4ai
#   DATA=/tmp/delta-data bench/deltas_remote.sh         # reuse a train.py output (else trained here, ~3 min)
#   DTYPES=bf16 REPS=1 bench/deltas_remote.sh           # quicker
#   BENCH_DIR=/tmp/keep bench/deltas_remote.sh          # keep the work directory
#
# Measured per dtype, in one run:
#   1. the training loop: a fresh repository (`nshard init`, no git) and an empty directory remote;
#      for each step the file is copied over the tracked one, then `nshard commit`, `nshard repack`
#      (waits for the background re-encoding) and `nshard push --remote R`. After each push: the
#      local store (`.shard/objects`) and the remote (`R/objects` + `R/deltas`), sums of file sizes.
#   2. `nshard remote gc R --grace 0 --json` (uploaded_deltas, uploaded_delta_bytes: the origin's
#      deltas of older versions; superseded_objects, superseded_bytes; its wall time), the remote
#      after it; a second gc, which must delete nothing.
#   3. the reference without remote deltas: `R/objects` alone before gc (every version whole: what
#      a remote that keeps no deltas holds after the same pushes).
#   4. a fresh clone (`nshard init`, the origin's manifest copied in): `pull` of the newest version,
#      bytes received vs the newest version's chunks as stored in the origin (its "alone" cost;
#      must be ≤ 1.3×), checked out and compared; another fresh clone: `pull --all-versions`, bytes
#      received and its store (after `nshard repack`) vs the origin's store, the oldest version
#      checked out and compared; the pull's wall time (best of REPS, fresh clone each, then `sync`;
#      the background `nshard repack` a pull queues is waited for between runs, untimed) vs
#      `cp -r R x && sync` (best of REPS). The same pull before gc (every version whole on the
#      remote: what a remote without deltas serves): bytes, time, the clone's store.
#   5. the z4ai 0.2.0 reference: z4ai `compress` of the first version + `compress_delta(new,
#      parent)` of each later one, summed over tensors and versions (bench/deltas/deltas.py refs,
#      the code path bench/deltas.sh uses, round trips checked).
# Writes the report to stdout and to bench/deltas/REMOTE.md (RESULTS=path to change, RESULTS= to
# skip).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# shellcheck source=bench/lib.sh
source bench/lib.sh
trap 'exit 130' INT TERM   # exit through lib.sh's EXIT trap (removes the work directory)

CMDLINE=""
for v in NSHARD NSHARD_REV PY DATA DTYPES REPS BENCH_DIR CARGO_TARGET_DIR; do
  if [ -n "${!v+x}" ]; then CMDLINE+="$v=$(printf %q "${!v}") "; fi
done
CMDLINE+="bench/deltas_remote.sh"
DTYPES=${DTYPES:-bf16 fp32}
REPS=${REPS:-3}
RESULTS=${RESULTS-$ROOT/bench/deltas/REMOTE.md}
STEPS=$(seq 0 10 200 | xargs)
NV=$(wc -w <<<"$STEPS")
NEWEST=200
ALONE_MAX=1.3
START=$(now)

bench_nshard
command -v jq >/dev/null || { echo "jq is missing" >&2; exit 1; }
deltas_python
HELPER="$ROOT/bench/deltas/deltas.py"
REV=$NSHARD_FROM

bench_workdir deltas-remote
export XDG_CONFIG_HOME="$W/xdg"   # no user config (remotes, settings) leaks into the run
mkdir -p "$XDG_CONFIG_HOME"
log() { echo "[$(date +%T)] $*" >&2; }

F=model.safetensors
# bytes_in PATH… : the sum of the sizes of the files under PATH… (absent paths count 0)
bytes_in() { { find "$@" -type f -printf '%s\n' 2>/dev/null || true; } | awk '{ s += $1 } END { print s + 0 }'; }
remote_bytes() { bytes_in "$1/objects" "$1/deltas"; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
mib() { awk -v a="$1" 'BEGIN { printf "%.2f MiB", a / 1048576 }'; }
st_file() { echo "$W/st-$1/step_$(printf %04d "$2").safetensors"; }
# new_repo DIR : a fresh repository in DIR (under $W), made the working directory
new_repo() {
  cd "$W"; rm -rf "$1"; mkdir -p "$1"; cd "$1"
  "$NSHARD" init -q >/dev/null
}
# new_clone DIR DTYPE : a fresh repository holding the origin's manifest, as a clone gets it from git
new_clone() {
  new_repo "$1"
  cp "$W/origin-$2/$F.shard.json" .
}
# best_of N VAR PREPARE CMD : the best wall time of N runs of CMD into VAR, each after PREPARE
# (untimed) and `sync`; a `sync` at the end of CMD is part of it
best_of() {
  local n=$1 var=$2 prep=$3 cmd=$4
  local best="" t0 t1 t i
  for ((i = 0; i < n; i++)); do
    $prep
    sync
    t0=$(now); $cmd; t1=$(now)
    t=$(secs "$t0" "$t1")
    if [ -z "$best" ] || lt "$t" "$best"; then best=$t; fi
  done
  printf -v "$var" '%s' "$best"
}
# one --all-versions pull into a fresh clone, then sync. The pull queues a background `nshard
# repack` (the versions before those received); `settle` waits for it (untimed), so that it
# neither runs during the next timed command nor races the removal of its clone.
settle() { if [ -d "$1/.shard" ]; then (cd "$1" && "$NSHARD" repack -q >/dev/null); fi; }
pull_prep() { settle "$W/clone-all-$DT"; new_clone "clone-all-$DT" "$DT"; }
pull_all() { "$NSHARD" pull --remote "$R" --all-versions --json >"$W/pull-all-$DT-$PHASE.json" && sync; }
cp_prep() { rm -rf "$W/cp-remote"; }
cp_remote() { cp -r "$R" "$W/cp-remote" && sync; }
row() { printf '| %s | %s | %s |\n' "$1" "$2" "$3"; }

if [ -z "${DATA:-}" ]; then
  DATA="$W/data"
  log "training the checkpoint series (bench/delta/train.py, AdamW, ~3 min)"
  "$PY" "$ROOT/bench/delta/train.py" --out "$DATA" >"$W/train.log"
fi
if [ ! -f "$DATA/tensors.json" ] || [ ! -d "$DATA/step_0200" ]; then
  echo "no series in $DATA" >&2
  exit 1
fi
PAIRS=$(echo "$STEPS" | awk '{ for (i = 2; i <= NF; i++) printf "%s:%s ", $(i - 1), $i }')

REPORT="$W/report.md"
{
  echo "# Remote deltas: a checkpoint series pushed in the training loop, remote gc, pulls"
  echo
  echo "Produced by \`bench/deltas_remote.sh\` (one run; every reference measured in the same run)."
  echo "Command: \`$CMDLINE\`. nshard: $REV. Date: $(date -u '+%Y-%m-%d %H:%M UTC')."
  echo "Machine: nproc $(nproc), $(uname -m), $(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo),"
  echo "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo). z4ai $("$PY" -c 'import z4ai; print(z4ai.__version__)')."
  echo
  echo "Series: bench/delta/train.py (AdamW MLP, 7.61 M parameters), steps 0, 10, …, 200 (21"
  echo "versions), each written as a safetensors file. Training loop: for each step, the file is"
  echo "copied over the tracked one, then \`nshard commit\`, \`nshard repack\` and \`nshard push --remote R\`"
  echo "to a directory remote R (empty at the start) from a fresh repository. Sizes are sums of file"
  echo "sizes: local store = \`.shard/objects\` after the 21st push; remote = \`R/objects\` + \`R/deltas\`"
  echo "(\`R/records\`, a few KiB of push records, is listed apart). \"Without remote deltas\" ="
  echo "\`R/objects\` alone before gc: every version whole, what a remote keeping no deltas holds."
  echo "Σ z4ai = z4ai \`compress\` of step 0 + \`compress_delta(new, parent)\` of each later step,"
  echo "summed over tensors (bench/deltas/deltas.py refs, as bench/deltas.sh). \"Alone\" = the newest"
  echo "version's chunks as stored in the origin (sum of their object files). Pull times: wall"
  echo "seconds, best of $REPS, each into a fresh clone, \`sync\` inside the timing, as in \`cp -r R x && sync\`;"
  echo "the background \`nshard repack\` a pull queues is waited for after each run, untimed. All on one"
  echo "machine, files in the page cache."
} >"$REPORT"

for DT in $DTYPES; do
  log "[$DT] writing safetensors files; z4ai references"
  "$PY" "$HELPER" safetensors --data "$DATA" --dtype "$DT" --steps "$STEPS" --out "$W/st-$DT"
  "$PY" "$HELPER" refs --data "$DATA" --dtype "$DT" --dir "$W/st-$DT" --steps 0 --pairs "$PAIRS" \
    --out "$W/refs-$DT.json" 2>"$W/refs-$DT.log"
  Z4=$(jq '.compress["0"] + ([.delta[]] | add)' "$W/refs-$DT.json")
  SIZE=$(stat -c %s "$(st_file "$DT" 0)")

  # 1. the training loop
  log "[$DT] the training loop: commit, repack, push × 21"
  R="$W/remote-$DT"
  rm -rf "$R"; mkdir -p "$R"
  new_repo "origin-$DT"
  STEP_ROWS=""
  PUSH_BYTES=0 PUSH_DELTAS=0 PUSH_SECS=0
  for s in $STEPS; do
    cp "$(st_file "$DT" "$s")" "$F"
    [ "$s" != 0 ] || "$NSHARD" track "$F" >/dev/null
    "$NSHARD" commit -q -m "step $s" >/dev/null
    "$NSHARD" repack -q >/dev/null
    "$NSHARD" push --remote "$R" --json -q >"$W/push.json"
    [ "$s" != 0 ] || ID0=$(jq -r '.files[0].version' "$W/push.json")
    pb=$(jq '.bytes' "$W/push.json")
    pd=$(jq '.deltas' "$W/push.json")
    PUSH_BYTES=$((PUSH_BYTES + pb))
    PUSH_DELTAS=$((PUSH_DELTAS + pd))
    PUSH_SECS=$(awk -v a="$PUSH_SECS" -v b="$(jq '.seconds' "$W/push.json")" 'BEGIN { print a + b }')
    STEP_ROWS+="| $s | $(bytes_in .shard/objects) | $(bytes_in "$R/objects") | $(bytes_in "$R/deltas") | $pb | $pd |"$'\n'
  done
  LOCAL=$(bytes_in .shard/objects)
  BEFORE=$(remote_bytes "$R")
  OBJONLY=$(bytes_in "$R/objects")
  DELTAS_BEFORE=$(bytes_in "$R/deltas")

  # the same pull before gc, from every version whole (what a remote without deltas serves)
  log "[$DT] pull --all-versions before gc (best of $REPS)"
  PHASE=before
  best_of "$REPS" T_PULL0 pull_prep pull_all
  settle "$W/clone-all-$DT"
  ALL0_BYTES=$(jq '.bytes' "$W/pull-all-$DT-$PHASE.json")
  ALL0_DELTAS=$(jq '.deltas' "$W/pull-all-$DT-$PHASE.json")
  CLONE0=$(bytes_in "$W/clone-all-$DT/.shard/objects")
  [ "$(remote_bytes "$R")" = "$BEFORE" ] || { echo "[$DT] the pulls changed the remote" >&2; exit 1; }
  cd "$W/origin-$DT"

  # 2. remote gc, twice
  log "[$DT] remote gc --grace 0, twice"
  g0=$(now); "$NSHARD" remote gc "$R" --grace 0 --json >"$W/gc1-$DT.json"; g1=$(now)
  GC_S=$(secs "$g0" "$g1")
  UP_N=$(jq '.uploaded_deltas' "$W/gc1-$DT.json")
  UP_B=$(jq '.uploaded_delta_bytes' "$W/gc1-$DT.json")
  AFTER=$(remote_bytes "$R")
  AFTER_OBJ=$(bytes_in "$R/objects")
  AFTER_DELTAS=$(bytes_in "$R/deltas")
  RECORDS=$(bytes_in "$R/records")
  SUP_N=$(jq '.superseded_objects' "$W/gc1-$DT.json")
  SUP_B=$(jq '.superseded_bytes' "$W/gc1-$DT.json")
  FREED_N=$(jq '.freed_objects' "$W/gc1-$DT.json")
  BAD=$(jq '.bad_deltas | length' "$W/gc1-$DT.json")
  "$NSHARD" remote gc "$R" --grace 0 --json >"$W/gc2-$DT.json"
  AFTER2=$(remote_bytes "$R")
  GC2=$(jq -r '"\(.uploaded_deltas) uploaded, \(.superseded_objects) superseded, \(.freed_objects) freed"' "$W/gc2-$DT.json")
  GC2_OK=yes
  if [ "$(jq '.superseded_objects + .freed_objects + .uploaded_deltas' "$W/gc2-$DT.json")" != 0 ] || [ "$AFTER2" != "$AFTER" ]; then
    GC2_OK="**no**"
  fi
  find "$R" -type f -printf '%s %P\n' | sort -k2 >"$W/remote-files-$DT.txt"

  # the newest version's chunks as the origin stores them
  ALONE=$(jq -r '[.chunks[].id] | unique[]' "$F.shard.json" \
    | while read -r id; do echo ".shard/objects/${id:0:2}/${id:2}"; done \
    | xargs stat -c %s | awk '{ s += $1 } END { print s + 0 }')

  # 4. fresh clones
  log "[$DT] pull of the newest version into a fresh clone"
  new_clone "clone-new-$DT" "$DT"
  "$NSHARD" pull --remote "$R" --json >"$W/pull-new-$DT.json"
  NEW_BYTES=$(jq '.bytes' "$W/pull-new-$DT.json")
  "$NSHARD" checkout "$F" --force >/dev/null
  cmp -s "$F" "$(st_file "$DT" "$NEWEST")" || { echo "[$DT] newest checkout differs" >&2; exit 1; }
  settle .
  cd "$W"; rm -rf "clone-new-$DT"

  log "[$DT] pull --all-versions into a fresh clone (best of $REPS) vs cp -r of the remote"
  PHASE=after
  best_of "$REPS" T_PULL pull_prep pull_all
  settle "$W/clone-all-$DT"
  best_of "$REPS" T_CP cp_prep cp_remote
  rm -rf "$W/cp-remote"
  cd "$W/clone-all-$DT"
  ALL_BYTES=$(jq '.bytes' "$W/pull-all-$DT-$PHASE.json")
  ALL_DELTAS=$(jq '.deltas' "$W/pull-all-$DT-$PHASE.json")
  CLONE=$(bytes_in .shard/objects)
  "$NSHARD" checkout "$F" --version "$ID0" --force >/dev/null
  cmp -s "$F" "$(st_file "$DT" 0)" || { echo "[$DT] step 0 checkout from the clone differs" >&2; exit 1; }
  cd "$W"; rm -rf "clone-all-$DT" "origin-$DT" "$R" "$W/st-$DT"

  A_RATIO=$(ratio "$NEW_BYTES" "$ALONE")
  A_OK=yes; le "$A_RATIO" "$ALONE_MAX" || A_OK="**no**"
  {
    echo
    echo "## $DT ($(mib "$SIZE") per version, 21 versions: $(mib $((NV * SIZE))) of files)"
    echo
    echo "| | bytes | |"
    echo "| --- | ---: | --- |"
    row "local store (origin, after 21 commits)" "$LOCAL" "$(mib "$LOCAL")"
    row "remote before gc (objects + deltas)" "$BEFORE" "$(mib "$BEFORE"): objects $(mib "$OBJONLY") + deltas $(mib "$DELTAS_BEFORE")"
    row "remote objects only (without remote deltas)" "$OBJONLY" "$(mib "$OBJONLY") = **$(ratio "$OBJONLY" "$LOCAL")×** the local store"
    row "remote after gc" "$AFTER" "$(mib "$AFTER"): objects $(mib "$AFTER_OBJ") + deltas $(mib "$AFTER_DELTAS"); records $RECORDS B"
    row "gc: uploaded from the origin's store" "$UP_B" "$UP_N deltas, $(mib "$UP_B"); the whole run $(printf %.2f "$GC_S") s"
    row "gc: superseded" "$SUP_B" "$SUP_N objects, $(mib "$SUP_B"); $FREED_N freed, $BAD bad deltas"
    row "second gc deletes nothing" "$AFTER2" "$GC2_OK ($GC2)"
    row "**remote after gc / local store**" "" "**$(ratio "$AFTER" "$LOCAL")×**"
    row "Σ z4ai (compress + 20 × compress_delta)" "$Z4" "$(mib "$Z4")"
    row "**remote after gc / Σ z4ai**" "" "**$(ratio "$AFTER" "$Z4")×**"
    row "pull newest: received / alone" "$NEW_BYTES" "$(mib "$NEW_BYTES") / $(mib "$ALONE") = **$A_RATIO×** (≤ $ALONE_MAX: $A_OK)"
    row "pull --all-versions: received / origin store" "$ALL_BYTES" "$(mib "$ALL_BYTES") / $(mib "$LOCAL") = **$(ratio "$ALL_BYTES" "$LOCAL")×** ($ALL_DELTAS objects as deltas)"
    row "clone store after it / origin store" "$CLONE" "**$(ratio "$CLONE" "$LOCAL")×**"
    row "pull --all-versions time vs \`cp -r R x && sync\`" "" "$T_PULL s vs $T_CP s: **$(ratio "$T_PULL" "$T_CP")×**"
    row "the same pull before gc (every version whole there)" "$ALL0_BYTES" "$(mib "$ALL0_BYTES") ($ALL0_DELTAS as deltas) in $T_PULL0 s; clone store then $(mib "$CLONE0") ($(ratio "$CLONE0" "$LOCAL")×)"
    row "pushes: Σ sent (21 pushes)" "$PUSH_BYTES" "$(mib "$PUSH_BYTES"), $PUSH_DELTAS deltas, Σ $PUSH_SECS s"
    echo
    echo "After each push (bytes):"
    echo
    echo "| step | local store | remote objects | remote deltas | push sent | push deltas |"
    echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
    printf '%s' "$STEP_ROWS"
    echo
    echo "The remote after gc (\`find R -type f\`, by top directory):"
    echo
    awk '{ split($2, p, "/"); n[p[1]]++; b[p[1]] += $1 }
      END { for (d in n) printf "- `%s/`: %d files, %d bytes\n", d, n[d], b[d] }' \
      "$W/remote-files-$DT.txt" | sort
  } >>"$REPORT"
done

{
  echo
  echo "Run time $(awk -v a="$(secs "$START" "$(now)")" 'BEGIN { printf "%.1f", a / 60 }') min."
} >>"$REPORT"
cat "$REPORT"
if [ -n "$RESULTS" ]; then cp "$REPORT" "$RESULTS"; fi
