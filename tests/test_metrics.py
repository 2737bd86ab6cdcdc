"""Known answers for the generation metrics (spec 8): bond table, stability, validity, the paper's Data row."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rdkit import Chem, rdBase

from unigem_core.metrics import (
    atom_stability,
    bond_order,
    bond_order_matrix,
    build_rdkit_mol,
    generation_metrics,
    is_stable,
    reference_molecules,
    to_smiles,
    valence_problems,
)
from unigem_core.molecule import Molecule

# ---------------------------------------------------------------------------------------------
# Hand-built molecules with textbook geometries (Angstrom).

_TETRAHEDRON = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)  # unit vectors


def methane(offset=(0.0, 0.0, 0.0)) -> Molecule:
    positions = np.vstack([[0, 0, 0], 1.09 * _TETRAHEDRON]) + np.asarray(offset)
    return Molecule(("C", "H", "H", "H", "H"), positions, name="methane")


def ethene() -> Molecule:
    c, h = 1.33 / 2, 1.09
    dx, dy = h * np.cos(np.radians(60)), h * np.sin(np.radians(60))  # H-C=C angle 120 degrees
    positions = [[-c, 0, 0], [c, 0, 0], [-c - dx, dy, 0], [-c - dx, -dy, 0], [c + dx, dy, 0], [c + dx, -dy, 0]]
    return Molecule(("C", "C", "H", "H", "H", "H"), positions, name="ethene")


def ethyne() -> Molecule:
    positions = [[-0.60, 0, 0], [0.60, 0, 0], [-1.66, 0, 0], [1.66, 0, 0]]
    return Molecule(("C", "C", "H", "H"), positions, name="ethyne")


def water(offset=(0.0, 0.0, 0.0)) -> Molecule:
    half = np.radians(104.5 / 2)
    positions = np.array([[0, 0, 0], [0.96 * np.sin(half), 0.96 * np.cos(half), 0],
                          [-0.96 * np.sin(half), 0.96 * np.cos(half), 0]]) + np.asarray(offset)
    return Molecule(("O", "H", "H"), positions, name="water")


def methyl() -> Molecule:
    """Methane with one hydrogen taken away: carbon has valence 3."""
    m = methane()
    return Molecule(m.symbols[:4], m.positions[:4], name="methyl")


def pentavalent_carbon() -> Molecule:
    """CH5 as a trigonal bipyramid: H-H distances (>= 1.54 A) stay unbonded, C has valence 5."""
    directions = [[0, 0, 1], [0, 0, -1]] + [[np.cos(a), np.sin(a), 0] for a in np.radians([0, 120, 240])]
    return Molecule(("C",) + ("H",) * 5, np.vstack([[0, 0, 0], 1.09 * np.array(directions)]), name="CH5")


def explicit_h_smiles(smiles: str) -> str:
    """Canonical SMILES with every hydrogen as an atom: the form the metrics use (spec 8.3)."""
    return Chem.MolToSmiles(Chem.AddHs(Chem.MolFromSmiles(smiles)))


# ---------------------------------------------------------------------------------------------
# Bond orders (spec 8.1)

@pytest.mark.parametrize("a, b, distance, expected", [
    ("C", "C", 1.54, 1), ("C", "C", 1.34, 2), ("C", "C", 1.20, 3),
    ("C", "C", 1.635, 1), ("C", "C", 1.645, 0),  # single threshold 154 + 10 pm
    ("C", "C", 1.385, 2), ("C", "C", 1.395, 1),  # double threshold 134 + 5 pm
    ("C", "C", 1.225, 3), ("C", "C", 1.235, 2),  # triple threshold 120 + 3 pm
    ("C", "H", 1.09, 1), ("H", "C", 1.09, 1), ("C", "H", 2.0, 0),
    ("C", "O", 1.21, 2), ("C", "O", 1.13, 3), ("C", "N", 1.16, 3), ("N", "N", 1.10, 3),
    ("O", "O", 1.00, 2),  # O=O exists but no triple entry
    ("N", "O", 1.00, 2),  # N=O exists but no triple entry
    ("F", "F", 1.00, 1), ("H", "H", 0.50, 1), ("C", "F", 1.00, 1),  # no double entry: at most single
    ("H", "H", 0.85, 0), ("O", "H", 0.96, 1),
    ("C", "Cl", 1.70, 0), ("X", "C", 1.00, 0),  # pairs outside the QM9 table never bond
])
def test_bond_order_known_answers(a, b, distance, expected):
    assert bond_order(a, b, distance) == expected


_SYMBOLS = st.sampled_from(["H", "C", "N", "O", "F", "Cl"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_SYMBOLS, st.tuples(*[st.floats(-1.5, 1.5)] * 3)), min_size=1, max_size=8))
def test_bond_order_matrix_equals_pairwise_rule(atoms):
    symbols = [s for s, _ in atoms]
    positions = np.array([p for _, p in atoms], dtype=np.float64)
    orders = bond_order_matrix(symbols, positions)
    assert orders.shape == (len(symbols),) * 2
    assert np.array_equal(orders, orders.T) and not np.diagonal(orders).any()
    for i in range(len(symbols)):
        for j in range(i + 1, len(symbols)):
            distance = np.linalg.norm(positions[i] - positions[j])
            assert orders[i, j] == bond_order(symbols[i], symbols[j], distance)


def test_bond_order_matrix_is_invariant_to_rotation_and_translation():
    m = ethene()
    rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    moved = m.positions @ rotation.T + np.array([3.0, -2.0, 7.0])
    assert np.array_equal(bond_order_matrix(m.symbols, moved), bond_order_matrix(m.symbols, m.positions))


def test_bond_order_matrix_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        bond_order_matrix(["C", "H"], np.zeros((3, 3)))


# ---------------------------------------------------------------------------------------------
# Stability (spec 8.2) and RDKit validity (spec 8.3) on hand-built molecules

@pytest.mark.parametrize("build, heavy_smiles", [(methane, "C"), (ethene, "C=C"), (ethyne, "C#C"), (water, "O")])
def test_textbook_molecules_are_stable_and_valid(build, heavy_smiles):
    m = build()
    assert atom_stability(m.symbols, m.positions).all()
    assert is_stable(m.symbols, m.positions)
    assert to_smiles(m.symbols, m.positions) == explicit_h_smiles(heavy_smiles)
    assert to_smiles(m.symbols, m.positions, keep_hydrogens=False) == heavy_smiles


def test_build_rdkit_mol_has_explicit_hydrogens_bond_orders_and_conformer():
    m = ethene()
    mol = build_rdkit_mol(m.symbols, m.positions)
    assert [a.GetSymbol() for a in mol.GetAtoms()] == list(m.symbols)
    orders = sorted(b.GetBondTypeAsDouble() for b in mol.GetBonds())
    assert orders == [1.0, 1.0, 1.0, 1.0, 2.0]
    assert np.allclose(mol.GetConformer().GetPositions(), m.positions)


def test_carbon_missing_a_hydrogen_is_unstable_but_sanitizes():
    m = methyl()
    assert atom_stability(m.symbols, m.positions).tolist() == [False, True, True, True]
    assert not is_stable(m.symbols, m.positions)
    # RDKit fills the gap with an implicit hydrogen: this is why validity exceeds molecule stability.
    assert to_smiles(m.symbols, m.positions) == "[H]C([H])[H]"


def test_overbonded_carbon_is_unstable_and_invalid():
    m = pentavalent_carbon()
    assert atom_stability(m.symbols, m.positions).tolist() == [False] + [True] * 5
    assert to_smiles(m.symbols, m.positions) is None


def test_valence_problems_name_each_unstable_atom_and_why():
    assert valence_problems(methane().symbols, methane().positions) == []
    [under] = valence_problems(methyl().symbols, methyl().positions)
    assert (under.index, under.symbol, under.valence, under.allowed) == (0, "C", 3, (4,))
    assert under.label == "C1" and str(under) == "C1 has valence 3 (C takes 4)"
    ch5 = pentavalent_carbon()
    assert [str(p) for p in valence_problems(ch5.symbols, ch5.positions)] == ["C1 has valence 5 (C takes 4)"]
    # an element outside the valence table is never stable, and says so
    symbols, positions = ("O", "H", "H", "Xe"), np.vstack([water().positions, [[4.0, 0.0, 0.0]]])
    [odd] = valence_problems(symbols, positions)
    assert odd.index == 3 and str(odd) == "Xe4 has valence 0 (no allowed valence is tabulated for Xe)"
    # the same atoms as atom_stability flags, in atom order
    assert [p.index for p in valence_problems(symbols, positions)] == np.flatnonzero(
        ~atom_stability(symbols, positions)).tolist()


def test_disconnected_molecule_is_valid_and_reports_its_largest_fragment():
    a, b = methane(), water(offset=(5.0, 0.0, 0.0))
    symbols, positions = b.symbols + a.symbols, np.vstack([b.positions, a.positions])  # small fragment first
    assert is_stable(symbols, positions)
    assert to_smiles(symbols, positions) == explicit_h_smiles("C")


def test_invalid_fragment_makes_the_whole_molecule_invalid():
    """Spec 11 item 10: sanitise the whole molecule before taking the largest fragment."""
    a, b = ethene(), pentavalent_carbon()
    positions = np.vstack([a.positions, b.positions + np.array([8.0, 0.0, 0.0])])
    assert to_smiles(a.symbols + b.symbols, positions) is None


def test_rdkit_logging_is_silenced_only_during_the_call():
    before = rdBase.LogStatus()
    m = pentavalent_carbon()
    assert to_smiles(m.symbols, m.positions) is None
    assert rdBase.LogStatus() == before


# ---------------------------------------------------------------------------------------------
# Generation metrics arithmetic (spec 8.2, 8.3)

def test_generation_metrics_arithmetic():
    molecules = [methane(), methane(offset=(1.0, 2.0, 3.0)), ethene(), water(), pentavalent_carbon()]
    result = generation_metrics(molecules, training_smiles={explicit_h_smiles("C"), "CCO"})
    assert result["n_molecules"] == 5
    assert result["atom_stability"] == pytest.approx(24 / 25)  # only the CH5 carbon fails, pooled over 5+5+6+3+6 atoms
    assert result["molecule_stability"] == pytest.approx(4 / 5)
    assert result["unstable_atoms"] == {"C:5": 1}
    assert result["validity"] == pytest.approx(4 / 5)
    assert result["uniqueness"] == pytest.approx(3 / 4)  # the two methanes count once
    assert result["valid_x_unique"] == pytest.approx(3 / 5)
    assert result["novelty"] == pytest.approx(2 / 3)  # ethene and water are new, methane is not


def test_generation_metrics_without_training_set_has_no_novelty():
    assert generation_metrics([water()])["novelty"] is None
    with pytest.raises(ValueError):
        generation_metrics([])


# ---------------------------------------------------------------------------------------------
# Reference sets

@pytest.fixture(scope="module")
def qm9_test_molecules() -> list[Molecule]:
    try:
        return reference_molecules("test", n=2000)
    except FileNotFoundError as error:  # the QM9 data package is not installed
        pytest.skip(str(error))


def test_reference_molecules_are_a_deterministic_subset(qm9_test_molecules):
    again = reference_molecules("test", n=2000, seed=0)
    other = reference_molecules("test", n=2000, seed=1)
    names = [m.name for m in qm9_test_molecules]
    assert len(set(names)) == 2000
    assert names == [m.name for m in again]
    assert names != [m.name for m in other]
    assert all(1 <= m.n_atoms <= 29 for m in qm9_test_molecules)


def test_bond_order_matrix_matches_the_scalar_rule_on_real_molecules(qm9_test_molecules):
    for m in qm9_test_molecules[:20]:
        orders = bond_order_matrix(m.symbols, m.positions)
        for i in range(m.n_atoms):
            for j in range(m.n_atoms):
                if i != j:
                    distance = np.linalg.norm(m.positions[i] - m.positions[j])
                    assert orders[i, j] == bond_order(m.symbols[i], m.symbols[j], distance)


def test_real_qm9_reproduces_the_papers_data_row(qm9_test_molecules):
    """Spec 9.1 "Data" row: atom stability 99.0 %, molecule stability 95.2 %, validity 97.7 %."""
    result = generation_metrics(qm9_test_molecules)
    assert result["atom_stability"] == pytest.approx(0.990, abs=0.01)
    assert result["molecule_stability"] == pytest.approx(0.952, abs=0.01)
    assert result["validity"] == pytest.approx(0.977, abs=0.01)
    assert result["uniqueness"] > 0.99  # QM9 molecules are distinct
