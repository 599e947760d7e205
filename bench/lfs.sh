#!/usr/bin/env bash
# Benchmark: Git LFS with `nshard lfs agent` against Git LFS's own storage, same run.
#
# Two versions of a bf16 safetensors checkpoint (`nshard-gen model`, then `mutate --kind
# tensors:5%`: 5 % of the tensors changed) are committed in a git repository that tracks
# `*.safetensors` with Git LFS, and pushed with `git push` to a bare repository on this machine:
#   (a) git-lfs's built-in transfer to a local path (git-lfs stores each version whole, in the
#       clone's `.git/lfs/objects` and in the remote's `lfs/objects`);
#   (b) the same with `nshard lfs install --remote DIR` (a NeuroShard directory remote).
# Measured: bytes stored (the clone's `.git/lfs/objects`, the LFS remote's `lfs/objects`, the
# NeuroShard remote), the wall time of each `git push`, and of `git lfs pull` of the newest
# version into a fresh pointer-only clone. References in the same run: `cp FILE && sync` and
# `openssl dgst -sha256` of the same file. Writes bench/lfs/RESULTS.md.
#
# Both remotes (the bare git repository with git-lfs's objects, the NeuroShard directory) live on
# another filesystem than the clones, REMOTE_DIR (default: a fresh directory in /dev/shm when it
# exists), as a real remote would: on the same filesystem git-lfs hard-links its objects instead of
# copying them.
#
# Usage: bench/lfs.sh [SIZE]   (default 1GiB; about 3 minutes on 2 cores, plus the build; needs
# about 3 × SIZE of RAM for /dev/shm)
# Environment: BENCH_DIR (work directory, default a fresh temp dir removed at the end), NSHARD and
# GEN (release builds of nshard and nshard-gen; when both are set nothing is built).
# Needs git-lfs (Debian's `git-lfs`), openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
SIZE="${1:-1GiB}"
source bench/lib.sh

command -v git-lfs >/dev/null || { echo "bench/lfs.sh needs git-lfs (apt-get install git-lfs)" >&2; exit 1; }
if [[ -z "${NSHARD:-}" || -z "${GEN:-}" ]]; then
  bench_build
fi
bench_workdir lfs
cd "$W"
export HOME="$W/home" GIT_CONFIG_NOSYSTEM=1 XDG_CONFIG_HOME="$W/home/.config"
mkdir -p "$HOME"
git config --global user.name bench
git config --global user.email bench@example.com
git config --global init.defaultBranch main
git lfs install >/dev/null

if [[ -z "${REMOTE_DIR:-}" ]]; then
  if [[ -d /dev/shm ]]; then REMOTE_DIR="$(mktemp -d /dev/shm/nshard-bench-lfs-remotes.XXXXXX)"; else REMOTE_DIR="$W/remotes"; fi
  at_exit "rm -rf '$REMOTE_DIR'"
fi
mkdir -p "$REMOTE_DIR"
R="$REMOTE_DIR"

