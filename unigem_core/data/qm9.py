"""QM9 from the `qm9pack` data files: read once, convert to a compact cache, split (spec 1 and 14).

The cache is an ``.npz`` file outside git (``$UNIGEM_DATA_DIR`` or ``~/.cache/unigem``). It is rebuilt
automatically, with a progress bar, when it is missing or when the source files or the cache format
changed. Where qm9pack is not installed (a lent GPU machine), a smaller portable file in the same folder
(write_portable) stands in for it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unigem_core.constants import ATOM_REFERENCE, ELEMENT_INDEX, ELEMENTS, HARTREE_TO_EV, MAX_ATOMS, PROPERTY_KEYS

CACHE_VERSION = 1
SPLIT_SIZES = {"train": 100_000, "valid": 17_748, "test": 13_083}  # spec 1: the EDM/Cormorant split
SOURCE_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
PORTABLE_FILE = "qm9_portable_v1.npz"  # write_portable's file, which load_qm9 reads where qm9pack is missing
POSITION_QUANTUM = 1e-3  # Angstrom: the portable file's positions are integer multiples of it


@dataclass(frozen=True)
class QM9Arrays:
    """All of QM9 (or a slice of it) as padded arrays, in `Index` order."""

    positions: np.ndarray  # [M, 29, 3] float32, Angstrom, zero on padding
    types: np.ndarray  # [M, 29] int8, element index, -1 on padding
    n_atoms: np.ndarray  # [M] int16
    targets: np.ndarray  # [M, 12] float64, training units (spec 14), order of PROPERTY_KEYS
    smiles: np.ndarray  # [M] str, the SMILES given by QM9
    index: np.ndarray  # [M] int32, QM9's own molecule index (1..133,885)

    def __len__(self) -> int:
        return len(self.n_atoms)

    def subset(self, rows: np.ndarray) -> "QM9Arrays":
        return QM9Arrays(*(getattr(self, f)[rows] for f in self.__dataclass_fields__))


def default_data_dir() -> Path:
    return Path(os.environ.get("UNIGEM_DATA_DIR", Path.home() / ".cache" / "unigem"))


def qm9pack_data_dir() -> Path:
    """Locate qm9pack's data folder without importing it (its __init__ needs pkg_resources)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the QM9 data package `qm9pack` is not installed: pip install qm9pack")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    missing = [name for name in SOURCE_FILES if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(f"qm9pack data files missing in {folder}: {', '.join(missing)}")
    return folder


def _source_signature(folder: Path) -> str:
    stats = [(name, (folder / name).stat().st_size) for name in SOURCE_FILES]
    return hashlib.sha256(json.dumps([CACHE_VERSION, stats]).encode()).hexdigest()[:16]


def _targets_from_row(row, symbols: list[str]) -> list[float]:
    """One molecule's twelve targets in training units (spec 14)."""
    def atomization(column: str, key: str) -> float:
        total = float(row[column]) - sum(ATOM_REFERENCE[key][s] for s in symbols)
        return total * HARTREE_TO_EV

    values = {
        "mu": float(row["Dipole_debye"]),
        "alpha": float(row["Polarizability_bohr3"]),
        "homo": float(row["HOMO_au"]) * HARTREE_TO_EV,
        "lumo": float(row["LUMO_au"]) * HARTREE_TO_EV,
        "gap": float(row["HOMO_LUMO_gap_au"]) * HARTREE_TO_EV,
        "r2": float(row["R2_bohr2"]),
        "zpve": float(row["ZPVE_au"]) * HARTREE_TO_EV,
        "U0": atomization("InternalEnergy_0K_au", "U0"),
        "U": atomization("InternalEnergy_298K_au", "U"),
        "H": atomization("Enthalphy_298K_au", "H"),
        "G": atomization("GibbsFreeEnergy_298K_au", "G"),
        # Cv is kept as the molecule's total heat capacity: the value a chemist expects to see.
        # (The published pipeline subtracts 2.981 per atom; MAE is identical either way.)
        "Cv": float(row["Heatcapacity_Cv_cal_mol_K"]),
    }
    return [values[k] for k in PROPERTY_KEYS]


def build_arrays(folder: Path, progress: bool = True) -> QM9Arrays:
    """Parse the qm9pack CSV files into padded arrays, ordered by QM9 `Index`."""
    import pandas as pd
    from tqdm import tqdm

    columns = ["Index", "SMILES", "Elements", "XYZ_Ang", "Dipole_debye", "Polarizability_bohr3", "HOMO_au",
               "LUMO_au", "HOMO_LUMO_gap_au", "R2_bohr2", "ZPVE_au", "InternalEnergy_0K_au",
               "InternalEnergy_298K_au", "Enthalphy_298K_au", "GibbsFreeEnergy_298K_au",
               "Heatcapacity_Cv_cal_mol_K"]
    frame = pd.concat([pd.read_csv(folder / name, usecols=columns) for name in SOURCE_FILES], ignore_index=True)
    frame = frame.sort_values("Index").reset_index(drop=True)
    m = len(frame)
    positions = np.zeros((m, MAX_ATOMS, 3), dtype=np.float32)
    types = np.full((m, MAX_ATOMS), -1, dtype=np.int8)
    n_atoms = np.zeros(m, dtype=np.int16)
    targets = np.zeros((m, len(PROPERTY_KEYS)), dtype=np.float64)
    rows = tqdm(frame.itertuples(index=False), total=m, desc="Building QM9 cache", disable=not progress)
    for i, row in enumerate(rows):
        row = row._asdict()
        symbols = json.loads(row["Elements"].replace("'", '"'))
        n = len(symbols)
        # QM9 writes numbers like "1." that JSON rejects; Python's float() reads them.
        xyz = np.array(row["XYZ_Ang"].replace("[", "").replace("]", "").split(","), dtype=np.float32)
        xyz = xyz.reshape(n, 3)
        positions[i, :n] = xyz
        types[i, :n] = [ELEMENT_INDEX[s] for s in symbols]
        n_atoms[i] = n
        targets[i] = _targets_from_row(row, symbols)
    return QM9Arrays(positions, types, n_atoms, targets, frame["SMILES"].to_numpy(dtype=str),
                     frame["Index"].to_numpy(dtype=np.int32))


