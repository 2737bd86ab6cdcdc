"""QM9's own answer for a molecule: its entries found by bond graph, with their DFT values, and the most similar
QM9 molecules where QM9 does not hold it.

`QM9Lookup.find` matches a molecule's bond graph (`graph_key`: heavy atoms, no stereochemistry) against two
keys per QM9 molecule (reference.QM9Strings): the graph its geometry gives under the bond rule and the graph
of QM9's own SMILES, which differ for a few molecules (an aromatic ring read from bond lengths, a molecule
whose bonds changed when DFT relaxed it). `QM9Lookup.closest` ranks QM9's molecules by Tanimoto similarity
of ECFP4 fingerprints (Morgan, radius 2, 2,048 bits) of those graphs, cached beside the SMILES.
"""
from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import rdFingerprintGenerator

from unigem_core.constants import PROPERTIES
from unigem_core.data.qm9 import default_data_dir, load_qm9, split_indices
from unigem_core.metrics.rdkit_metrics import build_rdkit_mol, graph_key, smiles_of_mol
from unigem_core.metrics.reference import SMILES_CACHE_VERSION, QM9Strings, qm9_strings
from unigem_core.molecule import Molecule

SPLIT_NAMES = {"train": "training", "valid": "validation", "test": "test"}  # as a sentence names them
FINGERPRINT_BITS = 2048  # ECFP4: Morgan fingerprints of radius 2


@dataclass(frozen=True)
class QM9Entry:
    """One QM9 molecule that a lookup found: which one, in which split, and its DFT values."""

    number: int  # QM9's own molecule index (1..133,885)
    split: str  # "train", "valid" or "test" (spec 1's split)
    smiles: str  # QM9's own SMILES
    properties: dict[str, float]  # the twelve targets in reporting units

    @property
    def label(self) -> str:
        """"QM9 #1234 (test split)"."""
        return f"QM9 #{self.number} ({SPLIT_NAMES[self.split]} split)"


@dataclass(frozen=True)
class Similar:
    """A QM9 molecule ranked by its similarity to a query molecule."""

    tanimoto: float  # of the ECFP4 fingerprints, 0..1 (1: the same fingerprint, usually the same bond graph)
    entry: QM9Entry


def fingerprint(key: str) -> np.ndarray | None:
    """The packed ECFP4 bits ([FINGERPRINT_BITS / 8] uint8) of a bond graph written as a graph_key; None if
    RDKit cannot read it."""
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(key) if key else None
    if mol is None:
        return None
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=FINGERPRINT_BITS)
    return np.packbits(generator.GetFingerprintAsNumPy(mol).astype(bool))


class QM9Lookup:
    """Finds a molecule's entries in QM9 by its bond graph (graph_key), whatever its geometry, and the QM9
    molecules most like it.

    Built from one QM9Strings per molecule with its QM9 number, QM9's own SMILES, its targets (training units)
    and its split, and optionally the packed fingerprints of QM9's graphs ([M, FINGERPRINT_BITS / 8] uint8,
    qm9_fingerprints) for `closest`; `training_smiles` is the novelty reference (spec 8.3) of the same rows.
    """

    def __init__(self, strings: list[QM9Strings], numbers: np.ndarray, given_smiles: np.ndarray, targets: np.ndarray,
                 splits: list[str], fingerprints: np.ndarray | None = None):
        if not len(strings) == len(numbers) == len(given_smiles) == len(targets) == len(splits):
            raise ValueError("one QM9Strings, number, SMILES, target row and split per molecule")
        self._numbers, self._given, self._splits = numbers, given_smiles, splits
        self._targets = targets * np.array([p.report_scale for p in PROPERTIES])  # [M, 12] reporting units
        self._rows: dict[str, list[int]] = defaultdict(list)
        for r, s in enumerate(strings):
            for key in {s.geometry_key, s.given_key} - {""}:
                self._rows[key].append(r)
        self.training_smiles = frozenset(s.smiles for s, split in zip(strings, splits) if split == "train" and s.smiles)
        self._bits = None if fingerprints is None else np.ascontiguousarray(fingerprints).view(np.uint64)  # [M, 32]
        self._counts = None if fingerprints is None else np.bitwise_count(self._bits).sum(axis=1)  # [M]

    def _entry(self, r: int) -> QM9Entry:
        return QM9Entry(int(self._numbers[r]), self._splits[r], str(self._given[r]),
                        {p.key: float(v) for p, v in zip(PROPERTIES, self._targets[r])})

    def find_keys(self, keys: Iterable[str | None]) -> list[QM9Entry]:
        """The entries under any of these graph keys, by QM9 number."""
        rows = sorted({r for key in keys if key for r in self._rows.get(key, ())}, key=lambda r: self._numbers[r])
        return [self._entry(r) for r in rows]

    def find(self, molecule: Molecule) -> list[QM9Entry]:
        """QM9's molecules with this molecule's bond graph: the graph its geometry gives under the bond rule
        (spec 8.1; exactly these atoms: one fragment, no hydrogen missing), or the graph its input declared
        (Molecule.bond_graph: a SMILES, an SDF's bonds)."""
        return self.match(molecule)[0]

    def closest(self, molecule: Molecule, k: int = 1) -> list[Similar]:
        """The k QM9 molecules most similar to this one (Tanimoto of ECFP4), most similar first; [] when the
        lookup has no fingerprints or the molecule has no readable bond graph (its declared one, else the one
        its geometry gives)."""
        return self._closest_to(_keys(molecule)[1], k)

    def match(self, molecule: Molecule) -> tuple[list[QM9Entry], Similar | None]:
        """find's entries, and where there are none, the most similar QM9 molecule (closest); the molecule's
        geometry is read once for both."""
        exact, graph = _keys(molecule)
        entries = self.find_keys([exact, molecule.bond_graph])
        return entries, None if entries else next(iter(self._closest_to(graph, 1)), None)

    def _closest_to(self, key: str | None, k: int) -> list[Similar]:
        query = fingerprint(key) if key and self._bits is not None else None
        if query is None:
            return []
        q = query.view(np.uint64)  # [32]
        common = np.bitwise_count(self._bits & q).sum(axis=1)  # [M]
        tanimoto = common / np.maximum(self._counts + np.bitwise_count(q).sum() - common, 1)
        rows = np.argsort(-tanimoto, kind="stable")[:k]  # ties: the lower QM9 row first
        return [Similar(float(tanimoto[r]), self._entry(int(r))) for r in rows]


