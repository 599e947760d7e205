#!/usr/bin/env bash
# What NeuroShard's git hooks add to a `git checkout` that changes no manifest, as a ratio against
# the same checkout without hooks, in the same run.
#
#   bench/hooks.sh [FILES] [RUNS]        (defaults: 100, 20)
#
# A repository with FILES tracked files (64 KiB each) is committed; a second branch differs only in
# a plain text file. Each run switches branches back and forth (2 checkouts); the median per-switch
# wall time is reported with hooks installed (`nshard git-init`) and without (`--no-hooks`).
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=${1:-100}
RUNS=${2:-20}
cargo build --release -q -p nshard
export PATH="$PWD/target/release:$PATH"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"
git init -q -b main repo && cd repo
git config user.name bench && git config user.email bench@example.com
nshard init >/dev/null
mkdir models
for i in $(seq 1 "$FILES"); do head -c 65536 /dev/urandom > "models/f$i.bin"; done
nshard track models/ >/dev/null
nshard commit -q -m v1 >/dev/null
echo a > notes.txt
nshard git-init --no-hooks >/dev/null
git add -A && git commit -qm v1
git checkout -qb other && echo b > notes.txt && git commit -qam other && git checkout -q main

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
switches() {
    for _ in $(seq 1 "$RUNS"); do
        local s e
        s=$(date +%s%N)
        git checkout -q other && git checkout -q main
        e=$(date +%s%N)
        echo "scale=6; ($e - $s) / 2000000000" | bc
    done | median
}
without=$(switches)
nshard git-init >/dev/null
with=$(switches)
nshard git-init --uninstall-hooks >/dev/null
printf 'files: %s, runs: %s\n' "$FILES" "$RUNS"
printf 'git checkout without hooks: %.4f s\n' "$without"
printf 'git checkout with hooks:    %.4f s\n' "$with"
printf 'ratio: %.2fx\n' "$(echo "scale=6; $with / $without" | bc)"
