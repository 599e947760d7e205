#!/usr/bin/env bash
# Issue 11 benchmark: one `nshard serve` (release build) on 127.0.0.1 under load, loopback only,
# every phase bounded in time and request count (crates/nshard-server/examples/load).
#
#   bench/load.sh                       # defaults below
#   MIX_SECONDS=10 HOLD=200 bench/load.sh
#
# Phases (load client):
#   put      CLIENTS (64) clients upload OBJECTS (256) distinct 4 MiB objects (incompressible)
#   get      CLIENTS clients download random stored objects for PHASE_SECONDS (10), byte-compared
#   missing  CLIENTS clients send batches of BATCH (1000) ids, half stored, for PHASE_SECONDS
#   mix      MIX_CLIENTS (256) connections, 80 % GET of stored objects / 20 % PUT of new ones, for
#            MIX_SECONDS (30); then the same mix while HOLD (500) more connections are held open
#            (half idle, half trickling a request head one line every 2 s, reopened when the
#            server closes them)
# During the mixes the server's VmRSS/VmHWM and its open file descriptors are sampled from
# /proc/PID every 100 ms. Checks: no 5xx and no failed request, VmHWM <= 256 MiB, descriptors back to
# their level before each mix once its connections close, and the p99 with held connections
# within 2x of the p99 without them.
# References measured in the same run: `openssl dgst -sha256` and `cp` + `sync` of a 1 GiB file
# (median of 3; the server hashes every object it receives or sends and fsyncs every object it
# stores), and `stat` of store paths (half present, half absent), which is what a `missing`
# check does per id on a directory store.
#
# The server is started as a deployment expecting this many clients would: the open-files limit
# raised to the hard limit (`ulimit -n`; the server raises it too) and `--max-connections
# MAX_CONNECTIONS` (4096) so 256 + 500 connections fit; other limits at their defaults
# (SERVE_ARGS adds flags; SERVE_ENV="NAME=VALUE …" sets environment variables of the server only).
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-64}
OBJECTS=${OBJECTS:-256}
BATCH=${BATCH:-1000}
PHASE_SECONDS=${PHASE_SECONDS:-10}
MIX_CLIENTS=${MIX_CLIENTS:-256}
MIX_SECONDS=${MIX_SECONDS:-30}
HOLD=${HOLD:-500}
MAX_CONNECTIONS=${MAX_CONNECTIONS:-4096}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}

cargo build --release -q -p nshard
cargo build --release -q -p nshard-server --example load
NSHARD="$TARGET/release/nshard"
LOAD="$TARGET/release/examples/load"

W=$(mktemp -d "${TMPDIR:-/tmp}/nshard-bench-load.XXXXXX")
SERVER_PID=""
trap '[[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$W"' EXIT
cd "$W"
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'; }
median3() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

echo "== references (load $(load))" >&2
head -c $((1 << 30)) /dev/urandom >ref.bin
sync
SHA=(); CPS=()
for _ in 1 2 3; do
  t0=$(now); openssl dgst -sha256 ref.bin >/dev/null; t1=$(now); SHA+=("$(secs "$t0" "$t1")")
  sync; t0=$(now); cp ref.bin copy.bin && sync copy.bin; t1=$(now); CPS+=("$(secs "$t0" "$t1")")
  rm copy.bin
done
SHA_MBS=$(awk -v s="$(median3 "${SHA[@]}")" 'BEGIN { printf "%.0f", 1073.741824 / s }')
CP_MBS=$(awk -v s="$(median3 "${CPS[@]}")" 'BEGIN { printf "%.0f", 1073.741824 / s }')
rm ref.bin

ulimit -n "$(ulimit -Hn)"
mkdir store
# shellcheck disable=SC2086
${SERVE_ENV:+env $SERVE_ENV} "$NSHARD" serve --listen 127.0.0.1:0 --store "$W/store" --max-connections "$MAX_CONNECTIONS" \
  ${SERVE_ARGS:-} >serve.out 2>serve.log &
SERVER_PID=$!
for _ in $(seq 1 300); do grep -q '^listening on ' serve.out && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' serve.out)
[[ -n "$URL" ]] || { echo "server did not start:" >&2; cat serve.log >&2; exit 1; }
echo "== load against $URL (pid $SERVER_PID, open-files limit $(ulimit -n), load $(load))" >&2
L0=$(load)
LOAD_RC=0
"$LOAD" "$URL" --clients "$CLIENTS" --objects "$OBJECTS" --object-size $((4 << 20)) \
  --batch "$BATCH" --seconds "$PHASE_SECONDS" --max-requests 100000 \
  --phases get,missing,mix --mix-clients "$MIX_CLIENTS" --mix-seconds "$MIX_SECONDS" \
  --hold "$HOLD" --server-pid "$SERVER_PID" >load.json || LOAD_RC=$?
