#!/usr/bin/env bash
# What recording tensors costs a commit, and how fast diff and verify run, as ratios against
# `openssl dgst -sha256` and `cp` of the same file measured in the same run.
#
#   bench/history.sh [SIZE] [RUNS]        (defaults: 1GiB, 3)
#
# The "no tensors" baseline is the same file with its header length overwritten (0xff…), so it no
# longer parses as safetensors. Both are committed with `layout = none` chunking (plain FastCDC,
# plain zstd), so the same bytes go through the same chunking, hashing and compression and only the
# per-tensor hashing differs. The default (tensor-aligned) commit is shown for reference. Each commit runs in a fresh repository (cold store). Medians
# of RUNS are reported, wall-clock and CPU (user + system) seconds: on a shared machine the CPU
# figures are the steadier ones.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-1GiB}
RUNS=${2:-3}
cargo build --release -q -p nshard -p nshard-bench
NSHARD=$PWD/target/release/nshard
GEN=$PWD/target/release/nshard-gen
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

"$GEN" model --size "$SIZE" --seed 1 -o "$W/model.safetensors" >/dev/null
cp "$W/model.safetensors" "$W/plain.bin"
printf '\xff\xff\xff\xff\xff\xff\xff\xff' | dd of="$W/plain.bin" conv=notrunc status=none
"$GEN" mutate --kind tensors:5% --from "$W/model.safetensors" --seed 2 -o "$W/model2.safetensors" >/dev/null
BYTES=$(stat -c %s "$W/model.safetensors")

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timed() { # timed CMD… → "wall cpu" seconds
    local TIMEFORMAT='%R %U %S' t
    t=$( { time "$@" >/dev/null 2>&1; } 2>&1 )
    echo "$t" | awk '{printf "%s %.3f\n", $1, $2 + $3}'
}

PLAIN_CONFIG='[chunking]
algorithm = "fastcdc-2020"
min_size = 1048576
avg_size = 4194304
max_size = 16777216'
commit_once() { # FILE [plain] → seconds of a cold commit
    local r="$W/repo"
    rm -rf "$r"; mkdir -p "$r"; cp "$1" "$r/m"
    (cd "$r" && "$NSHARD" -q init >/dev/null)
    if [ "${2:-}" = plain ]; then echo "$PLAIN_CONFIG" >"$r/.shard/config.toml"; fi
    (cd "$r" && "$NSHARD" -q track m >/dev/null)
    sync
    timed "$NSHARD" -q -C "$r" commit -m bench
}

declare -a sha cpt with without aligned difft verifyt
for i in $(seq "$RUNS"); do
    sha+=("$(timed openssl dgst -sha256 "$W/model.safetensors")")
    cpt+=("$(timed cp "$W/model.safetensors" "$W/copy")"); rm -f "$W/copy"
    without+=("$(commit_once "$W/plain.bin" plain)")
    with+=("$(commit_once "$W/model.safetensors" plain)")
    aligned+=("$(commit_once "$W/model.safetensors")")
done
# diff (working file vs committed, one read) and verify (every object) on the last repository
# (default, tensor-aligned chunking).
cp "$W/model2.safetensors" "$W/repo/m"
for i in $(seq "$RUNS"); do
    difft+=("$(timed "$NSHARD" -q -C "$W/repo" diff m)")
    verifyt+=("$(timed "$NSHARD" -q -C "$W/repo" verify)")
done
"$NSHARD" -C "$W/repo" diff m | grep -E '^(blocks|tensors):'

wall() { printf '%s\n' "$@" | awk '{print $1}' | median; }
cpu() { printf '%s\n' "$@" | awk '{print $2}' | median; }
row() { # label, runs… → "label  wall s (x sha256)  cpu s (x sha256)"
    local label=$1; shift
    local w c
    w=$(wall "$@"); c=$(cpu "$@")
    printf '%-18s %6.2f s wall = %5.2f x sha256   %6.2f s cpu = %5.2f x sha256\n' \
        "$label" "$w" "$(echo "$w / $SW" | bc -l)" "$c" "$(echo "$c / $SC" | bc -l)"
}
SW=$(wall "${sha[@]}"); SC=$(cpu "${sha[@]}")
printf 'file: %.0f MiB safetensors, %s runs, medians\n' "$(echo "$BYTES / 1048576" | bc -l)" "$RUNS"
row "openssl sha256" "${sha[@]}"
row "cp" "${cpt[@]}"
row "commit, no table" "${without[@]}"
row "commit, tensors" "${with[@]}"
row "commit, default" "${aligned[@]}"
row "diff (worktree)" "${difft[@]}"
row "verify" "${verifyt[@]}"
A=$(cpu "${with[@]}"); B=$(cpu "${without[@]}")
printf 'recording the tensor table: %+.2f s cpu (%+.1f %% of the commit'"'"'s cpu time)\n' \
    "$(echo "$A - $B" | bc -l)" "$(echo "($A - $B) * 100 / $B" | bc -l)"
