#!/usr/bin/env bash
# One session of the training campaign: continue it for MINUTES with the curve measured beside it, then
# either keep its state in checkpoints/ (commit it) or, with "release", branch a cool-down off it and ship
# that (scripts/release_model.sh). Every step resumes: run it again after a stop.
# Usage: nohup bash scripts/campaign.sh MINUTES [release] > logs/campaign.log 2>&1 &
# Times seen on 2 cores (bench/NOTES.md): a 10,000-step cool-down 33-38 min on a Zen 5 (bf16), 38 on a
# Xeon with AMX (bf16), 53 on a Zen 4 (bf16), 1.5-1.7 h on a Zen 3 (fp32), 2.3 h on a Zen 1 (fp32); the
# release's evaluations 25-30, 25, 45 (about 55 in fp32), over 2 h and 2.3 h (resumable).
# Environment: PRESET (small), COOLDOWN_STEPS (10000), N_MOLECULES (1000) and CURVE_MOLECULES (100)
# for the release's evaluations, CURVE_EVERY (5: every how many epochs the curve is measured,
# scripts/curve_watch.sh), TRAIN_ARGS (more `unigem train` flags for the campaign), COMPILE (1: train with
# `unigem train --compile`, about 1.1x on a Zen 5 after a minute of compiling; 0: eager).
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:?minutes of campaign training}
MODE=${2:-keep}
COMPILE_FLAGS=()
[ "${COMPILE:-1}" = 1 ] && COMPILE_FLAGS=(--compile)
PRESET=${PRESET:-small}
CAMPAIGN=runs/$PRESET
BRANCH=runs/$PRESET-cooldown
. .venv/bin/activate
mkdir -p "$CAMPAIGN" logs

. scripts/common.sh  # step_of, cooldown_start_of, note_resume_state

# the committed state, unless the run directory already holds a later one (a resumed session)
if [ ! -e "$CAMPAIGN/last.pt" ] || [ "$(step_of checkpoints/training_state.pt)" -gt "$(step_of "$CAMPAIGN/last.pt")" ]; then
  cp checkpoints/training_state.pt "$CAMPAIGN/last.pt"
  cp checkpoints/training_log.csv "$CAMPAIGN/log.csv"
fi

OMP_NUM_THREADS=1 nice -n 10 bash scripts/curve_watch.sh "$CAMPAIGN" "${CURVE_MOLECULES:-100}" > logs/curve.log 2>&1 &
watcher=$!
trap 'kill "$watcher" 2>/dev/null || true' EXIT
# A SIGTERM to the launcher (`kill <pid of unigem train>`, to stop early) ends the run with a checkpoint
# written but a non-zero status: the state is kept all the same; a release goes on only after a clean end.
status=0
# shellcheck disable=SC2086  # TRAIN_ARGS is a list of flags
unigem train --preset "$PRESET" --processes 2 --run-dir "$CAMPAIGN" --max-minutes "$MINUTES" \
  --checkpoint-minutes 4 "${COMPILE_FLAGS[@]}" ${TRAIN_ARGS:-} || status=$?
kill "$watcher" 2>/dev/null || true
echo "campaign at step $(step_of "$CAMPAIGN/last.pt") (training exited with status $status)"

if [ "$MODE" != release ]; then
  cp "$CAMPAIGN/last.pt" checkpoints/training_state.pt.tmp && mv checkpoints/training_state.pt.tmp checkpoints/training_state.pt
  cp "$CAMPAIGN/log.csv" checkpoints/training_log.csv
  bash scripts/curve_watch.sh "$CAMPAIGN" "${CURVE_MOLECULES:-100}" --once
  note_resume_state
  echo "kept: commit checkpoints/training_state.pt, training_log.csv, model_card.json and eval/curve_*.json"
  exit "$status"
fi
if [ "$status" != 0 ]; then
  echo "training stopped early (status $status): no release; run this again to go on" >&2
  exit "$status"
fi

# A cool-down branch off the campaign's state (resumed if a stop cut it short), then the release. A branch is
# resumed only when its cool-down began at the campaign's present step (its checkpoint records where): one left by
# an earlier release (it may be at a later step than the campaign is now) is replaced, so its weights are never
# measured and shipped again.
if [ ! -e "$BRANCH/last.pt" ] || [ "$(cooldown_start_of "$BRANCH/last.pt")" != "$(step_of "$CAMPAIGN/last.pt")" ]; then
  rm -rf "$BRANCH" && mkdir -p "$BRANCH" && cp "$CAMPAIGN/log.csv" "$BRANCH/log.csv"
  unigem train --preset "$PRESET" --processes 2 --run-dir "$BRANCH" --resume "$CAMPAIGN/last.pt" \
    --cooldown-steps "${COOLDOWN_STEPS:-10000}" --checkpoint-minutes 4 "${COMPILE_FLAGS[@]}"
else  # cut short by a stop: it resumes its own last.pt and ends where its cool-down does
  unigem train --preset "$PRESET" --processes 2 --run-dir "$BRANCH" --checkpoint-minutes 4 "${COMPILE_FLAGS[@]}"
fi
PROCESSES=2 CAMPAIGN="$CAMPAIGN" bash scripts/release_model.sh "$BRANCH" "" "${N_MOLECULES:-1000}" "${CURVE_MOLECULES:-100}"
echo "released: commit checkpoints/ and README.md (its prose comparing this release with the last is by hand)"
