#!/usr/bin/env bash
# While a run trains, evaluate each new epoch snapshot (fast preview) for the model card's training curve.
# Usage: bash scripts/curve_watch.sh RUN_DIR [N_MOLECULES] [--once]   (stop it with kill; safe to restart)
# --once: measure the snapshots not yet measured, then exit (non-zero if an evaluation failed).
# CURVE_EVERY (default 5): measure every that many epochs' snapshot. Each measurement slows the 2-process campaign
# beside it by about a third for a minute: measuring every epoch (about 5 minutes on a Zen 5) cost it about 6 %
# of its time (the log's slow rows, session 29).
set -u
cd "$(dirname "$0")/.."
RUN=${1:?run directory}
N=${2:-100}
ONCE=${3:-}
. .venv/bin/activate
mkdir -p checkpoints/eval
while true; do
  failed=0
  for snap in "$RUN"/snapshots/epoch*.pt; do
    [ -e "$snap" ] || continue
    epoch=$(basename "$snap" .pt)
    [ $((10#${epoch#epoch} % ${CURVE_EVERY:-5})) = 0 ] || continue
    out="checkpoints/eval/curve_$epoch.json"
    [ -s "$out" ] && continue
    # --spacing 1: the even stride every point of the curve has been measured with (epochs 1-69 before
    # the sampler's default became 3), so the curve's points stay comparable
    unigem evaluate --checkpoint "$snap" --n "$N" --steps 100 --spacing 1 --no-novelty --json > "$out.tmp" \
      && mv "$out.tmp" "$out" || { rm -f "$out.tmp"; failed=1; }
  done
  [ "$ONCE" = --once ] && exit "$failed"
  sleep 60
done
