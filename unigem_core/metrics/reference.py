"""Reference sets for the generation metrics: training SMILES for novelty, real molecules for the "Data" row.

Novelty (spec 8.3) compares generated SMILES with the SMILES of the 100,000 training molecules
rebuilt from their *geometries* with the same bond rule, not with QM9's own SMILES column, so both
sides are written the same way. They are cached as a text file, one SMILES per line, in the data
directory; the name carries a version (bond rule and RDKit release), and a missing file is rebuilt.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rdkit

from unigem_core.constants import PROPERTIES
from unigem_core.data.qm9 import QM9Arrays, default_data_dir, load_split, symbols_of
from unigem_core.metrics.rdkit_metrics import to_smiles
from unigem_core.molecule import Molecule

# Bump when the bond rule or the SMILES convention changes. RDKit's canonical form can change
# between releases, so its version is part of the key too.
SMILES_CACHE_VERSION = f"v1-rdkit{rdkit.__version__}"


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


def smiles_cache_path(data_dir: Path | None = None) -> Path:
    return (data_dir or default_data_dir()) / f"qm9_train_smiles_{SMILES_CACHE_VERSION}.txt"


def build_training_smiles(data_dir: Path | None = None, progress: bool = True) -> set[str]:
    """SMILES (spec 8.3 convention) of every valid training molecule, rebuilt from the geometries."""
    from tqdm import tqdm

    arrays = load_split("train", data_dir, progress=progress)
    smiles = set()
    for r in tqdm(range(len(arrays)), desc="Training SMILES", disable=not progress):
        s = to_smiles(symbols_of(arrays.types[r]), arrays.positions[r, : arrays.n_atoms[r]])
        if s is not None:
            smiles.add(s)
    return smiles


def training_smiles(data_dir: Path | None = None, progress: bool = True) -> set[str]:
    """The training SMILES for novelty (spec 8.3), from the cache file, built and written first if missing."""
    path = smiles_cache_path(data_dir)
    if path.exists():
        return set(path.read_text().split("\n")) - {""}
    smiles = build_training_smiles(data_dir, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # atomic: never leave half a file behind
    tmp.write_text("\n".join(sorted(smiles)) + "\n")
    os.replace(tmp, path)
    return smiles
