"""Process-wide resources: the model engine, loaded once and shared by every browser session.

`st.cache_resource` hands the same `unigem_core.api.Engine` to all sessions. The engine is never
mutated after `api.load_model` (inference only, weights frozen), so concurrent sessions can call
`api.generate` / `api.predict_records` on it at once. The cache key includes the checkpoint's
modification time, so a newly trained checkpoint is picked up without restarting the app.
"""
from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from unigem_core import api

# Label shown in the app -> name understood by api.resolve_device.
DEVICES = {"Auto": "auto", "CPU": "cpu", "GPU": "cuda"}


def checkpoint_path() -> Path:
    """The checkpoint the app serves: $UNIGEM_CHECKPOINT if set, else the shipped checkpoints/unigem.pt."""
    return Path(os.environ.get("UNIGEM_CHECKPOINT") or api.DEFAULT_CHECKPOINT)


@st.cache_resource(show_spinner="Loading the UniGEM model…", max_entries=4)
def _load_engine(path: str, mtime: float, device: str) -> api.Engine:
    del mtime  # only part of the cache key
    return api.load_model(path, device=device)


def get_engine(device: str = "auto") -> api.Engine:
    """The shared engine on `device` ("auto", "cpu" or "cuda"); raises RuntimeError if no GPU is there."""
    path = checkpoint_path()
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}: train one with `unigem train` or set UNIGEM_CHECKPOINT")
    return _load_engine(str(path), path.stat().st_mtime, device)


@st.cache_resource(show_spinner=False)
def gpu_available() -> bool:
    """Whether a CUDA GPU can be used (asked once per process)."""
    try:
        api.resolve_device("cuda")
        return True
    except RuntimeError:
        return False


def model_card_path() -> Path:
    """$UNIGEM_MODEL_CARD if set, else model_card.json beside the served checkpoint."""
    return Path(os.environ.get("UNIGEM_MODEL_CARD") or checkpoint_path().parent / "model_card.json")


def model_card() -> dict | None:
    """The model card, read fresh on every call so that a newly written card shows at once."""
    try:
        card = api.model_card(model_card_path())
    except (OSError, ValueError):  # unreadable or half-written JSON: treat as absent
        return None
    return card if isinstance(card, dict) else None
