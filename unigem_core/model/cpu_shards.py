"""CPU inference on several cores: a batch's molecules in shards, side by side, one core each.

Molecules do not interact, so a batch can be cut into shards that run at once on threads of their own,
each with a single OpenMP thread, instead of every operator of one pass being shared out over all the
cores. On 2 cores that is 1.5-1.7x faster for 8 to 100 molecules, and at 1 to 4 molecules one core alone
is 1.6-1.8x faster than two: each of the ~900 operators of a pass would otherwise wake the sleeping second
thread (OMP_WAIT_POLICY=PASSIVE, which unigem sets) for a few microseconds of work (bench/NOTES.md,
"Shards on the cores"). Not used for training (its backward pass wants one graph), inside a torch.compile
trace (the compiled sampler shards around its graph instead: sampler.compiled), or where torch's OpenMP
runtime cannot be found: there the whole pass runs in the calling thread as before.
"""
from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import torch

T = TypeVar("T")

# A shard holds about this many padded edges (b N^2) at most, so that the [b, N, N, H] intermediates of
# its pass stay in cache: 1.1-1.6x at 64 molecules on one thread, more for larger ones (bench/NOTES.md,
# "What changed in unigem_core/model"). On CUDA, larger batches are faster.
CPU_INFERENCE_EDGES = 8192
# A shard with less work than this (padded edges x features^2) is not worth a core of its own: its operators
# are so short that the workers mostly take turns at the Python interpreter. On 2 cores, N = 19-21, two shards
# of the `small` network (128 features) at 4 molecules (14 M each) were no faster than one thread, at 8 (24 M)
# 1.2x faster; of `paper` (256) at 2 molecules (24 M) as fast, at 4 (47 M) 1.7x (bench/NOTES.md, "Shards on
# the cores").
MIN_SHARD_WORK = 20_000_000


def shard_slices(b: int, n: int, threads: int, hidden: int) -> list[slice]:
    """The shards of a batch of b molecules padded to n atoms for a network of `hidden` features: groups of
    at most about CPU_INFERENCE_EDGES padded edges, their number rounded up to a multiple of `threads` so the
    cores get equal shares, but no more than b, nor more than shards of MIN_SHARD_WORK each."""
    count = -(-b // max(1, CPU_INFERENCE_EDGES // (n * n)))  # cache-sized groups
    if threads > 1:
        count = threads * -(-count // threads)  # equal shares for the cores
        count = min(count, max(1, b * n * n * hidden * hidden // MIN_SHARD_WORK))  # each worth a core
    count = min(count, b)
    bounds = [round(i * b / count) for i in range(count + 1)]
    return [slice(lo, hi) for lo, hi in zip(bounds, bounds[1:])]


def run_shards(forward: Callable[[slice], T], slices: list[slice], threads: int) -> list[T]:
    """forward(shard) for every shard, side by side on `threads` workers of one OpenMP thread each; a single
    shard in the calling thread on one OpenMP thread; in the calling thread, one after the other, for
    threads = 1 (and under torch.compile, whose trace cannot follow other threads) or where torch's OpenMP
    runtime cannot be found."""
    if threads == 1 or _openmp() is None:
        return [forward(s) for s in slices]
    if len(slices) == 1:  # here, without handing it over: this thread alone, for the shard's duration
        with _one_openmp_thread_here():
            return [forward(slices[0])]
    # Grad mode, inference mode and autocast are per thread: each worker takes on the caller's.
    inference = torch.is_inference_mode_enabled()
    autocast = torch.is_autocast_enabled("cpu")
    dtype = torch.get_autocast_dtype("cpu")

    def in_worker(s: slice) -> T:
        with torch.inference_mode(inference), torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=autocast):
            return forward(s)

    return list(_pool(threads).map(in_worker, slices))


def available() -> bool:
    """Whether CPU passes can run in shards here (torch's OpenMP runtime was found): then concurrent callers
    share one worker per thread instead of each putting its own threads on the cores."""
    return _openmp() is not None


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    """One pool per thread count, kept for the process: concurrent callers (the app's sessions) share its
    workers, so together they never run more passes at once than there are cores."""
    return ThreadPoolExecutor(threads, thread_name_prefix="unigem-shard", initializer=_one_openmp_thread)


@contextmanager
def _one_openmp_thread_here() -> Iterator[None]:
    """This thread's parallel regions single-threaded for the with-block (_one_openmp_thread), then as before."""
    omp_before, mkl_before = _one_openmp_thread()
    try:
        yield
    finally:
        _openmp().omp_set_num_threads(omp_before)
        if mkl_before is not None:
            _mkl_set_num_threads_local()(ctypes.byref(ctypes.c_int(mkl_before)))


def _one_openmp_thread() -> tuple[int, int | None]:
    """Make this thread's parallel regions single-threaded (a worker's start); returns the OpenMP and MKL counts
    it had (MKL's None where torch has no MKL; 0 there means MKL's process-wide count). OpenMP keeps the thread
    count per thread, so the caller and every other thread keep theirs (torch.set_num_threads would also change
    the count that threads started later take on). MKL's vector maths (sqrt and the like) keeps a count of its
    own, per thread too: left at two, it woke a second thread for a sqrt over [1, 19, 19, 1] (25 against 1.2 us)."""
    torch.get_num_threads()  # torch sets a new thread's count on first use: let it, then override it
    omp_before = _openmp().omp_get_max_threads()
    _openmp().omp_set_num_threads(1)
    mkl = _mkl_set_num_threads_local()  # this entry point takes its argument by reference
    return omp_before, (mkl(ctypes.byref(ctypes.c_int(1))) if mkl is not None else None)


@functools.cache
def _mkl_set_num_threads_local() -> Callable | None:
    """MKL's per-thread count setter inside torch's CPU library (MKL is linked into it), or None."""
    path = next((p for p in _torch_libraries() if os.path.basename(p).startswith("libtorch_cpu")), None)
    try:
        return ctypes.CDLL(path).mkl_set_num_threads_local if path else None
    except (OSError, AttributeError):  # a build without MKL
        return None


@functools.cache
def _openmp() -> ctypes.CDLL | None:
    """The OpenMP runtime torch's CPU kernels run on (its own copy, not necessarily the system's), or None."""
    for path in _torch_libraries():
        if os.path.basename(path).startswith(("libgomp", "libiomp", "libomp")):
            return ctypes.CDLL(path)
    return None


def _torch_libraries() -> list[str]:
    """The shared libraries of torch's own lib folder that this process has loaded (Linux; [] elsewhere)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if line.rstrip().endswith((".so", ".so.1", ".so.5"))}
    except OSError:  # not Linux
        return []
    torch_lib = os.path.realpath(os.path.join(os.path.dirname(torch.__file__), "lib"))
    return sorted(p for p in paths if os.path.realpath(p).startswith(torch_lib))
