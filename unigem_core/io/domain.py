"""What the model accepts (spec 1: neutral QM9-like molecules of H, C, N, O, F, at most 29 atoms,
every hydrogen explicit, in 3D) and the RDKit steps that complete a molecule to it.

The readers call `check_composition` before any 3D work (cheap refusals first) and
`checked_molecule` on the final geometry; both raise MoleculeInputError with one line.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rdkit import Chem
from rdkit.Chem import AllChem

from unigem_core.constants import CONFORMERS, ELEMENTS, RELAX, RELAXATIONS
from unigem_core.io import xtb
from unigem_core.metrics.rdkit_metrics import graph_key
from unigem_core.molecule import Molecule, MoleculeInputError, check_domain

MIN_SEPARATION = 0.1  # Angstrom; closer atoms are one atom written twice (the shortest bond, H2, is 0.74)
BUILT_3D = "unigem_built_3d"  # set on an RDKit molecule whose coordinates embed_3d built
RELAXED_WITH = "unigem_relaxed_with"  # and the method its conformers were relaxed with (Molecule.relaxation)
# embed_3d's tries, in order: (random starting coordinates, ETKDG's iteration limit; 0 = RDKit's default).
# Random coordinates are the documented fallback for molecules ETKDG finds hard; strained cages such as
# CC12CCC1C1CC2O1 (a QM9 test molecule) or OC1CC23CC(C12)C3=O embed only with a higher iteration limit. Of
# QM9's first 1,000 validation molecules, 9 failed the first two tries and 5 fail all of them. Only the first
# try asks for every conformer; the others ask for one: asking the last tries for 20 conformers of
# OC1CC23CC(C12)C3=O took 134 s instead of 6 (a rigid cage has one conformer anyway).
EMBED_ATTEMPTS = ((False, 0), (True, 0), (False, 5000), (True, 5000))
PRUNE_RMS = 0.1  # A, heavy atoms: ETKDG embeddings closer than this to one kept count as that one
# A GFN2-xTB conformer is left out when it no longer draws the molecule's bonds (_keeps_bonds), in units of the
# sum of the two atoms' covalent radii: a bond stretched past 1.3 (rdDetermineBonds' factor; a C-C past 1.98 A)
# has broken, two unbonded atoms closer than 1.1 (C...C 1.67 A) have bonded. Cross-ring distances of strained
# cages, 1.87-1.97 A C...C in QM9 (bench/NOTES.md, "GFN2-xTB geometries"), lie between the two.
BOND_STRETCH = 1.3
NONBOND_CONTACT = 1.1


@dataclass(frozen=True)
class Build3D:
    """How a molecule given by its bonds (a SMILES, a 2D drawing) gets its 3D geometry: `conformers` ETKDG
    conformers relaxed with MMFF94, then with GFN2-xTB when `relax` is "xtb" (constants.RELAXATIONS)."""

    conformers: int = CONFORMERS
    relax: str = RELAX

    def __post_init__(self) -> None:
        if self.conformers < 1:
            raise ValueError(f"conformers must be at least 1, got {self.conformers}")
        if self.relax not in RELAXATIONS:
            raise ValueError(f"unknown relaxation {self.relax!r}; choose from {', '.join(RELAXATIONS)}")


def check_composition(mol: Chem.Mol) -> list[str]:
    """Refuse what lies outside QM9 before any 3D work; returns warnings. Counts implicit H as atoms."""
    numbers = {atom.GetSymbol(): atom.GetAtomicNum() for atom in mol.GetAtoms()}
    mol.UpdatePropertyCache(strict=False)
    n_atoms = mol.GetNumAtoms() + sum(atom.GetNumImplicitHs() for atom in mol.GetAtoms())
    charge = sum(atom.GetFormalCharge() for atom in mol.GetAtoms())
    if charge and all(s in ELEMENTS for s in numbers):
        raise MoleculeInputError(f"has net charge {charge:+d}; the model knows only neutral molecules (QM9)")
    check_domain(sorted(numbers, key=numbers.get), n_atoms)
    if any(atom.GetNumRadicalElectrons() for atom in mol.GetAtoms()):
        return ["has unpaired electrons (radical); QM9 holds only closed-shell molecules"]
    return []


def checked_molecule(mol: Chem.Mol) -> Molecule:
    """The final geometry: finite coordinates and no two atoms on top of each other. A molecule embed_3d built
    keeps all its conformers (Molecule.conformers); any other is read at its first conformer."""
    check_composition(mol)
    if mol.GetNumConformers() == 0:
        raise MoleculeInputError("has no coordinates")
    built = mol.HasProp(BUILT_3D) and mol.GetBoolProp(BUILT_3D)
    conformers = [c.GetPositions() for c in mol.GetConformers()] if built else [mol.GetConformer().GetPositions()]
    for positions in conformers:  # [n, 3]
        _check_positions(positions)
    return Molecule(tuple(atom.GetSymbol() for atom in mol.GetAtoms()), conformers[0], built_3d=built,
                    bond_graph=graph_key(mol, exact=True) if mol.GetNumBonds() else None,
                    conformers=np.stack(conformers) if len(conformers) > 1 else None,
                    relaxation=mol.GetProp(RELAXED_WITH) if built and mol.HasProp(RELAXED_WITH) else None)


def _check_positions(positions: np.ndarray) -> None:
    bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
    if bad.size:
        raise MoleculeInputError(f"atom {bad[0] + 1} has non-finite coordinates")
    distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1)  # [n, n]
    close = np.argwhere(np.triu(distances < MIN_SEPARATION, k=1))
    if close.size:
        i, j = close[0]
        raise MoleculeInputError(f"atoms {i + 1} and {j + 1} overlap ({distances[i, j]:.3f} A apart)")


def embed_3d(mol: Chem.Mol, seed: int, how: Build3D = Build3D()) -> tuple[Chem.Mol, list[str]]:
    """Up to `how.conformers` 3D conformers with explicit H, lowest energy first, and warnings: ETKDGv3 embeddings
    from a fixed seed (near-duplicates pruned), each relaxed with MMFF94 (UFF where MMFF lacks parameters), then
    with GFN2-xTB if `how.relax` says so (io/xtb.py)."""
    mol = Chem.AddHs(mol)
    for attempt, (random_coords, iterations) in enumerate(EMBED_ATTEMPTS):
        params = AllChem.ETKDGv3()
        params.randomSeed = seed + 1  # under randomSeed 0, RDKit 2026.09 embeds every conformer alike (measured)
        params.pruneRmsThresh = PRUNE_RMS
        params.useRandomCoords = random_coords
        params.maxIterations = iterations
        if len(AllChem.EmbedMultipleConfs(mol, how.conformers if attempt == 0 else 1, params)):
            break
    else:
        raise MoleculeInputError("could not build a 3D conformer")
    if AllChem.MMFFHasAllMoleculeParams(mol):
        energies, method = [e for _, e in AllChem.MMFFOptimizeMoleculeConfs(mol, maxIters=2000)], "MMFF94"
    elif AllChem.UFFHasAllMoleculeParams(mol):
        energies, method = [e for _, e in AllChem.UFFOptimizeMoleculeConfs(mol, maxIters=2000)], "UFF"
    else:
        energies, method = [0.0] * mol.GetNumConformers(), None
    warnings = []
    if how.relax == "xtb":
        energies, method, warnings = _relax_with_xtb(mol, energies, method)
    conformers = list(mol.GetConformers())
    ordered = [Chem.Conformer(conformers[k]) for k in np.argsort(energies, kind="stable")]
    mol.RemoveAllConformers()
    for conformer in ordered:
        mol.AddConformer(conformer, assignId=True)
    mol.SetBoolProp(BUILT_3D, True)
    if method:
        mol.SetProp(RELAXED_WITH, method)
    return mol, warnings


def _relax_with_xtb(mol: Chem.Mol, energies: list[float],
                    method: str | None) -> tuple[list[float], str | None, list[str]]:
    """Relax every conformer of `mol` in place with GFN2-xTB -> (energies in kcal/mol, method, warnings).

    A conformer whose relaxation fails or changes the bonds is dropped; if none survives, the force field's
    conformers stay, with a warning saying why."""
    numbers = np.array([atom.GetAtomicNum() for atom in mol.GetAtoms()])
    unpaired = sum(atom.GetNumRadicalElectrons() for atom in mol.GetAtoms())
    relaxed, failures = [], []
    for conformer in mol.GetConformers():
        start = conformer.GetPositions()  # [n, 3]
        try:
            positions, energy = xtb.relax(numbers, start, unpaired)
        except xtb.RelaxationError as exc:
            failures.append(str(exc))
            continue
        if not _keeps_bonds(mol, positions) and _keeps_bonds(mol, start):
            failures.append(f"{xtb.METHOD} changed the bonds")
            continue
        relaxed.append((conformer.GetId(), positions, energy * xtb.HARTREE_KCAL))
    if not relaxed:
        kept = f"kept the {method} geometry" if method else "kept the embedded geometry"
        return energies, method, [f"{failures[0]}; {kept}"]
    warnings = [f"{failures[0]} ({len(failures)} of {mol.GetNumConformers()} conformers, left out)"] if failures else []
    kept_ids = {k for k, _, _ in relaxed}
    for conformer_id in [c.GetId() for c in mol.GetConformers() if c.GetId() not in kept_ids]:
        mol.RemoveConformer(conformer_id)
    for conformer_id, positions, _ in relaxed:
        conformer = mol.GetConformer(conformer_id)
        for i, position in enumerate(positions):
            conformer.SetAtomPosition(i, position.tolist())
    return [energy for _, _, energy in relaxed], f"{method} + {xtb.METHOD}" if method else xtb.METHOD, warnings


def _keeps_bonds(mol: Chem.Mol, positions: np.ndarray) -> bool:
    """Whether `positions` ([n, 3]) draw `mol`'s own bonds: each bonded pair within BOND_STRETCH times the sum of
    RDKit's covalent radii and no other pair within NONBOND_CONTACT times it. Reading bonds from distances alone
    (rdDetermineBonds, 1.3 times) would take the cross-ring distances of a strained cage for new bonds."""
    table = Chem.GetPeriodicTable()
    radii = np.array([table.GetRcovalent(atom.GetAtomicNum()) for atom in mol.GetAtoms()])
    limit = radii[:, None] + radii[None]  # [n, n]
    distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1)  # [n, n]
    bonded = Chem.GetAdjacencyMatrix(mol).astype(bool)  # [n, n]
    apart = ~bonded & ~np.eye(len(radii), dtype=bool)
    return bool(np.all(distances[bonded] <= BOND_STRETCH * limit[bonded])
                and np.all(distances[apart] > NONBOND_CONTACT * limit[apart]))


def add_hydrogens(mol: Chem.Mol) -> Chem.Mol:
    """Add the missing hydrogens with coordinates; AddHs places them by each atom's hybridisation."""
    sanitized = Chem.Mol(mol)
    if Chem.SanitizeMol(sanitized, catchErrors=True) == Chem.SanitizeFlags.SANITIZE_NONE:
        return Chem.AddHs(sanitized, addCoords=True)
    mol = Chem.Mol(mol)  # odd valences: guess hybridisation without the full sanitising
    mol.UpdatePropertyCache(strict=False)
    Chem.FastFindRings(mol)
    Chem.SetHybridization(mol)
    return Chem.AddHs(mol, addCoords=True)
