"""A loaded model (`Engine`) and the one property call every path shares: the growth branch at t = 0.

`load_model` reads the shipped inference file (checked against the model card's sha256) or a
training checkpoint's EMA weights; `predict_properties` is what prediction, generation and
evaluation all call, so a molecule gets the same numbers wherever it comes from.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from unigem_core.config import UniGEMConfig
from unigem_core.constants import ATOM_REFERENCE, HARTREE_TO_EV, KT_298_HARTREE, PROPERTIES, PROPERTY_KEYS
from unigem_core.data.normalizer import PropertyNormalizer
from unigem_core.device import keep_freed_memory, resolve_device
from unigem_core.diffusion.schedule import NoiseSchedule
from unigem_core.geometry import remove_mean
from unigem_core.model.denoiser import Denoiser
from unigem_core.molecule import Molecule, check_domain
from unigem_core.precision import autocast
from unigem_core.train.checkpoint import INFERENCE_FORMAT, TRAINING_FORMAT, CheckpointError, load_checkpoint

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT_DIR = REPO_ROOT / "checkpoints"
DEFAULT_CHECKPOINT = CHECKPOINT_DIR / "unigem.pt"
MODEL_CARD = CHECKPOINT_DIR / "model_card.json"
# Geometries built from bonds (ETKDG + MMFF, then GFN2-xTB) are not QM9's DFT geometries, and the property
# head, trained on those, errs two to four times more on them. `refine_geometries` takes such a geometry as a
# noisy sample at t = REFINE_FROM and carries it to t = 0 in REFINE_STEPS steps of the model's own denoiser. On
# 995 validation molecules rebuilt from their SMILES (one MMFF conformer each) this lowered the U0 error from
# 231 to 144 meV, the gap's from 175 to 147 meV and alpha's from 0.56 to 0.50 a0^3; mu and r2, which hang on
# the conformer rather than on bond lengths, barely moved (`python bench/refine_built.py`, bench/NOTES.md
# "Refining built geometries"). After GFN2-xTB it still helps (HOMO 99 -> 92, gap 133 -> 123, U0 115 -> 99 meV;
# "GFN2-xTB geometries").
REFINE_FROM, REFINE_STEPS = 30, 3


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


def model_card(path: Path = MODEL_CARD) -> dict | None:
    """The model card (JSON) at `path`, or None where there is none."""
    return json.loads(path.read_text()) if path.exists() else None


def _expected_sha(checkpoint: Path) -> str | None:
    """The sha256 the card beside `checkpoint` records for it: a shipped file that does not match is refused."""
    card = model_card(checkpoint.parent / "model_card.json")
    if not card:
        return None
    return card.get("files", {}).get(checkpoint.name, {}).get("sha256")


def load_model(checkpoint: str | Path | None = None, device: str = "auto") -> Engine:
    """Load an inference file (or a training checkpoint, using its EMA weights) onto a device."""
    keep_freed_memory()
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


def enthalpy_offset(symbols: Sequence[str]) -> float:
    """H - U of a molecule's atomization values at 298 K, in eV: exact in QM9, about -(N - 1) kT for N atoms.

    H = U + kT holds for the molecule and for each free atom, so the atomization enthalpy (molecule minus its
    atoms) is the atomization energy plus kT minus the atoms' sum of H_ref - U_ref (bench/NOTES.md, "Enthalpy
    from internal energy").
    """
    atoms = sum(ATOM_REFERENCE["H"][s] - ATOM_REFERENCE["U"][s] for s in symbols)
    return (KT_298_HARTREE - atoms) * HARTREE_TO_EV


_U, _H = PROPERTY_KEYS.index("U"), PROPERTY_KEYS.index("H")


def to_report_units(normalised: np.ndarray, normalizer: PropertyNormalizer,
                    symbols: Sequence[Sequence[str]] | None = None) -> list[dict[str, float]]:
    """[M, 12] normalised predictions -> one {key: value in reporting units} per molecule.

    Given each molecule's atoms (`symbols`), its enthalpy H is read off its energy U by the exact relation
    H = U + enthalpy_offset rather than taken from the head's own H output, which carries U's error and a bias
    of its own besides; without them, all twelve are the head's outputs as they are.
    """
    values = np.asarray(normalised, dtype=np.float64) * np.asarray(normalizer.mad) + np.asarray(normalizer.mean)
    if symbols is not None:
        values[:, _H] = values[:, _U] + np.array([enthalpy_offset(each) for each in symbols])
    scale = np.array([p.report_scale for p in PROPERTIES])
    return [{p.key: float(v) for p, v in zip(PROPERTIES, row)} for row in values * scale]


def check_model_domain(mol: Molecule) -> None:
    """Refuse a molecule outside what the model was trained on (elements, size), with one readable line."""
    check_domain(sorted(set(mol.symbols)), mol.n_atoms)


def _batches(engine: Engine, molecules: list[Molecule], batch_size: int):
    """(indices, x [b, N, 3] CoM-free, mask [b, N]) for batches of molecules of similar size, on the engine's device."""
    order = sorted(range(len(molecules)), key=lambda i: molecules[i].n_atoms)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        n_max = max(molecules[i].n_atoms for i in idx)
        x = torch.zeros(len(idx), n_max, 3)
        mask = torch.zeros(len(idx), n_max, dtype=torch.bool)
        for row, i in enumerate(idx):
            x[row, :molecules[i].n_atoms] = torch.from_numpy(molecules[i].positions).float()
            mask[row, :molecules[i].n_atoms] = True
        yield idx, remove_mean(x, mask).to(engine.device), mask.to(engine.device)


