#!/usr/bin/env bash
# Issue 20 benchmark: reverse deltas. Store size, commit time and checkout time of a real
# checkpoint series (bench/delta/train.py: AdamW MLP, bf16 and fp32, steps 0, 10, …, 200 and 400,
# each written as a safetensors file), against references measured in the same run: z4ai 0.2.0
# `compress` / `compress_delta`, `zstd -3`, `openssl dgst -sha256`, `cp FILE x && sync`.
#
#   bench/deltas.sh                                     # everything, ~5 min on 2 cores (+ build)
#   NSHARD=/path/to/nshard bench/deltas.sh              # use that binary (default: cargo build --release)
#   NSHARD_REV=e9533b8 NSHARD=… bench/deltas.sh         # what the report says that binary was built from
#   PY=/path/to/python bench/deltas.sh                  # a Python with numpy, zstandard, z4ai
#   DATA=/tmp/delta-data bench/deltas.sh                # reuse a train.py output (else trained here, ~3 min)
#   DTYPES=bf16 DEPTHS="2 8" BIG=0 bench/deltas.sh      # quicker
#   BENCH_DIR=/tmp/keep bench/deltas.sh                 # keep the work directory
#
# Measured (RESULTS.md explains every row):
#   1. sizes: the 21 versions committed in order into a fresh repository (default config); after
#      each commit the growth of `.shard/objects` (sum of file sizes) and the wall time; the first
#      version vs z4ai `compress` (sum over tensors), each later version vs z4ai
#      `compress_delta(new, parent)` and `zstd -3` of the file, the store after 21 versions vs
#      Σ z4ai `compress`; steps 200 → 400 ("far apart") in another fresh repository.
#   2. commit time: step 100 committed on top of steps 0 … 90 (REPS copies of one repository,
#      best), with deltas and with `delta = false`, vs `openssl dgst -sha256` of the file (best of
#      REPS).
#   3. checkout time: the newest version (stored whole) and the deepest one (longest chain of
#      deltas, read from the object headers), work file removed, `--force`, then `sync`; vs
#      `cp FILE x && sync` (best of REPS each).
#   4. DEPTHS sweep (default "off 1 2 4 8 16"): store after 21 versions, deepest/newest checkout.
#   5. BIG=1 (default): peak RSS (/usr/bin/time -v) of commit and checkout on a 1 GiB fp32
#      safetensors (16 tensors × 16 M floats; v2, v3: every weight × (1 + 0.004·normal)).
# Writes the report to stdout and to bench/deltas/RESULTS.md (RESULTS=path to change, RESULTS=
# to skip).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# shellcheck source=bench/lib.sh
source bench/lib.sh
trap 'exit 130' INT TERM   # exit through lib.sh's EXIT trap (removes the work directory)

# The command line as run, for the report: the settings given in the environment, then the script.
CMDLINE=""
for v in NSHARD NSHARD_REV PY DATA DTYPES DEPTHS REPS SWEEP_REPS BIG BIG_TENSORS BIG_ELEMS BENCH_DIR CARGO_TARGET_DIR; do
  if [ -n "${!v+x}" ]; then CMDLINE+="$v=$(printf %q "${!v}") "; fi
done
CMDLINE+="bench/deltas.sh"
DTYPES=${DTYPES:-bf16 fp32}
DEPTHS=${DEPTHS:-off 1 2 4 8 16}
REPS=${REPS:-3}
SWEEP_REPS=${SWEEP_REPS:-3}
BIG=${BIG:-1}
BIG_TENSORS=${BIG_TENSORS:-16}
BIG_ELEMS=${BIG_ELEMS:-16777216}
RESULTS=${RESULTS-$ROOT/bench/deltas/RESULTS.md}
STEPS=$(seq 0 10 200 | xargs)
FAR_FROM=200
FAR_TO=400
TIME_AT=10   # the version index whose commit is timed (step 100), on top of versions 0 … 9
START=$(now)

bench_nshard
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing (apt-get install time)" >&2; exit 1; }
for tool in openssl jq; do
  command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }
done
deltas_python
HELPER="$ROOT/bench/deltas/deltas.py"

bench_workdir deltas
export XDG_CONFIG_HOME="$W/xdg"   # no user config (remotes, settings) leaks into the run
mkdir -p "$XDG_CONFIG_HOME"
RES="$W/results.tsv"
: >"$RES"
rec() { printf '%s\t%s\n' "$1" "$2" >>"$RES"; }
log() { echo "[$(date +%T)] $*" >&2; }

