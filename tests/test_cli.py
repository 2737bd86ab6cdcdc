"""The CLI contract: every command works end to end on the shipped checkpoint; bad input gives one line."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from unigem_core.cli import main
from unigem_core.constants import PROPERTIES
from unigem_core.engine import MODEL_CARD
from unigem_core.molecule import Molecule

FIXTURES = Path(__file__).parent / "fixtures" / "inputs"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unigem_core.cli", *args], capture_output=True, text=True, timeout=600)


def test_sample_writes_sdf_with_properties_and_trajectory(tmp_path):
    out, traj = tmp_path / "m.sdf", tmp_path / "t.xyz"
    assert main(["sample", "--n", "3", "--steps", "20", "--seed", "5", "--out", str(out), "--trajectory", str(traj)]) == 0
    from unigem_core.io import read_molecules

    records = read_molecules(out)
    assert [r.name for r in records] == ["unigem-seed5", "unigem-seed6", "unigem-seed7"]
    assert "homo [meV]" in out.read_text()
    frames = traj.read_text().count("phase=")
    assert frames > 3 * 20 // 2  # every growth step and many nucleation frames, for three molecules


def test_sample_same_seed_same_molecule(tmp_path):
    a, b = tmp_path / "a.xyz", tmp_path / "b.xyz"
    main(["sample", "--n", "1", "--steps", "15", "--seed", "11", "--out", str(a)])
    main(["sample", "--n", "3", "--steps", "15", "--seed", "9", "--out", str(b)])
    from unigem_core.io import read_molecules

    one, three = read_molecules(a)[0].molecule, read_molecules(b)[2].molecule
    assert one.symbols == three.symbols
    assert abs(one.positions - three.positions).max() < 1e-3


@pytest.mark.parametrize("flag, values, bad, message", [
    ("--spacing", ("1", "3"), "0", "spacing must be positive"),  # the even stride and the default: other paths
    ("--resample", ("0", "1"), "-1", "cannot be negative"),  # the paper's sampler and one refinement round
])
def test_sample_options_reach_the_sampler(tmp_path, capsys, flag, values, bad, message):
    """Two settings of a sampler option walk different paths from the same noise; a bad one is one line."""
    paths = {}
    for value in values:
        out = tmp_path / f"s{value}.xyz"
        assert main(["sample", "--n", "1", "--steps", "12", "--seed", "2", "--precision", "fp32", flag, value,
                     "--out", str(out)]) == 0
        paths[value] = out.read_text()
    assert paths[values[0]] != paths[values[1]]
    capsys.readouterr()
    assert main(["sample", "--n", "1", "--steps", "12", flag, bad, "--out", str(tmp_path / "x.xyz")]) == 2
    assert message in capsys.readouterr().err


def test_generate_valid_samples_rounds_until_it_has_n(monkeypatch):
    """Round sizes follow the validity seen so far; the first n valid seeds are kept; max_seeds caps the search."""
    from unigem_core import api, generation
    from unigem_core.molecule import GeneratedMolecule

    def every_third_valid(engine, n, seed=0, **options):
        return [GeneratedMolecule(seed=s, molecule=None, valid=s % 3 == 0) for s in range(seed, seed + n)]

    monkeypatch.setattr(generation, "generate", every_third_valid)
    rounds = []
    kept, tried = api.generate_valid(None, 4, seed=1, on_round=lambda r, size: rounds.append((r, size)))
    assert [g.seed for g in kept] == [3, 6, 9, 12] and tried == 16
    assert rounds == [(1, 5), (2, 11)]  # 4 / 0.9 guessed; then 3 more at a rate of 1 in 5 (floored at 1 in 4), capped
    kept, tried = api.generate_valid(None, 4, seed=1, max_seeds=6)
    assert [g.seed for g in kept] == [3, 6] and tried == 6
    with pytest.raises(ValueError):
        api.generate_valid(None, 0)


def test_generate_valid_skips_the_excluded_smiles(monkeypatch):
    """exclude (the training SMILES) skips valid molecules it holds: the first n novel ones are kept."""
    from unigem_core import api, generation
    from unigem_core.molecule import GeneratedMolecule

    def all_valid(engine, n, seed=0, **options):
        return [GeneratedMolecule(seed=s, molecule=None, valid=True, smiles=f"S{s % 4}") for s in range(seed, seed + n)]

    monkeypatch.setattr(generation, "generate", all_valid)
    kept, tried = api.generate_valid(None, 3, seed=0, exclude={"S0", "S2"})
    assert [g.seed for g in kept] == [1, 3, 5] and tried >= 6


def test_sample_novel_only(tmp_path, capsys, monkeypatch):
    """--novel-only writes no molecule whose SMILES the training set holds."""
    from unigem_core import api, metrics
    from unigem_core.io import read_molecules

    first = [g for g in api.generate(api.load_model(), 6, seed=20, steps=30) if g.valid]
    assert first
    monkeypatch.setattr(metrics, "training_smiles", lambda: {first[0].smiles})  # "the training set holds it"
    out = tmp_path / "novel.sdf"
    assert main(["sample", "--n", "2", "--steps", "30", "--novel-only", "--seed", "20", "--out", str(out)]) == 0
    names = [m.name for m in read_molecules(out)]
    assert names and f"unigem-seed{first[0].seed}" not in names
    assert "novel molecules among seeds 20-" in capsys.readouterr().err


def test_generate_valid_and_sample_valid_only_on_the_model(tmp_path, capsys):
    """The kept molecules are those a single run of the same seeds finds valid, in seed order."""
    from unigem_core import api

    engine = api.load_model()
    kept, tried = api.generate_valid(engine, 3, seed=20, steps=8, precision="fp32")
    valid = [g.seed for g in api.generate(engine, tried, seed=20, steps=8, precision="fp32") if g.valid]
    assert [g.seed for g in kept] == valid[:3] and all(g.valid for g in kept)

    out = tmp_path / "v.sdf"
    assert main(["sample", "--n", "2", "--steps", "30", "--valid-only", "--seed", "20", "--out", str(out)]) == 0
    from unigem_core.io import read_molecules

    assert 1 <= len(read_molecules(out)) <= 2
    assert "valid molecules among seeds 20-" in capsys.readouterr().err


def test_sample_where_keeps_the_molecules_within_the_targets(tmp_path, capsys):
    """--where screens the predicted properties: the kept molecules are those of a plain run of the same seeds that
    are valid and meet the target, in seed order, and the SDF's property tags show that they do."""
    from unigem_core import api
    from unigem_core.io import read_molecules

    plain = [g for g in api.generate(api.load_model(), 8, seed=20, steps=12, precision="fp32") if g.valid]
    assert len(plain) >= 2
    gaps = sorted(g.molecule.properties["gap"] for g in plain)
    k = len(gaps) // 2
    threshold = round((gaps[k - 1] + gaps[k]) / 2, 1)  # about half pass; none sits on it (batches round differently)
    expected = [g.seed for g in plain if g.molecule.properties["gap"] >= threshold][:2]
    out = tmp_path / "t.sdf"
    assert main(["sample", "--n", "2", "--steps", "12", "--seed", "20", "--precision", "fp32", "--max-seeds", "8",
                 "--where", f"gap>={threshold}", "--out", str(out)]) == 0
    records = read_molecules(out)
    assert [r.name for r in records] == [f"unigem-seed{s}" for s in expected]
    assert all(r.molecule.properties["gap"] >= threshold for r in records)
    assert "with gap ≥" in capsys.readouterr().err

    assert main(["sample", "--n", "1", "--steps", "12", "--seed", "20", "--max-seeds", "2", "--where", "gap<=0",
                 "--out", str(tmp_path / "none.sdf")]) == 2
    assert "no valid molecule with gap ≤ 0 meV among 2 seeds; widen the targets" in capsys.readouterr().err


