"""QM9 as a reference: the training SMILES for novelty, real molecules for the "Data" row, and the strings by which
qm9_lookup finds any molecule in QM9.

Novelty (spec 8.3) compares generated SMILES with the SMILES of the 100,000 training molecules rebuilt from
their *geometries* with the same bond rule, not with QM9's own SMILES column, so both sides are written the
same way. Beside that SMILES, every molecule has two bond-graph keys for the lookup (QM9Strings). All three
strings of every molecule are cached in one tab-separated file in the data directory (one line per molecule,
in QM9's order); its name carries a version (bond rule and RDKit release), and a missing file is rebuilt
(about two minutes on one core).
"""
from __future__ import annotations

import os
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
