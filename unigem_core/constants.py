"""Elements, units and property names shared by every part of UniGEM (spec sections 1 and 14)."""
from __future__ import annotations

from dataclasses import dataclass

# Element vocabulary of QM9, in the encoder order of the spec (H=0, C=1, N=2, O=3, F=4).
ELEMENTS: tuple[str, ...] = ("H", "C", "N", "O", "F")
ATOMIC_NUMBERS: tuple[int, ...] = (1, 6, 7, 8, 9)
ELEMENT_INDEX: dict[str, int] = {symbol: i for i, symbol in enumerate(ELEMENTS)}
NUM_ELEMENTS = len(ELEMENTS)

# Largest QM9 molecule; the model's domain ends here.
MAX_ATOMS = 29
# QM9 enumerates the molecules of up to nine heavy atoms (C, N, O, F): larger ones the model accepts,
# up to MAX_ATOMS atoms in all, but its predictions for them extrapolate beyond anything it was trained on.
MAX_HEAVY_ATOMS = 9

HARTREE_TO_EV = 27.211386
# kT at 298.15 K in Hartree: H - U of an ideal gas, the same for a molecule and for each free atom (QM9 lists
# H = U + kT for every molecule, and ATOM_REFERENCE's H and U of each atom differ by it too). QM9's atomization
# enthalpy therefore follows from its atomization energy U exactly: engine.enthalpy_offset.
KT_298_HARTREE = 0.000944


@dataclass(frozen=True)
class PropertySpec:
    """One QM9 target: how it is stored for training and how it is shown to people."""

    key: str  # short name used in code, checkpoints and JSON
    label: str  # human-readable name
    unit: str  # unit of the training target (spec 14)
    report_unit: str  # unit in which errors and predictions are reported
    report_scale: float  # multiply a value in `unit` by this to get `report_unit`

    @property
    def column(self) -> str:
        """CSV/table column name with its unit, e.g. ``homo [meV]``."""
        return f"{self.key} [{self.report_unit}]"


PROPERTIES: tuple[PropertySpec, ...] = (
    PropertySpec("mu", "Dipole moment", "D", "D", 1.0),
    PropertySpec("alpha", "Isotropic polarizability", "a0^3", "a0^3", 1.0),
    PropertySpec("homo", "HOMO energy", "eV", "meV", 1000.0),
    PropertySpec("lumo", "LUMO energy", "eV", "meV", 1000.0),
    PropertySpec("gap", "HOMO-LUMO gap", "eV", "meV", 1000.0),
    PropertySpec("r2", "Electronic spatial extent", "a0^2", "a0^2", 1.0),
    PropertySpec("zpve", "Zero-point vibrational energy", "eV", "meV", 1000.0),
    PropertySpec("U0", "Atomization energy U0 (0 K)", "eV", "meV", 1000.0),
    PropertySpec("U", "Atomization energy U (298 K)", "eV", "meV", 1000.0),
    PropertySpec("H", "Atomization enthalpy H (298 K)", "eV", "meV", 1000.0),
    PropertySpec("G", "Atomization free energy G (298 K)", "eV", "meV", 1000.0),
    PropertySpec("Cv", "Heat capacity Cv (298 K)", "cal/(mol K)", "cal/(mol K)", 1.0),
)
PROPERTY_KEYS: tuple[str, ...] = tuple(p.key for p in PROPERTIES)
NUM_PROPERTIES = len(PROPERTIES)

# Single-atom reference values at the QM9 level of theory (Hartree; Cv in cal/(mol K)), spec 14.
# Atomization quantities are the molecular total minus the sum of these over the atoms.
ATOM_REFERENCE: dict[str, dict[str, float]] = {
    "U0": {"H": -0.500273, "C": -37.846772, "N": -54.583861, "O": -75.064579, "F": -99.718730},
    "U": {"H": -0.498857, "C": -37.845355, "N": -54.582445, "O": -75.063163, "F": -99.717314},
    "H": {"H": -0.497912, "C": -37.844411, "N": -54.581501, "O": -75.062219, "F": -99.716370},
    "G": {"H": -0.510927, "C": -37.861317, "N": -54.598897, "O": -75.079532, "F": -99.733544},
    "Cv": {e: 2.981 for e in ELEMENTS},
}

# Published reference numbers shown beside ours (spec 9.1 and 9.3).
PUBLISHED_GENERATION = {
    "Data": {"atom_stability": 0.990, "molecule_stability": 0.952, "validity": 0.977, "valid_x_unique": 0.977},
    "EDM": {"atom_stability": 0.987, "molecule_stability": 0.820, "validity": 0.919, "valid_x_unique": 0.907},
    "UniGEM": {"atom_stability": 0.990, "molecule_stability": 0.898, "validity": 0.950, "valid_x_unique": 0.932},
}
# EGNN (Satorras et al. 2021) test MAE in reporting units; the bar UniGEM's property head aims at.
PUBLISHED_EGNN_MAE = {"mu": 0.029, "alpha": 0.071, "homo": 29.0, "lumo": 25.0, "gap": 48.0, "Cv": 0.031}

# Sampling with fewer steps than T: the nucleation steps fall at t = t_n + (T - t_n) u^STEP_SPACING for
# u evenly from 1 to 0 (diffusion.sampler.timesteps). 1 is the even stride; at 100 steps 3 raised the
# shipped model's molecule stability from 55 % to 63 % and validity from 81 % to 87 % (bench/NOTES.md,
# "Step spacing"). The full T-step sampler does not use it.
STEP_SPACING = 3.0

# Conformers RDKit builds for a molecule given by its bonds (a SMILES, a 2D drawing; io.domain.embed_3d), whose
# predictions are averaged (api.predict_molecules): QM9 molecules' properties from their SMILES came 3-22 %
# closer to QM9's values with 20 conformers than with one (bench/NOTES.md, "Conformers of built geometries").
CONFORMERS = 20

# The last step of that build: "xtb" relaxes each MMFF conformer further with GFN2-xTB (io/xtb.py; 0.1-0.2 s a
# conformer), which brought the predicted alpha, HOMO, LUMO, U0 and Cv of QM9 molecules rebuilt from their SMILES
# 16-28 % closer to QM9's values than the MMFF conformers (bench/NOTES.md, "GFN2-xTB geometries"); "mmff" stops at
# the force field (about 18 times faster: bench/build_speed.py).
RELAXATIONS = ("xtb", "mmff")
RELAX = "xtb"