rec dtypes "$DTYPES"
rec steps "$STEPS"
rec depths "$DEPTHS"
rec reps "$REPS"
rec sweep_reps "$SWEEP_REPS"
rec far_from "$FAR_FROM"
rec far_to "$FAR_TO"
rec time_at "$TIME_AT"
rec nshard_version "$("$NSHARD" --version 2>/dev/null || echo unknown)"
rec git "$NSHARD_FROM"
rec z4ai "$("$PY" -c 'import z4ai; print(z4ai.__version__)')"
rec machine "$(uname -m), $(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo), $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
F=model.safetensors
objects() { find .shard/objects -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
# new_repo DIR CONFIG_LINE… : a fresh repository in DIR (cwd), top-level config keys prepended.
new_repo() {
  local dir=$1; shift
  cd "$W"; rm -rf "$dir"; mkdir -p "$dir"; cd "$dir"
  "$NSHARD" init -q >/dev/null
  local line
  for line in "$@"; do
    { echo "$line"; cat .shard/config.toml; } >.shard/config.toml.new
    mv .shard/config.toml.new .shard/config.toml
  done
}
# commit_file SRC MSG : copies SRC over the work file and commits it, then runs `nshard repack`
# (which waits for the background re-encoding commit started, and finishes the queue); sets T
# (wall s of the commit), RT (wall s of the repack), G (growth of .shard/objects after both), J
# (the file's `commit --json` row, its delta_* counts plus what repack did). The file is tracked
# on first use.
commit_file() {
  cp "$1" "$F"
  [ -e "$F.tracked" ] || { "$NSHARD" track "$F" >/dev/null; : >"$F.tracked"; }
  local before t0 t1 t2 bg log=.shard/cache/deltas/repack.log
  before=$(objects)
  rm -f "$log"
  sync
  t0=$(now)
  "$NSHARD" commit --json -m "$2" >"$W/commit.json"
  t1=$(now)
  "$NSHARD" repack --json >"$W/repack.json"
  t2=$(now)
  T=$(secs "$t0" "$t1")
  RT=$(secs "$t1" "$t2")
  G=$(($(objects) - before))
  # What the background run did (its one-line log: "repacked V version(s): C chunk(s) B -> A
  # bytes"), when it got the lock before `nshard repack`.
  bg='{"delta_chunks":0,"delta_bytes_before":0,"delta_bytes_after":0}'
  if [ -f "$log" ]; then
    bg=$(sed -nE 's/^repacked [0-9]+ version\(s\): ([0-9]+) chunk\(s\) ([0-9]+) -> ([0-9]+) bytes$/{"delta_chunks":\1,"delta_bytes_before":\2,"delta_bytes_after":\3}/p' "$log")
    [ -n "$bg" ] || bg='{"delta_chunks":0,"delta_bytes_before":0,"delta_bytes_after":0}'
  fi
  J=$(jq -c -s '.[0][0] + {delta_chunks: (.[0][0].delta_chunks + .[1].delta_chunks + .[2].delta_chunks),
      delta_bytes_before: (.[0][0].delta_bytes_before + .[1].delta_bytes_before + .[2].delta_bytes_before),
      delta_bytes_after: (.[0][0].delta_bytes_after + .[1].delta_bytes_after + .[2].delta_bytes_after)}' \
      "$W/commit.json" "$W/repack.json" <(echo "$bg"))
}
version_id() { sha256sum "$F.shard.json" | cut -c1-64; }
# time_checkout ID N : best of N (work file removed, checkout --force, sync) into T; the result
# must be the expected bytes ($EXPECT).
time_checkout() {
  local best="" t0 t1 i
  for ((i = 0; i < $2; i++)); do
    rm -f "$F"
    sync
    t0=$(now)
    "$NSHARD" checkout "$F" --version "$1" --force >/dev/null
    sync
    t1=$(now)
    local t; t=$(secs "$t0" "$t1")
    if [ -z "$best" ] || lt "$t" "$best"; then best=$t; fi
  done
  cmp -s "$F" "$EXPECT" || { echo "checkout of $1 does not match $EXPECT" >&2; exit 1; }
  T=$best
}
best_sha() {
  local best="" t0 t1 i
  cat "$1" >/dev/null
  for ((i = 0; i < REPS; i++)); do
    t0=$(now); openssl dgst -sha256 "$1" >/dev/null; t1=$(now)
    local t; t=$(secs "$t0" "$t1")
    if [ -z "$best" ] || lt "$t" "$best"; then best=$t; fi
  done
  T=$best
}
best_cp() {
  local best="" t0 t1 i
  cat "$1" >/dev/null
  for ((i = 0; i < REPS; i++)); do
    rm -f "$W/cp.x"; sync
    t0=$(now); cp "$1" "$W/cp.x" && sync; t1=$(now)
    local t; t=$(secs "$t0" "$t1")
    if [ -z "$best" ] || lt "$t" "$best"; then best=$t; fi
  done
  rm -f "$W/cp.x"
  T=$best
}
# chain_depths MANIFEST… : for each manifest copy (one version), read from the object headers:
# a JSON array of {chunks, delta_chunks, delta_raw, delta_stored, stored, depth, tensors}.
chain_depths() {
  "$PY" "$HELPER" chains --objects .shard/objects --manifests "$@"
}
# run_series DTYPE TAG CONFIG_LINE… : the 21 versions into a fresh repository; records under
# DTYPE.TAG.*; keeps manifest copies, version ids, and (TAG = s) a snapshot before TIME_AT.
run_series() {
  local dt=$1 tag=$2; shift 2
  local i=0 s mans=() ids=()
  new_repo "repo-$dt-$tag" "$@"
  for s in $STEPS; do
    if [ "$tag" = s ] && [ "$i" = "$TIME_AT" ]; then
      rm -rf "$W/tpl-$dt"; cp -a . "$W/tpl-$dt"
    fi
    commit_file "$W/st-$dt/step_$(printf %04d "$s").safetensors" "step $s"
    cp "$F.shard.json" "$W/man-$dt-$tag-$i.json"
    mans+=("$W/man-$dt-$tag-$i.json")
    ids+=("$(version_id)")
    if [ "$tag" = s ]; then
      rec "$dt.s.$i.growth" "$G"
      rec "$dt.s.$i.secs" "$T"
      rec "$dt.s.$i.json_net" "$(jq '.stored_bytes + .delta_bytes_after - .delta_bytes_before' <<<"$J")"
      rec "$dt.s.$i.json" "$J"
    fi
    i=$((i + 1))
  done
  rec "$dt.$tag.total" "$(objects)"
  chain_depths "${mans[@]}" >"$W/chains-$dt-$tag.json"
  # the deepest version: longest chain, the newest of those on a tie
  local deep
  deep=$(jq 'to_entries | max_by([.value.depth, .key]) | .key' "$W/chains-$dt-$tag.json")
  rec "$dt.$tag.deep.step" "$(echo "$STEPS" | tr ' ' '\n' | sed -n "$((deep + 1))p")"
  rec "$dt.$tag.deep.depth" "$(jq ".[$deep].depth" "$W/chains-$dt-$tag.json")"
  DEEP_ID=${ids[$deep]}
  DEEP_SRC="$W/st-$dt/step_$(echo "$STEPS" | tr ' ' '\n' | sed -n "$((deep + 1))p" | xargs printf %04d).safetensors"
  NEW_ID=${ids[$((i - 1))]}
  NEW_SRC="$W/st-$dt/step_0200.safetensors"
}

# ---------------------------------------------------------------------------------------------
# 0. the series and the references
# ---------------------------------------------------------------------------------------------
if [ -z "${DATA:-}" ]; then
  DATA="$W/data"
  log "training the checkpoint series (bench/delta/train.py, AdamW, ~3 min)"
  "$PY" "$ROOT/bench/delta/train.py" --out "$DATA" >"$W/train.log"
fi
[ -f "$DATA/tensors.json" ] && [ -d "$DATA/step_0400" ] || { echo "no series in $DATA" >&2; exit 1; }
PAIRS=$(echo "$STEPS" | awk '{ for (i = 2; i <= NF; i++) printf "%s:%s ", $(i - 1), $i }')
for dt in $DTYPES; do
  log "[$dt] writing safetensors files; z4ai and zstd references"
  "$PY" "$HELPER" safetensors --data "$DATA" --dtype "$dt" --steps "$STEPS $FAR_TO" --out "$W/st-$dt"
  "$PY" "$HELPER" refs --data "$DATA" --dtype "$dt" --dir "$W/st-$dt" --steps "$STEPS $FAR_TO" \
    --pairs "$PAIRS $FAR_FROM:$FAR_TO" --out "$W/refs-$dt.json"
  rec "$dt.size" "$(stat -c %s "$W/st-$dt/step_0000.safetensors")"
done

for dt in $DTYPES; do
  # -------------------------------------------------------------------------------------------
  # 1. sizes, default config
  # -------------------------------------------------------------------------------------------
  log "[$dt] committing the 21 versions (default config)"
  run_series "$dt" s
  "$NSHARD" log "$F" --json >"$W/log-$dt.json"
  # log is newest first; map each version id to its stored_bytes
  i=0
  for s in $STEPS; do
    id=$(sha256sum "$W/man-$dt-s-$i.json" | cut -c1-64)
    rec "$dt.s.$i.log" "$(jq --arg id "$id" '[.[] | select(.version == $id)][0].stored_bytes // "nan"' "$W/log-$dt.json")"
    rec "$dt.s.$i.depth" "$(jq ".[$i].depth" "$W/chains-$dt-s.json")"
    i=$((i + 1))
  done
  rec "$dt.depths" "$(jq -r '[.[].depth | tostring] | join(" ")' "$W/chains-$dt-s.json")"

  # 3. checkout: newest vs deepest vs cp
  log "[$dt] checkout timings"
  EXPECT=$NEW_SRC; time_checkout "$NEW_ID" "$REPS"; rec "$dt.co.new" "$T"
  EXPECT=$DEEP_SRC; time_checkout "$DEEP_ID" "$REPS"; rec "$dt.co.deep" "$T"
  rec "$dt.deep.step" "$(grep -P "^$dt\\.s\\.deep\\.step\t" "$RES" | cut -f2)"
  rec "$dt.deep.depth" "$(grep -P "^$dt\\.s\\.deep\\.depth\t" "$RES" | cut -f2)"
  best_cp "$NEW_SRC"; rec "$dt.cp" "$T"

  # a clone filled by pulls: every version pushed to a directory remote, then pulled into a
  # fresh repository with --all-versions; its repack re-encodes them as the commits did
  log "[$dt] a clone that pulls every version"
  rm -rf "$W/remote-$dt"; mkdir -p "$W/remote-$dt"
  "$NSHARD" push --remote "$W/remote-$dt" --all-versions -q >/dev/null
  cp "$F.shard.json" "$W/newest-$dt.json"   # the manifest a clone gets from git
  new_repo "repo-$dt-pulled"
  cp "$W/newest-$dt.json" "$F.shard.json"
  "$NSHARD" pull --remote "$W/remote-$dt" --all-versions --json >"$W/pulled-$dt.json"
  rec "$dt.pulled.queued" "$(jq '.deltas_queued // 0' "$W/pulled-$dt.json")"
  t0=$(now); "$NSHARD" repack >/dev/null; t1=$(now)
  rec "$dt.pulled.repack" "$(secs "$t0" "$t1")"
  rec "$dt.pulled.total" "$(objects)"
  cd "$W"; rm -rf "repo-$dt-s" "repo-$dt-pulled" "$W/remote-$dt"

  # far apart
  log "[$dt] far apart: $FAR_FROM -> $FAR_TO"
  new_repo "repo-$dt-far"
  commit_file "$W/st-$dt/step_$(printf %04d $FAR_FROM).safetensors" "step $FAR_FROM"
  commit_file "$W/st-$dt/step_$(printf %04d $FAR_TO).safetensors" "step $FAR_TO"
  rec "$dt.far.growth" "$G"
  rec "$dt.far.json" "$J"
  cd "$W"; rm -rf "repo-$dt-far"

  # -------------------------------------------------------------------------------------------
  # 2. commit time of a new version vs sha256, deltas on and off
  # -------------------------------------------------------------------------------------------
  log "[$dt] commit timings"
  SRC="$W/st-$dt/step_$(printf %04d $((TIME_AT * 10))).safetensors"
  best_sha "$SRC"; rec "$dt.sha" "$T"
  # on: the default (commit returns, the re-encoding runs in the background; the repack after
  # it is timed apart); sync: delta_background = false; off: delta = false.
  for mode in on sync off; do
    best="" best_rt=""
    for ((r = 0; r < REPS; r++)); do
      cd "$W"; rm -rf timed; cp -a "tpl-$dt" timed; cd timed
      line=""
      [ $mode = off ] && line='delta = false'
      [ $mode = sync ] && line='delta_background = false'
      if [ -n "$line" ]; then
        { echo "$line"; cat .shard/config.toml; } >.shard/config.toml.new
        mv .shard/config.toml.new .shard/config.toml
      fi
      commit_file "$SRC" "timed"
      if [ -z "$best" ] || lt "$T" "$best"; then best=$T; fi
      if [ -z "$best_rt" ] || lt "$RT" "$best_rt"; then best_rt=$RT; fi
    done
    case $mode in
      on) rec "$dt.commit" "$best"; rec "$dt.repack" "$best_rt" ;;
      sync) rec "$dt.commit_sync" "$best" ;;
      off) rec "$dt.commit_off" "$best" ;;
    esac
    rec "$dt.commit_$mode.json" "$J"
  done
  cd "$W"; rm -rf timed "tpl-$dt"

  # -------------------------------------------------------------------------------------------
  # 4. delta_depth sweep
  # -------------------------------------------------------------------------------------------
  for d in $DEPTHS; do
    log "[$dt] delta_depth $d"
    if [ "$d" = off ]; then
      run_series "$dt" "d.$d" 'delta = false'
    else
      run_series "$dt" "d.$d" "delta_depth = $d"
    fi
    EXPECT=$NEW_SRC; time_checkout "$NEW_ID" "$SWEEP_REPS"; rec "$dt.d.$d.co.new" "$T"
    EXPECT=$DEEP_SRC; time_checkout "$DEEP_ID" "$SWEEP_REPS"; rec "$dt.d.$d.co.deep" "$T"
    cd "$W"; rm -rf "repo-$dt-d.$d"
  done
  rm -f "$W"/man-"$dt"-*.json
