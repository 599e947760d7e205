#!/usr/bin/env bash
# Benchmark: push then pull a 1 GiB checkpoint, and a v2 with 5 % of its tensors changed, through a
# local-directory remote. Wall times are reported as ratios against `cp` of the same file in the same
# run; bytes moved for v2 are compared with the generator's own measure of the change: the changed
# tensors zstd-compressed one by one (`changed_zstd_bytes`), computed without nshard.
#
# Usage: bench/remotes.sh [SIZE]     (SIZE defaults to 1GiB; e.g. 256MiB for a quick run)
# Environment: BENCH_DIR (work directory, default: a fresh temp dir, removed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE="${1:-1GiB}"

source bench/lib.sh

bench_build
bench_workdir remotes
cd "$W"
rm -rf a b remote ref v1.safetensors v2.safetensors

# cp_ref VAR FILE: median wall time of three `cp FILE` runs, each started with a clean page cache
# state (`sync` first), the copy deleted after. VAR_SYNC gets the same for `cp` followed by an fsync of
# the copy (`sync FILE`), since push and pull fsync every object they write.
cp_ref() {
  local var="$1" f="$2" t0 t1 a=() b=()
  for i in 1 2 3; do
    sync; t0=$(now); cp "$f" ref/copy; t1=$(now); a+=("$(secs "$t0" "$t1")"); rm ref/copy
    sync; t0=$(now); cp "$f" ref/copy; sync ref/copy; t1=$(now); b+=("$(secs "$t0" "$t1")"); rm ref/copy
  done
  printf -v "$var" '%s' "$(printf '%s\n' "${a[@]}" | sort -n | sed -n 2p)"
  printf -v "${var}_SYNC" '%s' "$(printf '%s\n' "${b[@]}" | sort -n | sed -n 2p)"
}

echo "== generating a $SIZE bf16 checkpoint and a v2 with 5 % of its tensors changed"
gen_checkpoint "$SIZE"
echo "   $(cat gen1.json)"
echo "   $(cat gen2.json)"

mkdir -p a remote ref
(cd a && "$NSHARD" -q init >/dev/null && cp ../v1.safetensors model.safetensors \
  && "$NSHARD" -q track model.safetensors >/dev/null \
  && "$NSHARD" -q commit -m v1 --json >../commit1.json \
  && "$NSHARD" remote add origin ../remote >/dev/null)

sync
cp_ref CP1 v1.safetensors
timed PUSH1 "$NSHARD" -C a push --json
# A clone as git would make it: the config and the manifest, no objects.
mkdir -p b/.shard && cp a/.shard/config.toml b/.shard/ && cp a/model.safetensors.shard.json b/
timed PULL1 "$NSHARD" -C b pull --json
timed CO1 "$NSHARD" -C b checkout --json
cmp b/model.safetensors v1.safetensors

echo "== v2"
cp v2.safetensors a/model.safetensors
(cd a && "$NSHARD" -q commit -m v2 --json >../commit2.json)
cp_ref CP2 v2.safetensors
timed PUSH2 "$NSHARD" -C a push --json
cp a/model.safetensors.shard.json b/
timed PULL2 "$NSHARD" -C b pull --json
timed CO2 "$NSHARD" -C b checkout --json
cmp b/model.safetensors v2.safetensors

STORED2=$(jq '.[0].stored_bytes' commit2.json)
NEW2=$(jq '.[0].chunks_new' commit2.json)
TOTAL2=$(jq '.[0].chunks_total' commit2.json)
PUSHED2=$(jq '.bytes' PUSH2.out)
PUSHOBJ2=$(jq '.objects' PUSH2.out)
PULLED2=$(jq '.bytes' PULL2.out)
PULLOBJ2=$(jq '.objects' PULL2.out)
ZSTD2=$(jq '.changed_zstd_bytes' gen2.json)

r() { printf '%-8s %6s %8s' "$1" "$(ratio "$1" "$2")" "$(ratio "$1" "$3")"; }
cat <<EOF

== results ($SIZE checkpoint = $BYTES bytes). Times in seconds; "x cp" = time / median of 3 cp of the
   same file in this run; "x cp+fsync" = time / median of 3 (cp, then fsync the copy).
step                  time     x cp  x cp+fsync  moved
cp v1                 $(r "$CP1" "$CP1" "$CP1_SYNC")
cp+fsync v1           $(r "$CP1_SYNC" "$CP1" "$CP1_SYNC")
push v1               $(r "$PUSH1" "$CP1" "$CP1_SYNC")  $(jq '.objects' PUSH1.out) objects, $(jq '.bytes' PUSH1.out) bytes
pull v1 (clone)       $(r "$PULL1" "$CP1" "$CP1_SYNC")  $(jq '.objects' PULL1.out) objects, $(jq '.bytes' PULL1.out) bytes
checkout v1 (clone)   $(r "$CO1" "$CP1" "$CP1_SYNC")
cp v2                 $(r "$CP2" "$CP2" "$CP2_SYNC")
cp+fsync v2           $(r "$CP2_SYNC" "$CP2" "$CP2_SYNC")
push v2               $(r "$PUSH2" "$CP2" "$CP2_SYNC")  $PUSHOBJ2 objects, $PUSHED2 bytes
pull v2 (clone)       $(r "$PULL2" "$CP2" "$CP2_SYNC")  $PULLOBJ2 objects, $PULLED2 bytes
checkout v2 (clone)   $(r "$CO2" "$CP2" "$CP2_SYNC")

v2 changed $NEW2 of $TOTAL2 chunks. Reference, measured independently of nshard by the generator:
the changed tensors alone, zstd-compressed tensor by tensor (changed_zstd_bytes): $ZSTD2 bytes
bytes pushed for v2 / changed tensors' zstd size: $(ratio "$PUSHED2" "$ZSTD2")   (target <= 1.10; includes the manifest object)
bytes pulled for v2 / changed tensors' zstd size: $(ratio "$PULLED2" "$ZSTD2")
(for context, not a reference: commit's stored_bytes for v2, the very objects push sends: $STORED2 bytes)
EOF
