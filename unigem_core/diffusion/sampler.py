"""Ancestral sampling of coordinates, then atom types and properties at t = 0 (spec 6).

One plain loop serves the CLI, the app and evaluation. Each molecule draws all of its noise from
its own generator seeded with its seed, so seed k gives the same molecule in any batch.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from unigem_core.constants import STEP_SPACING
from unigem_core.diffusion.schedule import NoiseSchedule
from unigem_core.geometry import batch_noise, remove_mean
from unigem_core.model.cpu_shards import run_shards, shard_slices
from unigem_core.model.denoiser import DenoiserOutput
from unigem_core.molecule import Frame, Trajectory
from unigem_core.precision import autocast, resolve_precision

ProgressCallback = Callable[[int, int], None]  # (steps done, steps in all)
FrameCallback = Callable[[int, torch.Tensor, torch.Tensor | None], None]  # (t, z_t [B, N, 3], type guess [B, N] or None)


@dataclass(frozen=True)
class SamplerOptions:
    steps: int | None = None  # network calls before the final t = 0 call; None = all T (ancestral over every t)
    spacing: float = STEP_SPACING  # with fewer than T steps: 1 = even stride, more = denser at low noise (`timesteps`)
    record_trajectory: bool = False  # keep frames for the trajectory player
    nucleation_frames: int = 100  # frames kept from the nucleation phase; every growth-phase step is kept
    precision: str = "auto"  # the network's dense work: "bf16", "fp32" or "auto" (bf16 where native; unigem_core.precision)
    compile: bool = False  # run the network through torch.compile (see `compiled`): faster calls after a slow first one
    resample: int = 0  # extra rounds of each step (`sample`); 0 = plain ancestral, the paper's sampler
    resample_below: int | None = None  # resample only the steps that end below this t; None = every step

    def __post_init__(self) -> None:
        if self.resample < 0:
            raise ValueError(f"resample counts extra rounds and cannot be negative, not {self.resample}")
        if self.resample_below is not None and self.resample_below < 1:
            raise ValueError(f"resample_below is a timestep and must be at least 1, not {self.resample_below}")

    def rounds(self, s: int) -> int:
        """How many times the step that ends at s is taken: 1, plus `resample` where resampling applies."""
        return 1 + (self.resample if self.resample_below is None or s < self.resample_below else 0)


@dataclass
class SampleResult:
    positions: list[np.ndarray]  # per molecule [n_i, 3] float32, Angstrom
    types: list[np.ndarray]  # per molecule [n_i] element indices (argmax of the t = 0 type head)
    properties: np.ndarray  # [B, 12] normalised property predictions from the t = 0 call
    trajectories: list[Trajectory] | None


def timesteps(num_steps: int, t_n: int, steps: int | None = None, spacing: float = STEP_SPACING) -> list[int]:
    """Descending t from T to 0: all of them, or exactly `steps` transitions.

    A tenth of the transitions (at most t_n) cover the growth phase evenly; the nucleation phase's
    steps fall from T to t_n at t = t_n + (T - t_n) u^spacing for u evenly from 1 to 0. spacing 1 is
    the even stride; larger values give more of the steps to the low-noise end, where a step settles
    bond lengths to hundredths of an Angstrom (as Karras et al. 2022 space theirs for images).
    """
    if steps is None or steps >= num_steps:
        return list(range(num_steps, -1, -1))
    if spacing <= 0:
        raise ValueError(f"the step spacing must be positive, not {spacing}")
    steps = max(steps, 2)
    n_growth = min(t_n, max(1, steps // 10))  # growth steps: where types and properties are decided
    growth = _distinct(np.linspace(0, t_n, n_growth + 1), 0, t_n)
    nucleation = _distinct(t_n + (num_steps - t_n) * np.linspace(0, 1, steps - n_growth + 1) ** spacing, t_n, num_steps)
    return sorted(set(growth) | set(nucleation), reverse=True)


def _distinct(values: np.ndarray, low: int, high: int) -> list[int]:
    """Ascending `values` from low to high, rounded to as many distinct integers (both ends kept).

    Where rounding would merge neighbours (the dense end of a spacing > 1), they are pushed one
    step apart, so the sampler makes exactly the number of network calls it was asked for.
    """
    if len(values) > high - low + 1:
        return list(range(low, high + 1))
    out = np.round(values).astype(int)
    out[0], out[-1] = low, high
    for i in range(1, len(out)):
        out[i] = max(out[i], out[i - 1] + 1)
    for i in range(len(out) - 2, -1, -1):
        out[i] = min(out[i], out[i + 1] - 1)
    return [int(t) for t in out]


class TrajectoryRecorder:
    """A frame callback that keeps nucleation frames sparsely and growth frames densely."""

    def __init__(self, ts: list[int], n_atoms: list[int], schedule: NoiseSchedule, t_n: int, nucleation_frames: int):
        nucleation = [t for t in ts if t > t_n]
        pick = np.unique(np.round(np.linspace(0, len(nucleation) - 1, min(nucleation_frames, len(nucleation)))))
        self.keep = {nucleation[int(i)] for i in pick} | {t for t in ts if t <= t_n}
        self.n_atoms, self.schedule, self.t_n = n_atoms, schedule, t_n
        self.frames: list[list[Frame]] = [[] for _ in n_atoms]

    def __call__(self, t: int, z: torch.Tensor, type_guess: torch.Tensor | None) -> None:
        if t not in self.keep:
            return
        z = z.detach().float().cpu().numpy()
        guess = None if type_guess is None else type_guess.cpu().numpy()
        phase = "growth" if t <= self.t_n else "nucleation"
        sigma = self.schedule.sigma_value(t)
        for i, n in enumerate(self.n_atoms):
            self.frames[i].append(Frame(t=t, sigma_t=sigma, phase=phase, positions=z[i, :n].copy(),
                                        type_guess=None if guess is None else guess[i, :n].copy()))

    def trajectories(self) -> list[Trajectory]:
        return [Trajectory(frames=f, t_n=self.t_n, num_steps=self.schedule.num_steps) for f in self.frames]


_COMPILED: "weakref.WeakKeyDictionary[torch.nn.Module, Callable]" = weakref.WeakKeyDictionary()


def compiled(model: torch.nn.Module) -> Callable:
    """`model` under torch.compile for sampling with fixed weights; one per model, kept for reuse.

    On CPU the weights are frozen into the graph (constant-folded, prepacked for oneDNN) and the
    generated code is called from a C++ wrapper, which removes the per-operator Python dispatch that
    dominates small batches. Measured on the `paper` network, one thread, bf16 (bench/NOTES.md):
    1.65x per call at batch 1 (11.5 against 19.0 ms), after about a minute of compiling per (batch, atoms)
    shape on 2 cores; a sampling run keeps one shape for all its steps. Later weight changes are not
    seen (frozen), so this is for inference models such as the EMA network of a checkpoint.

    Freezing is switched on around every call rather than passed in torch.compile's options:
    TorchDynamo decides whether parameters become constants while it traces, from the global
    Inductor config, so `options={"freezing": True}` alone leaves the weights as graph inputs that
    are cast to bf16 on every call (torch 2.13; 1.2x slower at batch 1, bench/NOTES.md).

    On CPU the batch runs in shards side by side, one core each (model.cpu_shards), and each shard's graph
    is compiled on one OpenMP thread, since Inductor builds the thread count into its kernels: at batch 1 on
    2 cores 2.3x faster than the graph on both cores (bench/NOTES.md, "Shards on the cores"). A new shard
    shape is compiled one shard at a time, so two workers never compile the same graph at once.
    """
    net = _COMPILED.get(model)
    if net is None:
        from torch._inductor import config as inductor_config

        cpu = next(model.parameters()).device.type == "cpu"
        graph = torch.compile(model, options={"cpp_wrapper": cpu})
        compiled_shapes: set[tuple] = set()

        def net(z: torch.Tensor, t: torch.Tensor, node_mask: torch.Tensor, growth: bool) -> DenoiserOutput:
            with inductor_config.patch(freezing=True):  # seen by the trace, the compile and any recompile
                if not cpu:
                    return graph(z, t, node_mask, growth=growth)
                threads = torch.get_num_threads()
                slices = shard_slices(len(z), z.shape[1], threads, model.hidden)

                def shard(s: slice) -> DenoiserOutput:
                    return graph(z[s], t[s], node_mask[s], growth=growth)

                shape = (tuple(s.stop - s.start for s in slices), z.shape[1], growth)
                if shape in compiled_shapes:
                    return DenoiserOutput.cat(run_shards(shard, slices, threads))
                compiled_shapes.add(shape)
                return DenoiserOutput.cat([run_shards(shard, [s], threads)[0] for s in slices])

        _COMPILED[model] = net
    return net


def network_calls(ts: list[int], options: SamplerOptions) -> int:
    """How many times `sample` calls the network over the descending steps `ts`, the final t = 0 call included."""
    return sum(options.rounds(s) for s in ts[1:]) + 1


@torch.inference_mode()
def sample(model, schedule: NoiseSchedule, n_atoms: list[int], seeds: list[int], options: SamplerOptions = SamplerOptions(),
           on_progress: ProgressCallback | None = None, on_frame: FrameCallback | None = None) -> SampleResult:
    """Generate len(seeds) molecules with the given atom counts. The model's device is used.

    Each step t -> s is an ancestral step (spec 6). With options.resample = R, each step (or, with
    options.resample_below, each step that ends below that t) is taken R more times, each time after
    going back from z_s to t through the forward process, z_t = alpha_{t|s} z_s + sigma_{t|s} noise
    (the resampling of RePaint, Lugmayr et al. 2022). With an exact denoiser this leaves the
    distribution of z_s unchanged; with ours it is a corrector that lets each step undo part of the
    error made before it. It costs R network calls per step. At a fixed number of calls, fewer steps
    with more rounds made more of the shipped model's molecules stable, and fewer of them novel
    (bench/NOTES.md, "Resampling every step").
    """
    device = next(model.parameters()).device
    t_n = model.t_n
    b, n_max = len(n_atoms), max(n_atoms)
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    node_mask = (torch.arange(n_max).unsqueeze(0) < torch.tensor(n_atoms).unsqueeze(1)).to(device)  # [B, N]
    ts = timesteps(schedule.num_steps, t_n, options.steps, options.spacing)
    recorder = TrajectoryRecorder(ts, n_atoms, schedule, t_n, options.nucleation_frames) if options.record_trajectory else None
    callbacks = [cb for cb in (recorder, on_frame) if cb is not None]
    net = compiled(model) if options.compile else model
    precision = resolve_precision(options.precision, device)  # once, not at every step

    def call(z: torch.Tensor, t: int, report: bool = True):
        t_vec = torch.full((b,), t, dtype=torch.long, device=device)
        with autocast(device, precision):
            out = net(z, t_vec, node_mask, growth=t <= t_n)
        guess = out.type_logits.argmax(-1) if t <= t_n else None
        for cb in callbacks if report else ():  # one frame per step t, from its last round
            cb(t, z, guess)
        return out

    def noise() -> torch.Tensor:  # CoM-free, from each molecule's own generator
        return batch_noise(n_atoms, n_max, generators).to(device)

    z = noise()  # z_T
    total, done = network_calls(ts, options), 0
    for t, s in zip(ts[:-1], ts[1:]):
        t_, s_ = torch.tensor([t]), torch.tensor([s])
        alpha_ts, sigma2_ts = (v.to(device) for v in schedule.transition(t_, s_))
        sigma_t, sigma_s = schedule.sigma(t_).to(device), schedule.sigma(s_).to(device)
        std = torch.sqrt(sigma2_ts) * sigma_s / sigma_t
        rounds = options.rounds(s)
        for r in range(rounds):
            if r:  # back from z_s to t through the forward process
                z = remove_mean(alpha_ts * z + torch.sqrt(sigma2_ts) * noise(), node_mask)
            out = call(z, t, report=r == rounds - 1)
            mu = z / alpha_ts - (sigma2_ts / (alpha_ts * sigma_t)) * out.eps
            z = remove_mean(mu + std * noise(), node_mask)
            done += 1
            if on_progress is not None:
                on_progress(done, total)

    # Final call at t = 0: clean coordinates, atom types and properties (spec 6, step 4).
    out = call(z, 0)
    zero = torch.tensor([0])
    alpha_0, sigma_0 = schedule.alpha(zero).to(device), schedule.sigma(zero).to(device)
    x = (z - sigma_0 * out.eps) / alpha_0
    x = remove_mean(x + sigma_0 / alpha_0 * batch_noise(n_atoms, n_max, generators).to(device), node_mask)
    if on_progress is not None:
        on_progress(total, total)
    x = x.float().cpu().numpy()
    types = out.type_logits.argmax(-1).cpu().numpy()
    trajectories = None
    if recorder is not None:
        trajectories = recorder.trajectories()
        for traj, pos in zip(trajectories, x):  # the last frame shows the final, clean molecule
            traj.frames[-1].positions = pos[: len(traj.frames[-1].positions)].copy()
    return SampleResult(positions=[x[i, :n] for i, n in enumerate(n_atoms)],
                        types=[types[i, :n] for i, n in enumerate(n_atoms)],
                        properties=out.properties.float().cpu().numpy(), trajectories=trajectories)
