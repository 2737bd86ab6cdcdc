"""The model card: a JSON file next to the shipped weights, read by the app.

Every measured number in it comes from a `unigem evaluate ... --json` output that carries the exact
command that produced it; this module only assembles those outputs with the training log.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

from unigem_core import engine
from unigem_core.constants import PUBLISHED_EGNN_MAE, PUBLISHED_GENERATION
from unigem_core.data.qm9 import SPLIT_SIZES
from unigem_core.train.checkpoint import load_checkpoint, sha256_of

# what `unigem evaluate` measures without --checkpoint, as its commands name it
DEFAULT_CHECKPOINT = str(engine.DEFAULT_CHECKPOINT.relative_to(engine.REPO_ROOT))


def _read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as f:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in row.items()} for row in csv.DictReader(f)]


def _learning_rate(train: dict) -> str:
    text = f"{train['lr']:g}"
    if train.get("warmup_steps"):
        text += f" after a linear warm-up over the first {train['warmup_steps']:,} steps"
    if train.get("cooldown_steps") and train.get("cooldown_start", -1) >= 0:
        start = train["cooldown_start"]
        text += f"; cool-down: falls linearly to 0 from step {start:,} to step {start + train['cooldown_steps']:,}"
    return text


def resume_note(path: Path) -> str:
    """How the card names the state the campaign resumes from: its path, step and learning rate."""
    resumed = load_checkpoint(path)
    return f"{path}: step {int(resumed['step']):,}, learning rate {_learning_rate(resumed['config']['train'])}"


def generation_key(metrics: dict) -> str:
    """The card's key for one generation evaluation: its step count, "+rR" with R resampling rounds ("100+r1")."""
    key = str(metrics["steps"])
    return f"{key}+r{metrics['resample']}" if metrics.get("resample") else key


def as_shipped(evaluation: dict, checkpoint: str, sha256: str | None, step: int | None) -> dict:
    """An evaluation as the card records it, refused when it measured other weights than the shipped file.

    The weights are matched by checksum (`checkpoint_sha256`), or by training step for evaluations
    made before `unigem evaluate` recorded it. An evaluation of a staged copy of the file (the same
    bytes, measured before the release replaced checkpoints/) gets the command that reproduces it
    on the shipped file; `measured_as` keeps the path it ran on.
    """
    measured = evaluation.get("checkpoint_sha256")
    if measured is not None and sha256 is not None and measured != sha256:
        raise ValueError(f"`{evaluation.get('command')}` measured other weights than {checkpoint} "
                         f"(sha256 {measured[:12]}, not {sha256[:12]})")
    if measured is None and evaluation.get("step") is not None and step is not None and evaluation["step"] != step:
        raise ValueError(f"the evaluation is of step {evaluation['step']}, the card's weights of step {step}")
    ran_on = evaluation.get("checkpoint")
    if measured is None or ran_on in (None, checkpoint):
        return evaluation
    command, skip = [], False
    for word in evaluation["command"].split():
        if skip:  # the staged path after --checkpoint
            skip = False
        elif word == "--checkpoint" or word.startswith("--checkpoint="):
            skip = word == "--checkpoint"
            command += ["--checkpoint", checkpoint] if checkpoint != DEFAULT_CHECKPOINT else []
        else:
            command.append(word)
    return {**evaluation, "command": " ".join(command), "checkpoint": checkpoint, "measured_as": ran_on}


def add_evaluation(card: dict, metrics: dict) -> dict:
    """The card with one more evaluation (a `unigem evaluate --json` output of the same weights): a generation
    evaluation, or the property errors on geometries built from SMILES (`--properties --geometry smiles`).

    Refused when the evaluation measured other weights than the card's (as_shipped), so a card never
    mixes two models' numbers.
    """
    if "atom_stability" not in metrics and not is_smiles_properties(metrics):
        raise ValueError("not a generation evaluation (no atom_stability) nor one of properties from SMILES")
    shipped = card.get("files", {}).get("unigem.pt", {}).get("sha256")
    metrics = as_shipped(metrics, DEFAULT_CHECKPOINT, shipped, card.get("training", {}).get("steps"))
    if "atom_stability" not in metrics:
        return {**card, "properties_from_smiles": metrics}
    return {**card, "generation": {**card.get("generation", {}), generation_key(metrics): metrics}}


def is_smiles_properties(metrics: dict) -> bool:
    """Whether an evaluation holds property errors on conformers built from SMILES, not at DFT geometries."""
    return "mae" in metrics and metrics.get("geometry") == "smiles"


