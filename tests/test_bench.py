"""bench/run.py's workloads stay in step with the engine they time.

The benchmark builds its own training states and sampling runs around both networks (ours and
bench/reference_egnn.py); these run each workload once on the tiny preset, so a change to the
engine's signatures that would leave `python bench/run.py` broken fails here instead.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from unigem_core.config import preset
from unigem_core.data.collate import collate
from unigem_core.data.normalizer import PropertyNormalizer
from unigem_core.data.qm9 import load_split
from unigem_core.diffusion.schedule import NoiseSchedule
from unigem_core.model.denoiser import Denoiser

BENCH = Path(__file__).resolve().parent.parent / "bench"
CFG = preset("tiny")
SCHEDULE = NoiseSchedule(CFG.diffusion.num_steps, CFG.diffusion.power, CFG.diffusion.precision)


@pytest.fixture(scope="module")
def bench_modules():
    sys.path.insert(0, str(BENCH))
    try:
        import reference_egnn
        import workloads
        yield workloads, reference_egnn
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize("network", ["ours", "reference"])
def test_training_workload_takes_a_step(bench_modules, network):
    W, reference_egnn = bench_modules
    train = load_split("train", progress=False).subset(np.arange(16))
    torch.manual_seed(0)
    model = Denoiser(CFG)
    if network == "reference":
        model = reference_egnn.ReferenceDenoiser.from_denoiser(model, CFG)
    state = W.training_state(model, CFG.with_train(precision="fp32"), PropertyNormalizer.fit(train.targets))
    before = [p.detach().clone() for p in model.parameters()]
    W.training_run(state, [collate(train, np.arange(16))], SCHEDULE)()
    assert state.step == 1
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_sampling_workload_and_its_warm_up_run(bench_modules):
    W, reference_egnn = bench_modules
    torch.manual_seed(0)
    ours = Denoiser(CFG).eval()
    reference = reference_egnn.ReferenceDenoiser.from_denoiser(ours, CFG).eval()
    for model in (ours, reference):
        W.denoiser_call(model, [5, 7], "fp32", torch.device("cpu"))()
        W.sampling_run(model, SCHEDULE, [5, 7], steps=4, precision="fp32")()
    assert W.sampling_calls(SCHEDULE, CFG.diffusion.t_n, 4) > 1
