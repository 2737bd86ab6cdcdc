"""QM9 as a reference (unigem_core.metrics.reference): the cached SMILES, novelty's training set, the lookup."""
from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem

from unigem_core.constants import PROPERTIES
from unigem_core.data.qm9 import SPLIT_SIZES, split_indices, symbols_of
from unigem_core.io import read_smiles
from unigem_core.metrics import graph_key
from unigem_core.metrics import reference
from unigem_core.metrics.reference import QM9Entry, QM9Strings
from unigem_core.molecule import Molecule

N_QM9 = sum(SPLIT_SIZES.values())


def test_training_smiles_are_the_training_rows_of_the_cache(tmp_path, monkeypatch):
    """The cache holds every molecule in QM9's order; novelty's set is its training rows' valid SMILES, built once."""
    calls = []
    split = split_indices(N_QM9)
    marked = {int(split["train"][0]): "[H]C([H])([H])[H]", int(split["train"][1]): "",  # the second is invalid
              int(split["test"][0]): "[H]O[H]"}  # a test molecule: never in the training set

    def fake_build(data_dir, progress):
        calls.append(data_dir)
        return [QM9Strings(marked.get(r, ""), "", "") for r in range(N_QM9)]

    monkeypatch.setattr(reference, "build_qm9_strings", fake_build)
    assert reference.training_smiles(tmp_path, progress=False) == {"[H]C([H])([H])[H]"}
    assert reference.smiles_cache_path(tmp_path).exists()
    assert reference.training_smiles(tmp_path, progress=False) == {"[H]C([H])([H])[H]"}
    assert reference.qm9_strings(tmp_path)[int(split["test"][0])].smiles == "[H]O[H]"
    assert len(calls) == 1


def test_graph_key_ignores_hydrogens_stereochemistry_and_geometry():
    with_stereo = Chem.MolFromSmiles("C[C@H](O)C=C")
    assert graph_key(with_stereo) == graph_key(Chem.MolFromSmiles("CC(O)C=C")) == graph_key(Chem.AddHs(with_stereo))
    assert graph_key(Chem.MolFromSmiles("c1ccccc1")) == graph_key(Chem.MolFromSmiles("C1=CC=CC=C1"))
    assert graph_key(Chem.MolFromSmiles("CCO.O")) == "CCO"  # the largest fragment, as for novelty
    assert graph_key(Chem.AddHs(Chem.MolFromSmiles("CCO.O")), exact=True) is None  # exactly these atoms: one fragment
    methyl = Chem.RWMol(Chem.AddHs(Chem.MolFromSmiles("C")))
    methyl.RemoveAtom(4)  # a carbon one hydrogen short, which sanitising would complete
    assert graph_key(methyl) == "C" and graph_key(methyl, exact=True) is None
    assert read_smiles("CC(O)C=C").bond_graph == graph_key(with_stereo)
    assert graph_key(Chem.MolFromSmiles("C(C)(C)(C)(C)C", sanitize=False)) is None  # a five-valent carbon


