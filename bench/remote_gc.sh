#!/usr/bin/env bash
# Benchmark: `nshard remote gc` at scale. Every object here is unrecorded (put by
# `nshard-gen fill-remote`, no record names it), so `--include-unrecorded --grace 0` deletes them all.
#
#  (a) S3 (a local SeaweedFS): a fresh prefix of S3_OBJECTS objects (~100 bytes each). gc lists it
#      (`--dry-run`), then lists and deletes it: wall time, peak RSS, the report's `requests`, and
#      the S3 requests really sent (counted by a loopback proxy in a second pass over a second
#      prefix). Same-run references on prefixes filled alike: `aws s3 ls --recursive` for the
#      listing; `aws s3 rm --recursive` (one DELETE per object) and a botocore loop of ListObjectsV2
#      + DeleteObjects (1000 keys per request: the fewest requests S3 allows) for the deletion.
#      From the counted requests: requests per 100 000 objects and the cost of 1 million at AWS S3
#      Standard request prices.
#  (b) Memory: a directory remote filled with DIR_OBJECTS/4, then DIR_OBJECTS objects; gc
#      `--dry-run` at both sizes (the difference gives bytes per object), then the deleting run and
#      a dry run after it (which reads the marks the deleting run left). Target: peak RSS ≤ 300 MiB
#      at 1 million.
#
# Usage: bench/remote_gc.sh [S3_OBJECTS] [DIR_OBJECTS]   (defaults 100000 and 1000000; about 15
# minutes on 2 cores, 4 of them `aws s3 rm`; about 10 GB of RAM in /dev/shm for the directory
# remote and its copy, or as much disk, see (b) below)
# Starts SeaweedFS with .ci/seaweedfs.sh when nothing answers on its S3 port (127.0.0.1:9013, or
# NSHARD_SEAWEEDFS_PORT) and stops it at the end. Installs the AWS CLI (awscli 1.x from PyPI) into a
# virtual environment, target/bench-awscli (AWSCLI_VENV), when it is not there. Environment:
# BENCH_DIR (work directory, default: a fresh temp dir, removed at the end), REMOTE_GC_DIR (where
# the directory remote of (b) goes), the NSHARD_SEAWEEDFS_* variables of .ci/seaweedfs.sh, NSHARD
# and GEN (paths to release builds of nshard and nshard-gen: when both are set they are used and
# nothing is built).
# Needs jq, python3 and GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
S3_N="${1:-100000}"
DIR_N="${2:-1000000}"
DIR_N1=$((DIR_N / 4))
COUNT_N=$((S3_N < 10000 ? S3_N : 10000)) # objects for counting `aws s3 rm`'s requests
# AWS S3 Standard request prices (us-east-1), dollars per request.
PRICE_LIST=0.000005 # LIST, PUT, COPY, POST: $0.005 per 1 000
PRICE_GET=0.0000004 # GET, HEAD: $0.0004 per 1 000

source bench/lib.sh

if [[ -z "${NSHARD:-}" || -z "${GEN:-}" ]]; then
  bench_build
fi
bench_workdir remote-gc
AWSCLI_VENV="${AWSCLI_VENV:-$BENCH_TARGET/bench-awscli}"
if [[ ! -x "$AWSCLI_VENV/bin/aws" ]]; then
  python3 -m venv "$AWSCLI_VENV"
  "$AWSCLI_VENV/bin/python" -m pip install --quiet awscli==1.46.3
fi
AWS="$AWSCLI_VENV/bin/aws"

eval "$(bash "$ROOT/.ci/seaweedfs.sh" env)"
if ! python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' \
    "${AWS_ENDPOINT_URL##*:}" 2>/dev/null; then
  bash "$ROOT/.ci/seaweedfs.sh" start
  at_exit "bash '$ROOT/.ci/seaweedfs.sh' stop"
