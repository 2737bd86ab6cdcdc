#!/usr/bin/env bash
# A lent GPU (the device tool, DEVELOPERS.md): check the CUDA paths, time them, and train the campaign on it, in the
# one command of at most 10 minutes that a lease allows. Three steps:
#   here:      bash scripts/gpu_session.sh pack
#              writes .gpu/ (ignored by git; QM9 as a portable file of about 18 MB: the GPU machine has no qm9pack,
#              and the tree that travels is limited to 64 MiB, about 43 of them the repository)
#   device:    run(command="bash scripts/gpu_session.sh run 9", carry=[".gpu"], timeout_s=600)
#              the CUDA tests (tests/test_cuda.py), `bench/run.py --quick --device cuda`, then the campaign resumed
#              from checkpoints/training_state.pt on the GPU for what is left of MINUTES (9) less one; what comes
#              back lands in $OUT: the state in parts of 15 MB (a file that comes back is at most 16 MiB), the
#              run's log, the bench's JSON, the session's output
#   here:      bash scripts/gpu_session.sh unpack FILES_AT
#              joins the parts into runs/small-gpu/last.pt (with its log) and says how to measure and keep it
# The device's image holds torch, numpy, pandas, tqdm and pytest but not rdkit: training, sampling and the CUDA
# tests need none of it (the one test that does is skipped there).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?pack, run MINUTES or unpack DIR}

case "$MODE" in
pack)
  . .venv/bin/activate
  python - <<'EOF'
from pathlib import Path

from unigem_core.data.qm9 import PORTABLE_FILE, write_portable

path = write_portable(Path(".gpu") / PORTABLE_FILE)
print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
EOF
  # what travels: the tracked files, the untracked ones git does not ignore, and .gpu/ (at most 64 MiB in all)
  bytes=$( { git ls-files -z; git ls-files -z --others --exclude-standard; printf '%s\0' .gpu/*; } \
    | { xargs -0 stat -L -c %s -- 2>/dev/null || true; } | awk '{s += $1} END {print s + 0}')
  echo "the tree that travels: $((bytes / 1048576)) MiB of 64"
  [ "$bytes" -le $((64 * 1048576)) ] || { echo "too large to travel: leave out what is not needed" >&2; exit 1; }
  echo 'next: run(command="bash scripts/gpu_session.sh run 9", carry=[".gpu"], timeout_s=600)'
  ;;
run)
  MINUTES=${2:-9}  # the whole session; the training gets what the checks leave of it, less a minute
  : "${OUT:?run this on the device machine, where \$OUT is the folder that comes back}"
  export PYTHONPATH=$PWD UNIGEM_DATA_DIR=$PWD/.gpu PYTHONUNBUFFERED=1
  exec > >(tee "$OUT/session.log") 2>&1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  start=$SECONDS
  # each stage has its own limit, so a slow one cannot eat the training's minutes
  timeout 100 python3 -m pytest -v -p no:cacheprovider tests/test_cuda.py -rs || echo "CUDA tests: status $?"
  timeout 240 python3 bench/run.py --quick --device cuda --out "$OUT" || echo "bench: status $?"
  left=$((MINUTES * 60 - (SECONDS - start) - 60))
  left=$((left > 60 ? left : 60))  # at least a minute (and never `timeout 0`, which would mean no limit)
  echo "checks took $((SECONDS - start)) s; $left s left for training"
  RUN=/tmp/small-gpu
  mkdir -p "$RUN" && cp checkpoints/training_log.csv "$RUN/log.csv"
  # --max-minutes counts from the start of training; a SIGTERM from timeout still writes the checkpoint
  timeout $((left + 30)) python3 -m unigem_core.cli train --preset small --device cuda --run-dir "$RUN" \
    --resume checkpoints/training_state.pt --max-minutes "$(python3 -c "print($left / 60)")" \
    --checkpoint-minutes 1 --compile || echo "training: status $?"
  if [ -e "$RUN/last.pt" ]; then
    split -b 15M -d "$RUN/last.pt" "$OUT/last.pt.part"
    sha256sum "$RUN/last.pt" | cut -d' ' -f1 > "$OUT/last.pt.sha256"
    cp "$RUN/log.csv" "$OUT/log.csv"
  fi
  echo "session took $((SECONDS - start)) s"
  ;;
unpack)
  DIR=${2:?the folder the device's files landed in (the run's files_at)}
  . .venv/bin/activate
  RUN=runs/small-gpu
  mkdir -p "$RUN"
  cat "$DIR"/last.pt.part* > "$RUN/last.pt.tmp"
  [ "$(sha256sum "$RUN/last.pt.tmp" | cut -d' ' -f1)" = "$(cat "$DIR/last.pt.sha256")" ] \
    || { echo "the joined state's checksum differs from the device's" >&2; exit 1; }
  mv "$RUN/last.pt.tmp" "$RUN/last.pt" && cp "$DIR/log.csv" "$RUN/log.csv"
  . scripts/common.sh
  echo "runs/small-gpu/last.pt: step $(step_of "$RUN/last.pt")"
  echo "measure: unigem export $RUN/last.pt --out /tmp/gpu.pt;" \
    "unigem evaluate --checkpoint /tmp/gpu.pt --n 0 --loss --precision fp32 --json"
  echo "keep (the campaign goes on from it): cp $RUN/last.pt checkpoints/training_state.pt;" \
    "cp $RUN/log.csv checkpoints/training_log.csv"
  ;;
*)
  echo "unknown mode $MODE: pack, run MINUTES or unpack DIR" >&2
  exit 2
  ;;
esac