def test_generate_in_two_processes_gives_the_same_molecules():
    """Batches shared out over two spawned workers: the same molecules, in seed order, with progress to the end."""
    from unigem_core import api

    engine = api.load_model()
    one = api.generate(engine, 5, steps=12, seed=3, batch_size=2, precision="fp32")
    calls = []
    two = api.generate(engine, 5, steps=12, seed=3, batch_size=2, precision="fp32", processes=2,
                       on_progress=lambda done, total: calls.append((done, total)))
    assert [g.seed for g in two] == [3, 4, 5, 6, 7]
    for a, b in zip(one, two):
        assert a.molecule.symbols == b.molecule.symbols
        assert abs(a.molecule.positions - b.molecule.positions).max() < 1e-3
        assert a.molecule.properties["gap"] == pytest.approx(b.molecule.properties["gap"], abs=1e-2)
    assert calls[-1][0] == calls[-1][1] > 0


def test_workers_take_the_costliest_batches_first():
    """Batches sorted by size would leave the largest for last, one worker running it alone."""
    from unigem_core.generation import largest_first

    jobs = [([5, 6], [0, 1]), ([9, 9], [2, 3]), ([29], [4]), ([20, 21], [5, 6]), ([], [])]
    # n N^2: 72, 162, 841, 882, 0
    assert largest_first(jobs) == [3, 2, 1, 0, 4]


