"""Generating molecules: atom counts from the training histogram, the sampler, then each molecule typed,
given its twelve properties and checked (stability, validity).

Batches run in this process or, on CPU, in worker processes that load the same checkpoint. Each
molecule has its own seed, so molecule k is the same whichever batch or process samples it.
"""
from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Callable

import numpy as np
import torch

from unigem_core.constants import ELEMENTS, MAX_ATOMS
from unigem_core.diffusion.sampler import SamplerOptions, sample
from unigem_core.engine import Engine, load_model, predict_properties
from unigem_core.molecule import GeneratedMolecule, Molecule
from unigem_core.targets import PropertyRange, within


def draw_atom_count(probs: np.ndarray, seed: int) -> int:
    """Atom count for the molecule with this seed, from the training histogram (spec 6, step 1)."""
    return int(np.random.default_rng([seed, 7]).choice(len(probs), p=probs))


def generate(engine: Engine, n: int, n_atoms: int | None = None, seed: int = 0, batch_size: int = 64,
             on_progress: Callable[[int, int], None] | None = None, processes: int = 1,
             **sampling) -> list[GeneratedMolecule]:
    """Sample n molecules with seeds seed..seed+n-1, type them, predict their properties and check them.

    `sampling` are the fields of `SamplerOptions`: steps, spacing, resample, precision, compile,
    record_trajectory. on_progress(done, total) counts network calls over all batches. `processes`
    > 1 (CPU only) shares the batches out over that many worker processes, each with its share of
    the torch threads: on a 2-core CPU two one-thread processes sample faster than one two-thread
    process (bench/NOTES.md). Molecule k is the same whichever process or batch samples it (up to
    float rounding). `compile` is worth it for long runs only, as each new batch shape first costs
    about a minute of compiling on CPU (`sampler.compiled`).
    """
    if n < 1:
        raise ValueError("the number of molecules must be at least 1")
    if n_atoms is not None and not 1 <= n_atoms <= MAX_ATOMS:
        raise ValueError(f"atoms per molecule must be between 1 and {MAX_ATOMS}, got {n_atoms}")
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    seeds = [seed + k for k in range(n)]
    counts = [n_atoms or draw_atom_count(engine.atom_count_probs, s) for s in seeds]
    order = sorted(range(n), key=lambda k: counts[k])  # similar sizes share a batch: less padding
    chunks = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    jobs = [([counts[k] for k in chunk], [seeds[k] for k in chunk]) for chunk in chunks]
    options = SamplerOptions(**sampling)
    progress = _ChunkProgress(len(jobs), on_progress)
    if processes > 1 and engine.device.type == "cpu" and len(jobs) > 1:
        outputs = _generate_in_processes(engine, jobs, options, min(processes, len(jobs)), progress)
    else:
        outputs = [generate_batch(engine, c_counts, c_seeds, options, lambda d, t, c=c: progress(c, d, t))
                   for c, (c_counts, c_seeds) in enumerate(jobs)]
    results = {k: mol for chunk, out in zip(chunks, outputs) for k, mol in zip(chunk, out)}
    return [results[k] for k in range(n)]


def generate_valid(engine: Engine, n: int, seed: int = 0, max_seeds: int | None = None,
                   on_round: Callable[[int, int], None] | None = None, exclude: Collection[str] | None = None,
                   targets: Sequence[PropertyRange] = (), **options) -> tuple[list[GeneratedMolecule], int]:
    """The first n valid molecules (spec 8.3: RDKit sanitises them) among seeds seed, seed + 1, ...

    Sampled in rounds of `generate` (same `options`), each sized by the share kept so far, until n are
    found or max_seeds seeds (default 4n) have been tried. Returns the molecules in seed order, maybe
    fewer than n, and how many seeds were sampled. on_round(round, seeds in it) is called before each round.
    With `exclude` (SMILES in the spec 8.3 form, such as metrics.training_smiles()), a valid molecule whose
    SMILES it holds is skipped too: the first n novel molecules. With `targets` (targets.PropertyRange), so is
    a valid molecule whose predicted properties miss any of them: the first n within the targets.
    """
    if n < 1:
        raise ValueError("the number of molecules must be at least 1")
    max_seeds = max_seeds or 4 * n
    kept: list[GeneratedMolecule] = []
    tried, rounds = 0, 0
    while len(kept) < n and tried < max_seeds:
        rate = max(len(kept) / tried, 0.25) if tried else 0.9  # validity so far; guess high before any
        size = min(max_seeds - tried, math.ceil((n - len(kept)) / rate))
        rounds += 1
        if on_round is not None:
            on_round(rounds, size)
        batch = generate(engine, size, seed=seed + tried, **options)
        kept += [g for g in batch if g.valid and (exclude is None or g.smiles not in exclude)
                 and (not targets or within(g.molecule.properties, targets))][: n - len(kept)]
        tried += size
    return kept, tried


