"""Self-describing checkpoints, written atomically and loaded with weights_only=True (STYLE rule 7).

Two kinds:
- a training checkpoint: everything needed to resume exactly (model, EMA, optimiser, step, RNG
  states, clipping history, config, dataset statistics);
- an inference file for the app and CLI: config, EMA weights, dataset statistics, provenance.
"""
from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

import torch

INFERENCE_FORMAT = "unigem-inference-v1"
TRAINING_FORMAT = "unigem-training-v1"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and says why."""


def versions() -> dict[str, str]:
    return {"torch": str(torch.__version__), "python": platform.python_version()}


def atomic_save(obj: dict, path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_checkpoint(path: Path, expected_format: str | None = None, sha256: str | None = None) -> dict:
    """Load a checkpoint safely; every failure becomes a CheckpointError naming the file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if sha256 is not None and sha256_of(path) != sha256:
        raise CheckpointError(f"checkpoint {path} does not match the SHA-256 in its model card (corrupted or replaced)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupted, or not a torch file at all
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} cannot be read ({first_line[:160]})") from None
    if not isinstance(obj, dict) or "format" not in obj:
        raise CheckpointError(f"checkpoint {path} is not a UniGEM checkpoint")
    if expected_format is not None and obj["format"] != expected_format:
        raise CheckpointError(f"checkpoint {path} has format {obj['format']!r}, expected {expected_format!r}")
    return obj


def inference_state(training_state: dict, weights: str = "ema") -> dict:
    """The inference file made from a training checkpoint: EMA weights and what inference needs.

    `weights`: "ema", or "slow_ema" for the second, slower average (config.train.slow_ema_decay).
    """
    if weights not in training_state:
        raise CheckpointError(f"this training checkpoint holds no {weights!r} weights"
                              + (" (train with --slow-ema-decay)" if weights == "slow_ema" else ""))
    keys = ("config", "normalizer", "atom_count_hist", "step", "epoch", "elapsed_s", "hardware", "history")
    out = {k: training_state[k] for k in keys if k in training_state}
    out.update(format=INFERENCE_FORMAT, model=training_state[weights], versions=versions())
    if weights != "ema":
        out["weights"] = weights
    return out
