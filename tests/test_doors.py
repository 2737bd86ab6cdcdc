"""Same answers in every door: the Python API, the CLI and the app give the same rows, values and messages."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from unigem_core import api
from unigem_core.cli import main
from unigem_core.constants import PROPERTIES
from unigem_core.io import read_molecules

INPUTS = Path(__file__).parent / "fixtures" / "inputs"
FILES = ["broken_middle.sdf", "sulfur_chlorine.sdf", "good_multi.xyz", "too_many_atoms.xyz"]
COLUMNS = [p.column for p in PROPERTIES]


@pytest.fixture(scope="module")
def api_rows():
    engine = api.load_model()
    records = [r for name in FILES for r in read_molecules(INPUTS / name)]
    return api.predictions_table(api.predict_records(engine, records))


def test_cli_matches_api(api_rows, tmp_path):
    out = tmp_path / "p.csv"
    assert main(["predict", *(str(INPUTS / f) for f in FILES), "--out", str(out)]) == 0
    cli_rows = list(csv.DictReader(open(out)))
    assert [r["name"] for r in cli_rows] == [r["name"] for r in api_rows]
    assert [r["error"] for r in cli_rows] == [r["error"] for r in api_rows]
    for c, a in zip(cli_rows, api_rows):
        for col in COLUMNS:
            if a[col] is None:
                assert c[col] == ""
            else:
                assert float(c[col]) == pytest.approx(a[col], rel=1e-9, abs=1e-9)
    assert sum(bool(r["error"]) for r in api_rows) >= 3  # the files do contain refused records


def test_app_matches_api(api_rows):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).parent.parent / "app" / "main.py"), default_timeout=120).run()
    at.switch_page("views/predict.py").run()
    at.get("file_uploader")[0].set_value([(f, (INPUTS / f).read_bytes(), "text/plain") for f in FILES])
    at.button(key="pred_go").click().run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert table["name"].tolist() == [r["name"] for r in api_rows]
    for (_, app_row), a in zip(table.iterrows(), api_rows):
        if a["error"]:
            # the app shows the reader's message without its "record k: " prefix; the record number has its own column
            assert app_row["status"].startswith("refused: ") and app_row["status"].split(": ", 1)[1] in a["error"]
        for col in COLUMNS:
            if a[col] is None:
                assert app_row[col] != app_row[col]  # NaN in the app's table
            else:
                assert app_row[col] == pytest.approx(a[col], rel=1e-9, abs=1e-9)


def test_molecules_larger_than_qm9s_are_predicted_with_a_caveat(tmp_path, capsys):
    """Paracetamol (11 heavy atoms, 20 in all) fits the model but not QM9 (at most 9): a warning, not a refusal."""
    from unigem_core.io import parse_text

    engine = api.load_model()
    large, small = api.predict_records(engine, parse_text("CC(=O)Nc1ccc(O)cc1 paracetamol\nCCO ethanol", "smiles"))
    assert large.properties is not None and large.error is None
    assert any("11 heavy atoms" in w and "at most 9" in w for w in large.warnings)
    assert small.properties is not None and small.warnings == ()
    smi = tmp_path / "two.smi"
    smi.write_text("CC(=O)Nc1ccc(O)cc1 paracetamol\nCCO ethanol\n")
    out = tmp_path / "p.csv"
    assert main(["predict", str(smi), "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert "11 heavy atoms" in rows[0]["warnings"] and rows[1]["warnings"] == ""
    assert "warning: paracetamol: has 11 heavy atoms" in capsys.readouterr().err
