#!/usr/bin/env bash
# Benchmark: `nshard serve` on 127.0.0.1 under load, and a 1 GiB push over HTTP against the same push
# to a directory remote, in the same run.
#
# 1. Load: CLIENTS (64) concurrent clients (crates/nshard-server/examples/load.rs) doing PUT then GET
#    of 4 MiB objects, then `missing` batches of BATCH (1 000) ids; requests/s, MB/s, p50/p99 latency and the
#    number of failed requests per phase. Object MB/s is also given as a ratio against
#    `openssl dgst -sha256` of a 1 GiB file in this run (median of 3; the server hashes every object it receives
#    or sends, so that is the single-core bound).
# 2. Push: a SIZE (1 GiB) bf16 checkpoint pushed ROUNDS (3) times each to a fresh directory remote and
#    to a fresh server store, alternating; medians, and their ratio (target: HTTP within 2x of the
#    directory remote). `cp` + fsync of the same file is the reference. One pull of each, for context.
#
# Usage: bench/server.sh [SIZE]      (SIZE defaults to 1GiB; e.g. 256MiB for a quick run)
# Environment: CLIENTS (64), PHASE_SECONDS (10, per load phase), OBJECTS (256 objects of 4 MiB for
# the load), ROUNDS (3), BATCH (1000 ids per `missing` request), BENCH_DIR (work directory, default: a fresh temp dir, removed at the end).
# Every loop is bounded: the load phases by PHASE_SECONDS and a request budget, the pushes by ROUNDS.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE="${1:-1GiB}"
CLIENTS="${CLIENTS:-64}"
PHASE_SECONDS="${PHASE_SECONDS:-10}"
OBJECTS="${OBJECTS:-256}"
ROUNDS="${ROUNDS:-3}"
BATCH="${BATCH:-1000}"

cargo build --release -q -p nshard -p nshard-bench
cargo build --release -q -p nshard-server --example load
NSHARD="$PWD/target/release/nshard"
GEN="$PWD/target/release/nshard-gen"
LOAD="$PWD/target/release/examples/load"

SERVER_PID=""
if [[ -n "${BENCH_DIR:-}" ]]; then
  W="$BENCH_DIR"; mkdir -p "$W"
  trap '[[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null; true' EXIT
else
  W="$(mktemp -d "${TMPDIR:-/tmp}/nshard-bench-server.XXXXXX")"
  trap '[[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$W"' EXIT
