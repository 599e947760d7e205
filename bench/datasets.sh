#!/usr/bin/env bash
# Issue 14 benchmark: directories of many files versioned by NeuroShard, `dvc add` and
# `borg create`, on identical copies of the same generated directory, in the same run.
#
#   bench/datasets.sh                         # 5000x10KB 100000x1KB 200x5MB
#   bench/datasets.sh 5000x10KB               # one set
#   PCT=1 TOOLS="nshard dvc borg" bench/datasets.sh
#   NSHARD=/path/to/nshard bench/datasets.sh    # that binary (no build)
#
# For each set COUNTxSIZE: bench/gen_dataset.py writes COUNT files of about SIZE (±25 %; JSON
# lines, CSV and drifting-signal binary in turn) as v1; v2 changes PCT % (1) of the files, adds
# PCT % and removes PCT % (the same seed on every copy, so every tool sees the same bytes). Each
# tool gets its own copy of v1 (so no tool versions another's metadata), versions it, then
# versions v2 in place:
#   nshard  `nshard track --dir data` when `nshard track --help` offers --dir (the directory as
#           one unit), else `nshard track data` (one manifest per file); then `nshard commit`
#   dvc     `dvc init --no-scm`, `dvc add data` twice (cache in .dvc/cache, same disk)
#   borg    `borg init --encryption none`, `borg create --compression zstd,3` per version
# Reported per tool: wall seconds to version v1 and v2 (each after a `sync`, as a ratio to borg's),
# peak RSS, bytes stored after v1 (object/cache/repository file sizes, no directory entries) as a
# ratio to the data's zstd size (`tar` of v1 through `zstd -3`), bytes v2 added as a ratio to the
# changed and added files' zstd size (`zstd -3` on exactly those files, as one stream; the sum of
# one frame per file is printed too), and what a git repository would receive.
#
# DVC comes from PyPI into a virtual environment under the target directory (DVC_VERSION, default
# 3.*); borg is the system's (`apt-get install borgbackup`). Every loop is bounded by the file
# count. The work directory (under TMPDIR, same disk as the stores) is removed at the end.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SETS=("$@")
[ ${#SETS[@]} -gt 0 ] || SETS=(5000x10KB 100000x1KB 200x5MB)
PCT=${PCT:-1}
TOOLS=${TOOLS:-nshard dvc borg}
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
# NSHARD=/path/to/nshard uses that binary instead of building one.
if [ -z "${NSHARD:-}" ]; then
  cargo build --release -q -p nshard
  NSHARD="$TARGET/release/nshard"
fi
GEN=(python3 "$ROOT/bench/gen_dataset.py")

need() { command -v "$1" >/dev/null || { echo "datasets.sh needs $1 ($2)" >&2; exit 1; }; }
need zstd "apt-get install zstd"
need jq "apt-get install jq"
if [[ " $TOOLS " == *" borg "* ]]; then need borg "apt-get install borgbackup"; fi
DVC=""
if [[ " $TOOLS " == *" dvc "* ]]; then
  VENV="$TARGET/bench-venv"
  if ! "$VENV/bin/dvc" --version >/dev/null 2>&1; then
    echo "installing dvc ${DVC_VERSION:-3.*} into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q "dvc==${DVC_VERSION:-3.*}"
  fi
  DVC="$VENV/bin/dvc"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nshard-bench-datasets.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export BORG_BASE_DIR="$WORK/borg-base" BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export DVC_NO_ANALYTICS=1 BORG_RELOCATED_REPO_ACCESS_IS_OK=yes

bytes_of() { find "$@" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }
# timed CMD...: wall seconds and peak RSS (KiB) of one run after a sync, into T and M.
timed() {
  sync
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/err" || {
    cat "$WORK/err" >&2; echo "failed: $*" >&2; exit 1; }
  read -r T M < <(tail -n 1 "$WORK/time")
}
size_of() {
  local n=${1//[!0-9]/} u=${1//[0-9]/}
  case $u in KB) echo $((n * 1000)) ;; MB) echo $((n * 1000000)) ;; *) echo "$n" ;; esac
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'; }
mb() { awk -v a="$1" 'BEGIN { printf "%.2f", a / 1e6 }'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

if "$NSHARD" track --help | grep -qE -- '--dir([^-a-z]|$)'; then NS_MODE=dir; else NS_MODE=files; fi

# version TOOL DIR V: versions DIR/data as version V (1 or 2); sets T, M.
version() {
  local tool=$1 d=$2 v=$3
  cd "$d"
  case $tool in
    nshard)
      if [ "$v" = 1 ]; then
        "$NSHARD" -q init >/dev/null
        if [ "$NS_MODE" = dir ]; then
          timed sh -c '"$1" -q track --dir data && "$1" -q commit -m v1' sh "$NSHARD"
        else
          timed sh -c '"$1" -q track data && "$1" -q commit -m v1' sh "$NSHARD"
        fi
      else
        timed "$NSHARD" -q commit -m v2
      fi ;;
    dvc)
      if [ "$v" = 1 ]; then "$DVC" init --no-scm -q; fi
      timed "$DVC" add -q data ;;
    borg)
      if [ "$v" = 1 ]; then borg init --encryption none repo; fi
      timed borg create --compression zstd,3 "repo::v$v" data ;;
  esac
  cd "$WORK"
}
stored() {
  case $1 in
    nshard) bytes_of "$2/.shard/objects" ;;
    dvc) bytes_of "$2/.dvc/cache" ;;
    borg) bytes_of "$2/repo" ;;
  esac
}
# What a git repository of the data would hold: files and bytes.
gitside() {
  case $1 in
    nshard) find "$2" -name '*.shard.json' -not -path '*/.shard/*' -printf '%s\n' \
              | awk '{ n++; s += $1 } END { printf "%d files, %.1f KB", n, s / 1000 }' ;;
    dvc) find "$2" -maxdepth 1 -type f -name '*.dvc' -printf '%s\n' \
              | awk '{ n++; s += $1 } END { printf "%d files, %.1f KB", n, s / 1000 }' ;;
    borg) echo "-" ;;
  esac
}

