#!/usr/bin/env bash
# The example end to end: a fresh copy of examples/iris, tracked data, a first run, a no-op run,
# a param change that reruns only what reads it, and a revert that restores from the run cache;
# it ends by writing the report (`repro report`) and printing its path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${DEMO_DIR:-$here/../build/demo}
rm -rf "$work"
mkdir -p "$work"
cp -r "$here/iris/." "$work/"
cd "$work"
export GIT_AUTHOR_NAME=demo GIT_AUTHOR_EMAIL=demo@example.com
export GIT_COMMITTER_NAME=demo GIT_COMMITTER_EMAIL=demo@example.com
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

git init -q
step "repro init; repro add data/iris.csv"
repro init
repro add data/iris.csv
git add -A && git commit -qm "iris pipeline"

step "repro dag"
repro dag

step "repro run   (first run: every stage runs)"
repro run

step "repro run   (nothing changed: nothing runs)"
repro run

step "change train.C 1.0 -> 0.5; repro status"
sed -i 's/C: 1.0/C: 0.05/' params.yaml
repro status || true

step "repro diff   (the last snapshot against the workspace)"
repro diff

step "repro run   (only train and evaluate rerun)"
repro run
cat metrics.json

step "repro diff A B   (the two snapshots: params, model and metrics with deltas)"
sigs=$(repro log --json | python -c 'import json,sys; r=[x["snapshot"] for x in json.load(sys.stdin) if x["snapshot"]]; print(r[1], r[0])')
repro diff $sigs

step "revert train.C; repro run   (restored from the run cache, nothing executes)"
sed -i 's/C: 0.05/C: 1.0/' params.yaml
repro run
cat metrics.json

step "repro run --verify train   (is training deterministic under its seed?)"
repro run --verify train

step "repro log"
repro log -n 5 || true

step "repro report   (the timeline dashboard: one HTML file, no network)"
repro report -o "$work/report.html"
printf '\nDemo workspace: %s\n' "$work"
printf 'Report: %s   (open it in a browser; click a dot for its details)\n' "$work/report.html"
