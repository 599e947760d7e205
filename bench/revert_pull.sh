#!/usr/bin/env bash
# Issue 20: the newest version stays whole on a remote also after a revert. Four bf16 checkpoints
# are committed and pushed with git (hooks), `nshard remote gc --grace 0` makes the older ones
# deltas on the remote, then step 1 is committed again as the newest version (a revert) and
# pushed: its chunks are on the remote only as deltas, so the push sends nothing. A fresh clone
# pulls the newest version before and after the next gc; the report compares what it fetched.
#
#   bench/revert_pull.sh                      # ~1 min (+ build)
#   NSHARD=/path/to/nshard bench/revert_pull.sh
#   PY=/path/to/python bench/revert_pull.sh   # a Python with numpy (default: the deltas venv)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# shellcheck source=bench/lib.sh
source bench/lib.sh
trap 'exit 130' INT TERM
bench_nshard
[ -n "${PY:-}" ] || deltas_python
bench_workdir revert
N=$NSHARD
export GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.com \
  GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.com
mkdir -p "$W/data" && (cd "$W/data" && "$PY" "$ROOT/bench/revert/gen.py")
cd "$W"
git init -q --bare -b main origin.git
mkdir store
git clone -q origin.git a 2>/dev/null
cd a
"$N" init -q >/dev/null
"$N" git-init -q >/dev/null
"$N" remote add origin "$W/store" --default >/dev/null
for s in 0 1 2 3; do
  cp "$W/data/step$s.safetensors" m.safetensors
  [ "$s" = 0 ] && "$N" track m.safetensors >/dev/null
  "$N" commit -q -m "step $s" >/dev/null
  "$N" repack >/dev/null
  git add -A && git commit -qm "step $s" && git push -q origin main 2>/dev/null
done
"$N" remote gc origin --grace 0 --json >"$W/gc1.json"
cp "$W/data/step1.safetensors" m.safetensors
"$N" commit -q --force -m "back to step 1" >/dev/null
"$N" repack >/dev/null
git commit -qam "back to step 1" && git push -q origin main 2>/dev/null
pull_newest() {
  rm -rf "$W/c"
  git clone -q "$W/origin.git" "$W/c" 2>/dev/null
  (cd "$W/c" && "$N" pull --json >"$W/$1.json")
}
pull_newest pull-before
"$N" remote gc origin --grace 0 --json >"$W/gc2.json"
pull_newest pull-after
python3 - "$W" "$NSHARD_FROM" <<'PY'
import json, sys
w, rev = sys.argv[1], sys.argv[2]
def stats(name):
    j = json.load(open(f"{w}/{name}.json"))
    return j.get("stats", j)
b, a = stats("pull-before"), stats("pull-after")
g = json.load(open(f"{w}/gc2.json"))
print(f"nshard: {rev}")
print("| fresh clone pulls the newest version (a revert) | objects | deltas | bytes | vs after gc |")
print("| --- | ---: | ---: | ---: | ---: |")
print(f"| after the push, before the next gc | {b['objects']} | {b['deltas']} | {b['bytes']} | {b['bytes'] / a['bytes']:.2f}x |")
print(f"| after the next `remote gc` | {a['objects']} | {a['deltas']} | {a['bytes']} | 1.00x |")
print(f"gc uploaded whole again: {g.get('whole_again')} objects, {g.get('whole_again_bytes')} B; superseded {g.get('superseded_objects')} objects, {g.get('superseded_bytes')} B")
PY
