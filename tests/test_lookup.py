"""QM9's own answer (unigem_core.metrics.lookup): entries by bond graph, the most similar molecules, and how
generated molecules compare with QM9's DFT values."""
from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem

from unigem_core.constants import PROPERTIES
from unigem_core.data.qm9 import symbols_of
from unigem_core.io import read_smiles
from unigem_core.metrics import build_rdkit_mol, graph_key
from unigem_core.metrics import lookup as lookup_module
from unigem_core.metrics.lookup import QM9Entry, QM9Lookup, fingerprint, qm9_comparison
from unigem_core.metrics.rdkit_metrics import smiles_of_mol
from unigem_core.metrics.reference import QM9Strings
from unigem_core.molecule import Molecule


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
        if graph_key(build_rdkit_mol(molecule.symbols, molecule.positions), exact=True) is None:
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
        built = read_smiles(str(data.smiles[r]), conformers=1, relax="mmff")  # the force field's, as the rule reads
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
    assert smiles_of_mol(build_rdkit_mol(short.symbols, short.positions)) is not None  # valid
    assert lookup.find(short) == []
    assert lookup.find_keys([None, ""]) == []


def test_entry_label_names_the_split():
    entry = QM9Entry(1234, "train", "CCO", {})
    assert entry.label == "QM9 #1234 (training split)"
    assert QM9Entry(7, "valid", "C", {}).label == "QM9 #7 (validation split)"


def test_lookup_wants_one_of_everything_per_molecule():
    with pytest.raises(ValueError, match="per molecule"):
        QM9Lookup([QM9Strings("", "", "")], np.array([1, 2]), np.array(["C", "N"]), np.zeros((2, 12)),
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
    result = qm9_comparison(molecules + [outsider, broken], lookup)
    assert result["n_valid"] == 5 and result["n_compared"] == result["n_unseen"] == 4
    assert result["in_qm9"] == pytest.approx(0.8) and result["in_training_split"] == 0.0
    assert result["mae_vs_dft"] == pytest.approx({p.key: 2.0 for p in PROPERTIES})  # errors -3, +1, -3, +1
    assert result["mae_vs_dft_unseen"] == result["mae_vs_dft"]
    empty = qm9_comparison([broken], lookup)
    assert empty["in_qm9"] is None and empty["mae_vs_dft"] is None


def test_closest_ranks_qm9_by_fingerprint_similarity(small_qm9):
    """A molecule QM9 holds is its own closest (Tanimoto 1); a close analogue finds the molecule it came from."""
    lookup, data = small_qm9
    r = 5
    itself = lookup.closest(read_smiles(str(data.smiles[r])), k=3)
    assert itself[0].tanimoto == 1.0 and itself[0].entry.number == int(data.index[r])
    assert [s.tanimoto for s in itself] == sorted((s.tanimoto for s in itself), reverse=True)
    assert all(0.0 <= s.tanimoto < 1.0 for s in itself[1:])
    for s in itself:  # the ranking's numbers are the Tanimoto similarity of the two fingerprints
        a = np.unpackbits(fingerprint(graph_key(Chem.MolFromSmiles(str(data.smiles[r]))))).astype(bool)
        b = np.unpackbits(fingerprint(graph_key(Chem.MolFromSmiles(s.entry.smiles)))).astype(bool)
        assert s.tanimoto == pytest.approx((a & b).sum() / (a | b).sum())
    unread = QM9Lookup([QM9Strings("", "", "")], np.array([1]), np.array(["C"]), np.zeros((1, 12)), ["test"])
    assert unread.closest(read_smiles("CCO")) == []  # a lookup without fingerprints ranks nothing


def test_fingerprints_are_cached_once(tmp_path, monkeypatch):
    strings = [QM9Strings("", "", "CCO"), QM9Strings("", "", ""), QM9Strings("", "", "c1ccccc1")]
    first = lookup_module.qm9_fingerprints(strings, tmp_path)
    assert first.shape == (3, lookup_module.FINGERPRINT_BITS // 8) and first[0].any() and not first[1].any()
    monkeypatch.setattr(lookup_module, "fingerprint", lambda key: pytest.fail("recomputed"))
    assert (lookup_module.qm9_fingerprints(strings, tmp_path) == first).all()
