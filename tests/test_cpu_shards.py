"""CPU inference in shards side by side (unigem_core.model.cpu_shards): the same answers as one thread, with the
caller's precision and grad mode, on workers that each run one OpenMP thread."""
from __future__ import annotations

import ctypes
import threading

import pytest
import torch

from conftest import random_batch
from unigem_core.model import cpu_shards
from unigem_core.model.cpu_shards import CPU_INFERENCE_EDGES, MIN_SHARD_WORK, _openmp, run_shards, shard_slices
from unigem_core.model.denoiser import Denoiser

needs_openmp = pytest.mark.skipif(_openmp() is None, reason="torch's OpenMP runtime not found: no shards here")


@pytest.fixture
def threads():
    """Set the caller's torch thread count; restored afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize("b, n, n_threads", [(1, 19, 2), (3, 19, 2), (7, 64, 2), (100, 19, 2), (100, 19, 16),
                                             (5, 91, 1), (64, 29, 4), (40, 10, 1)])
def test_shards_cover_the_batch_in_order_and_share_it_evenly(b, n, n_threads):
    group = max(1, CPU_INFERENCE_EDGES // (n * n))  # molecules whose edges fit in cache
    slices = shard_slices(b, n, n_threads, hidden=256)
    assert [i for s in slices for i in range(b)[s]] == list(range(b))
    assert len(slices) <= b and all(s.stop > s.start for s in slices)
    enough_work = max(1, b * n * n * 256 * 256 // MIN_SHARD_WORK)
    assert len(slices) % n_threads == 0 or len(slices) in (b, enough_work)  # equal shares, unless too little
    assert max(s.stop - s.start for s in slices) - min(s.stop - s.start for s in slices) <= 1
    assert max(s.stop - s.start for s in slices) <= max(group, -(-b // n_threads))


def test_a_shard_holds_enough_work_for_a_core():
    """Small batches of a narrow network stay whole (their shards would be too short to pay); wider ones split."""
    assert len(shard_slices(4, 21, 2, hidden=128)) == 1  # the Generate page's 4 molecules, `small`
    assert len(shard_slices(16, 23, 2, hidden=128)) == 2
    assert len(shard_slices(4, 19, 2, hidden=256)) == 2  # `paper`
    assert len(shard_slices(1, 29, 2, hidden=256)) == 1 and len(shard_slices(2, 12, 2, hidden=256)) == 1
    assert len(shard_slices(2, 19, 1, hidden=256)) == 1 and len(shard_slices(100, 19, 1, hidden=32)) == 5


@needs_openmp
def test_workers_run_one_openmp_thread_and_the_caller_keeps_its_count(threads):
    threads(2)
    with torch.inference_mode():
        seen = run_shards(lambda s: (torch.get_num_threads(), torch.is_inference_mode_enabled(),
                                     threading.current_thread() is threading.main_thread()), [slice(0, 1)] * 4, 2)
    assert seen == [(1, True, False)] * 4
    if cpu_shards._mkl_set_num_threads_local() is not None:  # MKL's own count (its vector maths): one there too
        get = ctypes.CDLL(next(p for p in cpu_shards._torch_libraries() if "libtorch_cpu" in p)).mkl_get_max_threads
        assert run_shards(lambda s: get(), [slice(0, 1)] * 2, 2) == [1, 1] and get() == 2
        assert run_shards(lambda s: get(), [slice(0, 1)], 2) == [1] and get() == 2  # one shard: here, then back
    assert torch.get_num_threads() == 2
    alone = run_shards(lambda s: (torch.get_num_threads(), threading.current_thread() is threading.main_thread()),
                       [slice(0, 1)], 2)
    assert alone == [(1, True)] and torch.get_num_threads() == 2  # one shard: here, on one thread, then back
    later = []  # a thread started afterwards (a new app session) still takes the process's count
    worker = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    worker.start()
    worker.join()
    assert later == [2]


@needs_openmp
def test_sharded_passes_equal_one_thread_in_float64_and_keep_bf16_autocast(tiny_config, threads, monkeypatch):
    from unigem_core.model import cpu_shards

    torch.manual_seed(0)
    model = Denoiser(tiny_config).eval()
    x, mask = random_batch([7, 5, 9, 3, 6, 8, 4], n_max=10)
    t = torch.tensor([0, 10, 11, 700, 3, 1000, 50])  # shards with one branch, and shards with both
    monkeypatch.setattr(cpu_shards, "CPU_INFERENCE_EDGES", 2 * 10 * 10)  # two molecules per group: four shards
    monkeypatch.setattr(cpu_shards, "MIN_SHARD_WORK", 1)  # however little work the tiny network's shards hold

    def outputs(n_threads: int, dtype: torch.dtype, bf16: bool):
        threads(n_threads)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model.to(dtype)(x.to(dtype), t, mask)
        return out.eps, out.type_logits, out.properties

    for one, shared in zip(outputs(1, torch.float64, False), outputs(2, torch.float64, False)):
        assert torch.allclose(one, shared, rtol=0, atol=1e-12)
    fp32 = outputs(1, torch.float32, False)
    for one, shared, full in zip(outputs(1, torch.float32, True), outputs(2, torch.float32, True), fp32):
        assert torch.allclose(one, shared, rtol=0, atol=1e-6)
        assert not torch.allclose(shared, full, rtol=0, atol=1e-6)  # the workers computed in bf16 too
