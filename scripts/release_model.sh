#!/usr/bin/env bash
# Ship a trained run: export its EMA weights to checkpoints/, measure them, and write the model card.
# Usage: [PROCESSES=2] [CAMPAIGN=DIR] [GENERATION_PRECISION=fp32|bf16] bash scripts/release_model.sh RUN_DIR ["TRAIN COMMAND"] [N_MOLECULES] [CURVE_MOLECULES]
# TRAIN COMMAND: how the run was trained, for the card; "" or none: the history its checkpoint recorded.
# PROCESSES: sampling worker processes for the big evaluations (2 on a 2-core CPU; 1 on a GPU).
# CAMPAIGN: the run the campaign continues from, when RUN_DIR is a cool-down branch of it
#   (`unigem train --resume CAMPAIGN/last.pt --cooldown-steps K --run-dir RUN_DIR`): its last.pt and
#   log.csv become checkpoints/training_state.pt and training_log.csv, its epoch snapshots make the
#   training curve, and RUN_DIR's rows past them go to checkpoints/cooldown_log.csv. Default: RUN_DIR itself.
# Every number in the card comes from the `unigem evaluate` commands below, each recorded in the card.
# Resumable: the weights and each evaluation are staged in RUN_DIR/release/ first, so a stop keeps what was
# measured (run the script again to go on) and leaves checkpoints/ as it was until all of them are done. To go on
# on another machine: `bash scripts/release_carry.sh save`, commit, and there `bash scripts/release_carry.sh restore`.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:?run directory, e.g. runs/small}
TRAIN_COMMAND=${2:-}
N=${3:-1000}
NCURVE=${4:-100}
PROCESSES=${PROCESSES:-1}
CAMPAIGN=${CAMPAIGN:-$RUN}
STAGE=$RUN/release
. .venv/bin/activate
mkdir -p checkpoints/eval "$STAGE"

. scripts/common.sh  # step_of, branch_rows, generation_precision

# the run's full state, or its inference file when only that was kept (a run carried between machines)
source="$RUN/last.pt"
[ -e "$source" ] || source="$RUN/inference.pt"
weights=$STAGE/unigem.pt
if [ ! -e "$weights" ] || [ "$(step_of "$weights")" != "$(step_of "$source")" ]; then
  rm -f "$STAGE"/*  # measured on weights the run has since trained further
  unigem export "$source" --out "$weights"
fi

# measure NAME ARGS...: one evaluation of the staged weights into $STAGE/NAME.json, unless a run before did it
measure() {
  local name=$1; shift
  [ -s "$STAGE/$name.json" ] && { echo "$name: measured before"; return; }
  unigem evaluate --checkpoint "$weights" "$@" --json > "$STAGE/$name.json.tmp"
  mv "$STAGE/$name.json.tmp" "$STAGE/$name.json"
}
# Training curve: each epoch snapshot not yet measured gets a short fast-preview evaluation; the curve is
# every epoch measured so far, including those whose snapshots an earlier run directory held.
bash scripts/curve_watch.sh "$CAMPAIGN" "$NCURVE" --once
# first, the cheapest: did the cool-down pay? fp32 on every machine, so later releases and the campaign's
# checkpoints compare with this number
measure validation_loss --n 0 --loss --precision fp32
# every generation row in one precision, even when the release is measured on two machines (release_carry.sh):
# that of the rows staged before, else GENERATION_PRECISION (to match the release it replaces), else the one `auto`
# picks here (bf16 where the hardware computes it, else fp32)
precision=$(generation_precision "$STAGE")
echo "generation rows in $precision"
measure generation_100 --n "$N" --steps 100 --precision "$precision" --processes "$PROCESSES"
# the Generate page's default, 50 steps with one refinement round of every step (as many network calls as
# 100 plain steps), its other choice at that cost, 25 steps with three rounds, and the most stable setting
# measured at that cost, 10 steps with nine rounds (bench/NOTES.md, "Resampling every step")
measure generation_50_r1 --n "$N" --steps 50 --resample 1 --precision "$precision" --processes "$PROCESSES"
measure generation_25_r3 --n "$N" --steps 25 --resample 3 --precision "$precision" --processes "$PROCESSES"
measure generation_10_r9 --n "$N" --steps 10 --resample 9 --precision "$precision" --processes "$PROCESSES"
# the test-split MAE of all twelve targets (minutes), then the paper's sampler (the longest, by far)
measure properties --n 0 --properties
# the same from geometries built from QM9's SMILES, as the Predict page treats a typed SMILES (RDKit's conformers
# relaxed with GFN2-xTB); the first 1,000 test molecules: about 35 minutes of CPU, most of it GFN2-xTB, built in
# $PROCESSES worker processes
measure properties_smiles --n 0 --properties --geometry smiles --limit 1000 --processes "$PROCESSES"
measure generation_1000 --n "$N" --steps 1000 --precision "$precision" --processes "$PROCESSES"

# All measured: the release replaces the shipped weights, their evaluations and the card together.
cp "$weights" checkpoints/unigem.pt
rm -f checkpoints/eval/generation_*.json  # the previous release's, some of which this one does not measure again
evals=()
for name in validation_loss generation_100 generation_50_r1 generation_25_r3 generation_10_r9 properties \
    properties_smiles generation_1000; do
  cp "$STAGE/$name.json" checkpoints/eval/
  evals+=("checkpoints/eval/$name.json")
done
cp "$CAMPAIGN/last.pt" checkpoints/training_state.pt.tmp && mv checkpoints/training_state.pt.tmp checkpoints/training_state.pt
cp "$CAMPAIGN/log.csv" checkpoints/training_log.csv
resume_args=()
if [ "$CAMPAIGN" != "$RUN" ]; then
  # the branch's own rows only (its log starts as a copy of the campaign's)
  branch_rows "$RUN/log.csv" "$CAMPAIGN/log.csv" > checkpoints/cooldown_log.csv
  resume_args=(--resume-state checkpoints/training_state.pt)
else
  rm -f checkpoints/cooldown_log.csv
fi
curve=()
for out in checkpoints/eval/curve_epoch*.json; do
  [ -s "$out" ] && curve+=("$out")
done
# the card names the shipped file in each command (the staged copy has the same checksum)
unigem card --checkpoint checkpoints/unigem.pt --run-dir "$RUN" --name "UniGEM $(basename "$RUN")" \
  --train-command "$TRAIN_COMMAND" \
  --eval "${evals[@]}" --curve "${curve[@]}" "${resume_args[@]}"
# the README's account of the shipped model is the card's (tests/test_card_tables.py checks it)
unigem card --readme README.md
rm -rf checkpoints/pending_release  # a release carried between machines (scripts/release_carry.sh) is done
