"""Validity, uniqueness and novelty through RDKit, and the paper's generation metrics (spec 8.3, 9.1).

The RDKit molecule gets one bond wherever the distance rule of spec 8.1 gives an order > 0, with
that order, and every hydrogen as a real atom. A molecule is valid when ``Chem.SanitizeMol``
accepts the *whole* molecule; only then is its largest fragment turned into SMILES (spec 11 item
10), so a disconnected molecule can be valid. Sanitisation may still add implicit hydrogens to an
under-bonded atom, which is why validity can exceed molecule stability.

SMILES keep the hydrogen atoms as written by RDKit (``[H]C([H])([H])[H]`` for methane) by default:
this is the published protocol, and uniqueness and novelty are counted on these strings. Pass
``keep_hydrogens=False`` for the heavy-atom form a chemist reads (``C``).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Geometry import Point3D

from unigem_core.metrics.bonds import bond_order_matrix
from unigem_core.metrics.stability import stability_from_orders
from unigem_core.molecule import Molecule

_BOND_TYPES = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}


@dataclass(frozen=True)
class MoleculeCheck:
    """Every per-molecule verdict of spec 8.2 and 8.3."""

    atom_stable: np.ndarray  # [n] bool, valence allowed
    valence: np.ndarray  # [n] int, each atom's bond-order sum (spec 8.1)
    stable: bool  # every atom stable
    valid: bool  # RDKit sanitises the whole molecule
    smiles: str | None  # canonical SMILES of the largest fragment, when valid


def mol_from_orders(symbols: Sequence[str], positions: np.ndarray, orders: np.ndarray) -> Chem.Mol:
    """Unsanitised RDKit molecule from a [n, n] bond-order matrix, with a 3D conformer (Angstrom)."""
    mol = Chem.RWMol()
    for symbol in symbols:
        mol.AddAtom(Chem.Atom(symbol))
    rows, cols = np.nonzero(np.triu(orders, k=1))
    for i, j in zip(rows.tolist(), cols.tolist()):
        mol.AddBond(i, j, _BOND_TYPES[int(orders[i, j])])
    conformer = Chem.Conformer(len(symbols))
    for i, (x, y, z) in enumerate(np.asarray(positions, dtype=np.float64).reshape(-1, 3).tolist()):
        conformer.SetAtomPosition(i, Point3D(x, y, z))
    mol.AddConformer(conformer, assignId=True)
    return mol.GetMol()


def build_rdkit_mol(symbols: Sequence[str], positions: np.ndarray) -> Chem.Mol:
    """Unsanitised RDKit molecule with explicit hydrogens, bonds by the rule of spec 8.1 (spec 8.3)."""
    return mol_from_orders(symbols, positions, bond_order_matrix(symbols, positions))


def _sanitized(mol: Chem.Mol) -> tuple[Chem.Mol, Chem.Mol] | None:
    """A sanitised copy of mol (the caller's is left as it was) and its largest fragment (the first on ties), or
    None when RDKit cannot sanitise it. Call it under rdBase.BlockLogs()."""
    mol = Chem.Mol(mol)
    try:
        Chem.SanitizeMol(mol)
    except Chem.rdchem.MolSanitizeException:
        return None
    return mol, max(Chem.GetMolFrags(mol, asMols=True), key=lambda fragment: fragment.GetNumAtoms(), default=mol)


def smiles_of_mol(mol: Chem.Mol, keep_hydrogens: bool = True) -> str | None:
    """Spec 8.3: None unless the whole molecule sanitises; else the largest fragment's canonical SMILES."""
    with rdBase.BlockLogs():
        sanitized = _sanitized(mol)
        if sanitized is None:
            return None
        largest = sanitized[1] if keep_hydrogens else Chem.RemoveHs(sanitized[1])
        return Chem.MolToSmiles(largest)


def graph_key(mol: Chem.Mol, exact: bool = False) -> str | None:
    """A molecule's bond graph as one string: canonical SMILES of its largest fragment, heavy atoms only, without
    stereochemistry (two conformers or stereoisomers share it); None when RDKit cannot sanitise the molecule.

    exact (for a molecule whose every hydrogen is an atom, such as one read from a geometry): None unless the
    molecule is one fragment and sanitising gave no atom a hydrogen it lacks, so that the key stands for exactly
    these atoms (validity, spec 8.3, accepts a carbon one hydrogen short as the molecule with that hydrogen).
    """
    with rdBase.BlockLogs():
        sanitized = _sanitized(mol)
        if sanitized is None:
            return None
        whole, largest = sanitized
        if exact and (largest.GetNumAtoms() < whole.GetNumAtoms()
                      or any(atom.GetNumImplicitHs() for atom in whole.GetAtoms())):
            return None
        return Chem.MolToSmiles(Chem.RemoveHs(largest, sanitize=False), isomericSmiles=False)


def to_smiles(symbols: Sequence[str], positions: np.ndarray, keep_hydrogens: bool = True) -> str | None:
    """SMILES of the largest fragment, or None when the molecule is invalid (spec 8.3)."""
    return smiles_of_mol(build_rdkit_mol(symbols, positions), keep_hydrogens)


def check_molecule(symbols: Sequence[str], positions: np.ndarray) -> MoleculeCheck:
    """Stability (spec 8.2) and validity/SMILES (spec 8.3) of one molecule, sharing one bond matrix."""
    orders = bond_order_matrix(symbols, positions)  # [n, n]
    atom_stable = stability_from_orders(symbols, orders)
    smiles = smiles_of_mol(mol_from_orders(symbols, positions, orders))
    return MoleculeCheck(atom_stable, orders.sum(axis=1), bool(atom_stable.all()), smiles is not None, smiles)


def _fraction(count: int, total: int) -> float:
    return count / total if total else 0.0


def generation_metrics(molecules: Sequence[Molecule], training_smiles: set[str] | None = None) -> dict:
    """The paper's generation metrics over a list of molecules, as fractions of 1 (spec 8.2, 8.3, 9.1).

    Atom stability is pooled over all atoms; uniqueness is distinct SMILES among valid molecules over
    the number valid; novelty is the share of those distinct SMILES absent from ``training_smiles``
    (None when no training set is given). ``valid_x_unique`` is the paper's V x U column.
    ``unstable_atoms`` counts the unstable atoms by element and valence, most common first:
    {"C:3": 12, ...} is twelve carbons whose bond orders sum to 3.
    """
    if not molecules:
        raise ValueError("generation_metrics needs at least one molecule")
    checks = [check_molecule(m.symbols, m.positions) for m in molecules]
    unstable = Counter(f"{m.symbols[i]}:{int(c.valence[i])}" for m, c in zip(molecules, checks)
                       for i in np.flatnonzero(~c.atom_stable))
    n_atoms = sum(len(c.atom_stable) for c in checks)
    valid_smiles = [c.smiles for c in checks if c.valid]
    unique_smiles = set(valid_smiles)
    validity = _fraction(len(valid_smiles), len(checks))
    uniqueness = _fraction(len(unique_smiles), len(valid_smiles))
    novelty = None
    if training_smiles is not None:
        novelty = _fraction(len(unique_smiles - set(training_smiles)), len(unique_smiles))
    return {
        "n_molecules": len(checks),
        "atom_stability": _fraction(sum(int(c.atom_stable.sum()) for c in checks), n_atoms),
        "molecule_stability": _fraction(sum(c.stable for c in checks), len(checks)),
        "validity": validity,
        "uniqueness": uniqueness,
        "valid_x_unique": validity * uniqueness,
        "novelty": novelty,
        "unstable_atoms": dict(unstable.most_common()),
    }
