"""The engine's geometry refinement: it moves RDKit's force-field geometries towards QM9's DFT ones, leaves DFT
geometries nearly alone, and is what Predict applies to the molecules RDKit built (and only to those)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from unigem_core import api
from unigem_core.constants import PROPERTY_KEYS
from unigem_core.data.qm9 import load_split, symbols_of
from unigem_core.io import read_smiles
from unigem_core.molecule import Molecule, Record


@pytest.fixture(scope="module")
def engine():
    return api.load_model(device="cpu")


def rms_shift(a: Molecule, b: Molecule) -> float:
    x, y = a.positions - a.positions.mean(0), b.positions - b.positions.mean(0)
    return float(np.sqrt(((x - y) ** 2).sum(1).mean()))


def test_refinement_moves_built_geometries_and_leaves_dft_ones_nearly_alone(engine):
    data = load_split("test")
    dft = [Molecule(symbols_of(data.types[i]), data.positions[i, :data.n_atoms[i]]) for i in range(12)]
    built = [read_smiles(str(data.smiles[i]), conformers=1) for i in range(12)]  # as Predict builds, one conformer
    shifts = {}
    for name, molecules in (("dft", dft), ("built", built)):
        refined = api.refine_geometries(engine, molecules)
        assert [m.symbols for m in refined] == [m.symbols for m in molecules]  # atoms and their order kept
        assert all(abs(m.positions.mean(0)).max() < 1e-5 for m in refined)  # centred, like every model input
        shifts[name] = np.mean([rms_shift(a, b) for a, b in zip(molecules, refined)])
    assert shifts["dft"] < 0.03 and shifts["built"] > 2 * shifts["dft"]  # measured: 0.008 and 0.034 A
    assert refined[0].built_3d and refined[0].name == built[0].name


def test_predict_refines_only_the_geometries_rdkit_built(engine):
    ethanol = read_smiles("CCO", name="ethanol")
    given = Molecule(ethanol.symbols, ethanol.positions, name="as given")  # the same coordinates, from a file
    records = [Record(1, "ethanol", ethanol), Record(2, "as given", given)]
    refined, given_row = api.predict_records(engine, records)
    plain, _ = api.predict_records(engine, records, refine_built=False)
    assert (refined.geometry, given_row.geometry, plain.geometry) == (
        "built (MMFF94 + GFN2-xTB), refined by the model", "given", "built (MMFF94 + GFN2-xTB)")
    alone = api.predict_properties(engine, api.refine_geometries(engine, [ethanol]))[0]
    assert refined.properties == pytest.approx(alone, rel=1e-5)  # a batch of one rounds a little differently
    assert given_row.properties == pytest.approx(plain.properties, rel=1e-5)
    assert plain.properties == pytest.approx(api.predict_properties(engine, [ethanol])[0], rel=1e-5)
    assert refined.properties != pytest.approx(plain.properties, rel=1e-4)


def test_a_built_molecule_gets_the_mean_and_range_over_its_conformers(engine):
    glycerol = read_smiles("OCC(O)CO", name="glycerol")
    given = Molecule(glycerol.symbols, glycerol.positions, name="given")  # its first conformer, from a file
    built, single = api.predict_records(engine, [Record(1, "glycerol", glycerol), Record(2, "given", given)])
    each = api.predict_properties(engine, api.refine_geometries(
        engine, [replace(glycerol, positions=x, conformers=None) for x in glycerol.conformers]))
    assert built.conformers == len(glycerol.conformers) > 1 and single.conformers == 1 and single.ranges is None
    for key, value in built.properties.items():
        values = [e[key] for e in each]
        assert value == pytest.approx(np.mean(values), rel=1e-4, abs=1e-6)
        assert built.ranges[key] == pytest.approx((min(values), max(values)), rel=1e-4, abs=1e-6)
    low, high = built.ranges["mu"]
    assert high - low > 0.3  # the dipole hangs on the conformer (measured: 1.3 to 3.5 D)
    rows = api.predictions_table([built, single], ranges=True)
    assert rows[0]["conformers"] == built.conformers and rows[1]["conformers"] == 1
    assert (rows[0]["min mu [D]"], rows[0]["max mu [D]"]) == (low, high) and rows[1]["min mu [D]"] is None
    assert "min mu [D]" not in api.predictions_table([built])[0]


def test_refinement_checks_its_arguments(engine):
    with pytest.raises(ValueError, match="1 <= steps <= t_from"):
        api.refine_geometries(engine, [read_smiles("C")], t_from=2, steps=3)


def test_cli_predict_refines_unless_told_not_to(engine, tmp_path):
    import csv

    from unigem_core.cli import main

    smiles = tmp_path / "m.smi"
    smiles.write_text("CCO ethanol\n")
    rows = {}
    for key, flag in ((False, []), (True, ["--no-refine"]), ("mmff", ["--relax", "mmff"])):
        out = tmp_path / f"p{len(flag)}.csv"
        assert main(["predict", str(smiles), "--out", str(out), *flag]) == 0
        rows[key] = next(csv.DictReader(open(out)))
    assert rows[False]["geometry"] == "built (MMFF94 + GFN2-xTB), refined by the model"
    assert rows[True]["geometry"] == "built (MMFF94 + GFN2-xTB)"
    assert rows["mmff"]["geometry"] == "built (MMFF94), refined by the model"
    assert float(rows["mmff"]["gap [meV]"]) != pytest.approx(float(rows[False]["gap [meV]"]), rel=1e-6)
    raw = api.predict_properties(engine, [read_smiles("CCO")])[0]
    assert float(rows[True]["gap [meV]"]) == pytest.approx(raw["gap"], rel=1e-6)
    assert float(rows[False]["gap [meV]"]) != pytest.approx(raw["gap"], rel=1e-6)


def test_cli_predict_conformers_and_ranges(tmp_path):
    import csv

    from unigem_core.cli import main

    smiles = tmp_path / "m.smi"
    smiles.write_text("OCC(O)CO glycerol\n")
    rows = {}
    for k in (1, 4):
        out = tmp_path / f"p{k}.csv"
        assert main(["predict", str(smiles), "--out", str(out), "--conformers", str(k), "--ranges"]) == 0
        rows[k] = next(csv.DictReader(open(out)))
    assert rows[1]["conformers"] == "1" and rows[1]["min mu [D]"] == ""
    assert 1 < int(rows[4]["conformers"]) <= 4
    assert float(rows[4]["min mu [D]"]) <= float(rows[4]["mu [D]"]) <= float(rows[4]["max mu [D]"])
    with pytest.raises(SystemExit):
        main(["predict", str(smiles), "--out", str(tmp_path / "x.csv"), "--conformers", "0"])


def test_predicted_enthalpy_is_the_energy_plus_qm9s_exact_difference(engine):
    data = load_split("test")
    iu, ih = PROPERTY_KEYS.index("U"), PROPERTY_KEYS.index("H")
    # the relation holds in QM9 itself, to the last digit it prints (1e-6 Hartree = 0.027 meV)
    offsets = np.array([api.enthalpy_offset(symbols_of(data.types[i])) for i in range(len(data))])
    assert np.abs(data.targets[:, ih] - data.targets[:, iu] - offsets).max() < 3e-5  # eV
    assert api.enthalpy_offset(("C", "H", "H", "H", "H")) == pytest.approx(-4 * 0.0257, abs=2e-4)  # about -(N - 1) kT
    molecules = [Molecule(symbols_of(data.types[i]), data.positions[i, :data.n_atoms[i]]) for i in range(8)]
    derived = api.predict_properties(engine, molecules)
    own = api.predict_properties(engine, molecules, enthalpy_from_u=False)
    for mol, d, o in zip(molecules, derived, own):
        assert d["H"] - d["U"] == pytest.approx(api.enthalpy_offset(mol.symbols) * 1000, abs=1e-6)  # meV
        assert {k: v for k, v in d.items() if k != "H"} == {k: v for k, v in o.items() if k != "H"}
    assert max(abs(d["H"] - o["H"]) for d, o in zip(derived, own)) > 1.0  # the head's own H differs (meV)