{
  echo "tools: nshard $("$NSHARD" --version | awk '{print $2}') (mode: $NS_MODE)"
  [ -n "$DVC" ] && echo "       dvc $("$DVC" --version)"
  [[ " $TOOLS " == *" borg "* ]] && echo "       $(borg --version)"
  echo "       $(zstd --version)"
} >"$WORK/report"

for set in "${SETS[@]}"; do
  count=${set%%x*}; size=$(size_of "${set#*x}")
  [[ "$count" =~ ^[0-9]+$ && "$count" -le 1000000 && "$size" -gt 0 ]] || {
    echo "bad set $set (COUNTxSIZE, e.g. 5000x10KB)" >&2; exit 2; }
  echo "[$set] generating" >&2
  rm -rf "$WORK/src" "$WORK"/t-*
  "${GEN[@]}" make "$WORK/src/data" "$count" "$size" 1 >/dev/null
  DATA=$(bytes_of "$WORK/src/data"); FILES=$(find "$WORK/src/data" -type f | wc -l)
  REF1=$(tar -cf - -C "$WORK/src" data | zstd -3 -q -c | wc -c)
  declare -A T1 T2 M1 M2 S1 S2 G
  L1=$(load)
  for tool in $TOOLS; do
    echo "[$set] $tool v1 (load $(load))" >&2
    cp -a "$WORK/src" "$WORK/t-$tool"
    version "$tool" "$WORK/t-$tool" 1
    T1[$tool]=$T; M1[$tool]=$M; S1[$tool]=$(stored "$tool" "$WORK/t-$tool")
  done
  "${GEN[@]}" mutate "$WORK/src/data" "$PCT" 2 "$WORK/list" >/dev/null
  REF2=$(cd "$WORK/src/data" && xargs -d '\n' cat <"$WORK/list" | zstd -3 -q -c | wc -c)
  REF2F=$(cd "$WORK/src/data" && xargs -d '\n' zstd -3 -q -c <"$WORK/list" | wc -c)
  CHANGED=$(cd "$WORK/src/data" && xargs -d '\n' cat <"$WORK/list" | wc -c)
  for tool in $TOOLS; do
    echo "[$set] $tool v2 (load $(load))" >&2
    "${GEN[@]}" mutate "$WORK/t-$tool/data" "$PCT" 2 "$WORK/list-$tool" >/dev/null
    cmp -s "$WORK/list" "$WORK/list-$tool" || { echo "copies diverged for $tool" >&2; exit 1; }
    version "$tool" "$WORK/t-$tool" 2
    T2[$tool]=$T; M2[$tool]=$M; S2[$tool]=$(stored "$tool" "$WORK/t-$tool")
    G[$tool]=$(gitside "$tool" "$WORK/t-$tool")
    rm -rf "$WORK/t-$tool"
  done
  L2=$(load)
  REFT1=${T1[borg]:-}; REFT2=${T2[borg]:-}
  {
    echo
    echo "## $set: $FILES files, $(mb "$DATA") MB (zstd -3 of the tar: $(mb "$REF1") MB); v2: $PCT % changed, $PCT % added, $PCT % removed"
    echo "changed + added files: $(mb "$CHANGED") MB, zstd -3 $(mb "$REF2") MB as one stream, $(mb "$REF2F") MB one frame per file"
    echo "load average at start: $L1; at end: $L2"
    echo
    echo "| tool | v1 s | × borg | v1 stored MB | × zstd(data) | v2 s | × borg | v2 added MB | × zstd(changed) | peak RSS MiB | in git |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    for tool in $TOOLS; do
      add=$((S2[$tool] - S1[$tool]))
      rss=$(( (M1[$tool] > M2[$tool] ? M1[$tool] : M2[$tool]) / 1024 ))
      name=$tool; [ "$tool" = nshard ] && name="nshard ($NS_MODE)"
      echo "| $name | ${T1[$tool]} | $(ratio "${T1[$tool]}" "${REFT1:-0}") | $(mb "${S1[$tool]}") | $(ratio "${S1[$tool]}" "$REF1") | ${T2[$tool]} | $(ratio "${T2[$tool]}" "${REFT2:-0}") | $(mb "$add") | $(ratio "$add" "$REF2") | $rss | ${G[$tool]} |"
    done
  } >"$WORK/table"
  cat "$WORK/table" >>"$WORK/report"
  cat "$WORK/table" >&2   # each set's table as soon as it is measured
  unset T1 T2 M1 M2 S1 S2 G
  rm -rf "$WORK/src"
done
cat "$WORK/report"
