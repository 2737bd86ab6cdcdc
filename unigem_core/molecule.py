"""Plain-numpy result types that every door (Python API, CLI, app) shares.

Nothing here imports torch or RDKit, so the app can hold these objects freely.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from unigem_core.constants import ELEMENTS, MAX_ATOMS, MAX_HEAVY_ATOMS


class MoleculeInputError(ValueError):
    """A molecule the tool cannot read or that lies outside the model's domain; the message is one line."""


def check_domain(symbols: Sequence[str], n_atoms: int) -> None:
    """Refuse elements other than H, C, N, O, F and more than MAX_ATOMS atoms (foreign elements named in
    the order given). The one place these rules and their messages live, for the readers and the API."""
    foreign = list(dict.fromkeys(s for s in symbols if s not in ELEMENTS))
    if foreign:
        raise MoleculeInputError(f"contains {', '.join(foreign)}; the model knows only {', '.join(ELEMENTS)}")
    if n_atoms == 0:
        raise MoleculeInputError("has no atoms")
    if n_atoms > MAX_ATOMS:
        raise MoleculeInputError(f"has {n_atoms} atoms; the model handles at most {MAX_ATOMS}")


def domain_warnings(symbols: Sequence[str]) -> list[str]:
    """Caveats for a molecule check_domain accepts but QM9 holds nothing like: more than nine heavy atoms."""
    heavy = sum(s != "H" for s in symbols)
    if heavy > MAX_HEAVY_ATOMS:
        return [f"has {heavy} heavy atoms; QM9's molecules have at most {MAX_HEAVY_ATOMS}, so these predictions "
                "extrapolate beyond the training data"]
    return []


@dataclass
class Molecule:
    """A 3D molecule with explicit hydrogens."""

    symbols: tuple[str, ...]  # element symbols, one per atom
    positions: np.ndarray  # [n, 3] float64, Angstrom
    name: str = ""
    properties: dict[str, float] | None = None  # property key -> value in reporting units (constants.PROPERTIES)
    built_3d: bool = False  # coordinates built from bonds (ETKDG + MMFF + GFN2-xTB: a SMILES, a 2D drawing), not given
    bond_graph: str | None = None  # the bonds the input declared or RDKit read (metrics.graph_key); None if none
    # [k, n, 3]: every conformer built for a built molecule, lowest energy first (positions is the first); None
    # where the molecule has its one geometry
    conformers: np.ndarray | None = None
    relaxation: str | None = None  # what relaxed a built molecule's conformers ("MMFF94 + GFN2-xTB", "MMFF94")

    def __post_init__(self) -> None:
        self.symbols = tuple(self.symbols)
        self.positions = np.asarray(self.positions, dtype=np.float64).reshape(-1, 3)
        if len(self.symbols) != len(self.positions):
            raise ValueError(f"{len(self.symbols)} symbols but {len(self.positions)} positions")
        if self.conformers is not None:
            self.conformers = np.asarray(self.conformers, dtype=np.float64)
            if self.conformers.ndim != 3 or self.conformers.shape[1:] != self.positions.shape:
                raise ValueError(f"conformers of shape {self.conformers.shape} for {self.n_atoms} atoms")

    @property
    def geometries(self) -> list[np.ndarray]:
        """Each geometry of the molecule: its conformers, or its one set of positions."""
        return [self.positions] if self.conformers is None else list(self.conformers)

    @property
    def n_atoms(self) -> int:
        return len(self.symbols)

    @property
    def formula(self) -> str:
        """Hill formula: C first, then H, then the rest alphabetically (e.g. C2H6O)."""
        counts = Counter(self.symbols)
        first = [s for s in ("C", "H") if s in counts] if "C" in counts else []
        order = first + sorted(s for s in counts if s not in first)
        return "".join(f"{s}{counts[s] if counts[s] > 1 else ''}" for s in order)


@dataclass
class Record:
    """One record of an input file: a molecule, or the reason it was refused."""

    index: int  # 1-based position in the input (record number within its file)
    name: str
    molecule: Molecule | None = None
    error: str | None = None  # one readable line when the record was refused
    warnings: tuple[str, ...] = ()  # e.g. "flat geometry (all z = 0): the model needs 3D coordinates"
    source: str = ""  # file name the record came from, if any

    @property
    def ok(self) -> bool:
        return self.molecule is not None and self.error is None


@dataclass
class Frame:
    """One snapshot of the reverse diffusion of one molecule (spec 6)."""

    t: int  # diffusion step, T..0
    sigma_t: float  # noise level at t (Angstrom)
    phase: str  # "nucleation" (t > t_n) or "growth" (t <= t_n)
    positions: np.ndarray  # [n, 3] float32
    type_guess: np.ndarray | None = None  # [n] element indices from the type head (growth phase only)


@dataclass
class Trajectory:
    frames: list[Frame]
    t_n: int  # nucleation time
    num_steps: int  # T


@dataclass
class GeneratedMolecule:
    """A molecule produced by the sampler with everything the app shows beside it."""

    seed: int
    molecule: Molecule  # atom types from the t = 0 type head, properties in reporting units
    trajectory: Trajectory | None = None
    atom_stable: np.ndarray | None = None  # [n] bool per-atom valence check (spec 8.2)
    stable: bool = False  # every atom stable
    valid: bool = False  # RDKit sanitises the whole molecule
    smiles: str | None = None  # largest fragment, when valid
    extra: dict = field(default_factory=dict)
