# Shared setup for the benchmark scripts: `source "$(dirname "$0")/lib.sh"` after `set -euo pipefail`.
#
#   bench_build [EXTRA_CARGO_ARGS…]  release build of nshard and nshard-gen; sets NSHARD and GEN
#                                    (honours CARGO_TARGET_DIR)
#   bench_nshard                     the binary to measure: $NSHARD when given, else bench_build's;
#                                    made absolute and checked; sets NSHARD_FROM (what it was
#                                    built from: $NSHARD_REV, the checkout's `git describe`, or
#                                    "binary given by NSHARD")
#   bench_workdir NAME               sets W: $BENCH_DIR when given (kept), else a fresh temp dir
#                                    removed at exit
#   at_exit 'COMMAND'                runs COMMAND at exit (last registered runs first)
#   now / secs START END / ratio A B timestamps, elapsed seconds, A / B with two decimals
#   timed VAR CMD…                   syncs, runs CMD (stdout to "$W/VAR.out"), stores its wall
#                                    time in seconds in VAR
#   deltas_python                    sets PY (unless given): a Python with numpy, zstandard and
#                                    z4ai 0.2.0 (a venv under the target directory, made once)
#   gen_checkpoint SIZE              v1.safetensors (bf16, SIZE) and v2.safetensors (5 % of the
#                                    tensors changed) in the current directory, the generator's
#                                    reports in gen1.json and gen2.json; sets BYTES (v1's size)
# Every script that sources this keeps its own `cd "$(dirname "$0")/.."` first.

BENCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_TARGET="${CARGO_TARGET_DIR:-$BENCH_ROOT/target}"

_bench_exit=()
_bench_on_exit() {
  local i
  for ((i = ${#_bench_exit[@]} - 1; i >= 0; i--)); do eval "${_bench_exit[$i]}" || true; done
}
trap _bench_on_exit EXIT
at_exit() { _bench_exit+=("$1"); }

bench_build() {
  (cd "$BENCH_ROOT" && cargo build --release -q -p nshard -p nshard-bench "$@")
  NSHARD="$BENCH_TARGET/release/nshard"
  GEN="$BENCH_TARGET/release/nshard-gen"
}

bench_nshard() {
  if [ -n "${NSHARD:-}" ]; then
    NSHARD_FROM=${NSHARD_REV:-binary given by NSHARD}
  else
    # shellcheck disable=SC2119 # no extra cargo arguments
    bench_build
    NSHARD_FROM=${NSHARD_REV:-built from $(git -C "$BENCH_ROOT" describe --always --dirty 2>/dev/null || echo unknown)}
  fi
  NSHARD=$(realpath "$NSHARD")
  [ -x "$NSHARD" ] || { echo "no nshard binary at $NSHARD" >&2; exit 1; }
}

bench_workdir() {
  if [[ -n "${BENCH_DIR:-}" ]]; then
    W="$BENCH_DIR"
    mkdir -p "$W"
  else
    W="$(mktemp -d "${TMPDIR:-/tmp}/nshard-bench-$1.XXXXXX")"
    at_exit "rm -rf '$W'"
  fi
}

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

timed() {
  local var="$1"
  shift
  local t0 t1
  sync
  t0=$(now)
  "$@" >"$W/$var.out"
  t1=$(now)
  printf -v "$var" '%s' "$(secs "$t0" "$t1")"
}

gen_checkpoint() {
  "$GEN" model --size "$1" --dtype bf16 --seed 1 -o v1.safetensors >gen1.json
  "$GEN" mutate --kind tensors:5% --seed 2 --from v1.safetensors -o v2.safetensors >gen2.json
  BYTES=$(stat -c %s v1.safetensors)
}

deltas_python() {
  if [ -z "${PY:-}" ]; then
    PY="$BENCH_TARGET/deltas-venv/bin/python"
    if ! "$PY" -c "import numpy, zstandard, z4ai" 2>/dev/null; then
      [ -x "$PY" ] || python3 -m venv "$BENCH_TARGET/deltas-venv"
      "$PY" -m pip install -q numpy zstandard z4ai==0.2.0
    fi
  fi
  "$PY" -c "import numpy, zstandard, z4ai" || { echo "$PY lacks numpy/zstandard/z4ai" >&2; exit 1; }
}
