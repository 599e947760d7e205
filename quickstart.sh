#!/usr/bin/env bash
# NeuroShard quickstart: builds nshard, generates a sample model, and runs the whole workflow with
# no server: init → track → commit → change → commit → push to a directory remote → clone → pull →
# checkout, verifying the result byte for byte. Needs cargo and git.
#
#   ./quickstart.sh            # works in a temporary directory, removed at the end
#   KEEP=1 ./quickstart.sh     # keeps the directory so you can look around
set -euo pipefail
ROOT=$(cd "$(dirname "$0")" && pwd)
echo "building nshard (release)…"
cargo build --release -q --manifest-path "$ROOT/Cargo.toml" -p nshard -p nshard-bench
export PATH="$ROOT/target/release:$PATH"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/nshard-quickstart.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then echo "working in $WORK (kept)"; else trap 'rm -rf "$WORK"' EXIT; fi
GIT=(git -c user.name=quickstart -c user.email=quickstart@example.invalid -c init.defaultBranch=main)

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

mkdir -p "$WORK/alice" && cd "$WORK/alice"
"${GIT[@]}" init -q
step nshard init
step nshard git-init
mkdir -p models
step nshard-gen model --size 64MiB --dtype bf16 --seed 1 --out models/model.safetensors
step nshard track models/model.safetensors
step nshard commit -m "Initial checkpoint"
"${GIT[@]}" add -A && "${GIT[@]}" commit -qm "Add model"

echo; echo "# fine-tune: the last two layers change"
step nshard-gen mutate --kind last-layers:2 --from models/model.safetensors --seed 2 --out "$WORK/v2.safetensors"
mv "$WORK/v2.safetensors" models/model.safetensors
step nshard status
step nshard commit -m "Fine-tune the last two layers"
"${GIT[@]}" commit -qam "Fine-tune"

echo; echo "# publish the chunks to a directory remote (a shared or network directory works the same)"
step mkdir -p "$WORK/store"
step nshard remote add origin "$WORK/store"
"${GIT[@]}" commit -qam "Add remote"
step nshard push

echo; echo "# on another machine: git clone, then pull the data and check it out"
"${GIT[@]}" clone -q "$WORK/alice" "$WORK/bob"
cd "$WORK/bob"
step nshard status
step nshard pull
step nshard checkout
step cmp models/model.safetensors "$WORK/alice/models/model.safetensors"
echo; echo "quickstart OK: bob's models/model.safetensors is byte-for-byte alice's latest version"
