"""The one facade that the CLI and the app call: load_model, generate, predict, evaluate.

Everything returned is plain numpy / dataclasses from `unigem_core.molecule`, so callers never
touch torch.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from unigem_core.config import UniGEMConfig
from unigem_core.constants import ELEMENTS, MAX_ATOMS, PROPERTIES, STEP_SPACING
from unigem_core.data.normalizer import PropertyNormalizer
from unigem_core.diffusion.sampler import SamplerOptions, sample
from unigem_core.diffusion.schedule import NoiseSchedule
from unigem_core.geometry import remove_mean
from unigem_core.model.denoiser import Denoiser
from unigem_core.molecule import GeneratedMolecule, Molecule, MoleculeInputError, Record, check_domain
from unigem_core.precision import autocast, resolve_precision
from unigem_core.train.checkpoint import INFERENCE_FORMAT, TRAINING_FORMAT, CheckpointError, load_checkpoint

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT_DIR = REPO_ROOT / "checkpoints"
DEFAULT_CHECKPOINT = CHECKPOINT_DIR / "unigem.pt"
MODEL_CARD = CHECKPOINT_DIR / "model_card.json"


@dataclass
class Engine:
    """A loaded model, ready for inference. Never mutated after load_model, so it can be shared."""

    model: Denoiser  # EMA weights, eval mode
    config: UniGEMConfig
    schedule: NoiseSchedule
    normalizer: PropertyNormalizer
    atom_count_probs: np.ndarray  # [MAX_ATOMS + 1] training histogram of atom counts, normalised
    device: torch.device
    checkpoint: Path
    info: dict = field(default_factory=dict)  # step, epoch, elapsed time of the checkpoint

    @property
    def num_steps(self) -> int:
        return self.config.diffusion.num_steps

    @property
    def t_n(self) -> int:
        return self.config.diffusion.t_n


@dataclass
class Prediction:
    """The answer for one input record: properties in reporting units, or why it was refused."""

    index: int
    name: str
    formula: str = ""
    n_atoms: int = 0
    properties: dict[str, float] | None = None
    error: str | None = None
    warnings: tuple[str, ...] = ()
    source: str = ""


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU; asking for 'cuda' without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA GPU is available on this machine; use --device cpu or auto")
        return torch.device("cuda")
    if name == "cpu":
        return torch.device("cpu")
    raise ValueError(f"unknown device {name!r}; choose auto, cpu or cuda")


def set_cpu_threads(n: int) -> None:
    """Threads torch uses for CPU work in this process (a process-wide setting)."""
    torch.set_num_threads(max(1, int(n)))


def model_card(path: Path = MODEL_CARD) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _expected_sha(checkpoint: Path) -> str | None:
    card = model_card(checkpoint.parent / "model_card.json")
    if not card:
        return None
    return card.get("files", {}).get(checkpoint.name, {}).get("sha256")


def load_model(checkpoint: str | Path | None = None, device: str = "auto") -> Engine:
    """Load an inference file (or a training checkpoint, using its EMA weights) onto a device."""
    path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    state = load_checkpoint(path, sha256=_expected_sha(path))
    if state["format"] == TRAINING_FORMAT:
        weights = state["ema"]
    elif state["format"] == INFERENCE_FORMAT:
        weights = state["model"]
    else:
        raise CheckpointError(f"checkpoint {path} has unknown format {state['format']!r}")
    config = UniGEMConfig.from_dict(state["config"])
    model = Denoiser(config)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not fit the {config.preset!r} architecture it declares "
                              f"({str(exc).splitlines()[0]})") from None
    dev = resolve_device(device)
    model = model.to(dev).eval().requires_grad_(False)
    norm = state["normalizer"]
    hist = np.asarray(state["atom_count_hist"], dtype=np.float64)
    info = {k: state.get(k) for k in ("step", "epoch", "elapsed_s")}
    return Engine(model=model, config=config, schedule=NoiseSchedule(config.diffusion.num_steps, config.diffusion.power,
                  config.diffusion.precision), normalizer=PropertyNormalizer(tuple(norm["mean"]), tuple(norm["mad"])),
                  atom_count_probs=hist / hist.sum(), device=dev, checkpoint=path, info=info)


def to_report_units(normalised: np.ndarray, normalizer: PropertyNormalizer) -> list[dict[str, float]]:
    """[M, 12] normalised predictions -> one {key: value in reporting units} per molecule."""
    values = np.asarray(normalised, dtype=np.float64) * np.asarray(normalizer.mad) + np.asarray(normalizer.mean)
    scale = np.array([p.report_scale for p in PROPERTIES])
    return [{p.key: float(v) for p, v in zip(PROPERTIES, row)} for row in values * scale]


def draw_atom_count(probs: np.ndarray, seed: int) -> int:
    """Atom count for the molecule with this seed, from the training histogram (spec 6, step 1)."""
    return int(np.random.default_rng([seed, 7]).choice(len(probs), p=probs))


def generate(engine: Engine, n: int, steps: int | None = None, n_atoms: int | None = None, seed: int = 0,
             record_trajectory: bool = False, batch_size: int = 64, precision: str = "auto",
             on_progress: Callable[[int, int], None] | None = None, processes: int = 1,
             compile: bool = False, spacing: float = STEP_SPACING) -> list[GeneratedMolecule]:
    """Sample n molecules with seeds seed..seed+n-1, type them, predict their properties and check them.

    on_progress(done, total) counts network calls over all batches. `processes` > 1 (CPU only) shares
    the batches out over that many worker processes, each with its share of the torch threads: on a
    2-core CPU two one-thread processes sample faster than one two-thread process (bench/NOTES.md).
    Molecule k is the same whichever process or batch samples it (up to float rounding).
    `compile` runs the network through torch.compile (`sampler.compiled`): worth it for long runs
    (many steps), as each new batch shape costs about a minute of compiling on CPU first.
    `spacing` spreads fewer than T steps over the nucleation phase (`sampler.timesteps`).
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
    options = SamplerOptions(steps=steps, spacing=spacing, record_trajectory=record_trajectory, precision=precision,
                             compile=compile)
    progress = _ChunkProgress(len(jobs), on_progress)
    if processes > 1 and engine.device.type == "cpu" and len(jobs) > 1:
        outputs = _generate_in_processes(engine, jobs, options, min(processes, len(jobs)), progress)
    else:
        outputs = [_generate_chunk(engine, c_counts, c_seeds, options, lambda d, t, c=c: progress(c, d, t))
                   for c, (c_counts, c_seeds) in enumerate(jobs)]
    results = {k: mol for chunk, out in zip(chunks, outputs) for k, mol in zip(chunk, out)}
    return [results[k] for k in range(n)]


