"""The one facade that the CLI and the app call: load_model, generate, predict, evaluate.

Everything returned is plain numpy / dataclasses from `unigem_core.molecule`, so callers never
touch torch. The work lives in `engine` (the loaded model, property prediction) and `generation`
(sampling, typing, checking); this module adds per-record answers and the evaluations.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable

import numpy as np

from unigem_core.constants import CONFORMERS, PROPERTIES, RELAX
from unigem_core.device import resolve_device, set_cpu_threads
from unigem_core.diffusion.sampler import SamplerOptions
from unigem_core.engine import (DEFAULT_CHECKPOINT, MODEL_CARD, REPO_ROOT, Engine, check_model_domain, load_model,
                                enthalpy_offset, model_card, predict_properties, refine_geometries,
                                to_report_units)
from unigem_core.generation import generate, generate_valid
from unigem_core.io import xtb
from unigem_core.metrics.lookup import QM9Entry, QM9Lookup, qm9_lookup
from unigem_core.model.cpu_shards import available as cpu_shards_available
from unigem_core.molecule import Molecule, MoleculeInputError, Record, domain_warnings
from unigem_core.precision import resolve_precision
from unigem_core.prediction import Prediction, built_geometry, mean_properties, predictions_table
from unigem_core.targets import PropertyRange, parse_range

GEOMETRIES = ("qm9", "smiles")  # evaluate_properties: DFT geometries, or conformers built from QM9's SMILES

__all__ = ["CONFORMERS", "DEFAULT_CHECKPOINT", "MODEL_CARD", "REPO_ROOT", "Engine", "Prediction",
           "cpu_shards_available", "enthalpy_offset", "evaluate_generation", "evaluate_loss", "evaluate_properties",
           "evaluate_reference", "generate", "generate_valid", "load_model", "mean_properties", "model_card",
           "parse_range", "predict_molecules", "predict_properties", "predict_records", "predictions_table",
           "PropertyRange", "QM9Entry", "QM9Lookup", "qm9_lookup", "refine_geometries", "resolve_device",
           "set_cpu_threads", "to_report_units"]


def predict_records(engine: Engine, records: list[Record], refine_built: bool = True,
                    lookup: QM9Lookup | None = None) -> list[Prediction]:
    """One Prediction per record, in input order; refused records keep their message, the rest are predicted
    (with the reader's warnings, and one where the molecule is larger than any in QM9).

    A molecule RDKit built from bonds (a SMILES, a 2D drawing; Molecule.built_3d) is predicted on each of its
    conformers, refined by the model's denoiser unless refine_built is False, and gets their mean with the range
    (predict_molecules); given geometries are read as they are.
    With a lookup (qm9_lookup()), each predicted record also gets the QM9 molecules with its bond graph, whose
    DFT values are the kind of answer the model learnt to give, or where QM9 has none, the most similar one.
    """
    preds, good = [], []
    for rec in records:
        p = Prediction(index=rec.index, name=rec.name, error=rec.error, warnings=rec.warnings, source=rec.source)
        if rec.molecule is not None and rec.error is None:
            p.formula, p.n_atoms = rec.molecule.formula, rec.molecule.n_atoms
            built = rec.molecule.built_3d
            p.geometry = built_geometry(rec.molecule.relaxation, refine_built) if built else "given"
            try:
                check_model_domain(rec.molecule)
                good.append((p, rec.molecule))
                p.warnings += tuple(domain_warnings(rec.molecule.symbols))
                if lookup is not None:
                    entries, p.closest = lookup.match(rec.molecule)
                    p.qm9 = tuple(entries)
            except MoleculeInputError as exc:
                p.error = str(exc)
        preds.append(p)
    if good:
        molecules = [m for _, m in good]
        for (p, _), each in zip(good, predict_molecules(engine, molecules, refine_built)):
            p.properties, p.conformers = mean_properties(each), len(each)
            p.by_conformer = tuple(each) if len(each) > 1 else ()
    return preds


def predict_molecules(engine: Engine, molecules: list[Molecule], refine_built: bool = True,
                      batch_size: int = 128) -> list[list[dict[str, float]]]:
    """Each molecule's properties on each of its geometries: one for a given geometry, one per conformer (in the
    order of Molecule.conformers) for a molecule RDKit built from bonds.

    A built conformer is first moved towards the DFT geometries the model learnt (engine.refine_geometries) unless
    refine_built is False. Predict reports the plain mean over them (mean_properties): a property that hangs on
    the conformer (mu, r2) has no one right answer without QM9's own conformer, and the mean came closer to QM9's
    values than the lowest-energy conformer or a Boltzmann weighting (bench/NOTES.md).
    """
    geometries = [replace(mol, positions=positions, conformers=None) for mol in molecules
                  for positions in mol.geometries]
    built = [j for j, m in enumerate(geometries) if m.built_3d] if refine_built else []
    if built:
        for j, mol in zip(built, refine_geometries(engine, [geometries[j] for j in built], batch_size=batch_size)):
            geometries[j] = mol
    keys = [p.key for p in PROPERTIES]
    values = np.array([[p[key] for key in keys] for p in predict_properties(engine, geometries, batch_size)])
    out, start = [], 0
    for mol in molecules:
        mine = values[start:start + len(mol.geometries)]  # [conformers, 12]
        start += len(mine)
        out.append([dict(zip(keys, map(float, row))) for row in mine])
    return out


def evaluate_generation(engine: Engine, n: int = 1000, seed: int = 0, batch_size: int = 100, novelty: bool = True,
                        on_progress: Callable[[int, int], None] | None = None, processes: int = 1, **sampling) -> dict:
    """Stability, validity, uniqueness and novelty of n generated molecules (spec 8), and with novelty, the
    share QM9 holds and how far their predicted properties lie from its DFT values ("qm9": qm9_comparison).

    `sampling` are `SamplerOptions` fields, as for `generate`; the result says which were used.
    """
    from unigem_core.metrics import generation_metrics
    from unigem_core.metrics.lookup import qm9_comparison

    options = SamplerOptions(**sampling)
    start = time.perf_counter()
    mols = generate(engine, n, seed=seed, batch_size=batch_size, on_progress=on_progress, processes=processes, **sampling)
    elapsed = time.perf_counter() - start
    lookup = qm9_lookup() if novelty else None
    metrics = generation_metrics([g.molecule for g in mols], lookup.training_smiles if lookup else None)
    if lookup is not None:  # the molecules QM9 holds, and their predictions against its DFT values
        metrics["qm9"] = qm9_comparison([g.molecule for g in mols], lookup)
    metrics.update(steps=options.steps or engine.num_steps, seconds=round(elapsed, 1), device=str(engine.device),
                   precision=resolve_precision(options.precision, engine.device))
    if options.steps is not None and options.steps < engine.num_steps:
        metrics["spacing"] = options.spacing
    if options.resample:
        metrics["resample"] = options.resample
        if options.resample_below is not None:  # absent: every step was resampled
            metrics["resample_below"] = options.resample_below
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
    from unigem_core.train.validation import validation_loss, validation_molecules

    data = validation_molecules(engine.config.train.val_molecules if limit is None else limit)
    used = resolve_precision(precision, engine.device)
    terms = validation_loss(engine.model, data, engine.schedule, engine.normalizer, engine.config.diffusion, used)
    return {"validation_loss": {k.removeprefix("val_"): v for k, v in terms.items()},
            "n_loss_molecules": len(data), "loss_precision": used}


def evaluate_properties(engine: Engine, split: str = "test", limit: int | None = None, batch_size: int = 256,
                        geometry: str = "qm9", conformers: int = CONFORMERS, relax: str = RELAX,
                        processes: int = 1) -> dict:
    """Mean absolute error of all twelve targets on a QM9 split, in reporting units (spec 7 and 14).

    geometry "qm9" reads each molecule at its DFT geometry, as the published tables do. "smiles" asks what
    a user who types a SMILES gets: each molecule is rebuilt from QM9's SMILES exactly as the Predict page
    and `unigem predict` build one (`conformers` conformers, RDKit's ETKDG + MMFF, then GFN2-xTB unless `relax`
    is "mmff"; each refined by the model and their predictions averaged: predict_molecules), and its predictions
    are compared with QM9's values; `mae_unrefined` gives the errors on the built conformers as they are,
    `mae_qm9_geometry` the same molecules' errors at their DFT geometry, `n_refused` counts those RDKit could not
    build, `conformers_mean` the conformers per molecule (near-duplicates pruned) and, with GFN2-xTB,
    `n_force_field_only` the molecules whose conformers kept the force field's geometry (GFN2-xTB failed on each or
    changed its bonds: io.domain.embed_3d). `processes` builds the molecules in that many spawned worker processes
    (the GFN2-xTB relaxations are most of the time).
    """
    from unigem_core.data.qm9 import load_split, symbols_of

    if geometry not in GEOMETRIES:
        raise ValueError(f"unknown geometry {geometry!r}; expected one of {', '.join(GEOMETRIES)}")
    data = load_split(split)
    rows = np.arange(len(data)) if limit is None else np.arange(min(limit, len(data)))
    mols = [Molecule(symbols_of(data.types[i]), data.positions[i, :data.n_atoms[i]]) for i in rows]
    built: list[Molecule] = []
    if geometry == "smiles":
        kept = []  # positions in rows of the molecules RDKit built with the same atoms
        smiles = [str(data.smiles[i]) for i in rows]
        for k, candidate in enumerate(_build_each(smiles, conformers, relax, processes)):
            if candidate is not None and sorted(candidate.symbols) == sorted(mols[k].symbols):  # whatever the order
                kept.append(k)
                built.append(candidate)
        refused = len(rows) - len(kept)
        rows, mols = rows[kept], [mols[k] for k in kept]
    scale = np.array([p.report_scale for p in PROPERTIES])
    truth = data.targets[rows] * scale

    def mae(molecules: list[Molecule], refine_built: bool = True) -> dict[str, float]:
        answers = [mean_properties(each) for each in predict_molecules(engine, molecules, refine_built, batch_size)]
        predicted = np.array([[props[s.key] for s in PROPERTIES] for props in answers])
        return {p.key: float(v) for p, v in zip(PROPERTIES, np.abs(predicted - truth).mean(0))}

    result = {"split": split, "geometry": geometry, "n_property_molecules": int(len(rows))}
    if geometry == "smiles":
        result.update(n_refused=refused, conformers=conformers, relax=relax,
                      n_force_field_only=sum(xtb.METHOD not in (m.relaxation or "") for m in built)
                      if relax == "xtb" else 0,
                      conformers_mean=round(float(np.mean([len(m.geometries) for m in built])), 2) if built else 0.0,
                      mae=mae(built), mae_unrefined=mae(built, refine_built=False), mae_qm9_geometry=mae(mols))
    else:
        result["mae"] = mae(mols)
    result["units"] = {p.key: p.report_unit for p in PROPERTIES}
    return result


def _build_each(smiles: list[str], conformers: int, relax: str, processes: int) -> list[Molecule | None]:
    """Each SMILES built as Predict builds it (None where it cannot be), in order, on `processes` workers."""
    if processes <= 1:
        return [_built(s, conformers, relax) for s in smiles]
    from unigem_core.workers import worker_pool

    with worker_pool(processes) as pool:
        return list(pool.map(_built, smiles, [conformers] * len(smiles), [relax] * len(smiles), chunksize=16))


def _built(smiles: str, conformers: int, relax: str) -> Molecule | None:
    from unigem_core.io import read_smiles

    try:
        return read_smiles(smiles, conformers=conformers, relax=relax)
    except MoleculeInputError:
        return None
