"""Several users at once: admission control and no cross-talk between sessions.

Streamlit runs each browser session's script in its own thread over one shared engine
(app.resources). These tests check that
  - the process-wide job slots never admit more sampler runs than the limit, and say who waits;
  - runs that sample at the same time on the shared engine each get exactly their own seed's molecules;
  - each session keeps its own results: a second session's run does not replace the first one's;
  - the Generate page really goes through the slots (it waits while they are taken).
The real-server version with four browsers is bench/concurrency.py.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from app import resources  # noqa: E402
from app.state import WIDGET_DEFAULTS  # noqa: E402
from unigem_core import api  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MAIN = str(REPO / "app" / "main.py")
N, STEPS = 2, 50  # molecules per run, sampling steps: small, the tests are about plumbing
REFINEMENT = WIDGET_DEFAULTS["gen_resample"]  # the Generate page's default, which its runs use


def assert_same_molecules(got, expected) -> None:
    assert [g.seed for g in got] == [g.seed for g in expected]
    assert [g.molecule.formula for g in got] == [g.molecule.formula for g in expected]
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a.molecule.positions, b.molecule.positions, atol=1e-4)


@pytest.fixture(scope="module")
def engine():
    return resources.get_engine("cpu")


@pytest.fixture(scope="module")
def reference(engine):
    """seed -> the molecules of one run on its own, nothing else running."""
    resources.job_slots()  # the app's thread setting, so that both sides compute alike
    return {seed: api.generate(engine, N, steps=STEPS, seed=seed, resample=REFINEMENT) for seed in (3, 40, 500, 6000)}


def test_job_slots_admit_at_most_the_limit_and_report_waiting():
    slots = resources.JobSlots(limit=2)
    lock, active, peak, waits = threading.Lock(), [0], [0], []

    def job() -> None:
        with slots.slot(on_wait=waits.append, poll_s=0.02):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.1)  # long enough that every free slot gets taken
            with lock:
                active[0] -= 1

    threads = [threading.Thread(target=job) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert peak[0] == 2  # the limit is reached and never passed
    assert waits and set(waits) == {2}  # the waiting jobs were told that two were running
    assert slots.running == 0  # every slot was given back


def test_runs_take_every_core_where_the_passes_run_in_shards(monkeypatch):
    """With shards, sessions share one worker per core, so each run may use all of them; without, the cores
    are divided among the runs admitted at once; $UNIGEM_THREADS_PER_JOB overrides both."""
    monkeypatch.setattr(resources.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.delenv(resources.THREADS_ENV, raising=False)
    monkeypatch.setattr(api, "cpu_shards_available", lambda: True)
    assert resources.threads_per_job(2) == 4
    monkeypatch.setattr(api, "cpu_shards_available", lambda: False)
    assert resources.threads_per_job(2) == 2 and resources.threads_per_job(8) == 1
    monkeypatch.setenv(resources.THREADS_ENV, "3")
    assert resources.threads_per_job(2) == 3


def test_a_failing_job_gives_its_slot_back():
    slots = resources.JobSlots(limit=1)
    with pytest.raises(ZeroDivisionError):
        with slots.slot():
            1 / 0
    assert slots.running == 0


def test_concurrent_runs_on_the_shared_engine_each_get_their_own_seed(engine, reference, monkeypatch):
    """Four sessions' runs through the slots (limit 2) the way the page makes them, sampling side by side."""
    monkeypatch.setenv(resources.MAX_JOBS_ENV, "2")
    slots = resources.job_slots()
    side_by_side = threading.Barrier(2, timeout=30)  # admitted runs wait for each other at their first step
    lock, active, peak, results, errors = threading.Lock(), [0], [0], {}, []

    def session(seed: int) -> None:
        try:
            with slots.slot():
                with lock:
                    active[0] += 1
                    peak[0] = max(peak[0], active[0])

                def on_progress(done: int, total: int) -> None:
                    if done == 1:
                        side_by_side.wait()

                results[seed] = api.generate(engine, N, steps=STEPS, seed=seed, record_trajectory=True,
                                             resample=REFINEMENT, on_progress=on_progress)
                with lock:
                    active[0] -= 1
        except Exception as exc:  # noqa: BLE001 - reported below, from the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(seed,)) for seed in reference]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert peak[0] == 2
    for seed, expected in reference.items():
        assert_same_molecules(results[seed], expected)


def _session(seed: int) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=120).run()
    at.slider(key="gen_n").set_value(N)
    at.radio(key="gen_steps").set_value(STEPS)
    at.number_input(key="gen_seed").set_value(seed)
    return at


def test_each_session_keeps_its_own_results(reference):
    first, second = _session(3), _session(40)
    first.button(key="gen_go").click().run()
    second.button(key="gen_go").click().run()
    first.run()  # the first user reruns their page after the second user's run
    for at, seed in ((first, 3), (second, 40)):
        assert not at.exception, at.exception
        shown = [m.value for m in at.markdown if m.value.startswith("**#")]  # the gallery's card titles
        assert shown == [f"**#{i + 1} · {g.molecule.formula}** · {g.molecule.n_atoms} atoms · seed {g.seed}"
                         for i, g in enumerate(reference[seed])]
        assert "generation_run" in at.session_state, "the run is not kept in the session's own state"
        assert_same_molecules(at.session_state["generation_run"].molecules, reference[seed])


def test_the_page_waits_for_a_free_slot(reference, monkeypatch):
    monkeypatch.setenv(resources.MAX_JOBS_ENV, "1")
    slots = resources.job_slots()
    at = _session(500)
    events = {}  # what happened when, seen from the other user's run and from the engine
    told = []  # what the page was told while it waited

    def sampling(*args, **kwargs):
        events["page sampling"] = time.perf_counter()
        return generate(*args, **kwargs)

    def slot(on_wait=None, **kwargs):
        return take_slot(on_wait=lambda running: (told.append(running), on_wait(running)), **kwargs)

    generate, take_slot = api.generate, slots.slot
    monkeypatch.setattr(api, "generate", sampling)
    monkeypatch.setattr(slots, "slot", slot)

    def other_users_run() -> None:
        with take_slot():
            events["other started"] = time.perf_counter()
            time.sleep(1.0)
            events["other done"] = time.perf_counter()

    other = threading.Thread(target=other_users_run)
    other.start()
    while "other started" not in events:
        time.sleep(0.01)
    at.button(key="gen_go").click().run()
    other.join()
    assert not at.exception, at.exception
    assert events["page sampling"] >= events["other done"], "the page sampled while the only slot was taken"
    assert told and set(told) == {1}  # "Waiting for a free slot (1 job running)…"
    assert_same_molecules(at.session_state["generation_run"].molecules, reference[500])
    assert not at.info  # the waiting notice is gone once the run has its slot
