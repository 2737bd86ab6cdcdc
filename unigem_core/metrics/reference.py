"""QM9 as a reference: the training SMILES for novelty, real molecules for the "Data" row, and a lookup of any
molecule's QM9 entries with their DFT values.

Novelty (spec 8.3) compares generated SMILES with the SMILES of the 100,000 training molecules rebuilt from
their *geometries* with the same bond rule, not with QM9's own SMILES column, so both sides are written the
same way. The lookup (`QM9Lookup`) finds a molecule by its bond graph (`graph_key`: heavy atoms, no
stereochemistry), under either of two keys per QM9 molecule: the graph its geometry gives under the bond rule
and the graph of QM9's own SMILES, which differ for a few per cent of molecules (an aromatic ring read from
bond lengths, a molecule whose bonds changed when DFT relaxed it). All three strings of every molecule are
cached in one tab-separated file in the data directory (one line per molecule, in QM9's order); its name
carries a version (bond rule and RDKit release), and a missing file is rebuilt (about two minutes on one core).
"""
from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rdkit
from rdkit import Chem, rdBase

from unigem_core.constants import PROPERTIES
from unigem_core.data.qm9 import (SPLIT_SIZES, QM9Arrays, default_data_dir, load_qm9, load_split, split_indices,
                                  symbols_of)
from unigem_core.metrics.rdkit_metrics import build_rdkit_mol, graph_key, smiles_of_mol
from unigem_core.molecule import Molecule

# Bump when the bond rule or a SMILES convention changes. RDKit's canonical form can change
# between releases, so its version is part of the key too.
SMILES_CACHE_VERSION = f"v3-rdkit{rdkit.__version__}"
SPLIT_NAMES = {"train": "training", "valid": "validation", "test": "test"}  # as a sentence names them


def _molecules(arrays: QM9Arrays, rows: np.ndarray) -> list[Molecule]:
    return [
        Molecule(
            symbols=symbols_of(arrays.types[r]),
            positions=arrays.positions[r, : arrays.n_atoms[r]],
            name=f"QM9 {int(arrays.index[r])}",
            properties={p.key: float(v) * p.report_scale for p, v in zip(PROPERTIES, arrays.targets[r])},
        )
        for r in rows
    ]


def reference_molecules(split: str = "test", n: int | None = None, seed: int = 0,
                        data_dir: Path | None = None) -> list[Molecule]:
    """Real QM9 molecules of one split, all of them or a deterministic random subset of ``n`` (in split order)."""
    arrays = load_split(split, data_dir, progress=False)
    rows = np.arange(len(arrays))
    if n is not None:
        if not 0 <= n <= len(arrays):
            raise ValueError(f"n must be between 0 and {len(arrays)}, got {n}")
        rows = np.sort(np.random.default_rng(seed).choice(len(arrays), size=n, replace=False))
    return _molecules(arrays, rows)


# --- the SMILES of every QM9 molecule ---------------------------------------------------------------

@dataclass(frozen=True)
class QM9Strings:
    """The strings by which one QM9 molecule is found ("" where RDKit cannot read it)."""

    smiles: str  # spec 8.3 SMILES from its geometry (hydrogens explicit): novelty's form
    geometry_key: str  # graph_key(exact=True) of the same molecule
    given_key: str  # graph_key of QM9's own SMILES


def strings_of(symbols: list[str], positions: np.ndarray, given_smiles: str) -> QM9Strings:
    """One molecule's QM9Strings, from its geometry (atoms, positions in Angstrom) and QM9's SMILES for it."""
    mol = build_rdkit_mol(symbols, positions)
    with rdBase.BlockLogs():
        given = Chem.MolFromSmiles(given_smiles)
    return QM9Strings(smiles_of_mol(mol) or "", graph_key(mol, exact=True) or "",
                      (graph_key(given) if given else None) or "")


def smiles_cache_path(data_dir: Path | None = None) -> Path:
    return (data_dir or default_data_dir()) / f"qm9_smiles_{SMILES_CACHE_VERSION}.tsv"


def build_qm9_strings(data_dir: Path | None = None, progress: bool = True) -> list[QM9Strings]:
    """QM9Strings of all 130,831 molecules, in QM9's order."""
    from tqdm import tqdm

    arrays = load_qm9(data_dir, progress=progress)
    return [strings_of(symbols_of(arrays.types[r]), arrays.positions[r, : arrays.n_atoms[r]], str(arrays.smiles[r]))
            for r in tqdm(range(len(arrays)), desc="QM9 SMILES", disable=not progress)]