fi
B="$NSHARD_TEST_S3_BUCKET"
P="gc-bench-$(date +%Y%m%d-%H%M%S)-$$"
# Whatever happens, the bucket (which may be shared) is left without this run's prefixes.
at_exit "'$AWS' --endpoint-url '$AWS_ENDPOINT_URL' s3 rm --recursive --quiet 's3://$B/$P' >/dev/null 2>&1"
cd "$W"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
PSI0=$(sed -n 's/^some //p' /proc/pressure/cpu 2>/dev/null | cut -d' ' -f1-3)
T_START=$(now)

# A freshly started SeaweedFS answers before its bucket exists: wait for it (an empty fill opens
# the remote, which checks the bucket).
for i in $(seq 120); do
  "$GEN" fill-remote --url "s3://$B/$P-probe" --objects 0 >/dev/null 2>&1 && break
  [[ $i == 120 ]] && { echo "the bucket $B did not appear on $AWS_ENDPOINT_URL" >&2; exit 1; }
  sleep 0.5
done

# A counting proxy: forwards every request to SeaweedFS unchanged and counts it by kind;
# GET /__counts answers the counts so far and resets them.
cat >count_proxy.py <<'EOF'
import http.client, http.server, json, sys, threading, urllib.parse

upstream = urllib.parse.urlsplit(sys.argv[1])
counts, lock, local = {}, threading.Lock(), threading.local()

def kind(method, target):
    path, _, query = target.partition("?")
    q = urllib.parse.parse_qs(query, keep_blank_values=True)
    if method == "POST" and "delete" in q:
        return "DeleteObjects"
    if method == "GET" and ("list-type" in q or "prefix" in q or path.rstrip("/").count("/") <= 1):
        return "LIST"
    return method

class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def forward(self):
        if self.path == "/__counts":
            with lock:
                body = json.dumps(counts).encode()
                counts.clear()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        with lock:
            k = kind(self.command, self.path)
            counts[k] = counts.get(k, 0) + 1
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        for attempt in range(2):
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=300)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                r = conn.getresponse()
                data = r.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                local.conn = None
                if attempt:
                    raise
        self.send_response(r.status, r.reason)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

srv = Server(("127.0.0.1", 0), Proxy)
print(srv.server_address[1], flush=True)
srv.serve_forever()
EOF
python3 count_proxy.py "$AWS_ENDPOINT_URL" >proxy.port 2>proxy.log &
PROXY_PID=$!
at_exit "kill $PROXY_PID"
for _ in $(seq 100); do [[ -s proxy.port ]] && break; sleep 0.1; done
PROXY="http://127.0.0.1:$(cat proxy.port)"
counts() { python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1] + "/__counts").read().decode())' "$PROXY"; }
total() { jq '[.[]] | add // 0' <<<"$1"; }
count_of() { jq --arg k "$2" '.[$k] // 0' <<<"$1"; }

# The plain S3 client (the AWS CLI's botocore) deleting with the fewest requests: ListObjectsV2 pages, DeleteObjects of 1000 keys.
cat >batch_delete.py <<'EOF'
import os, sys
try:
    from botocore import session  # older awscli 1.x: botocore is a package of its own
except ImportError:
    from awscli.botocore import session  # awscli >= 1.44 carries its own copy
bucket, prefix = sys.argv[1], sys.argv[2]
s3 = session.get_session().create_client(
    "s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"])
deleted, batch = 0, []
def flush():
    global deleted, batch
    if batch:
        r = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        if r.get("Errors"):
            sys.exit(f"DeleteObjects errors: {r['Errors'][:3]}")
        deleted += len(batch)
        batch = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for o in page.get("Contents", []):
        batch.append({"Key": o["Key"]})
        if len(batch) == 1000:
            flush()
flush()
print(deleted)
EOF