def _keys(molecule: Molecule) -> tuple[str | None, str | None]:
    """(the graph_key of exactly the molecule's atoms as its geometry reads, the bond graph to rank similarity by:
    the declared one, else the one its geometry gives)."""
    mol = build_rdkit_mol(molecule.symbols, molecule.positions)
    exact = graph_key(mol, exact=True)
    return exact, molecule.bond_graph or exact or graph_key(mol)


def dft_errors(pairs: list[tuple[dict[str, float], tuple[QM9Entry, ...]]]) -> dict:
    """Predicted properties against QM9's DFT values, one (predictions, entries found) pair per molecule QM9 holds:
    the mean absolute difference from the first entry over all of them ("mae_vs_dft") and over those found only
    outside the training split ("mae_vs_dft_unseen", values the model never saw), with the two counts; None where
    there are none. Reporting units."""
    unseen = [(predicted, entries) for predicted, entries in pairs if all(e.split != "train" for e in entries)]

    def mae(group) -> dict[str, float] | None:
        if not group:
            return None
        errors = np.array([[predicted[p.key] - entries[0].properties[p.key] for p in PROPERTIES]
                           for predicted, entries in group])  # [n, 12]
        return {p.key: float(v) for p, v in zip(PROPERTIES, np.abs(errors).mean(0))}

    return {"n_compared": len(pairs), "mae_vs_dft": mae(pairs),
            "n_unseen": len(unseen), "mae_vs_dft_unseen": mae(unseen)}


def fingerprints_cache_path(data_dir: Path | None = None) -> Path:
    return (data_dir or default_data_dir()) / f"qm9_ecfp4_{SMILES_CACHE_VERSION}.npy"


def qm9_fingerprints(strings: list[QM9Strings], data_dir: Path | None = None) -> np.ndarray:
    """Packed ECFP4 fingerprints of QM9's own SMILES graphs ([M, FINGERPRINT_BITS / 8] uint8; zeros where RDKit
    cannot read one), from the cache file, computed (seconds) and written first if missing or stale."""
    path = fingerprints_cache_path(data_dir)
    if path.exists():
        cached = np.load(path)
        if cached.shape == (len(strings), FINGERPRINT_BITS // 8):
            return cached
    zeros = np.zeros(FINGERPRINT_BITS // 8, dtype=np.uint8)
    fingerprints = np.stack([f if (f := fingerprint(s.given_key)) is not None else zeros for s in strings])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")  # atomic: never leave half a file behind
    np.save(tmp, fingerprints)
    os.replace(tmp, path)
    return fingerprints


def qm9_lookup(data_dir: Path | None = None, progress: bool = True) -> QM9Lookup:
    """The lookup over all of QM9 (the SMILES cache is built first when missing: minutes, once per machine)."""
    strings = qm9_strings(data_dir, progress)
    arrays = load_qm9(data_dir, progress=progress)
    splits = [""] * len(arrays)
    for name, rows in split_indices(len(arrays)).items():
        for r in rows:
            splits[r] = name
    return QM9Lookup(strings, arrays.index, arrays.smiles, arrays.targets, splits, qm9_fingerprints(strings, data_dir))


def qm9_comparison(molecules: list[Molecule], lookup: QM9Lookup) -> dict:
    """How many generated molecules QM9 holds, and how far their predicted properties lie from QM9's DFT values.

    A generated molecule whose bond graph QM9 holds has a DFT answer: its properties at QM9's optimised geometry
    (the first entry by QM9 number where there are several). The predictions were read from the generated
    geometry, so the errors mix the property head's error with the generated geometry's distance from QM9's.
    `in_qm9` and `in_training_split` are shares of the valid molecules (spec 8.3); `mae_vs_dft` is over all
    molecules found, `mae_vs_dft_unseen` over those found only outside the training split, whose values the
    model never saw. Reporting units; None where nothing was found.
    """
    valid = [m for m in molecules if smiles_of_mol(build_rdkit_mol(m.symbols, m.positions)) is not None]
    found = [(m.properties, entries) for m in valid if m.properties and (entries := tuple(lookup.find(m)))]
    errors = dft_errors(found)
    share = (lambda k: k / len(valid)) if valid else (lambda k: None)
    return {"n_valid": len(valid), "in_qm9": share(len(found)),
            "in_training_split": share(len(found) - errors["n_unseen"]), **errors}