L1=$(load)
HWM=$(awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$SERVER_PID/status")

# The `missing` reference: stat(1) of store paths, half present, half absent, as many as one
# batch per 1 000 ids.
find store -type f -name '[0-9a-f]*' >all-objects
head -n 500 all-objects >present
N=$(wc -l <present)
{ for _ in $(seq 1 40); do cat present; sed 's/.$/x/' present; done; } >paths
NPATHS=$(wc -l <paths)
t0=$(now); xargs -a paths stat -c '' >/dev/null 2>&1 || true; t1=$(now)
STAT_PS=$(awk -v n="$NPATHS" -v s="$(secs "$t0" "$t1")" 'BEGIN { printf "%.0f", n / s }')
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""
grep -v ' INFO ' serve.log | sed -E 's/^[^ ]+ +//' | cut -c1-120 | sort | uniq -c | sort -rn | head -n 5 >serve-warnings || true

ph() { jq -r --arg p "$1" --arg f "$2" '.phases[] | select(.phase == $p) | .[$f]' load.json; }
mx() { jq -r "$1" load.json; }
row() { # NAME JSONPATH-PREFIX NOTE
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$(mx "$2.requests")" \
    "$(mx "$2.requests_per_s")" "$(mx "$2.mb_per_s")" "$(mx "$2.p50_ms")" "$(mx "$2.p99_ms")" \
    "$(mx "$2.server_errors_5xx") / $(mx "$2.failures") / $(mx "$2.throttled_429")" "$3"
}
P='.phases[] | select(.phase == "'
IDS_PS=$(awk -v r="$(ph missing requests_per_s)" -v b="$BATCH" 'BEGIN { printf "%.0f", r * b }')
cat <<EOF

load: $CLIENTS clients; $OBJECTS objects of 4 MiB; missing batches of $BATCH ids; mix: $MIX_CLIENTS connections, 80 % GET / 20 % PUT, ${MIX_SECONDS} s, then with $HOLD held connections
server: nshard serve --max-connections $MAX_CONNECTIONS ${SERVE_ARGS:-} (open-files limit $(ulimit -n))
load average: $L0 before, $L1 after
references: openssl dgst -sha256 $SHA_MBS MB/s, cp + sync $CP_MBS MB/s (1 GiB, median of 3); stat(1) of store paths $STAT_PS /s ($NPATHS paths, half absent)

| phase | requests | req/s | MB/s | p50 ms | p99 ms | 5xx / failed / 429 | ratio |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |
$(row "put 4 MiB" "$P""put\")" "$(ratio "$(ph put mb_per_s)" "$SHA_MBS") × sha256, $(ratio "$(ph put mb_per_s)" "$CP_MBS") × cp+sync")
$(row "get 4 MiB" "$P""get\")" "$(ratio "$(ph get mb_per_s)" "$SHA_MBS") × sha256, $(ratio "$(ph get mb_per_s)" "$CP_MBS") × cp+sync")
$(row "missing" "$P""missing\")" "$IDS_PS ids/s = $(ratio "$IDS_PS" "$STAT_PS") × stat")
$(row "mix GET" .mix.without_held.get "")
$(row "mix PUT" .mix.without_held.put "")
$(row "mix all" .mix.without_held.all "")
$(row "mix GET, $HOLD held" .mix.with_held.get "p99 $(mx .mix.p99_ratio.get) × without")
$(row "mix PUT, $HOLD held" .mix.with_held.put "p99 $(mx .mix.p99_ratio.put) × without")
$(row "mix all, $HOLD held" .mix.with_held.all "p99 $(mx .mix.p99_ratio.all) × without (target <= 2)")

server during the mix without / with held connections:
  peak VmRSS $(mx .mix.without_held.server.rss_max_mib) / $(mx .mix.with_held.server.rss_max_mib) MiB; VmHWM at the end of the run $HWM MiB (target <= 256)
  open fds before $(mx .mix.without_held.fds_before) / $(mx .mix.with_held.fds_before), max $(mx .mix.without_held.server.fd_max) / $(mx .mix.with_held.server.fd_max), after the clients closed $(mx .mix.without_held.fds_after_close) / $(mx .mix.with_held.fds_after_close)
  held connections: open at start $(mx .mix.with_held.held.open_at_start), at end $(mx .mix.with_held.held.open_at_end), opened $(mx .mix.with_held.held.opened), closed by the server $(mx .mix.with_held.held.closed_by_server)
EOF
if [ -s serve-warnings ]; then echo "server log, most frequent non-INFO lines:"; cat serve-warnings; fi
awk -v h="$HWM" 'BEGIN { if (h > 256) print "TARGET MISSED: server peak RSS " h " MiB > 256 MiB" }'
awk -v r="$(mx .mix.p99_ratio.all)" 'BEGIN { if (r > 2) print "TARGET MISSED: p99 with held connections " r "x > 2x" }'
if [[ "$LOAD_RC" -ne 0 ]]; then echo "load client reported failures (exit $LOAD_RC)"; exit 1; fi
