"""Training: `train_step` does exactly one optimiser step; `fit` reads top to bottom (spec 5).

Runs on CPU (bf16 autocast uses the AMX units) and CUDA (bf16, TF32), single process or under
`torchrun` (DistributedDataParallel: gloo on CPU, NCCL on CUDA). Checkpoints are atomic and carry
the whole state, so a killed run resumes exactly where its last checkpoint left it.
"""
from __future__ import annotations

import csv
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from unigem_core.config import TrainConfig, UniGEMConfig
from unigem_core.constants import MAX_ATOMS
from unigem_core.data.collate import Batch, collate, epoch_batches
from unigem_core.data.normalizer import PropertyNormalizer
from unigem_core.data.qm9 import QM9Arrays, load_split
from unigem_core.device import describe_hardware, keep_freed_memory
from unigem_core.diffusion.process import MoleculeLosses, molecule_losses, noise_batch
from unigem_core.diffusion.schedule import NoiseSchedule
from unigem_core.model.denoiser import Denoiser
from unigem_core.model.layers import EquivariantBlock
from unigem_core.precision import autocast
from unigem_core.train.checkpoint import TRAINING_FORMAT, atomic_save, inference_state, load_checkpoint, versions
from unigem_core.train.clip import AdaptiveClipper
from unigem_core.train.distributed import rank_and_world
from unigem_core.train.ema import EMA
from unigem_core.train.stop import StopRequest
from unigem_core.train.validation import validation_loss, validation_molecules

LOG_FIELDS = ["step", "epoch", "loss", "coord", "atom_type", "prop", "type_accuracy", "lr", "grad_norm",
              "molecules_per_s", "elapsed_s", "val_loss", "val_coord", "val_prop_mae_norm", "val_type_accuracy"]


@dataclass
class TrainState:
    config: UniGEMConfig
    model: nn.Module  # the raw Denoiser (DDP wraps it separately)
    ema: EMA
    slow_ema: EMA | None  # config.train.slow_ema_decay's average, None when that is 0
    optimizer: torch.optim.Optimizer
    clipper: AdaptiveClipper
    generator: torch.Generator  # all training noise and timesteps come from here
    normalizer: PropertyNormalizer
    atom_count_hist: list[int]
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already consumed
    elapsed_s: float = 0.0
    # One entry per `fit` call that trained this state: from_step, to_step, command, hardware, seconds,
    # ended ("step target", "time budget", "signal", or "running" while it trains or if it was killed)
    history: list[dict] = field(default_factory=list)