def qm9_strings(data_dir: Path | None = None, progress: bool = True) -> list[QM9Strings]:
    """QM9Strings of every molecule in QM9's order, from the cache file; built and written first if missing."""
    path = smiles_cache_path(data_dir)
    if path.exists():
        strings = [QM9Strings(*line.split("\t")) for line in path.read_text().split("\n")[:-1]]
        if len(strings) == sum(SPLIT_SIZES.values()):  # else written for another QM9 release: rebuilt
            return strings
    strings = build_qm9_strings(data_dir, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # atomic: never leave half a file behind
    tmp.write_text("".join(f"{s.smiles}\t{s.geometry_key}\t{s.given_key}\n" for s in strings))
    os.replace(tmp, path)
    return strings


def training_smiles(data_dir: Path | None = None, progress: bool = True) -> set[str]:
    """The training SMILES for novelty (spec 8.3): those of the valid molecules of the training split."""
    strings = qm9_strings(data_dir, progress)
    return {strings[r].smiles for r in split_indices(len(strings))["train"]} - {""}


# --- the lookup ---------------------------------------------------------------------------------------

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


class QM9Lookup:
    """Finds a molecule's entries in QM9 by its bond graph (graph_key), whatever its geometry.

    Built from one QM9Strings per molecule with its QM9 number, QM9's own SMILES, its targets (training units)
    and its split; `training_smiles` is the novelty reference (spec 8.3) of the same rows.
    """

    def __init__(self, strings: list[QM9Strings], numbers: np.ndarray, given_smiles: np.ndarray, targets: np.ndarray,
                 splits: list[str]):
        if not len(strings) == len(numbers) == len(given_smiles) == len(targets) == len(splits):
            raise ValueError("one QM9Strings, number, SMILES, target row and split per molecule")
        self._numbers, self._given, self._splits = numbers, given_smiles, splits
        self._targets = targets * np.array([p.report_scale for p in PROPERTIES])  # [M, 12] reporting units
        self._rows: dict[str, list[int]] = defaultdict(list)
        for r, s in enumerate(strings):
            for key in {s.geometry_key, s.given_key} - {""}:
                self._rows[key].append(r)
        self.training_smiles = frozenset(s.smiles for s, split in zip(strings, splits) if split == "train" and s.smiles)

    def find_keys(self, keys: Iterable[str | None]) -> list[QM9Entry]:
        """The entries under any of these graph keys, by QM9 number."""
        rows = sorted({r for key in keys if key for r in self._rows.get(key, ())}, key=lambda r: self._numbers[r])
        return [QM9Entry(int(self._numbers[r]), self._splits[r], str(self._given[r]),
                         {p.key: float(v) for p, v in zip(PROPERTIES, self._targets[r])}) for r in rows]

    def find(self, molecule: Molecule) -> list[QM9Entry]:
        """QM9's molecules with this molecule's bond graph: the graph its geometry gives under the bond rule
        (spec 8.1; exactly these atoms: one fragment, no hydrogen missing), or the graph its input declared
        (Molecule.bond_graph: a SMILES, an SDF's bonds)."""
        geometry = graph_key(build_rdkit_mol(molecule.symbols, molecule.positions), exact=True)
        return self.find_keys([geometry, molecule.bond_graph])


def qm9_lookup(data_dir: Path | None = None, progress: bool = True) -> QM9Lookup:
    """The lookup over all of QM9 (the SMILES cache is built first when missing: minutes, once per machine)."""
    strings = qm9_strings(data_dir, progress)
    arrays = load_qm9(data_dir, progress=progress)
    splits = [""] * len(arrays)
    for name, rows in split_indices(len(arrays)).items():
        for r in rows:
            splits[r] = name
    return QM9Lookup(strings, arrays.index, arrays.smiles, arrays.targets, splits)


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
    found = [(m, lookup.find(m)) for m in valid]
    found = [(m, entries) for m, entries in found if entries and m.properties]
    unseen = [(m, entries) for m, entries in found if all(e.split != "train" for e in entries)]

    def mae(pairs) -> dict[str, float] | None:
        if not pairs:
            return None
        errors = np.array([[m.properties[p.key] - entries[0].properties[p.key] for p in PROPERTIES]
                           for m, entries in pairs])  # [n, 12]
        return {p.key: float(v) for p, v in zip(PROPERTIES, np.abs(errors).mean(0))}

    share = (lambda k: k / len(valid)) if valid else (lambda k: None)
    return {"n_valid": len(valid), "in_qm9": share(len(found)), "in_training_split": share(len(found) - len(unseen)),
            "n_compared": len(found), "mae_vs_dft": mae(found),
            "n_unseen": len(unseen), "mae_vs_dft_unseen": mae(unseen)}