def test_predict_keeps_one_row_per_record_in_order(tmp_path):
    out = tmp_path / "p.csv"
    files = [FIXTURES / "good_multi.xyz", FIXTURES / "broken_middle.sdf", FIXTURES / "sulfur_chlorine.sdf"]
    assert main(["predict", *map(str, files), "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 3 + 3 + 2
    assert list(rows[0])[:4] == ["name", "formula", "n_atoms", "geometry"]
    assert [r["geometry"] for r in rows[:5]] == ["given"] * 4 + [""]  # the XYZ's and the SDF's, then a refused one
    assert all(p.column in rows[0] for p in PROPERTIES)
    errors = [r["error"] for r in rows]
    assert errors[:3] == ["", "", ""] and errors[3] == "" and errors[4].startswith("record 2") and errors[5] == ""
    assert "S, Cl" in errors[7] and rows[7]["homo [meV]"] == ""
    assert float(rows[0]["gap [meV]"]) == float(rows[0]["gap [meV]"])  # a number, not NaN


def test_predict_qm9_adds_the_qm9_molecule_and_its_dft_values(tmp_path, monkeypatch, capsys, small_qm9):
    """--qm9: a QM9 molecule given as XYZ and another typed as SMILES get their QM9 number, split and DFT values."""
    from unigem_core import api
    from unigem_core.data.qm9 import symbols_of
    from unigem_core.io import to_xyz

    lookup, data = small_qm9
    monkeypatch.setattr(api, "qm9_lookup", lambda: lookup)
    xyz, smi, out = tmp_path / "first.xyz", tmp_path / "more.smi", tmp_path / "p.csv"
    xyz.write_text(to_xyz([Molecule(symbols_of(data.types[0]), data.positions[0, :data.n_atoms[0]], name="first")]))
    smi.write_text(f"{data.smiles[1]} second\nO=C1OC(=O)C=C1 anhydride\nC1CC1Cl chloride\n")
    assert main(["predict", str(xyz), str(smi), "--qm9", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert [r["qm9_number"] for r in rows] == [str(data.index[0]), str(data.index[1]), "", ""]
    assert [r["qm9_split"] for r in rows] == ["test", "test", "", ""]
    for r, row in enumerate(rows[:2]):
        for p, value in zip(PROPERTIES, data.targets[r]):
            assert float(row[f"qm9 {p.column}"]) == pytest.approx(value * p.report_scale, rel=1e-5)
    assert rows[2]["qm9 gap [meV]"] == "" and rows[3]["error"]  # not in QM9; refused (chlorine)
    assert [r["qm9_closest"] == "" for r in rows] == [True, True, False, True]  # the most similar, where QM9 lacks it
    assert 0.0 <= float(rows[2]["qm9_closest_tanimoto"]) < 1.0
    assert "2 found in QM9" in capsys.readouterr().err


def test_evaluate_json_contract(capsys):
    assert main(["evaluate", "--n", "4", "--steps", "10", "--no-novelty", "--properties", "--limit", "50", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("atom_stability", "molecule_stability", "validity", "uniqueness"):
        assert 0.0 <= result[key] <= 1.0
    assert set(result["mae"]) == {p.key for p in PROPERTIES}
    assert result["command"].startswith("unigem evaluate") and result["spacing"] == 3.0
    assert "resample" not in result  # plain ancestral sampling unless asked
    # the weights measured, by checksum: the model card refuses an evaluation of other weights
    assert result["checkpoint"] == "checkpoints/unigem.pt"
    assert result["checkpoint_sha256"] == json.loads(MODEL_CARD.read_text())["files"]["unigem.pt"]["sha256"]


def test_evaluate_compares_the_molecules_qm9_holds_with_its_dft_values(capsys, monkeypatch, small_qm9):
    from unigem_core import api

    lookup, _ = small_qm9
    monkeypatch.setattr(api, "qm9_lookup", lambda: lookup)
    assert main(["evaluate", "--n", "3", "--steps", "10", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["novelty"] is not None or result["validity"] == 0
    assert set(result["qm9"]) == {"n_valid", "in_qm9", "in_training_split", "n_compared", "mae_vs_dft", "n_unseen",
                                  "mae_vs_dft_unseen"}
    assert result["qm9"]["n_valid"] == round(3 * result["validity"])


@pytest.mark.parametrize("below", [None, 300])  # every step (the default), or the steps that end below t = 300
def test_evaluate_reports_resampling(capsys, below):
    limit = [] if below is None else ["--resample-below", str(below)]
    assert main(["evaluate", "--n", "2", "--steps", "10", "--resample", "2", *limit, "--no-novelty",
                 "--precision", "fp32", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["resample"] == 2 and result.get("resample_below") == below


def test_evaluate_properties_from_smiles(capsys):
    """--geometry smiles rebuilds each molecule from QM9's SMILES; its mae_qm9_geometry is the DFT geometries' MAE."""
    assert main(["evaluate", "--n", "0", "--properties", "--geometry", "smiles", "--limit", "6", "--conformers", "5",
                 "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "--n", "0", "--properties", "--geometry", "smiles", "--limit", "6", "--conformers", "5",
                 "--processes", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mae"] == built["mae"]  # built in two worker processes: the same
    assert built["geometry"] == "smiles" and built["n_property_molecules"] + built["n_refused"] == 6
    assert built["conformers"] == 5 and 1 <= built["conformers_mean"] <= 5 and built["relax"] == "xtb"
    assert built["n_force_field_only"] == 0  # GFN2-xTB relaxed every one of these
    assert main(["evaluate", "--n", "0", "--properties", "--limit", "6", "--json"]) == 0
    dft = json.loads(capsys.readouterr().out)
    assert dft["geometry"] == "qm9" and dft["n_property_molecules"] == 6
    if built["n_refused"] == 0:
        assert built["mae_qm9_geometry"] == pytest.approx(dft["mae"], rel=1e-5)
    assert built["mae_unrefined"]["r2"] > built["mae_qm9_geometry"]["r2"]  # a built geometry is not QM9's
    assert built["mae"] != built["mae_unrefined"]  # Predict's refinement of built geometries


def test_evaluate_loss_alone(capsys):
    assert main(["evaluate", "--n", "0", "--loss", "--limit", "40", "--precision", "fp32", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["validation_loss"]) == {"loss", "coord", "prop_mae_norm", "type_accuracy"}
    assert result["n_loss_molecules"] == 40 and result["loss_precision"] == "fp32"
    assert 0.0 < result["validation_loss"]["loss"] < 1.0  # the shipped model's logged values are about 0.22
    assert "validity" not in result  # --n 0 generated nothing


def test_evaluate_with_nothing_to_do_is_an_error(capsys):
    assert main(["evaluate", "--n", "0"]) == 2
    assert "--n must be at least 1" in capsys.readouterr().err


def test_evaluate_reference_reports_the_data_row(capsys):
    assert main(["evaluate", "--reference", "--n", "2000", "--no-novelty", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["molecule_stability"] == pytest.approx(0.952, abs=0.01)
    assert result["validity"] == pytest.approx(0.977, abs=0.01)


@pytest.mark.parametrize("args, message", [
    (["predict", "does-not-exist.xyz", "--out", "x.csv"], "no such file"),
    (["sample", "--n", "2", "--atoms", "40", "--out", "x.sdf"], "between 1 and 29"),
    (["sample", "--n", "1", "--checkpoint", "nowhere.pt", "--out", "x.sdf"], "does not exist"),
    (["sample", "--n", "0", "--out", "x.sdf"], "at least 1"),
    (["sample", "--n", "1", "--where", "gap=>7", "--out", "x.sdf"], "cannot read the property target"),
    (["sample", "--n", "1", "--where", "gap>=7", "--max-seeds", "0", "--out", "x.sdf"], "--max-seeds must be"),
])
def test_bad_input_gives_one_line_and_nonzero_exit(tmp_path, args, message):
    result = subprocess.run([sys.executable, "-m", "unigem_core.cli", *args], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr
