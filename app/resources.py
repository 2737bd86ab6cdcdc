"""Process-wide resources: the model engine, loaded once and shared by every browser session.

`st.cache_resource` hands the same `unigem_core.api.Engine` to all sessions. The engine is never
mutated after `api.load_model` (inference only, weights frozen), so concurrent sessions can call
`api.generate` / `api.predict_records` on it at once. The cache key includes the checkpoint's
modification time, so a newly trained checkpoint is picked up without restarting the app.

Each session's script runs in its own thread, so many users could sample at once. `job_slots()`
admits at most $UNIGEM_MAX_CONCURRENT_JOBS (default 2) sampler runs process-wide; the others wait
for a slot. That bounds CPU load and memory (only admitted runs hold tensors). Results are never
kept here: each page stores its run in its own `st.session_state`.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from unigem_core import api
from unigem_core.api import QM9Lookup
from unigem_core.card_tables import best_qm9_comparison

# Label shown in the app -> name understood by api.resolve_device.
DEVICES = {"Auto": "auto", "CPU": "cpu", "GPU": "cuda"}
MAX_JOBS_ENV = "UNIGEM_MAX_CONCURRENT_JOBS"  # sampler runs admitted at once (default 2)
THREADS_ENV = "UNIGEM_THREADS_PER_JOB"  # torch CPU threads per run (default: cores // max jobs)


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


class QM9Reference:
    """QM9 as the app's reference: the training SMILES (is a generated molecule novel, or does the training set
    hold it?) and the lookup of any molecule's QM9 entries with their DFT values (metrics.QM9Lookup).

    Read in a background thread from the cache file that `unigem evaluate` also uses (built there first
    when missing: once per machine, about two minutes on one core), so no page waits for it.
    """

    def __init__(self, load: Callable[[], QM9Lookup]):
        self._lookup: QM9Lookup | None = None
        self.error: str | None = None
        threading.Thread(target=self._load, args=(load,), name="qm9-reference", daemon=True).start()

    def _load(self, load: Callable[[], QM9Lookup]) -> None:
        try:
            self._lookup = load()
        except Exception as exc:  # no QM9 data here: the app works on, without the novelty badge and DFT values
            self.error = f"{type(exc).__name__}: {exc}"

    def smiles(self) -> frozenset[str] | None:
        """The training SMILES (spec 8.3 convention), or None while they load or if they could not be read."""
        return None if self._lookup is None else self._lookup.training_smiles

    def lookup(self) -> QM9Lookup | None:
        """The lookup of QM9 molecules by bond graph, or None while it loads or if it could not be read."""
        return self._lookup


@st.cache_resource(show_spinner=False)
def qm9_reference() -> QM9Reference:
    """One QM9Reference per process, started on the first call (app/main.py makes it at start-up)."""
    return QM9Reference(lambda: api.qm9_lookup(progress=False))


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


def typical_errors(built_3d: bool = False, generated: bool = False) -> dict[str, float]:
    """The shipped model's test-split MAE per property ({key: value in reporting units}); {} without a card.

    built_3d: of molecules whose geometry RDKit built from bonds (a SMILES, a 2D drawing) rather than the DFT
    geometry: the card's errors on conformers built from QM9's SMILES, {} when the card has none.
    generated: of generated molecules: the card's errors of those QM9 holds outside its training split against
    its DFT values (state.best_qm9_comparison), {} when the card has none.
    """
    card = model_card() or {}
    if generated:
        best = best_qm9_comparison(card.get("generation") or {})
        mae = best[1]["mae_vs_dft_unseen"] if best else None
    else:
        mae = (card.get("properties_from_smiles" if built_3d else "properties") or {}).get("mae")
    if not isinstance(mae, dict):
        return {}
    return {k: float(v) for k, v in mae.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class JobSlots:
    """A counting semaphore that also says how many slots are taken, for the "waiting" message."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError(f"at least one job must be allowed, got {limit}")
        self.limit = limit
        self.running = 0  # slots taken now
        self._changed = threading.Condition()

    @contextmanager
    def slot(self, on_wait: Callable[[int], None] | None = None, poll_s: float = 0.5) -> Iterator[None]:
        """Hold one slot for the with-block. While none is free, on_wait(running) is called every poll_s.

        Calling back while waiting lets the page redraw its notice, and a Streamlit call is also where
        a session that was closed or rerun gets stopped, so an abandoned session stops queueing.
        """
        with self._changed:
            while self.running >= self.limit:
                if on_wait is not None:
                    on_wait(self.running)
                self._changed.wait(poll_s)
            self.running += 1
        try:
            yield
        finally:
            with self._changed:
                self.running -= 1
                self._changed.notify()


def max_concurrent_jobs() -> int:
    return max(1, int(os.environ.get(MAX_JOBS_ENV) or 2))


def threads_per_job(limit: int) -> int:
    """CPU threads for a sampler run, unless $UNIGEM_THREADS_PER_JOB says: every core where the network's passes
    run in shards (unigem_core's cpu_shards), else the cores shared among `limit` runs.

    Why: the shards go to one worker per thread, each with one OpenMP thread, and all sessions share those
    workers, so a run alone uses every core (on 2 cores: 16 molecules and predictions for 256 1.7-1.8x faster
    than on one, 1 to 4 molecules as fast) and two runs at once still put no more threads on the cores than
    there are cores (bench/NOTES.md, "Shards on the cores"). Without shards each run's torch ops
    use their own OpenMP team, and with more threads than free cores every parallel op waits at a barrier for
    a thread that is not scheduled: on the 2-core dev machine, with a training run beside it, 2 molecules x 50
    steps took 19 s with 2 threads and 0.2 s with 1.
    """
    if os.environ.get(THREADS_ENV):
        return max(1, int(os.environ[THREADS_ENV]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores if api.cpu_shards_available() else max(1, cores // limit)


@st.cache_resource(show_spinner=False)
def _job_slots(limit: int) -> JobSlots:
    api.set_cpu_threads(threads_per_job(limit))  # a process-wide setting, made once with the slots
    return JobSlots(limit)


def job_slots() -> JobSlots:
    """The process-wide slots that every session's sampler run must hold (see the module docstring)."""
    return _job_slots(max_concurrent_jobs())