def load_qm9(data_dir: Path | None = None, progress: bool = True) -> QM9Arrays:
    """All 130,831 molecules, from the cache (rebuilt first if it is missing or stale), or where `qm9pack` is not
    installed, from the portable file in the data folder (write_portable), if there is one."""
    data_dir = data_dir or default_data_dir()
    try:
        folder = qm9pack_data_dir()
    except FileNotFoundError:
        if not (data_dir / PORTABLE_FILE).exists():
            raise
        return read_portable(data_dir / PORTABLE_FILE)
    signature = _source_signature(folder)
    path = data_dir / f"qm9_v{CACHE_VERSION}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as cached:
            if str(cached["signature"]) == signature:
                return QM9Arrays(**{f: cached[f] for f in QM9Arrays.__dataclass_fields__})
    arrays = build_arrays(folder, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    # one temporary file per writer: DDP ranks and sampling workers may build the cache at the same time
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, signature=signature, **{f: getattr(arrays, f) for f in QM9Arrays.__dataclass_fields__})
    os.replace(tmp, path)
    return arrays


def write_portable(path: Path, arrays: QM9Arrays | None = None) -> Path:
    """QM9 in one compressed file of about 18 MB, for a machine without `qm9pack` (a lent GPU, where what travels is
    limited; read by load_qm9 from the data folder, named PORTABLE_FILE): the atoms alone, without padding, their
    positions rounded to POSITION_QUANTUM (off by 0.0005 Angstrom at most, far below the noise the model trains with)
    and the targets in float32 (about 1e-7 of each value)."""
    arrays = arrays if arrays is not None else load_qm9()
    if np.abs(arrays.positions).max() >= np.iinfo(np.int16).max * POSITION_QUANTUM:
        raise ValueError("a coordinate too large for the portable file's int16 positions")
    atoms = np.arange(MAX_ATOMS)[None, :] < arrays.n_atoms[:, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, positions=np.round(arrays.positions[atoms] / POSITION_QUANTUM).astype(np.int16),
                        types=arrays.types[atoms], n_atoms=arrays.n_atoms, targets=arrays.targets.astype(np.float32),
                        smiles=np.frombuffer("\n".join(arrays.smiles.tolist()).encode(), dtype=np.uint8),
                        index=arrays.index)
    os.replace(tmp, path)
    return path


def read_portable(path: Path) -> QM9Arrays:
    """The arrays of a write_portable file, padded again as load_qm9 gives them."""
    with np.load(path, allow_pickle=False) as f:
        n_atoms = f["n_atoms"]
        atoms = np.arange(MAX_ATOMS)[None, :] < n_atoms[:, None]
        positions = np.zeros((len(n_atoms), MAX_ATOMS, 3), dtype=np.float32)
        positions[atoms] = f["positions"].astype(np.float32) * np.float32(POSITION_QUANTUM)
        types = np.full((len(n_atoms), MAX_ATOMS), -1, dtype=np.int8)
        types[atoms] = f["types"]
        smiles = np.array(f["smiles"].tobytes().decode().split("\n"))
        return QM9Arrays(positions=positions, types=types, n_atoms=n_atoms, targets=f["targets"].astype(np.float64),
                         smiles=smiles, index=f["index"])


def split_indices(n_molecules: int) -> dict[str, np.ndarray]:
    """Row indices (into Index-ordered arrays) of the published train/valid/test split (spec 1)."""
    expected = sum(SPLIT_SIZES.values())
    if n_molecules != expected:
        raise ValueError(f"QM9 should have {expected} molecules, found {n_molecules}")
    perm = np.random.RandomState(0).permutation(n_molecules)
    n_train, n_valid = SPLIT_SIZES["train"], SPLIT_SIZES["valid"]
    return {"train": perm[:n_train], "valid": perm[n_train:n_train + n_valid], "test": perm[n_train + n_valid:]}


def load_split(split: str, data_dir: Path | None = None, progress: bool = True) -> QM9Arrays:
    """One split of QM9: ``train``, ``valid`` or ``test``."""
    if split not in SPLIT_SIZES:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLIT_SIZES)}")
    arrays = load_qm9(data_dir, progress=progress)
    return arrays.subset(split_indices(len(arrays))[split])


def symbols_of(types_row: np.ndarray) -> list[str]:
    """Element symbols of one padded type row."""
    return [ELEMENTS[t] for t in types_row if t >= 0]
