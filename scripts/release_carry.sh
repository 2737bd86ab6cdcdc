#!/usr/bin/env bash
# Carry a release in progress between machines in git: runs/ is not committed, and on a slow CPU the cool-down and
# the release's evaluations outlast a session (scripts/campaign.sh lists the times).
#   save:     after the cool-down, with some evaluations staged by scripts/release_model.sh: writes its weights, the
#             evaluations finished so far and the branch's log rows into checkpoints/pending_release/ (commit it)
#   restore:  on any machine: rebuilds runs/ from checkpoints/ so that release_model.sh goes on where it stopped
#             (it measures only what is missing, then ships the release and removes checkpoints/pending_release/)
# Usage: bash scripts/release_carry.sh save|restore [PRESET (small)]
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?save or restore}
PRESET=${2:-small}
CAMPAIGN=runs/$PRESET
BRANCH=runs/$PRESET-cooldown
CARRY=checkpoints/pending_release
. .venv/bin/activate
. scripts/common.sh  # step_of, cooldown_start_of, branch_rows, note_resume_state

case "$MODE" in
save)
  [ -s "$BRANCH/release/unigem.pt" ] \
    || { echo "no staged release in $BRANCH/release: run release_model.sh after the cool-down" >&2; exit 1; }
  start=$(cooldown_start_of "$BRANCH/release/unigem.pt")
  [ "$start" = "$(step_of "$CAMPAIGN/last.pt")" ] \
    || { echo "$CAMPAIGN/last.pt is not the state the cool-down branched from (step $start)" >&2; exit 1; }
  rm -rf "$CARRY" && mkdir -p "$CARRY"
  cp "$BRANCH/release/unigem.pt" "$CARRY/"
  for done_eval in "$BRANCH"/release/*.json; do
    [ -s "$done_eval" ] && cp "$done_eval" "$CARRY/"
  done
  branch_rows "$BRANCH/log.csv" "$CAMPAIGN/log.csv" > "$CARRY/cooldown_log.csv"
  cp "$CAMPAIGN/last.pt" checkpoints/training_state.pt.tmp
  mv checkpoints/training_state.pt.tmp checkpoints/training_state.pt
  cp "$CAMPAIGN/log.csv" checkpoints/training_log.csv
  note_resume_state
  carried=$(step_of "$CARRY/unigem.pt")
  cat > "$CARRY/README.md" <<EOF
# A release in progress (step $carried), carried between machines

The weights of the cool-down branch of the campaign's state at step $start (unigem.pt), the evaluations
scripts/release_model.sh finished before the carry (*.json) and the branch's own log rows. To finish the release:

    bash scripts/release_carry.sh restore $PRESET
    PROCESSES=2 CAMPAIGN=$CAMPAIGN bash scripts/release_model.sh $BRANCH
EOF
  echo "carried: step $carried, measured: $(cd "$CARRY" && ls -- *.json 2>/dev/null | tr '\n' ' ')"
  echo "commit checkpoints/; to finish elsewhere: bash scripts/release_carry.sh restore, then" \
    "PROCESSES=2 CAMPAIGN=$CAMPAIGN bash scripts/release_model.sh $BRANCH"
  ;;
restore)
  [ -s "$CARRY/unigem.pt" ] || { echo "nothing carried: $CARRY/unigem.pt is missing" >&2; exit 1; }
  mkdir -p "$CAMPAIGN" "$BRANCH/release"
  # the committed campaign state, unless this machine's run directory holds a later one
  committed=$(step_of checkpoints/training_state.pt)
  if [ ! -e "$CAMPAIGN/last.pt" ] || [ "$committed" -gt "$(step_of "$CAMPAIGN/last.pt")" ]; then
    cp checkpoints/training_state.pt "$CAMPAIGN/last.pt"
    cp checkpoints/training_log.csv "$CAMPAIGN/log.csv"
  fi
  rm -f "$BRANCH/last.pt"  # release_model.sh reads the carried weights (inference.pt) when the branch has no state
  cp "$CARRY/unigem.pt" "$BRANCH/inference.pt"
  cp "$CARRY/unigem.pt" "$BRANCH/release/"
  for done_eval in "$CARRY"/*.json; do
    [ -s "$done_eval" ] && cp "$done_eval" "$BRANCH/release/"
  done
  { cat checkpoints/training_log.csv; tail -n +2 "$CARRY/cooldown_log.csv"; } > "$BRANCH/log.csv"
  echo "restored: $BRANCH at step $(step_of "$BRANCH/inference.pt"); next:" \
    "PROCESSES=2 CAMPAIGN=$CAMPAIGN bash scripts/release_model.sh $BRANCH"
  ;;
*)
  echo "usage: bash scripts/release_carry.sh save|restore [PRESET]" >&2
  exit 2
  ;;
esac
