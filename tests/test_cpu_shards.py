"""CPU inference in shards side by side (unigem_core.model.cpu_shards): the same answers as one thread, with the
caller's precision and grad mode, on workers that each run one OpenMP thread."""
from __future__ import annotations

import threading

import pytest
import torch

from conftest import random_batch
from unigem_core.model.cpu_shards import CPU_INFERENCE_EDGES, _openmp, run_shards, shard_slices
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
    slices = shard_slices(b, n, n_threads)
    assert [i for s in slices for i in range(b)[s]] == list(range(b))
    assert len(slices) <= b and all(s.stop > s.start for s in slices)
    assert len(slices) % n_threads == 0 or len(slices) == b  # equal shares for the cores, unless too few molecules
    assert max(s.stop - s.start for s in slices) - min(s.stop - s.start for s in slices) <= 1
    assert max(s.stop - s.start for s in slices) <= max(group, -(-b // n_threads))


@needs_openmp
def test_workers_run_one_openmp_thread_and_the_caller_keeps_its_count(threads):
    threads(2)
    with torch.inference_mode():
        seen = run_shards(lambda s: (torch.get_num_threads(), torch.is_inference_mode_enabled(),
                                     threading.current_thread() is threading.main_thread()), [slice(0, 1)] * 4, 2)
    assert seen == [(1, True, False)] * 4
    assert torch.get_num_threads() == 2
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