class _ChunkProgress:
    """Adds up the network calls done in each batch into one on_progress(done, total)."""

    def __init__(self, n_chunks: int, on_progress: Callable[[int, int], None] | None):
        self.done = [0] * n_chunks
        self.on_progress = on_progress

    def __call__(self, chunk: int, done: int, total: int) -> None:
        self.done[chunk] = done
        if self.on_progress is not None:
            self.on_progress(sum(self.done), len(self.done) * total)


def generate_batch(engine: Engine, counts: list[int], seeds: list[int], options: SamplerOptions,
                    on_progress: Callable[[int, int], None]) -> list[GeneratedMolecule]:
    """One batch: sample, type, predict properties, check."""
    from unigem_core.metrics import check_molecule

    out = sample(engine.model, engine.schedule, counts, seeds, options, on_progress=on_progress)
    mols = [Molecule(tuple(ELEMENTS[i] for i in out.types[j]), out.positions[j], name=f"unigem-seed{s}")
            for j, s in enumerate(seeds)]
    # Properties from the growth branch at t = 0 on the final geometry: the call the sampler's last step
    # makes (spec 6.5), repeated on the clean coordinates through the same path as `predict`, so a
    # generated molecule saved and uploaded again gets the very same numbers.
    for mol, props in zip(mols, predict_properties(engine, mols)):
        mol.properties = props
    generated = []
    for j, (s, mol) in enumerate(zip(seeds, mols)):
        check = check_molecule(mol.symbols, mol.positions)
        generated.append(GeneratedMolecule(seed=s, molecule=mol, trajectory=out.trajectories[j] if out.trajectories else None,
                                           atom_stable=check.atom_stable, stable=check.stable, valid=check.valid,
                                           smiles=check.smiles))
    return generated


_worker: dict = {}  # in a worker process: its engine and progress queue


def _worker_start(checkpoint: str, threads: int, queue) -> None:
    torch.set_num_threads(threads)
    _worker.update(engine=load_model(checkpoint, "cpu"), queue=queue)


def _worker_chunk(chunk: int, counts: list[int], seeds: list[int], options: SamplerOptions) -> list[GeneratedMolecule]:
    queue = _worker["queue"]
    return generate_batch(_worker["engine"], counts, seeds, options, lambda d, t: queue.put((chunk, d, t)))


def largest_first(jobs: list[tuple[list[int], list[int]]]) -> list[int]:
    """The batches' indices, costliest first: a network call on a padded batch of n molecules of at most
    N atoms costs about n N^2 (its [n, N, N, H] edges). The workers take batches in this order, so the
    small ones fill in at the end instead of one worker finishing the largest alone (sorted by size, the
    1,000-step evaluation's last batch ran alone for half an hour on the Zen 3)."""
    return sorted(range(len(jobs)), key=lambda c: -len(jobs[c][0]) * max(jobs[c][0], default=0) ** 2)


def _generate_in_processes(engine: Engine, jobs: list[tuple[list[int], list[int]]], options: SamplerOptions,
                           processes: int, progress: _ChunkProgress) -> list[list[GeneratedMolecule]]:
    """Batches on `processes` spawned workers that load the engine's checkpoint; results in batch order."""
    import queue as queue_module

    from unigem_core.workers import SPAWN, worker_pool

    updates = SPAWN.Queue()
    threads = max(1, torch.get_num_threads() // processes)
    with worker_pool(processes, _worker_start, (str(engine.checkpoint), threads, updates)) as pool:
        submitted = {c: pool.submit(_worker_chunk, c, *jobs[c], options) for c in largest_first(jobs)}
        futures = [submitted[c] for c in range(len(jobs))]
        while not all(f.done() for f in futures):
            try:
                progress(*updates.get(timeout=0.2))
            except queue_module.Empty:
                pass
        outputs = [f.result() for f in futures]  # re-raises a worker's error here
    while True:  # the last updates
        try:
            progress(*updates.get_nowait())
        except queue_module.Empty:
            break
    return outputs
