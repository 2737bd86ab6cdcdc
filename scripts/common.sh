# Shared by the campaign's scripts (sourced from the repository root, with .venv active).

# step_of FILE: the training step a checkpoint or inference file was saved at
step_of() {
  python -c "import sys; from unigem_core.train.checkpoint import load_checkpoint as f; print(f(sys.argv[1])['step'])" "$1"
}

# cooldown_start_of FILE: the step a checkpoint's cool-down began at (-1: none)
cooldown_start_of() {
  python -c "import sys; from unigem_core.train.checkpoint import load_checkpoint as f; \
print(f(sys.argv[1])['config']['train']['cooldown_start'])" "$1"
}

# branch_rows BRANCH_LOG CAMPAIGN_LOG: the header and the rows a branch's log adds to the campaign's (its start)
branch_rows() {
  head -n 1 "$1"
  grep -vxF -f "$2" "$1" || true
}

# note_resume_state: the card's note of the step checkpoints/training_state.pt resumes from, after it was replaced
note_resume_state() {
  python -c 'import json; from pathlib import Path; from unigem_core.train.card import resume_note, write_card
path = Path("checkpoints/model_card.json"); card = json.loads(path.read_text())
card["training"]["resume_state"] = resume_note(Path("checkpoints/training_state.pt")); write_card(card, path)'
}

# generation_precision STAGE: the precision ("bf16" or "fp32") of the generation rows already staged in STAGE,
# else GENERATION_PRECISION when set (to match an earlier release's rows), else the one `--precision auto` picks on
# this machine, so that a release measured on two machines (release_carry.sh) samples every row in one precision
generation_precision() {
  python -c 'import json, os, sys; from pathlib import Path
done = {json.loads(f.read_text()).get("precision") for f in Path(sys.argv[1]).glob("generation_*.json")} - {None}
if len(done) > 1:
    sys.exit(f"{sys.argv[1]}: generation rows staged in {sorted(done)}; remove the ones to measure again")
if not done and os.environ.get("GENERATION_PRECISION"):
    done = {os.environ["GENERATION_PRECISION"]}
if not done:
    from unigem_core.device import resolve_device
    from unigem_core.precision import resolve_precision
    done = {resolve_precision("auto", resolve_device("auto"))}  # as `unigem evaluate` resolves them
print(done.pop())' "$1"
}