# measure VAR CMD…: runs CMD (stdout to VAR.out) under GNU time: VAR (wall seconds), VAR_rss
# (peak RSS, MiB: `time -v`'s "Maximum resident set size") and VAR_cpu (user + system seconds).
measure() {
  local var="$1"
  shift
  sync
  /usr/bin/time -f "%e %M %U %S" -o "$var.time" "$@" >"$var.out"
  printf -v "$var" '%s' "$(awk '{ print $1 }' "$var.time")"
  printf -v "${var}_rss" '%s' "$(awk '{ printf "%.1f", $2 / 1024 }' "$var.time")"
  printf -v "${var}_cpu" '%s' "$(awk '{ printf "%.2f", $3 + $4 }' "$var.time")"
}
fill() { # URL N: fills and prints the summary line
  "$GEN" fill-remote --url "$1" --objects "$2" --jobs 64 2>>fill.log
}
listed() { # s3://… prefix: how many keys the AWS CLI lists under it (it fails when none)
  { "$AWS" --endpoint-url "$AWS_ENDPOINT_URL" s3 ls --recursive "$1" || true; } | wc -l
}

mkdir repo
(cd repo && "$NSHARD" -q init >/dev/null)
GC=("$NSHARD" -C "$W/repo" remote gc)

echo "== (a) S3 on SeaweedFS: $S3_N objects per prefix, s3://$B/$P-*"
for p in gc count awsrm batch; do
  echo "   fill $p: $(fill "s3://$B/$P-$p" "$S3_N")"
done
echo "   fill count-awsrm: $(fill "s3://$B/$P-count-awsrm" "$COUNT_N")"

measure GC_LIST "${GC[@]}" "s3://$B/$P-gc" --dry-run --include-unrecorded --grace 0 --json
measure AWS_LS "$AWS" --endpoint-url "$AWS_ENDPOINT_URL" s3 ls --recursive "s3://$B/$P-awsrm/"
measure GC_DEL "${GC[@]}" "s3://$B/$P-gc" --include-unrecorded --grace 0 --json
measure AWS_RM "$AWS" --endpoint-url "$AWS_ENDPOINT_URL" s3 rm --recursive --quiet "s3://$B/$P-awsrm/"
measure BATCH "$AWSCLI_VENV/bin/python" batch_delete.py "$B" "$P-batch/"
AWS_LS_KEYS=$(wc -l <AWS_LS.out)
LEFT_GC=$(listed "s3://$B/$P-gc/objects/")
LEFT_AWS=$(listed "s3://$B/$P-awsrm/")
LEFT_BATCH=$(listed "s3://$B/$P-batch/")
GC_LIST_FREED=$(jq .freed_objects GC_LIST.out)
GC_DEL_FREED=$(jq .freed_objects GC_DEL.out)
GC_LIST_REQ=$(jq .requests GC_LIST.out)
GC_DEL_REQ=$(jq .requests GC_DEL.out)

# The same runs through the counting proxy, on the second prefix (`aws s3 rm` on a small one: it
# sends one DELETE per object).
counts >/dev/null
AWS_ENDPOINT_URL="$PROXY" "${GC[@]}" "s3://$B/$P-count" --dry-run --include-unrecorded --grace 0 --json >count-list.json
N_GC_LIST=$(counts)
AWS_ENDPOINT_URL="$PROXY" "${GC[@]}" "s3://$B/$P-count" --include-unrecorded --grace 0 --json >count-del.json
N_GC_DEL=$(counts)
"$AWS" --endpoint-url "$PROXY" s3 ls --recursive "s3://$B/$P-count-awsrm/" >/dev/null
N_AWS_LS=$(counts)
"$AWS" --endpoint-url "$PROXY" s3 rm --recursive --quiet "s3://$B/$P-count-awsrm/"
N_AWS_RM=$(counts)

# (b) Memory on a directory remote. On a disk, deleting a million small files costs what the
# filesystem makes it cost (0.5 ms a file on an ext4 mounted with `discard`: 9 minutes for gc and
# as much for the reference), and gc's memory does not depend on it: the remote and its copy go to
# a tmpfs (/dev/shm) when there is room for both (about 10 KiB per object), else to the work
# directory. REMOTE_GC_DIR chooses the place.
D="${REMOTE_GC_DIR:-}"
if [[ -z "$D" ]]; then
  need_kb=$((DIR_N * 10))
  shm_kb=$(df --output=avail -k /dev/shm 2>/dev/null | tail -1 || echo 0)
  mem_kb=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
  if [[ "$(stat -f -c %T /dev/shm 2>/dev/null)" == tmpfs && "${shm_kb:-0}" -gt "$need_kb" \
        && "$mem_kb" -gt $((need_kb + 4 * 1024 * 1024)) ]]; then
    D=$(mktemp -d /dev/shm/nshard-bench-remote-gc.XXXXXX)
    at_exit "rm -rf '$D'"
  else
    D="$W"
  fi