def make_optimizer(model: nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with AMSGrad (spec 5); the fused kernel is 2.5-3.3x faster per step on CPU than the per-tensor loop."""
    return torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, amsgrad=tc.amsgrad, fused=True)


def new_state(config: UniGEMConfig, train: QM9Arrays, device: torch.device) -> TrainState:
    torch.manual_seed(config.train.seed)
    return build_state(config, Denoiser(config).to(device), PropertyNormalizer.fit(train.targets),
                       np.bincount(train.n_atoms, minlength=MAX_ATOMS + 1).tolist())


def build_state(config: UniGEMConfig, model: nn.Module, normalizer: PropertyNormalizer, atom_count_hist: list[int],
                optimizer: torch.optim.Optimizer | None = None) -> TrainState:
    """A fresh training state around `model` (bench/ wraps the reference network in the same one)."""
    tc = config.train
    return TrainState(config=config, model=model, ema=EMA(model, tc.ema_decay),
                      slow_ema=EMA(model, tc.slow_ema_decay) if tc.slow_ema_decay else None,
                      optimizer=optimizer or make_optimizer(model, tc), clipper=AdaptiveClipper(tc.clip_history),
                      generator=torch.Generator().manual_seed(tc.seed + 1000 * rank_and_world()[0]),
                      normalizer=normalizer, atom_count_hist=atom_count_hist)


def state_dict(state: TrainState) -> dict:
    return {
        "format": TRAINING_FORMAT, "config": state.config.to_dict(), "versions": versions(),
        "model": state.model.state_dict(), "ema": state.ema.state_dict(), "optimizer": state.optimizer.state_dict(),
        **({"slow_ema": state.slow_ema.state_dict()} if state.slow_ema else {}),
        "clipper": state.clipper.state_dict(), "generator": state.generator.get_state(),
        "normalizer": {"mean": list(state.normalizer.mean), "mad": list(state.normalizer.mad)},
        "atom_count_hist": list(state.atom_count_hist), "step": state.step, "epoch": state.epoch,
        "batch_in_epoch": state.batch_in_epoch, "elapsed_s": state.elapsed_s,
        "hardware": describe_hardware(state.config.train.precision, rank_and_world()[1]),
        "history": [dict(segment) for segment in state.history],
    }


def load_state(path: Path, device: torch.device, overrides: dict | None = None) -> TrainState:
    """Rebuild a TrainState from a training checkpoint; `overrides` may change train settings.

    max_minutes is the time budget of one invocation, so the checkpoint's is not carried over: a
    resumed run has no time limit unless `overrides` sets one. (max_steps is a target, and is kept.)
    """
    ckpt = load_checkpoint(path, expected_format=TRAINING_FORMAT)
    config = UniGEMConfig.from_dict(ckpt["config"]).with_train(**{"max_minutes": TrainConfig.max_minutes,
                                                                  **(overrides or {})})
    model = Denoiser(config).to(device)
    model.load_state_dict(ckpt["model"])
    tc = config.train
    optimizer = make_optimizer(model, tc)
    optimizer.load_state_dict(ckpt["optimizer"])
    ema = EMA(model, tc.ema_decay)
    ema.load_state_dict(ckpt["ema"])
    slow_ema = None
    if tc.slow_ema_decay:  # switched on at this resume, it starts from the first EMA
        slow_ema = EMA(model, tc.slow_ema_decay)
        slow_ema.load_state_dict(ckpt.get("slow_ema", ckpt["ema"]))
    clipper = AdaptiveClipper(tc.clip_history)
    clipper.load_state_dict(ckpt["clipper"])
    generator = torch.Generator()
    generator.set_state(ckpt["generator"])
    rank = rank_and_world()[0]
    if rank:  # checkpoints hold rank 0's noise stream; the other ranks need streams of their own
        generator.manual_seed(tc.seed + 1000 * rank + ckpt["step"])
    norm = ckpt["normalizer"]
    return TrainState(config=config, model=model, ema=ema, slow_ema=slow_ema, optimizer=optimizer, clipper=clipper,
                      generator=generator,
                      normalizer=PropertyNormalizer(tuple(norm["mean"]), tuple(norm["mad"])),
                      atom_count_hist=list(ckpt["atom_count_hist"]), step=ckpt["step"], epoch=ckpt["epoch"],
                      batch_in_epoch=ckpt["batch_in_epoch"], elapsed_s=ckpt["elapsed_s"],
                      history=[dict(segment) for segment in ckpt.get("history", [])])


def learning_rate(tc: TrainConfig, step: int) -> float:
    """The learning rate of optimiser step `step` (0-based): linear warm-up, constant, then the cool-down."""
    lr = tc.lr * min(1.0, (step + 1) / tc.warmup_steps) if tc.warmup_steps else tc.lr
    if tc.cooldown_steps and tc.cooldown_start >= 0:
        lr *= min(1.0, max(0.0, 1.0 - (step - tc.cooldown_start) / tc.cooldown_steps))
    return lr


def train_step(state: TrainState, batch: Batch, schedule: NoiseSchedule, net: nn.Module | None = None) -> dict:
    """One optimiser step on one batch. `net` is the module to call (a DDP wrapper), default state.model.

    On CPU the batch goes through the network `micro_batch` molecules at a time, each pass's
    gradient summed into the batch's; the noise is drawn for the whole batch first, so the step is
    the same as one pass over the batch.
    """
    net = net or state.model
    net.train()
    tc = state.config.train
    lr = learning_rate(tc, state.step)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    device = batch.positions.device
    t, z, eps = noise_batch(batch, schedule, state.config.diffusion, state.generator)
    size = len(batch)
    # Not under DDP: a pass whose molecules are all in one phase leaves the other branch without
    # gradients, which DDP's reducer treats as an error.
    ddp = isinstance(net, nn.parallel.DistributedDataParallel)
    chunk = tc.micro_batch if tc.micro_batch and device.type == "cpu" and not ddp else size
    state.optimizer.zero_grad(set_to_none=True)
    pieces = []
    for start in range(0, size, chunk):
        stop = min(start + chunk, size)
        with autocast(device, tc.precision):
            per = molecule_losses(net, batch.rows(start, stop), t[start:stop], z[start:stop], eps[start:stop],
                                  state.normalizer, state.config.diffusion)
        (per.total.sum() / size).backward()
        pieces.append(per.detach())
    terms = MoleculeLosses.cat(pieces).summary()
    grad_norm = state.clipper.clip(state.model.parameters())
    if math.isfinite(grad_norm):  # a non-finite gradient skips the update instead of poisoning the weights
        state.optimizer.step()
        state.ema.update(state.model)
        if state.slow_ema:
            state.slow_ema.update(state.model)
    state.step += 1
    return {**terms.as_floats(), "loss": float(terms.total), "grad_norm": grad_norm, "lr": state.optimizer.param_groups[0]["lr"]}


def compile_blocks(model: nn.Module) -> bool:
    """Put every EGNN block of `model` under torch.compile (dynamic in the batch and atom counts), in place;
    the state-dict keys do not change and the EMA copies stay eager. False, with a warning, where it cannot
    work: Inductor builds CPU kernels with a C++ compiler, and a machine without one trains eagerly.

    Blocks rather than the whole network: the per-molecule routing between the branches reads a
    tensor, which would break one graph anyway.
    """
    if next(model.parameters()).device.type == "cpu" and not cxx_compiler():
        print("warning: no C++ compiler (g++, c++, clang++ or $CXX) for torch.compile on CPU: training eagerly",
              file=sys.stderr)
        return False
    for module in model.modules():
        if isinstance(module, EquivariantBlock):
            module.compile(dynamic=True)
    return True


def cxx_compiler() -> str | None:
    """The C++ compiler Inductor would find for CPU kernels, if any."""
    names = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "c++", "clang++"]
    return next((path for path in map(shutil.which, names) if path), None)


def validate(state: TrainState, data: QM9Arrays, schedule: NoiseSchedule) -> dict:
    """The EMA model's validation_loss, in the run's precision: the val_* columns of the log."""
    return validation_loss(state.ema.model, data, schedule, state.normalizer, state.config.diffusion,
                           state.config.train.precision)


def save(state: TrainState, run_dir: Path) -> None:
    """Full training checkpoint plus the inference file of the EMA weights, both atomic."""
    if state.history:  # the running segment reaches this checkpoint
        segment = state.history[-1]
        segment.update(to_step=state.step, seconds=round(state.elapsed_s - segment["elapsed_from"], 3))
    sd = state_dict(state)
    atomic_save(sd, run_dir / "last.pt")
    atomic_save(inference_state(sd), run_dir / "inference.pt")


def fit(config: UniGEMConfig, run_dir: Path, device: torch.device, resume: Path | None = None,
        overrides: dict | None = None, progress: bool = True, command: str = "fit()",
        compile: bool = False) -> TrainState:
    """Train until max_steps or max_minutes, checkpointing every few minutes and at the end.

    `command` (the command line that called it) goes into the state's history with this call's steps.
    `compile` runs the network's blocks under torch.compile (compile_blocks); it changes no state, so it is a
    choice of this call, not part of the run's configuration.
    """
    from tqdm import tqdm

    rank, world = rank_and_world()
    keep_freed_memory()
    run_dir = Path(run_dir)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    train = load_split("train", progress=rank == 0)
    if config.train.train_subset:
        train = train.subset(np.arange(config.train.train_subset))
    valid = validation_molecules(config.train.val_molecules)
    state = load_state(resume, device, overrides) if resume else new_state(config, train, device)
    tc = state.config.train
    if tc.cooldown_steps:  # a new cool-down starts at this step; training stops where the rate reaches 0
        start = state.step if tc.cooldown_start < 0 else tc.cooldown_start
        state.config = state.config.with_train(cooldown_start=start, max_steps=min(tc.max_steps, start + tc.cooldown_steps))
        tc = state.config.train
    if tc.batch_size % world:
        raise ValueError(f"batch size {tc.batch_size} does not split evenly over {world} processes")
    # elapsed_from unrounded: a segment's seconds are a difference of it, never below 0 however short the segment
    state.history.append({"from_step": state.step, "to_step": state.step, "command": command,
                          "hardware": describe_hardware(tc.precision, world), "elapsed_from": state.elapsed_s,
                          "seconds": 0.0, "ended": "running"})
    schedule = NoiseSchedule(state.config.diffusion.num_steps, state.config.diffusion.power, state.config.diffusion.precision)
    if compile:
        compile_blocks(state.model)
    net: nn.Module = state.model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(state.model, device_ids=[device.index] if device.type == "cuda" else None)
    log_path = run_dir / "log.csv"
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not log_path.exists():
            with open(log_path, "w", newline="") as f:
                csv.DictWriter(f, LOG_FIELDS).writeheader()
    start_wall, last_ckpt = time.perf_counter(), time.perf_counter()
    elapsed_at_start = state.elapsed_s
    window_molecules, window_start = 0, time.perf_counter()
    bar = tqdm(total=tc.max_steps if tc.max_steps < TrainConfig.max_steps else None, initial=state.step,
               desc=f"train {state.config.preset}", disable=not progress or rank > 0, dynamic_ncols=True)
    stop = StopRequest()
    done = state.step >= tc.max_steps  # a finished run (a cool-down at its end) resumed: nothing to do
    if done:
        state.history[-1]["ended"] = "step target"
        if rank == 0 and not (run_dir / "last.pt").exists():  # a new run directory still gets its state
            save(state, run_dir)
    with stop:
        while not done:
            batches = epoch_batches(train.n_atoms, tc.batch_size, tc.seed, state.epoch, tc.bucket_batches)
            while state.batch_in_epoch < len(batches):
                rows = batches[state.batch_in_epoch]
                rows = rows[rank::world]  # each rank takes its share of the batch
                metrics = train_step(state, collate(train, rows).to(device), schedule, net)
                state.batch_in_epoch += 1
                window_molecules += len(rows) * world
                state.elapsed_s = elapsed_at_start + time.perf_counter() - start_wall
                bar.update(1)
                if state.step % tc.log_every == 0 and rank == 0:
                    rate = window_molecules / max(time.perf_counter() - window_start, 1e-9)
                    window_molecules, window_start = 0, time.perf_counter()
                    row = {**{k: metrics.get(k) for k in LOG_FIELDS}, "step": state.step, "epoch": state.epoch,
                           "molecules_per_s": round(rate, 1), "elapsed_s": round(state.elapsed_s, 1)}
                    if tc.val_every and state.step % tc.val_every == 0:
                        row.update(validate(state, valid, schedule))
                    with open(log_path, "a", newline="") as f:
                        csv.DictWriter(f, LOG_FIELDS).writerow(row)
                    bar.set_postfix(loss=f"{metrics['loss']:.3f}", mol_s=f"{rate:.0f}")
                # each rank reads its own clock, so the time budget goes through the same vote as a signal
                out_of_time = bool(tc.max_minutes) and (time.perf_counter() - start_wall) / 60 >= tc.max_minutes
                done = stop.agreed(world, also=state.step >= tc.max_steps or out_of_time)
                if done:
                    state.history[-1]["ended"] = ("step target" if state.step >= tc.max_steps else
                                                  "time budget" if out_of_time else "signal")
                if rank == 0 and (done or time.perf_counter() - last_ckpt >= tc.checkpoint_minutes * 60):
                    save(state, run_dir)
                    last_ckpt = time.perf_counter()
                if done:
                    break
            if state.batch_in_epoch >= len(batches):
                state.epoch += 1
                state.batch_in_epoch = 0
                if rank == 0:
                    save(state, run_dir)
                    atomic_save(inference_state(state_dict(state)), run_dir / "snapshots" / f"epoch{state.epoch:04d}.pt")
    bar.close()
    return state