done

# ---------------------------------------------------------------------------------------------
# 5. peak RSS on a 1 GiB fp32 safetensors
# ---------------------------------------------------------------------------------------------
# rss_run KEY CMD… : runs CMD under /usr/bin/time -v; records KEY.rss (KiB) and KEY.secs.
rss_run() {
  local key=$1; shift
  local t0 t1
  sync
  t0=$(now)
  /usr/bin/time -v -o "$W/time.txt" "$@" >"$W/rss.out"
  t1=$(now)
  rec "$key.rss" "$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$W/time.txt")"
  rec "$key.secs" "$(secs "$t0" "$t1")"
}
if [ "$BIG" = 1 ]; then
  log "[big] generating 3 versions of a $((BIG_TENSORS * BIG_ELEMS * 4 / 1048576)) MiB fp32 safetensors"
  "$PY" "$HELPER" synth --out "$W/big" --tensors "$BIG_TENSORS" --elems "$BIG_ELEMS" --versions 3
  rec big.size "$(stat -c %s "$W/big/v1.safetensors")"
  rec big.desc "$BIG_TENSORS fp32 tensors of $BIG_ELEMS elements, random normal × 0.02; v2 and v3: every weight of the version before × (1 + 0.004 · normal)"
  best_sha "$W/big/v3.safetensors"; rec big.sha "$T"
  best_cp "$W/big/v3.safetensors"; rec big.cp "$T"
  new_repo big-repo
  cp "$W/big/v1.safetensors" "$F"
  "$NSHARD" track "$F" >/dev/null
  bigids=()
  for v in 1 2 3; do
    log "[big] commit v$v"
    cp "$W/big/v$v.safetensors" "$F"
    # v2: the default (the re-encoding of v1 in the background; `repack` waits for it); v3 with
    # delta_background = false, so that commit's peak RSS includes re-encoding v2.
    if [ $v = 3 ]; then
      { echo 'delta_background = false'; cat .shard/config.toml; } >.shard/config.toml.new
      mv .shard/config.toml.new .shard/config.toml
    fi
    rss_run "big.c$v" "$NSHARD" commit --json -m "v$v"
    rec "big.c$v.deltas" "$(jq -r '.[0] | "\(.delta_chunks) chunks: \(.delta_bytes_before) → \(.delta_bytes_after) B"' "$W/rss.out")"
    if [ $v = 2 ]; then
      rss_run "big.r$v" "$NSHARD" repack --json
      rec "big.r$v.deltas" "$(sed -n 1p .shard/cache/deltas/repack.log 2>/dev/null || true)"
    fi
    cp "$F.shard.json" "$W/big-man-$v.json"
    bigids+=("$(version_id)")
  done
  chain_depths "$W/big-man-1.json" "$W/big-man-2.json" "$W/big-man-3.json" >"$W/big-chains.json"
  rec big.deep.depth "$(jq '.[0].depth' "$W/big-chains.json")"
  log "[big] checkouts"
  for which in new deep; do
    if [ $which = new ]; then id=${bigids[2]} src="$W/big/v3.safetensors"; else id=${bigids[0]} src="$W/big/v1.safetensors"; fi
    rm -f "$F"
    rss_run "big.co_$which" "$NSHARD" checkout "$F" --version "$id" --force
    cmp -s "$F" "$src" || { echo "big checkout of $which does not match" >&2; exit 1; }
  done
  cd "$W"; rm -rf big-repo big
fi

# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
rec runtime "$(secs "$START" "$(now)")"
"$PY" "$HELPER" report --res "$RES" --work "$W" --cmd "$CMDLINE" --nproc "$(nproc)" \
  ${RESULTS:+--out "$RESULTS"}