def _moved(molecule: Molecule, seed: int) -> Molecule:
    """The same molecule with its atoms reordered, rotated, shifted and jiggled by 0.001 A."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(molecule.n_atoms)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))  # a random orthogonal matrix
    positions = molecule.positions[order] @ q.T + rng.normal(size=3) + rng.normal(scale=0.001, size=(molecule.n_atoms, 3))
    return Molecule([molecule.symbols[k] for k in order], positions)


def test_lookup_finds_qm9_molecules_from_their_geometry_in_any_frame(small_qm9):
    lookup, data = small_qm9
    found = 0
    for r in range(len(data)):
        molecule = Molecule(symbols_of(data.types[r]), data.positions[r, :data.n_atoms[r]])
        entries = lookup.find(_moved(molecule, seed=r))
        numbers = [e.number for e in entries]
        if graph_key(reference.build_rdkit_mol(molecule.symbols, molecule.positions), exact=True) is None:
            continue  # QM9's few molecules that the bond rule cannot read are found only by their SMILES
        found += 1
        assert int(data.index[r]) in numbers
        entry = entries[numbers.index(int(data.index[r]))]
        assert entry.split == "test" and entry.smiles == str(data.smiles[r])
        assert entry.properties == pytest.approx({p.key: v * p.report_scale for p, v in zip(PROPERTIES, data.targets[r])})
    assert found >= 0.9 * len(data)


def test_lookup_finds_a_typed_smiles_by_its_bonds_where_the_built_geometry_misleads(small_qm9):
    """A force-field geometry can read as another graph under the bond rule (aromatic rings): the typed bonds find it."""
    lookup, data = small_qm9
    for r in range(len(data)):
        built = read_smiles(str(data.smiles[r]))
        assert int(data.index[r]) in [e.number for e in lookup.find(built)], data.smiles[r]
    assert lookup.find(read_smiles("O=C1OC(=O)C=C1")) == []  # maleic anhydride: not among these 40


def test_lookup_wants_exactly_the_molecules_atoms(small_qm9):
    """A geometry one hydrogen short is valid (sanitising completes it) but is not QM9's molecule: no DFT answer."""
    lookup, data = small_qm9
    r = next(r for r in range(len(data)) if lookup.find(Molecule(symbols_of(data.types[r]),
                                                                  data.positions[r, :data.n_atoms[r]])))
    symbols, positions = symbols_of(data.types[r]), data.positions[r, :data.n_atoms[r]]
    h = symbols.index("H")
    short = Molecule(symbols[:h] + symbols[h + 1:], np.delete(positions, h, axis=0))
    assert reference.smiles_of_mol(reference.build_rdkit_mol(short.symbols, short.positions)) is not None  # valid
    assert lookup.find(short) == []
    assert lookup.find_keys([None, ""]) == []


def test_entry_label_names_the_split():
    entry = QM9Entry(1234, "train", "CCO", {})
    assert entry.label == "QM9 #1234 (training split)"
    assert QM9Entry(7, "valid", "C", {}).label == "QM9 #7 (validation split)"


def test_lookup_wants_one_of_everything_per_molecule():
    with pytest.raises(ValueError, match="per molecule"):
        reference.QM9Lookup([QM9Strings("", "", "")], np.array([1, 2]), np.array(["C", "N"]), np.zeros((2, 12)),
                            ["train", "train"])


def test_qm9_comparison_measures_predictions_against_dft_values(small_qm9):
    lookup, data = small_qm9
    molecules = []
    for r in range(4):
        dft = {p.key: v * p.report_scale for p, v in zip(PROPERTIES, data.targets[r])}
        molecules.append(Molecule(symbols_of(data.types[r]), data.positions[r, :data.n_atoms[r]],
                                  properties={k: v + (1.0 if r % 2 else -3.0) for k, v in dft.items()}))
    outsider = read_smiles("O=C1OC(=O)C=C1")  # valid, not among these 40
    outsider.properties = {p.key: 0.0 for p in PROPERTIES}
    tetrahedron = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)
    broken = Molecule(["N", "H", "H", "H", "H"], np.vstack([[0, 0, 0], 1.01 * tetrahedron]))  # neutral NH4: invalid
    result = reference.qm9_comparison(molecules + [outsider, broken], lookup)
    assert result["n_valid"] == 5 and result["n_compared"] == result["n_unseen"] == 4
    assert result["in_qm9"] == pytest.approx(0.8) and result["in_training_split"] == 0.0
    assert result["mae_vs_dft"] == pytest.approx({p.key: 2.0 for p in PROPERTIES})  # errors -3, +1, -3, +1
    assert result["mae_vs_dft_unseen"] == result["mae_vs_dft"]
    empty = reference.qm9_comparison([broken], lookup)
    assert empty["in_qm9"] is None and empty["mae_vs_dft"] is None
