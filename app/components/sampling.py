"""A sampler run as the pages start it: a job slot, a progress bar, the molecules as a GenerationRun.

The Generate page runs it with its form's settings; the Trajectory page, with nothing generated yet, runs it for
one molecule to watch.
"""
from __future__ import annotations

import time

import streamlit as st

from app import resources
from app.state import TARGET_SEEDS, GenerationRun
from unigem_core import api
from unigem_core.precision import resolve_precision


def progress_reporter(bar, prefix: str = ""):
    """on_progress callback for api.generate: a progress bar with elapsed and remaining time.

    The rate is measured from the first reported step on, so the slow first network call (memory
    allocation, autocast set-up) does not inflate the estimate.
    """
    start = time.perf_counter()
    first: list[tuple[float, int]] = []  # (time, steps done) at the first report
    last = [0.0]

    def on_progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if not first:
            first.append((now, done))
        if done < total and now - last[0] < 0.2:  # a few updates per second are plenty
            return
        last[0] = now
        t0, d0 = first[0]
        if done > d0 and now > t0:
            eta = f"about {(total - done) * (now - t0) / (done - d0):.0f} s left"
        else:
            eta = "estimating the time left…"
        bar.progress(min(done / total, 1.0),
                     text=f"{prefix}Sampling: step {done:,} of {total:,} · {now - start:.0f} s elapsed · {eta}")

    return on_progress


def run_generation(settings: dict) -> GenerationRun | None:
    """Sample with the shared engine once a job slot is free, showing progress; None (with an error shown) if
    it cannot run. The molecules depend on the settings alone (each molecule k is drawn from seed + k)."""
    try:
        engine = resources.get_engine(settings["device"])
    except (RuntimeError, FileNotFoundError) as exc:
        st.error(f"Cannot load the model: {exc}")
        return None
    notice = st.empty()

    def waiting(running: int) -> None:
        notice.info(f"Waiting for a free slot ({running} job{'s' if running != 1 else ''} running)…",
                    icon=":material/hourglass_top:")

    with resources.job_slots().slot(on_wait=waiting):  # at most a few runs at once, process-wide
        notice.empty()
        bar = st.progress(0.0, text="Starting the sampler…")
        start = time.perf_counter()
        options = dict(steps=settings["steps"], n_atoms=settings["n_atoms"], record_trajectory=True,
                       resample=settings.get("resample", 0))
        tried = None
        if settings.get("keep_valid"):
            exclude = resources.qm9_reference().smiles() if settings.get("keep_novel") else None
            if settings.get("keep_novel") and exclude is None:
                bar.empty()
                st.error("QM9's training molecules are still being read: try again in a moment.")
                return None
            report = [progress_reporter(bar)]

            def next_round(number: int, size: int) -> None:  # each round gets a fresh time estimate
                report[0] = progress_reporter(bar, f"Round {number} ({size} seeds) · " if number > 1 else "")

            targets = [api.PropertyRange(*t) for t in settings.get("targets") or []]
            molecules, tried = api.generate_valid(engine, settings["n"], seed=settings["seed"], on_round=next_round,
                                                  exclude=exclude, targets=targets,
                                                  max_seeds=TARGET_SEEDS * settings["n"] if targets else None,
                                                  on_progress=lambda done, total: report[0](done, total), **options)
        else:
            molecules = api.generate(engine, settings["n"], seed=settings["seed"], on_progress=progress_reporter(bar),
                                     **options)
        seconds = time.perf_counter() - start  # sampling only, not the wait for a slot
    bar.empty()
    precision = resolve_precision("auto", engine.device)  # what api.generate ran in
    return GenerationRun(molecules=molecules, settings=settings, seconds=seconds,
                         device=f"{engine.device}, {precision}", seeds_tried=tried)