fi
cd "$W"
rm -rf a b-* dir-* srv-* load-store ref ./*.out ./*.log

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# start_server STORE: starts `nshard serve` on a free loopback port; sets SERVER_PID and URL.
start_server() {
  : >"$W/serve.out"
  "$NSHARD" serve --listen 127.0.0.1:0 --store "$1" >"$W/serve.out" 2>>"$W/serve.log" &
  SERVER_PID=$!
  for _ in $(seq 1 300); do
    grep -q '^listening on ' "$W/serve.out" && break
    sleep 0.1
  done
  URL="$(sed -n 's/^listening on //p' "$W/serve.out")"
  [[ -n "$URL" ]] || { echo "server did not start:"; cat "$W/serve.log"; exit 1; }
}
# stop_server: SIGTERM (graceful), then wait for the exit.
stop_server() { kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""; }

echo "== reference: openssl dgst -sha256 and cp of a 1 GiB file"
mkdir -p ref
head -c $((1 << 30)) /dev/urandom >ref/1g.bin
sync
# Median of 3 runs (page cache warm: the file was just written), so one disturbed sample on a shared
# machine does not skew every ratio below.
SHA_RUNS=()
for _ in 1 2 3; do
  t0=$(now); openssl dgst -sha256 ref/1g.bin >/dev/null; t1=$(now)
  SHA_RUNS+=("$(secs "$t0" "$t1")")
done
SHA_S=$(printf '%s\n' "${SHA_RUNS[@]}" | sort -n | sed -n 2p)
SHA_MBS=$(awk -v s="$SHA_S" 'BEGIN { printf "%.0f", 1073.741824 / s }')
rm ref/1g.bin
echo "   openssl sha256: $SHA_MBS MB/s (median of 3: ${SHA_RUNS[*]} s)"

echo "== load: $CLIENTS clients, $OBJECTS objects of 4 MiB, ${PHASE_SECONDS}s per GET/missing phase"
start_server "$W/load-store"
LOAD_RC=0
"$LOAD" "$URL" --clients "$CLIENTS" --objects "$OBJECTS" --object-size $((4 << 20)) \
  --batch "$BATCH" --seconds "$PHASE_SECONDS" --max-requests 50000 >load.json || LOAD_RC=$?
stop_server
rm -rf "$W/load-store"

echo "== generating a $SIZE bf16 checkpoint"
"$GEN" model --size "$SIZE" --dtype bf16 --seed 1 -o model.safetensors >gen.json
BYTES=$(stat -c %s model.safetensors)
mkdir -p a
(cd a && "$NSHARD" -q init >/dev/null && cp ../model.safetensors . \
  && "$NSHARD" -q track model.safetensors >/dev/null && "$NSHARD" -q commit -m v1 >/dev/null)

CP=(); DIRP=(); HTTPP=()
for r in $(seq 1 "$ROUNDS"); do
  sync; t0=$(now); cp model.safetensors ref/copy; sync ref/copy; t1=$(now)
  CP+=("$(secs "$t0" "$t1")"); rm ref/copy

  rm -rf dir-remote; mkdir dir-remote; sync
  t0=$(now); "$NSHARD" -C a push --remote "$W/dir-remote" --json >push-dir.out; t1=$(now)
  DIRP+=("$(secs "$t0" "$t1")")

  rm -rf srv-store; start_server "$W/srv-store"; sync
  t0=$(now); "$NSHARD" -C a push --remote "$URL" --json >push-http.out; t1=$(now)
  HTTPP+=("$(secs "$t0" "$t1")")
  if [[ "$r" -lt "$ROUNDS" ]]; then stop_server; fi
  echo "   round $r: cp+fsync ${CP[-1]} s, push dir ${DIRP[-1]} s, push http ${HTTPP[-1]} s"
done

# One pull of each into a clone (config + manifest only), for context.
pull_into() {
  rm -rf "$1"; mkdir -p "$1/.shard"; cp a/.shard/config.toml "$1/.shard/"
  cp a/model.safetensors.shard.json "$1/"
  sync; local t0 t1; t0=$(now); "$NSHARD" -C "$1" pull --remote "$2" --json >"$1.out"; t1=$(now)
  secs "$t0" "$t1"
}
PULL_DIR=$(pull_into b-dir "$W/dir-remote")
PULL_HTTP=$(pull_into b-http "$URL")
"$NSHARD" -C b-http -q checkout >/dev/null
cmp b-http/model.safetensors model.safetensors
stop_server

CPM=$(median "${CP[@]}"); DIRM=$(median "${DIRP[@]}"); HTTPM=$(median "${HTTPP[@]}")
phase() { jq -r --arg p "$1" '.phases[] | select(.phase == $p)
  | "\(.requests)\t\(.failures)\t\(.requests_per_s)\t\(.mb_per_s)\t\(.p50_ms)\t\(.p99_ms)\t\(.max_ms)"' load.json; }
row() {
  IFS=$'\t' read -r n f rps mbs p50 p99 max <<<"$(phase "$1")"
  printf '%-9s %8s %8s %10s %9s %8s %8s %8s  %s\n' "$1" "$n" "$f" "$rps" "$mbs" "$p50" "$p99" "$max" "$2"
}
cat <<EOF

== results
load ($CLIENTS concurrent clients on 127.0.0.1; objects 4 MiB; missing batches of $BATCH ids, half present)
phase     requests failures  requests/s      MB/s  p50 ms   p99 ms   max ms
$(row put "($(ratio "$(phase put | cut -f4)" "$SHA_MBS") x openssl sha256 = $SHA_MBS MB/s)")
$(row get "($(ratio "$(phase get | cut -f4)" "$SHA_MBS") x openssl sha256)")
$(row missing "($(phase missing | cut -f3 | awk -v b="$BATCH" '{ printf "%.0f", $1 * b }') ids/s)")

push of a $SIZE checkpoint ($BYTES bytes; $(jq '.objects' push-http.out) objects, $(jq '.bytes' push-http.out) bytes), median of $ROUNDS
cp + fsync              $CPM s
push, directory remote  $DIRM s   ($(ratio "$DIRM" "$CPM") x cp+fsync)
push, HTTP (serve)      $HTTPM s   ($(ratio "$HTTPM" "$CPM") x cp+fsync)
HTTP / directory        $(ratio "$HTTPM" "$DIRM")   (target <= 2.00)
pull, directory remote  $PULL_DIR s
pull, HTTP (serve)      $PULL_HTTP s   (HTTP / directory $(ratio "$PULL_HTTP" "$PULL_DIR"))
EOF
if [[ "$LOAD_RC" -ne 0 ]]; then echo "load client reported failures (exit $LOAD_RC)"; exit 1; fi
