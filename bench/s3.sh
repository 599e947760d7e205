#!/usr/bin/env bash
# Benchmark: push then pull a 1 GiB checkpoint, and a v2 with 5 % of its tensors changed, through
# three remotes in the same run: a directory remote (the reference), an s3:// remote on a local
# SeaweedFS, and `nshard serve --store s3://…` on that SeaweedFS. Times are reported as ratios
# against the directory remote; bytes moved for v2 are compared with the encoded size of the chunks
# v2 changed.
#
# Usage: bench/s3.sh [SIZE]     (SIZE defaults to 1GiB; e.g. 256MiB for a quick run)
# Starts SeaweedFS with .ci/seaweedfs.sh when nothing answers on its S3 port (127.0.0.1:9013, or
# NSHARD_SEAWEEDFS_PORT) and stops it at the end. Environment: BENCH_DIR (work directory, default: a
# fresh temp dir, removed at the end), the NSHARD_SEAWEEDFS_* variables of .ci/seaweedfs.sh,
# NSHARD and GEN (paths to release builds of nshard and nshard-gen: when both are set they are used
# and nothing is built).
# Needs jq and GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
SIZE="${1:-1GiB}"

source bench/lib.sh

if [[ -z "${NSHARD:-}" || -z "${GEN:-}" ]]; then
  bench_build
fi
bench_workdir s3
eval "$(bash "$ROOT/.ci/seaweedfs.sh" env)"
if ! python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' \
    "${AWS_ENDPOINT_URL##*:}" 2>/dev/null; then
  bash "$ROOT/.ci/seaweedfs.sh" start
  at_exit "bash '$ROOT/.ci/seaweedfs.sh' stop"
fi
cd "$W"
rm -rf a b-* dirremote v1.safetensors v2.safetensors
PREFIX="bench-$$-$(date +%s)"

echo "== generating a $SIZE bf16 checkpoint and a v2 with 5 % of its tensors changed"
gen_checkpoint "$SIZE"

mkdir -p a dirremote
# The working copy takes v1's place, and each clone is removed once checked, to save disk.
(cd a && "$NSHARD" -q init >/dev/null && mv ../v1.safetensors model.safetensors \
  && "$NSHARD" -q track model.safetensors >/dev/null \
  && "$NSHARD" -q commit -m v1 --json >../commit1.json)

SERVER_STORE="s3://$NSHARD_TEST_S3_BUCKET/$PREFIX-served"
"$NSHARD" -q serve --listen 127.0.0.1:0 --store "$SERVER_STORE" >serve.out 2>serve.log </dev/null &
SERVER_PID=$!
at_exit "kill $SERVER_PID"
for _ in $(seq 300); do grep -q "listening on" serve.out && break; sleep 0.1; done
SERVER_URL=$(sed -n 's/^listening on //p' serve.out)
[[ -n "$SERVER_URL" ]] || { cat serve.log; exit 1; }

declare -A URL=(
  [dir]="$W/dirremote"
  [s3]="s3://$NSHARD_TEST_S3_BUCKET/$PREFIX-direct"
  [served]="$SERVER_URL"
)
NAMES=(dir s3 served)

# CPU seconds of each step, to see where the time goes on a shared machine: the nshard client,
# the nshard server (served only) and SeaweedFS (its pid from .ci/seaweedfs.sh, when it is there).
WEED_PID=$(cat "${NSHARD_SEAWEEDFS_STATE:-$ROOT/.ci/seaweedfs-state}/pid" 2>/dev/null || true)
proc_cpu() { # PID -> user+system seconds so far (0 when unknown)
  if [[ -n "$1" && -r "/proc/$1/stat" ]]; then
    awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"
  else
    echo 0
  fi
}
# step VAR cmd…: `timed`, and VAR_client / VAR_server / VAR_weed: CPU seconds spent by each.
step() {
  local var="$1"; shift
  local s0 w0
  s0=$(proc_cpu "$SERVER_PID"); w0=$(proc_cpu "$WEED_PID")
  timed "$var" /usr/bin/time -f "%U %S" -o "$W/$var.cpu" "$@"
  printf -v "${var}_client" '%s' "$(awk '{ printf "%.2f", $1 + $2 }' "$W/$var.cpu")"
  printf -v "${var}_server" '%s' "$(awk -v a="$s0" -v b="$(proc_cpu "$SERVER_PID")" 'BEGIN { printf "%.2f", b - a }')"
  printf -v "${var}_weed" '%s' "$(awk -v a="$w0" -v b="$(proc_cpu "$WEED_PID")" 'BEGIN { printf "%.2f", b - a }')"
}

