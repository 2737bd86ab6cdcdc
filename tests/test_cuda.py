"""The CUDA paths against the CPU ones: a training step, sampling, compiled sampling and training, prediction with
the shipped weights. Skipped without a GPU; scripts/gpu_session.sh runs them first on a lent one (where QM9 comes
from the portable file and RDKit is missing: only the last test needs it)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from unigem_core.config import preset
from unigem_core.data.collate import collate
from unigem_core.data.qm9 import load_split, symbols_of
from unigem_core.diffusion.sampler import SamplerOptions, sample
from unigem_core.diffusion.schedule import NoiseSchedule
from unigem_core.model.denoiser import Denoiser
from unigem_core.train.loop import compile_blocks, new_state, train_step

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture(autouse=True)
def exact_fp32_matmuls():
    """fp32 on the GPU as on the CPU (training switches TF32 on; the comparisons below want full fp32)."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _step(device: torch.device, precision: str, compiled: bool = False) -> tuple[dict, list[torch.Tensor]]:
    config = preset("tiny").with_train(train_subset=64, batch_size=16, micro_batch=0, lr=1e-3, precision=precision)
    train = load_split("train", progress=False).subset(np.arange(64))
    state = new_state(config, train, device)
    if compiled:
        assert compile_blocks(state.model)
    metrics = train_step(state, collate(train, np.arange(16, 32)).to(device), NoiseSchedule())
    return metrics, [p.detach().float().cpu() for p in state.model.parameters()]


def test_a_training_step_on_the_gpu_is_the_cpu_step():
    """Same weights, same noise (drawn on the CPU from the state's generator): the same losses and update in fp32."""
    (cpu, p_cpu), (gpu, p_gpu) = _step(CPU, "fp32"), _step(CUDA, "fp32")
    for key in ("loss", "coord", "atom_type", "prop", "grad_norm"):
        assert gpu[key] == pytest.approx(cpu[key], rel=1e-4, abs=1e-6), key
    for a, b in zip(p_cpu, p_gpu):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_bf16_and_compiled_steps_on_the_gpu_stay_near_fp32():
    """bf16 autocast (what `auto` picks on a recent GPU) within the tolerance the CPU's bf16 is held to; the
    blocks under torch.compile (`unigem train --compile`, Triton kernels) equal the eager step."""
    fp32, _ = _step(CUDA, "fp32")
    bf16, _ = _step(CUDA, "bf16")
    assert bf16["loss"] == pytest.approx(fp32["loss"], rel=0.05)
    torch._dynamo.reset()
    compiled, _ = _step(CUDA, "fp32", compiled=True)
    for key in ("loss", "coord", "prop", "grad_norm"):
        assert compiled[key] == pytest.approx(fp32[key], rel=1e-4, abs=1e-6), key


@pytest.mark.parametrize("compile", [False, True])
def test_sampling_on_the_gpu_gives_the_cpu_molecule(compile):
    """Seeds draw their noise on the CPU, so a seed gives the same molecule on either device (fp32)."""
    torch.manual_seed(0)
    model = Denoiser(preset("tiny")).eval()
    options = SamplerOptions(steps=12, precision="fp32", compile=compile)
    on_cpu = sample(model, NoiseSchedule(), [6, 9], [1, 2], SamplerOptions(steps=12, precision="fp32"))
    on_gpu = sample(model.to(CUDA), NoiseSchedule(), [6, 9], [1, 2], options)
    for a, b in zip(on_cpu.positions, on_gpu.positions):
        assert np.allclose(a, b, atol=1e-3)
    assert all((a == b).all() for a, b in zip(on_cpu.types, on_gpu.types))
    assert np.allclose(on_cpu.properties, on_gpu.properties, atol=1e-3)


def test_the_shipped_model_predicts_the_same_on_the_gpu():
    """The shipped weights read a QM9 test geometry alike on both devices (fp32, predict_properties' precision),
    within a tenth of the test MAE; generation runs on the GPU."""
    pytest.importorskip("rdkit", reason="the engine reads and checks molecules with RDKit")
    from unigem_core import api

    test = load_split("test", progress=False)
    molecules = [api.Molecule(symbols=tuple(symbols_of(test.types[r])), positions=test.positions[r, :test.n_atoms[r]])
                 for r in range(8)]
    cpu = api.predict_molecules(api.load_model(device="cpu"), molecules, refine_built=False)
    gpu = api.predict_molecules(api.load_model(device="cuda"), molecules, refine_built=False)
    mae = (api.model_card() or {}).get("properties", {}).get("mae") or {}
    for a, b in zip(cpu, gpu):
        for key, value in a[0].items():
            assert abs(b[0][key] - value) <= 0.1 * mae.get(key, abs(value) + 1e-9), key
    engine = api.load_model(device="cuda")
    made = api.generate(engine, 4, steps=20, seed=0)
    assert len(made) == 4 and all(np.isfinite(m.molecule.positions).all() for m in made)