@torch.inference_mode()
def predict_properties(engine: Engine, molecules: list[Molecule], batch_size: int = 128,
                       precision: str = "fp32", enthalpy_from_u: bool = True) -> list[dict[str, float]]:
    """All twelve properties of given molecules: the growth branch at t = 0 on their geometry (spec 7).

    H is the predicted U plus the exact H - U of the molecule's atoms (enthalpy_offset) unless
    `enthalpy_from_u` is False, which gives the head's own H output.
    """
    for mol in molecules:
        check_model_domain(mol)
    by_index: dict[int, dict[str, float]] = {}
    for idx, x, mask in _batches(engine, molecules, batch_size):
        t = torch.zeros(len(idx), dtype=torch.long, device=engine.device)
        with autocast(engine.device, precision):
            props = engine.model(x, t, mask, growth=True).properties
        symbols = [molecules[i].symbols for i in idx] if enthalpy_from_u else None
        for i, p in zip(idx, to_report_units(props.float().cpu().numpy(), engine.normalizer, symbols)):
            by_index[i] = p
    return [by_index[i] for i in range(len(molecules))]


@torch.inference_mode()
def refine_geometries(engine: Engine, molecules: list[Molecule], t_from: int = REFINE_FROM,
                      steps: int = REFINE_STEPS, batch_size: int = 128) -> list[Molecule]:
    """Copies of the molecules with their geometry moved towards the DFT geometries the model learnt.

    Each geometry is taken as the noisy sample z_t at t = t_from and carried to t = 0 by `steps`
    deterministic (DDIM, eta = 0) steps of the model's own denoiser, in fp32: x0 = (z_t - sigma_t eps) / alpha_t,
    z_s = alpha_s x0 + sigma_s eps; the last x0 is the refined geometry. Atoms and their order are kept.
    """
    if not 1 <= steps <= t_from <= engine.num_steps:
        raise ValueError(f"refinement needs 1 <= steps <= t_from <= {engine.num_steps}, got {steps} and {t_from}")
    for mol in molecules:
        check_model_domain(mol)
    ts = np.linspace(t_from, 0, steps + 1).round().astype(int)
    refined: dict[int, np.ndarray] = {}
    for idx, z, mask in _batches(engine, molecules, batch_size):
        for t, s in zip(ts[:-1], ts[1:]):
            t_batch = torch.full((len(idx),), int(t), dtype=torch.long, device=engine.device)
            s_batch = torch.full_like(t_batch, int(s))
            eps = engine.model(z, t_batch, mask).eps  # routed by t: growth branch at t <= t_n
            alpha_t, sigma_t = (f(t_batch).view(-1, 1, 1) for f in (engine.schedule.alpha, engine.schedule.sigma))
            x0 = remove_mean((z - sigma_t * eps) / alpha_t, mask)
            alpha_s, sigma_s = (f(s_batch).view(-1, 1, 1) for f in (engine.schedule.alpha, engine.schedule.sigma))
            z = remove_mean(alpha_s * x0 + sigma_s * eps, mask)
        for row, i in enumerate(idx):
            refined[i] = x0[row, :molecules[i].n_atoms].double().cpu().numpy()
    return [replace(mol, positions=refined[i], conformers=None) for i, mol in enumerate(molecules)]
