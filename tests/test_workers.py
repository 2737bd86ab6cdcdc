"""Worker processes end with their parent, even one killed without the chance to shut its pool down."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from unigem_core import workers

REPO = Path(__file__).resolve().parent.parent

# A parent that starts two workers on long tasks, prints their ids and dies by SIGKILL (as `kill -9` would stop
# it; an unhandled SIGTERM skips the pool's shutdown the same way).
PARENT = textwrap.dedent("""
    import multiprocessing, os, signal, time
    from unigem_core.workers import worker_pool

    pool = worker_pool(2)
    for _ in range(2):
        pool.submit(time.sleep, 60)
    time.sleep(1.0)  # a worker that had not started yet finds its parent gone at its start
    print(*[p.pid for p in multiprocessing.active_children()], flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def _running(pid: int) -> bool:
    """Whether the process exists and is not a zombie (an orphan's exit may wait for a reaper)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc (Linux)")
def test_workers_exit_when_their_parent_is_killed():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", PARENT], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == -9, run.stderr
    pids = [int(p) for p in run.stdout.split()]
    assert len(pids) == 2  # both workers had their minute-long tasks when the parent died
    deadline = time.monotonic() + 20 * workers.PARENT_CHECK_S + 5
    while any(_running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_running(p) for p in pids), "a worker outlived its parent"


def test_pool_runs_tasks_and_initializer():
    with workers.worker_pool(1, os.chdir, ("/",)) as pool:  # the initializer runs in the worker before any task
        assert pool.submit(os.getcwd).result(timeout=60) == "/"
        assert pool.submit(os.getppid).result(timeout=60) == os.getpid()