def describe_history(history: list[dict]) -> str:
    """The card's training command: one clause per `unigem train` call recorded in the checkpoint's history."""
    clauses = []
    for k, segment in enumerate(history):
        ended = segment.get("ended", "")
        if ended == "running":  # its last checkpoint, then killed (or, for the last, still training)
            ended = "in progress" if k == len(history) - 1 else "interrupted after its last checkpoint"
        detail = ", ".join(str(x) for x in (ended, segment.get("hardware"),
                                            f"{segment['seconds'] / 3600:.2f} h" if segment.get("seconds") else None)
                           if x)
        clauses.append(f"steps {segment['from_step']:,} to {segment['to_step']:,}: {segment['command']}"
                       + (f" ({detail})" if detail else ""))
    return "; ".join(clauses)


def precision_at(history: list[dict], step: float) -> str | None:
    """The precision ("bf16" or "fp32") of the training call that reached `step`, the last part of its hardware
    line in the checkpoint's history, or None where the history does not say (the first entry, written from
    older cards). The log's validation losses are computed in that precision, and bf16 reads higher than fp32
    for the same weights: the curve is only comparable within one precision."""
    for entry in history:
        if entry.get("from_step", 0) < step <= entry.get("to_step", -1):
            used = str(entry.get("hardware") or "").rsplit(", ", 1)[-1]
            return used if used in ("bf16", "fp32") else None
    return None


def build_card(checkpoint: Path, run_dir: Path | None, evals: list[dict], curve: list[dict], name: str,
               train_command: str, resume_state: Path | None = None) -> dict:
    """Assemble the card from the shipped checkpoint, the run's log.csv and evaluation outputs.

    resume_state: the training checkpoint the campaign continues from, when it is not the shipped
    weights' own state (a release branch that cooled the learning rate down from it).
    train_command: how the weights were trained; empty: read from the checkpoint's own history.
    """
    state = load_checkpoint(checkpoint)
    cfg = state["config"]
    batch = cfg["train"]["batch_size"]
    step = int(state.get("step", 0))
    resume_file = "checkpoints/training_state.pt"
    resume_text = f"{resume_file} (the shipped weights' own state)"
    if resume_state is not None:
        resume_file, resume_text = str(resume_state), resume_note(resume_state)
    log = _read_log(run_dir / "log.csv") if run_dir else []
    files = {p.name: {"sha256": sha256_of(p), "bytes": p.stat().st_size} for p in [checkpoint]}
    evals = [as_shipped(e, str(checkpoint), files[checkpoint.name]["sha256"], step) for e in evals]
    generation = {generation_key(e): e for e in evals if "atom_stability" in e}
    properties = next((e for e in evals if "mae" in e and not is_smiles_properties(e)), None)
    from_smiles = next((e for e in evals if is_smiles_properties(e)), None)
    validation = next((e for e in evals if "validation_loss" in e), None)
    curve_rows = sorted(curve, key=lambda e: e.get("epoch", 0))
    val_rows = [r for r in log if r.get("val_loss") is not None]
    return {
        "name": name,
        "created": dt.date.today().isoformat(),
        "preset": cfg.get("preset"),
        "config": cfg,
        "data": {"dataset": "QM9 from the qm9pack package (130,831 molecules)", "split": SPLIT_SIZES,
                 "split_rule": "molecules ordered by QM9 Index, numpy RandomState(0) permutation; train, valid, test"},
        "training": {"steps": step, "epochs": round(step * batch / SPLIT_SIZES["train"], 2),
                     "molecules_seen": step * batch, "hardware": state.get("hardware"),
                     "wall_clock_hours": round(float(state.get("elapsed_s") or 0) / 3600, 2),
                     "learning_rate": _learning_rate(cfg["train"]),
                     "command": train_command or describe_history(state.get("history") or []),
                     "log": "checkpoints/training_log.csv" + ("" if resume_state is None else
                                                              " (the campaign); checkpoints/cooldown_log.csv (this branch)"),
                     "resume_state": resume_text,
                     "resume_command": f"unigem train --preset {cfg.get('preset')} --resume {resume_file} "
                                       f"--run-dir runs/{cfg.get('preset')} --processes 2"},
        "files": files,
        "generation": generation,
        "properties": properties,
        "properties_from_smiles": from_smiles,
        "validation_loss": validation,
        "training_curve": curve_rows,
        "validation_curve": [{**{k: r[k] for k in ("step", "epoch", "val_loss", "val_coord", "val_prop_mae_norm",
                                                   "val_type_accuracy", "loss")},
                              "precision": precision_at(state.get("history") or [], r["step"])} for r in val_rows],
        "published": {"generation": PUBLISHED_GENERATION, "egnn_property_mae": PUBLISHED_EGNN_MAE},
    }


def write_card(card: dict, path: Path) -> None:
    path.write_text(json.dumps(card, indent=2) + "\n")