fi
DIR_FS=$(stat -f -c %T "$D")
echo "== (b) directory remote in $D ($DIR_FS): $DIR_N1 then $DIR_N objects"
echo "   fill: $(fill "$D/dirremote" "$DIR_N1")"
measure DIR1_LIST "${GC[@]}" "$D/dirremote" --dry-run --include-unrecorded --grace 0
echo "   fill: $(fill "$D/dirremote" "$DIR_N")"
DISK=$(du -sh "$D/dirremote" | cut -f1)
# References: `find` reading every object's size and time (what gc's listing of a directory
# remote does), and `find -delete` of a copy of the objects (a real copy: unlinking the last link
# of a file costs far more than unlinking a hard link, on a filesystem mounted with `discard`).
measure DIR_FIND find "$D/dirremote/objects" -type f -printf '%s %T@\n'
cp -a "$D/dirremote/objects" "$D/objects-copy"
measure DIR_FIND_DEL find "$D/objects-copy" -type f -delete
rm -rf "$D/objects-copy"
measure DIR_LIST "${GC[@]}" "$D/dirremote" --dry-run --include-unrecorded --grace 0
measure DIR_DEL "${GC[@]}" "$D/dirremote" --include-unrecorded --grace 0
measure DIR_AFTER "${GC[@]}" "$D/dirremote" --dry-run --include-unrecorded --grace 0
LEFT_DIR=$(find "$D/dirremote/objects" -type f | wc -l)
MARKS_BYTES=$(find "$D/dirremote/records" -path '*_gc*' -type f -printf '%s\n' 2>/dev/null | sort -n | tail -1)
rm -rf "$D/dirremote"
freed_line() { grep -E '^(would free|freed) ' "$1" | head -1; }