for n in "${NAMES[@]}"; do
  step "PUSH1_$n" "$NSHARD" -C a push --json --remote "${URL[$n]}"
  mkdir -p "b-$n/.shard" && cp a/.shard/config.toml "b-$n/.shard/" && cp a/model.safetensors.shard.json "b-$n/"
  step "PULL1_$n" "$NSHARD" -C "b-$n" pull --json --remote "${URL[$n]}"
done

mv v2.safetensors a/model.safetensors
(cd a && "$NSHARD" -q commit -m v2 --json >../commit2.json)
for n in "${NAMES[@]}"; do
  step "PUSH2_$n" "$NSHARD" -C a push --json --remote "${URL[$n]}"
  cp a/model.safetensors.shard.json "b-$n/"
  step "PULL2_$n" "$NSHARD" -C "b-$n" pull --json --remote "${URL[$n]}"
  "$NSHARD" -C "b-$n" -q checkout >/dev/null
  cmp "b-$n/model.safetensors" a/model.safetensors
  rm -rf "b-$n"
done

STORED2=$(jq '.[0].stored_bytes' commit2.json)
# The yardstick that does not come from nshard: the changed tensors alone, zstd-compressed tensor by
# tensor by the generator (as bench/remotes.sh uses). Against the commit's own stored bytes the ratio
# is 1.00 by construction.
ZSTD2=$(jq '.changed_zstd_bytes' gen2.json)
v() { printf '%s' "${!1}"; }
row() { # label var-prefix
  local dir s3 served
  dir=$(v "${2}_dir"); s3=$(v "${2}_s3"); served=$(v "${2}_served")
  printf '%-8s %8s %8s %6s %8s %6s\n' "$1" "$dir" "$s3" "$(ratio "$s3" "$dir")" "$served" "$(ratio "$served" "$dir")"
}
cpu_row() { # label var-prefix
  printf '%-8s %8s %18s %24s\n' "$1" "$(v "${2}_dir_client")" \
    "$(v "${2}_s3_client") + $(v "${2}_s3_weed")" \
    "$(v "${2}_served_client") + $(v "${2}_served_server") + $(v "${2}_served_weed")"
}
cat <<EOF

== results ($SIZE checkpoint = $BYTES bytes), seconds, and ratios against the directory remote
step         dir       s3   x dir   served  x dir
$(row "push v1" PUSH1)
$(row "pull v1" PULL1)
$(row "push v2" PUSH2)
$(row "pull v2" PULL2)

v2 changed tensors, zstd-compressed one by one (generator's changed_zstd_bytes): $ZSTD2 bytes
v2 changed chunks' encoded size (commit's stored_bytes): $STORED2 bytes
load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores

== CPU seconds per step: client (+ server) (+ SeaweedFS)
step            dir               s3                 served
$(cpu_row "push v1" PUSH1)
$(cpu_row "pull v1" PULL1)
$(cpu_row "push v2" PUSH2)
$(cpu_row "pull v2" PULL2)
EOF
for n in "${NAMES[@]}"; do
  P=$(jq '.bytes' "PUSH2_$n.out"); L=$(jq '.bytes' "PULL2_$n.out")
  echo "$n: v2 pushed $P bytes ($(ratio "$P" "$ZSTD2") x the changed tensors' zstd), pulled $L bytes ($(ratio "$L" "$ZSTD2") x)"
done
