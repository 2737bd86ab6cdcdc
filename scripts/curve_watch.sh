#!/usr/bin/env bash
# While a run trains, evaluate each new epoch snapshot (fast preview) for the model card's training curve.
# Usage: bash scripts/curve_watch.sh RUN_DIR [N_MOLECULES]   (stop it with kill; safe to restart)
set -u
cd "$(dirname "$0")/.."
RUN=${1:?run directory}
N=${2:-100}
. .venv/bin/activate
mkdir -p checkpoints/eval
while true; do
  for snap in "$RUN"/snapshots/epoch*.pt; do
    [ -e "$snap" ] || continue
    out="checkpoints/eval/curve_$(basename "$snap" .pt).json"
    [ -s "$out" ] && continue
    unigem evaluate --checkpoint "$snap" --n "$N" --steps 100 --no-novelty --json > "$out.tmp" && mv "$out.tmp" "$out"
  done
  sleep 60
done