echo "== generating two $SIZE versions"
gen_checkpoint "$SIZE"
du_b() { du -sb "$1" 2>/dev/null | cut -f1; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

# References.
best() { # best of 3 wall times of "$@"
  local b="" t
  for _ in 1 2 3; do
    timed t "$@"
    if [[ -z "$b" ]] || awk -v t="$t" -v b="$b" 'BEGIN { exit !(t < b) }'; then b="$t"; fi
  done
  echo "$b"
}
T_CP=$(best sh -c "cp v1.safetensors cp.tmp && sync && rm -f cp.tmp")
T_SHA=$(best openssl dgst -sha256 v1.safetensors)

# setup NAME [INSTALL…]: bare repository NAME.git, clone NAME tracking *.safetensors with LFS.
setup() {
  local name="$1"
  shift
  git init -q --bare "$R/$name.git"
  git clone -q "$R/$name.git" "$name" 2>/dev/null
  (cd "$name" && git lfs track '*.safetensors' >/dev/null && git add .gitattributes && git commit -qm attrs && "$@")
}
push_version() { # DIR FILE MESSAGE VAR
  cp "$2" "$1/model.safetensors"
  (cd "$1" && git add model.safetensors && git commit -qm "$3")
  sync
  local t0 t1
  t0=$(now)
  (cd "$1" && git push -q origin main 2>"$W/push.err") || { cat "$W/push.err" >&2; exit 1; }
  t1=$(now)
  printf -v "$4" '%s' "$(secs "$t0" "$t1")"
}
pull_fresh() { # NAME VAR [INSTALL…]
  local name="$1" var="$2"
  shift 2
  rm -rf "$name-clone"
  GIT_LFS_SKIP_SMUDGE=1 git clone -q "$R/$name.git" "$name-clone"
  (cd "$name-clone" && "$@")
  sync
  local t0 t1
  t0=$(now)
  (cd "$name-clone" && git lfs pull)
  sync
  t1=$(now)
  cmp "$name-clone/model.safetensors" v2.safetensors
  printf -v "$var" '%s' "$(secs "$t0" "$t1")"
}

echo "== (a) git-lfs's own transfer"
setup lfs true
push_version lfs v1.safetensors v1 A_PUSH1
push_version lfs v2.safetensors v2 A_PUSH2
A_LOCAL=$(du_b lfs/.git/lfs/objects)
A_REMOTE=$(du_b "$R/lfs.git/lfs/objects")
pull_fresh lfs A_PULL true

echo "== (b) nshard lfs agent"
mkdir "$R/store"
setup ns "$NSHARD" lfs install --remote "$R/store" -q
B_STORE0=$(du_b "$R/store")
push_version ns v1.safetensors v1 B_PUSH1
B_STORE1=$(du_b "$R/store")
push_version ns v2.safetensors v2 B_PUSH2
B_STORE2=$(du_b "$R/store")
B_LOCAL=$(du_b ns/.git/lfs/objects)
B_SHARD=$(du_b ns/.shard/objects)
pull_fresh ns B_PULL "$NSHARD" lfs install --remote "$R/store" -q

FILE_B=$BYTES
REV=$(cd "$ROOT" && git rev-parse --short HEAD)
mkdir -p "$ROOT/bench/lfs"
OUT="$ROOT/bench/lfs/RESULTS.md"
{
  echo "# Git LFS: \`nshard lfs agent\` vs git-lfs's own storage"
  echo
  echo "Produced by \`bench/lfs.sh $SIZE\` at $REV (one run; nproc $(nproc); git-lfs $(git lfs version | cut -d' ' -f1 | cut -d/ -f2)). Two versions of a bf16 safetensors checkpoint ($(mib "$FILE_B") each; v2 changes 5 % of the tensors), committed with \`*.safetensors\` tracked by LFS and pushed with \`git push\` to a bare repository on another filesystem of the same machine (tmpfs; the NeuroShard remote beside it)."
  echo
  echo "## Bytes stored for the two versions"
  echo
  echo "| where | bytes | vs one version |"
  echo "| --- | ---: | ---: |"
  echo "| git-lfs: the clone's \`.git/lfs/objects\` | $(mib "$A_LOCAL") | $(ratio "$A_LOCAL" "$FILE_B")× |"
  echo "| git-lfs: the LFS remote (\`lfs.git/lfs/objects\`) | $(mib "$A_REMOTE") | $(ratio "$A_REMOTE" "$FILE_B")× |"
  echo "| nshard agent: the NeuroShard remote after v1 | $(mib $((B_STORE1 - B_STORE0))) | $(ratio $((B_STORE1 - B_STORE0)) "$FILE_B")× |"
  echo "| nshard agent: the NeuroShard remote after v2 | $(mib $((B_STORE2 - B_STORE0))) | $(ratio $((B_STORE2 - B_STORE0)) "$FILE_B")× |"
  echo "| nshard agent: what v2 added to the remote | $(mib $((B_STORE2 - B_STORE1))) | $(ratio $((B_STORE2 - B_STORE1)) "$FILE_B")× |"
  echo "| NeuroShard remote / LFS remote | | **$(ratio $((B_STORE2 - B_STORE0)) "$A_REMOTE")×** |"
  echo
  echo "With the agent, git-lfs still keeps its local copies (\`.git/lfs/objects\`: $(mib "$B_LOCAL")), and the agent's local store holds the chunks it cut (\`.shard/objects\`: $(mib "$B_SHARD"))."
  echo
  echo "## Time (wall seconds; references measured in the same run, best of 3)"
  echo
  echo "| | git-lfs's own transfer | nshard agent | agent / git-lfs |"
  echo "| --- | ---: | ---: | ---: |"
  echo "| \`git push\` of v1 | $A_PUSH1 s ($(ratio "$A_PUSH1" "$T_CP")× cp) | $B_PUSH1 s ($(ratio "$B_PUSH1" "$T_CP")× cp) | **$(ratio "$B_PUSH1" "$A_PUSH1")×** |"
  echo "| \`git push\` of v2 | $A_PUSH2 s ($(ratio "$A_PUSH2" "$T_CP")× cp) | $B_PUSH2 s ($(ratio "$B_PUSH2" "$T_CP")× cp) | **$(ratio "$B_PUSH2" "$A_PUSH2")×** |"
  echo "| \`git lfs pull\` of v2 into a fresh clone | $A_PULL s | $B_PULL s | $(ratio "$B_PULL" "$A_PULL")× |"
  echo
  echo "References: \`cp FILE x && sync\` $T_CP s, \`openssl dgst -sha256 FILE\` $T_SHA s. A push with the agent reads the file, cuts and hashes it, compresses the new chunks into the local store and sends what the remote lacks; git-lfs's own transfer copies the file."
} >"$OUT"
cat "$OUT"