def generate_valid(engine: Engine, n: int, seed: int = 0, max_seeds: int | None = None,
                   on_round: Callable[[int, int], None] | None = None,
                   **options) -> tuple[list[GeneratedMolecule], int]:
    """The first n valid molecules (spec 8.3: RDKit sanitises them) among seeds seed, seed + 1, ...

    Sampled in rounds of `generate` (same `options`), each sized by the validity seen so far, until n are
    found or max_seeds seeds (default 4n) have been tried. Returns the molecules in seed order, maybe
    fewer than n, and how many seeds were sampled. on_round(round, seeds in it) is called before each round.
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
        kept += [g for g in batch if g.valid][: n - len(kept)]
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


def _generate_chunk(engine: Engine, counts: list[int], seeds: list[int], options: SamplerOptions,
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
    return _generate_chunk(_worker["engine"], counts, seeds, options, lambda d, t: queue.put((chunk, d, t)))


def _generate_in_processes(engine: Engine, jobs: list[tuple[list[int], list[int]]], options: SamplerOptions,
                           processes: int, progress: _ChunkProgress) -> list[list[GeneratedMolecule]]:
    """Batches on `processes` spawned workers that load the engine's checkpoint; results in batch order."""
    import multiprocessing
    import queue as queue_module
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")  # fork after OpenMP has started can hang
    updates = ctx.Queue()
    threads = max(1, torch.get_num_threads() // processes)
    with ProcessPoolExecutor(processes, mp_context=ctx, initializer=_worker_start,
                             initargs=(str(engine.checkpoint), threads, updates)) as pool:
        futures = [pool.submit(_worker_chunk, c, counts, seeds, options) for c, (counts, seeds) in enumerate(jobs)]
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


def _check_domain(mol: Molecule) -> None:
    check_domain(sorted(set(mol.symbols)), mol.n_atoms)


@torch.inference_mode()
def predict_properties(engine: Engine, molecules: list[Molecule], batch_size: int = 128,
                       precision: str = "fp32") -> list[dict[str, float]]:
    """All twelve properties of given molecules: the growth branch at t = 0 on their geometry (spec 7)."""
    for mol in molecules:
        _check_domain(mol)
    order = sorted(range(len(molecules)), key=lambda i: molecules[i].n_atoms)
    by_index: dict[int, dict[str, float]] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        n_max = max(molecules[i].n_atoms for i in idx)
        x = torch.zeros(len(idx), n_max, 3)
        mask = torch.zeros(len(idx), n_max, dtype=torch.bool)
        for row, i in enumerate(idx):
            x[row, :molecules[i].n_atoms] = torch.from_numpy(molecules[i].positions).float()
            mask[row, :molecules[i].n_atoms] = True
        x, mask = remove_mean(x, mask).to(engine.device), mask.to(engine.device)
        t = torch.zeros(len(idx), dtype=torch.long, device=engine.device)
        with autocast(engine.device, precision):
            props = engine.model(x, t, mask, growth=True).properties
        for i, p in zip(idx, to_report_units(props.float().cpu().numpy(), engine.normalizer)):
            by_index[i] = p
    return [by_index[i] for i in range(len(molecules))]


def predict_records(engine: Engine, records: list[Record]) -> list[Prediction]:
    """One Prediction per record, in input order; refused records keep their message, the rest are predicted."""
    preds, good = [], []
    for rec in records:
        p = Prediction(index=rec.index, name=rec.name, error=rec.error, warnings=rec.warnings, source=rec.source)
        if rec.molecule is not None and rec.error is None:
            p.formula, p.n_atoms = rec.molecule.formula, rec.molecule.n_atoms
            try:
                _check_domain(rec.molecule)
                good.append((p, rec.molecule))
            except MoleculeInputError as exc:
                p.error = str(exc)
        preds.append(p)
    if good:
        for (p, _), props in zip(good, predict_properties(engine, [m for _, m in good])):
            p.properties = props
    return preds


def predictions_table(predictions: list[Prediction]) -> list[dict]:
    """Rows for CSV and the app's table: name, formula, n_atoms, one column per property (with unit), error."""
    rows = []
    for p in predictions:
        row = {"name": p.name, "formula": p.formula, "n_atoms": p.n_atoms}
        for spec in PROPERTIES:
            row[spec.column] = None if p.properties is None else p.properties[spec.key]
        row["error"] = p.error or ""
        row["warnings"] = "; ".join(p.warnings)
        rows.append(row)
    return rows


def evaluate_generation(engine: Engine, n: int = 1000, steps: int | None = None, seed: int = 0, batch_size: int = 100,
                        novelty: bool = True, on_progress: Callable[[int, int], None] | None = None,
                        processes: int = 1, compile: bool = False, precision: str = "auto",
                        spacing: float = STEP_SPACING) -> dict:
    """Stability, validity, uniqueness and novelty of n generated molecules (spec 8)."""
    from unigem_core.metrics import generation_metrics, training_smiles

    start = time.perf_counter()
    mols = generate(engine, n, steps=steps, seed=seed, batch_size=batch_size, on_progress=on_progress, processes=processes,
                    compile=compile, precision=precision, spacing=spacing)
    elapsed = time.perf_counter() - start
    metrics = generation_metrics([g.molecule for g in mols], training_smiles() if novelty else None)
    metrics.update(steps=steps or engine.num_steps, seconds=round(elapsed, 1), device=str(engine.device),
                   precision=resolve_precision(precision, engine.device))
    if steps is not None and steps < engine.num_steps:
        metrics["spacing"] = spacing
    return metrics


def evaluate_reference(n: int | None = 2000, split: str = "test", seed: int = 0, novelty: bool = True) -> dict:
    """The same metrics on real QM9 molecules: the "Data" row."""
    from unigem_core.metrics import generation_metrics, reference_molecules, training_smiles

    mols = reference_molecules(split, n=n, seed=seed)
    return generation_metrics(mols, training_smiles() if novelty else None)


def evaluate_loss(engine: Engine, limit: int | None = None, precision: str = "auto") -> dict:
    """The training objective of these weights on the validation split under fixed noise.

    The same number as the val_loss column of a training log (the first `val_molecules` validation
    molecules, 1,024 by default), so a shipped release and a campaign checkpoint compare directly;
    compare numbers of one precision only.
    """
    from unigem_core.train.loop import validation_loss, validation_molecules

    data = validation_molecules(engine.config.train.val_molecules if limit is None else limit)
    used = resolve_precision(precision, engine.device)
    terms = validation_loss(engine.model, data, engine.schedule, engine.normalizer, engine.config.diffusion, used)
    return {"validation_loss": {k.removeprefix("val_"): v for k, v in terms.items()},
            "n_loss_molecules": len(data), "loss_precision": used}


def evaluate_properties(engine: Engine, split: str = "test", limit: int | None = None, batch_size: int = 256) -> dict:
    """Mean absolute error of all twelve targets on a QM9 split, in reporting units (spec 7 and 14)."""
    from unigem_core.data.qm9 import load_split, symbols_of

    data = load_split(split)
    rows = np.arange(len(data)) if limit is None else np.arange(min(limit, len(data)))
    mols = [Molecule(symbols_of(data.types[i]), data.positions[i, :data.n_atoms[i]]) for i in rows]
    preds = predict_properties(engine, mols, batch_size=batch_size)
    scale = np.array([p.report_scale for p in PROPERTIES])
    predicted = np.array([[p[s.key] for s in PROPERTIES] for p in preds])
    truth = data.targets[rows] * scale
    mae = np.abs(predicted - truth).mean(0)
    return {"split": split, "n_property_molecules": int(len(rows)),
            "mae": {p.key: float(v) for p, v in zip(PROPERTIES, mae)},
            "units": {p.key: p.report_unit for p in PROPERTIES}}
