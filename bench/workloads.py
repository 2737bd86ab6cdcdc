"""The timed workloads of bench/run.py and their analytic matmul FLOP counts.

Every workload calls the project's own entry points (train_step, sample, predict_properties), so
the numbers are those of the code people run. Implementations are timed interleaved, round by
round in a rotating order, so that load from other processes falls on all of them alike.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from unigem_core.config import ModelConfig, UniGEMConfig
from unigem_core.constants import MAX_ATOMS, NUM_ELEMENTS, NUM_PROPERTIES
from unigem_core.data.collate import Batch
from unigem_core.data.normalizer import PropertyNormalizer
from unigem_core.data.qm9 import QM9Arrays, symbols_of
from unigem_core.diffusion.sampler import SamplerOptions, sample, timesteps
from unigem_core.diffusion.schedule import NoiseSchedule
from unigem_core.molecule import Molecule
from unigem_core.train.loop import TrainState, build_state, train_step


@dataclass
class Timing:
    """Seconds per round of one implementation on one workload: wall clock and process CPU time."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(runs: dict[str, Callable[[], None]], rounds: int, device: torch.device,
                warmups: dict[str, Callable[[], None]] | None = None) -> dict[str, Timing]:
    """An untimed warm-up each (the run itself unless a cheaper one is given), then `rounds` rounds
    of one timed run each, in rotating order."""
    for name, run in runs.items():
        (warmups or runs).get(name, run)()
    sync(device)
    timings = {name: Timing() for name in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            wall, cpu = time.perf_counter(), time.process_time()
            runs[name]()
            sync(device)
            timings[name].wall.append(time.perf_counter() - wall)
            timings[name].cpu.append(time.process_time() - cpu)
    return timings


# ---------------------------------------------------------------- machine peak
def matmul_peak(device: torch.device, dtype: torch.dtype, size: int = 2048, reps: int = 3) -> float:
    """Best GFLOP/s of a size^3 matmul (2 size^3 FLOP) over `reps` calls."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    a @ b
    sync(device)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


# ---------------------------------------------------------------- FLOP counts
def block_flops(mc: ModelConfig, b: int, n: int, formulation: str) -> float:
    """Matmul FLOPs of one EquivariantBlock forward on b molecules padded to n atoms.

    dense: first edge/coordinate layers per node (W_a h_i, W_b h_j: [b n, H] x [H, H]) plus the K=2
    edge term per edge; reference: one [b n^2, 2H+2] x [2H+2, H] product per first layer.
    """
    h, nodes, edges = mc.hidden, b * n, b * n * n
    if formulation == "dense":
        first = 2 * (2 * nodes * h * h + edges * 2 * h)  # edge_in and coord_in
    else:
        first = 2 * edges * (2 * h + 2) * h
    rest = 2 * edges * h * h + 2 * edges * h + nodes * 3 * h * h  # edge_out, coord_mid; gate, coord_out; node_mlp
    return 2.0 * (first + rest)


def forward_flops(mc: ModelConfig, b: int, n: int, formulation: str) -> float:
    """One denoiser call: a path of shared + branch blocks on every molecule, embedding and heads."""
    h, nodes = mc.hidden, b * n
    heads = nodes * (h * h + h * NUM_ELEMENTS) + nodes * 2 * h * h + b * (h * h + h * NUM_PROPERTIES)
    depth = mc.shared_blocks + mc.branch_blocks
    return depth * block_flops(mc, b, n, formulation) + 2.0 * (heads + nodes * 2 * h)


def training_flops(mc: ModelConfig, batches: list[Batch], formulation: str) -> float:
    """Forward plus backward (taken as 2x the forward: input and weight gradients) over the batches."""
    return sum(3 * forward_flops(mc, len(bt), bt.node_mask.shape[1], formulation) for bt in batches)


# ---------------------------------------------------------------- workloads
def training_state(model: nn.Module, config: UniGEMConfig, normalizer: PropertyNormalizer) -> TrainState:
    """What `unigem train` trains, around a given model (ours or the reference); the plain AdamW loop for both,
    as the published code has it, so the table compares the networks (the fused kernel is in bench/NOTES.md)."""
    tc = config.train
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, amsgrad=tc.amsgrad)
    return build_state(config, model, normalizer, [0] * (MAX_ATOMS + 1), optimizer=optimizer)


def training_run(state: TrainState, batches: list[Batch], schedule: NoiseSchedule) -> Callable[[], None]:
    def run() -> None:
        for batch in batches:
            train_step(state, batch, schedule)
    return run


def sampling_run(model: nn.Module, schedule: NoiseSchedule, n_atoms: list[int], steps: int,
                 precision: str, compile: bool = False) -> Callable[[], None]:
    options = SamplerOptions(steps=steps, precision=precision, compile=compile)
    seeds = list(range(len(n_atoms)))
    return lambda: sample(model, schedule, n_atoms, seeds, options)


def denoiser_call(model: nn.Module, n_atoms: list[int], precision: str, device: torch.device) -> Callable[[], None]:
    """One network call at the shape of a sampling batch: the warm-up of a sampling workload."""
    n_max = max(n_atoms)
    node_mask = (torch.arange(n_max)[None] < torch.tensor(n_atoms)[:, None]).to(device)
    z = torch.randn(len(n_atoms), n_max, 3, device=device) * node_mask[..., None]
    t = torch.full((len(n_atoms),), 500, device=device)

    def run() -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            model(z, t, node_mask)
    return run


def sampling_calls(schedule: NoiseSchedule, t_n: int, steps: int) -> int:
    """Network calls of one `sample` run: every t of the schedule including the final t = 0."""
    return len(timesteps(schedule.num_steps, t_n, steps))


def sampling_flops(mc: ModelConfig, schedule: NoiseSchedule, t_n: int, n_atoms: list[int], steps: int,
                   formulation: str) -> float:
    return sampling_calls(schedule, t_n, steps) * forward_flops(mc, len(n_atoms), max(n_atoms), formulation)


def qm9_molecules(arrays: QM9Arrays, count: int) -> list[Molecule]:
    return [Molecule(symbols=symbols_of(arrays.types[i]), positions=arrays.positions[i, :arrays.n_atoms[i]])
            for i in range(count)]


def prediction_flops(mc: ModelConfig, molecules: list[Molecule], batch_size: int, formulation: str) -> float:
    """predict_properties sorts by size and pads each batch to its largest molecule."""
    sizes = sorted(m.n_atoms for m in molecules)
    return sum(forward_flops(mc, len(chunk), max(chunk), formulation)
               for chunk in (sizes[s:s + batch_size] for s in range(0, len(sizes), batch_size)))


def atom_counts(arrays: QM9Arrays, count: int, seed: int = 0) -> list[int]:
    """Atom counts drawn from the training distribution, as `generate` draws them."""
    return [int(n) for n in np.random.default_rng(seed).choice(arrays.n_atoms, size=count)]