T_END=$(now)
per100k() { awk -v n="$1" -v N="$S3_N" 'BEGIN { printf "%.0f", n * 100000 / N }'; }
cost1m() { # counts JSON, price of a DeleteObjects request -> dollars for 1 million objects
  jq -r --argjson n "$S3_N" --argjson list "$PRICE_LIST" --argjson get "$PRICE_GET" --argjson del "$2" '
    ((.LIST // 0) + (.PUT // 0) + (.POST // 0)) * $list + ((.GET // 0) + (.HEAD // 0)) * $get
    + (.DeleteObjects // 0) * $del | . * 1000000 / $n | . * 10000 | round / 10000' <<<"$1"
}
v() { printf '%s' "${!1}"; }
row() { # label VAR objects [vs reference]: wall seconds, CPU seconds, peak RSS (MiB)
  printf '%-34s %8s %8s %8s %9s   %s\n' "$1" "$(v "$2")" "$(v "${2}_cpu")" "$(v "${2}_rss")" "$3" "${4:-}"
}
nth() { freed_line "$1" | awk -v i="$2" '{ print $i }'; }
PAGES=$(((S3_N + 999) / 1000))

cat <<EOF

== (a) results: $S3_N objects on SeaweedFS (wall and CPU seconds, peak RSS)
step                                seconds    CPU s  RSS MiB   objects   vs same-run reference
$(row "gc --dry-run (list)" GC_LIST "$GC_LIST_FREED" "$(ratio "$GC_LIST" "$AWS_LS") x aws s3 ls")
$(row "aws s3 ls --recursive" AWS_LS "$AWS_LS_KEYS")
$(row "gc (list + delete)" GC_DEL "$GC_DEL_FREED" "$(ratio "$GC_DEL" "$AWS_RM") x aws s3 rm, $(ratio "$GC_DEL" "$BATCH") x list+DeleteObjects")
$(row "aws s3 rm --recursive" AWS_RM "$S3_N")
$(row "botocore list+DeleteObjects" BATCH "$(cat BATCH.out)")
left after: gc $LEFT_GC objects, aws s3 rm $LEFT_AWS keys, list+DeleteObjects $LEFT_BATCH keys

== S3 requests, counted by the proxy ($S3_N objects unless noted; $PAGES list pages of 1000 keys expected)
gc --dry-run             $N_GC_LIST = $(total "$N_GC_LIST") requests; the report's "requests": $GC_LIST_REQ
gc (list + delete)       $N_GC_DEL = $(total "$N_GC_DEL") requests; the report's "requests": $GC_DEL_REQ
aws s3 ls --recursive    $N_AWS_LS = $(total "$N_AWS_LS") requests
aws s3 rm --recursive    $N_AWS_RM = $(total "$N_AWS_RM") requests for $COUNT_N objects
per 100 000 objects: gc --dry-run $(per100k "$(total "$N_GC_LIST")"); gc $(per100k "$(total "$N_GC_DEL")") (LIST $(per100k "$(count_of "$N_GC_DEL" LIST)"), DeleteObjects $(per100k "$(count_of "$N_GC_DEL" DeleteObjects)"), PUT $(per100k "$(count_of "$N_GC_DEL" PUT)")); aws s3 rm $(awk -v n="$(total "$N_AWS_RM")" -v c="$COUNT_N" 'BEGIN { printf "%.0f", n * 100000 / c }')
gc of 1 000 000 objects at AWS S3 Standard request prices (LIST/PUT/POST \$0.005, GET/HEAD \$0.0004 per 1000), scaled from $S3_N:
  \$$(cost1m "$N_GC_DEL" 0) with DeleteObjects free (as DELETE is), \$$(cost1m "$N_GC_DEL" "$PRICE_LIST") if it is billed as a POST; a dry run \$$(cost1m "$N_GC_LIST" 0)

== (b) results: directory remote on $DIR_FS, $DISK at $DIR_N objects (wall and CPU seconds, peak RSS)
step                                seconds    CPU s  RSS MiB   objects   vs same-run reference
$(row "gc --dry-run, $DIR_N1" DIR1_LIST "$(nth DIR1_LIST.out 3)")
$(row "gc --dry-run, $DIR_N" DIR_LIST "$(nth DIR_LIST.out 3)" "$(ratio "$DIR_LIST" "$DIR_FIND") x find -printf")
$(row "gc (delete), $DIR_N" DIR_DEL "$(nth DIR_DEL.out 2)" "$(ratio "$DIR_DEL" "$DIR_FIND_DEL") x find -delete")
$(row "gc --dry-run after the delete" DIR_AFTER "$(nth DIR_AFTER.out 3)")
$(row "find -printf '%s %T@'" DIR_FIND "$(wc -l <DIR_FIND.out)")
$(row "find -delete (a copy)" DIR_FIND_DEL "$DIR_N")
dry run, bytes per object between $DIR_N1 and $DIR_N: $(awk -v a="$DIR1_LIST_rss" -v b="$DIR_LIST_rss" -v n="$((DIR_N - DIR_N1))" 'BEGIN { printf "%.0f", (b - a) * 1048576 / n }')
target: peak RSS <= 300 MiB at $DIR_N objects: dry run $DIR_LIST_rss MiB, delete $DIR_DEL_rss MiB
objects left after the delete: $LEFT_DIR; largest gc marks record: ${MARKS_BYTES:-none} bytes

load average: $LOAD0 before, $(cut -d' ' -f1-3 /proc/loadavg) after, on $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1))
CPU pressure (some avg10/60/300): ${PSI0:-?} before, $(sed -n 's/^some //p' /proc/pressure/cpu 2>/dev/null | cut -d' ' -f1-3) after
$("$NSHARD" --version); $("$AWS" --version 2>&1); SeaweedFS $("$NSHARD_TEST_WEED" version 2>&1 | head -1)
run time: $(secs "$T_START" "$T_END") s
EOF
