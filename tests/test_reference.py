"""QM9 as a reference (unigem_core.metrics.reference): the cached SMILES, novelty's training set, graph keys."""
from __future__ import annotations

from rdkit import Chem

from unigem_core.data.qm9 import SPLIT_SIZES, split_indices
from unigem_core.io import read_smiles
from unigem_core.metrics import graph_key
from unigem_core.metrics import reference
from unigem_core.metrics.reference import QM9Strings

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
