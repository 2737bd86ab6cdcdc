"""Worker processes for the work that `--processes N` shares out (sampling batches, building molecules from SMILES).

Workers are spawned, not forked: a fork after OpenMP has started can hang. Each one also ends when its parent
does. A parent stopped by a signal it does not handle (`kill`, a job scheduler's SIGTERM) exits without shutting
its pool down, and its workers, re-parented, would otherwise go on computing their batches for minutes with
nobody to take the result (a killed 1,000-step evaluation left two, each on a core, session 33).
"""
from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Callable

SPAWN = multiprocessing.get_context("spawn")  # also for queues shared with the workers
PARENT_CHECK_S = 0.5  # how often a worker looks for its parent


def worker_pool(processes: int, initializer: Callable | None = None, initargs: tuple = ()) -> ProcessPoolExecutor:
    """A pool of `processes` spawned workers that exit when this process does; `initializer(*initargs)` starts each."""
    return ProcessPoolExecutor(processes, mp_context=SPAWN, initializer=_start,
                               initargs=(os.getpid(), initializer, initargs))


def _start(parent: int, initializer: Callable | None, initargs: tuple) -> None:
    threading.Thread(target=_exit_with, args=(parent,), name="exit-with-parent", daemon=True).start()
    if initializer is not None:
        initializer(*initargs)


def _exit_with(parent: int) -> None:
    """Ends this worker once `parent` is gone (on POSIX an orphan is re-parented, so its parent id changes)."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(1)  # no cleanup: the task in hand has nobody to return to
