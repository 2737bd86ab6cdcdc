"""The Streamlit app, page by page, with streamlit.testing.v1.AppTest (no browser, no network).

Each test drives a page the way a user would and checks what it shows: rows, badges, messages.
The shipped checkpoint may be untrained, so no test judges the chemistry, only the plumbing.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from unigem_core.constants import PROPERTIES, PUBLISHED_GENERATION  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MAIN = str(REPO / "app" / "main.py")
FIXTURES = REPO / "tests" / "fixtures" / "app"
TIMEOUT = 120  # seconds per script run; a cold model load plus sampling on a busy 2-core machine


@pytest.fixture(autouse=True)
def qm9_loading(monkeypatch):
    """QM9's reference stays "still loading" unless a test puts one in place, so that no page depends on whether
    the real one (read in a background thread) happens to be there yet."""
    from types import SimpleNamespace

    from app import resources

    loading = SimpleNamespace(lookup=lambda: None, smiles=lambda: None, error=None)
    monkeypatch.setattr(resources, "qm9_reference", lambda: loading)
    return loading


@pytest.fixture
def no_card(monkeypatch, tmp_path):
    """Point the app at a model card that does not exist."""
    monkeypatch.setenv("UNIGEM_MODEL_CARD", str(tmp_path / "absent.json"))


def start(page: str | None = None) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(page).run()
        assert not at.exception, at.exception
    return at


def iframes(at: AppTest) -> list[str]:
    """The HTML of every st.iframe on the page (the 3D viewers and the player)."""
    return [el.proto.srcdoc for el in at.get("iframe")]


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def phase(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("**Phase:**"))


def generate(at: AppTest, n: int = 2, steps: int = 50) -> AppTest:
    at.slider(key="gen_n").set_value(n)
    at.radio(key="gen_steps").set_value(steps)
    at.button(key="gen_go").click().run()
    assert not at.exception, at.exception
    return at


# --- Generate and Trajectory -----------------------------------------------------------------------

def test_generate_shows_gallery_table_and_downloads():
    at = start()
    assert at.title[0].value == "Generate molecules"
    assert "Choose the settings" in at.info[0].value  # nothing generated yet
    generate(at, n=2, steps=50)

    run = at.session_state["generation_run"]
    assert len(run.molecules) == 2 and run.settings["steps"] == 50
    assert metric(at, "Molecules") == "2"
    views = iframes(at)
    assert len(views) == 2 and all("load3Dmol" in html and "3Dmol-min.js" in html for html in views)
    first = run.molecules[0].molecule
    assert f'"xyz":"{first.n_atoms}\\n' in views[0]  # the card draws this molecule's atoms

    table = at.dataframe[-1].value  # "All properties"
    assert len(table) == 2
    assert [p.column for p in PROPERTIES] == [c for c in table.columns if "[" in c]
    assert table["formula"].tolist() == [g.molecule.formula for g in run.molecules]
    badges = " ".join(m.value for m in at.markdown)
    assert ("valid]" in badges) and ("stable]" in badges) and "atoms stable" in badges
    labels = [b.proto.label for b in at.get("download_button")]
    assert any(label.startswith("SDF with properties (2 molecules)") for label in labels)
    assert any(label.startswith("XYZ (2") for label in labels) and any("CSV" in label for label in labels)

    at.run()  # results survive an unrelated rerun
    assert len(at.session_state["generation_run"].molecules) == 2 and len(iframes(at)) == 2

    at.toggle(key="gen_only_valid").set_value(True).run()
    n_valid = sum(g.valid for g in run.molecules)
    assert len(iframes(at)) == n_valid
    if n_valid == 0:
        assert "None of these molecules is valid" in at.warning[0].value


def test_generate_with_fixed_atom_count_is_reproducible():
    at = start()
    at.radio(key="gen_atoms_mode").set_value("Fixed number").run()  # enables the count
    at.number_input(key="gen_atoms").set_value(7)
    at.number_input(key="gen_seed").set_value(11)
    generate(at, n=1, steps=50)
    first = at.session_state["generation_run"].molecules[0]
    assert first.molecule.n_atoms == 7 and first.seed == 11
    at.button(key="gen_go").click().run()
    again = at.session_state["generation_run"].molecules[0]
    assert again.molecule.symbols == first.molecule.symbols
    assert abs(again.molecule.positions - first.molecule.positions).max() < 1e-5


def test_generate_refinement_reaches_the_sampler():
    """The Refinement choice is the sampler's resample: molecule k is what api.generate gives with it."""
    from app import resources
    from unigem_core import api

    at = start()
    assert at.radio(key="gen_resample").value == 1  # on by default: the measured better sampler
    at.number_input(key="gen_seed").set_value(5)
    generate(at, n=1, steps=50)
    refined = at.session_state["generation_run"]
    assert refined.settings["resample"] == 1
    assert next(m for m in at.metric if m.label == "Sampling steps").proto.delta == "+ 1 round"
    at.radio(key="gen_resample").set_value(0)
    generate(at, n=1, steps=50)
    plain = at.session_state["generation_run"]
    assert plain.settings["resample"] == 0 and not next(m for m in at.metric if m.label == "Sampling steps").proto.delta
    engine = resources.get_engine("auto")
    for run, rounds in ((refined, 1), (plain, 0)):
        direct = api.generate(engine, 1, seed=5, steps=50, resample=rounds)[0].molecule
        assert abs(direct.positions - run.molecules[0].molecule.positions).max() < 1e-4
    assert abs(refined.molecules[0].molecule.positions - plain.molecules[0].molecule.positions).max() > 1e-3


def test_generate_offers_each_sampler_setting_the_card_measures():
    """10 steps + 9 rounds (the card's most stable row) runs, and its trajectory has both phases."""
    at = start()
    at.radio(key="gen_resample").set_value(9)
    generate(at, n=1, steps=10)
    run = at.session_state["generation_run"]
    assert run.settings["steps"] == 10 and run.settings["resample"] == 9
    assert next(m for m in at.metric if m.label == "Sampling steps").proto.delta == "+ 9 rounds"
    phases = {frame.phase for frame in run.molecules[0].trajectory.frames}
    assert phases == {"nucleation", "growth"}


def test_gallery_marks_novel_molecules_and_those_the_training_set_holds(monkeypatch):
    """Each valid molecule wears "novel" or "in QM9's training set"; the summary counts the novel ones."""
    from types import SimpleNamespace

    from app import resources

    at = start()  # QM9 still loading (the qm9_loading fixture)
    generate(at, n=4, steps=25)
    run = at.session_state["generation_run"]
    valid = [g for g in run.molecules if g.valid]
    assert valid and metric(at, "Novel") == "…"
    assert not any("novel]" in m.value or "training set]" in m.value for m in at.markdown)

    unreadable = SimpleNamespace(lookup=lambda: None, smiles=lambda: None,
                                 error="FileNotFoundError: no QM9 data")  # not "…" forever
    monkeypatch.setattr(resources, "qm9_reference", lambda: unreadable)
    at.run()
    assert metric(at, "Novel") == "n/a"
    assert "no QM9 data" in next(m for m in at.metric if m.label == "Novel").help

    known = frozenset({valid[0].smiles, "[H]C([H])([H])[H]"})
    holding = SimpleNamespace(lookup=lambda: None, smiles=lambda: known, error=None)
    monkeypatch.setattr(resources, "qm9_reference", lambda: holding)
    at.run()
    badges = " ".join(m.value for m in at.markdown)
    held = sum(g.smiles in known for g in valid)
    assert held >= 1 and badges.count("in QM9's training set]") == held
    assert badges.count(":material/auto_awesome: novel]") == len(valid) - held
    assert metric(at, "Novel") == f"{(len(valid) - held) / len(valid):.0%}"
    table = next(d.value for d in at.dataframe if "novel" in d.value.columns)  # the "All properties" table
    assert table["novel"].tolist() == [(g.smiles not in known) if g.valid else None for g in run.molecules]


def test_gallery_puts_qm9s_values_beside_a_molecule_qm9_holds(monkeypatch, tmp_path):
    """A generated molecule whose bond graph QM9 holds shows QM9's number, split and DFT values; the other valid
    ones name the most similar QM9 molecule."""
    from types import SimpleNamespace

    import numpy as np

    from app import resources
    from app.tables import QM9_DFT
    from unigem_core.metrics.lookup import QM9Lookup, qm9_fingerprints
    from unigem_core.metrics.reference import QM9Strings, strings_of

    at = start()
    generate(at, n=4, steps=25)
    run = at.session_state["generation_run"]
    strings = [strings_of(list(g.molecule.symbols), g.molecule.positions, "") for g in run.molecules]
    k = next(k for k, s in enumerate(strings) if s.geometry_key)  # a molecule that reads as exactly its atoms
    held = run.molecules[k]
    targets = np.arange(12.0)[None]  # "DFT values" in training units
    qm9 = [QM9Strings(strings[k].smiles, strings[k].geometry_key, strings[k].geometry_key)]  # "QM9's SMILES" too
    lookup = QM9Lookup(qm9, np.array([99999]), np.array(["C"]), targets, ["train"], qm9_fingerprints(qm9, tmp_path))
    ready = SimpleNamespace(lookup=lambda: lookup, smiles=lambda: lookup.training_smiles, error=None)
    monkeypatch.setattr(resources, "qm9_reference", lambda: ready)
    at.run()
    assert not at.exception, at.exception
    i = run.molecules.index(held)
    table = next(d.value for d in at.dataframe if "QM9" in d.value.columns)  # the "All properties" table
    assert table["QM9"].iloc[i] == "#99999 (train)"
    assert sum(label == "" for label in table["QM9"]) == sum(m == () for m in run.qm9_matches)
    assert any("QM9's DFT values" in e.label for e in at.expander)
    assert any("QM9 #99999 (training split) has this bond graph" in c.value and "trained on its DFT values" in c.value
               for c in at.caption)
    card = next(d.value for d in at.dataframe if QM9_DFT in d.value.columns)
    assert card[QM9_DFT].tolist() == pytest.approx([v * p.report_scale for v, p in zip(targets[0], PROPERTIES)])
    others = [j for j, g in enumerate(run.molecules) if g.valid and not run.qm9_matches[j]]
    assert others
    notes = [c.value for c in at.caption if c.value.startswith("Not in QM9. Most similar there: `C`, QM9 #99999")]
    assert len(notes) == len(others)  # the only QM9 molecule this lookup knows
    assert table["closest in QM9"].iloc[i] == "" and all(table["closest in QM9"].iloc[j].startswith("#99999 (Tanimoto")
                                                          for j in others)


def test_qm9_reference_loads_in_the_background():
    """QM9 loads in a thread: None until it is there; a failure leaves it None, with a reason."""
    import threading
    import time
    from types import SimpleNamespace

    from app.resources import QM9Reference

    gate = threading.Event()
    lookup = SimpleNamespace(training_smiles=frozenset({"C", "CO"}))
    loading = QM9Reference(lambda: gate.wait(10) and lookup)
    assert loading.smiles() is None and loading.lookup() is None
    gate.set()
    deadline = time.monotonic() + 10
    while loading.smiles() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert loading.smiles() == frozenset({"C", "CO"}) and loading.lookup() is lookup and loading.error is None

    def missing():
        raise FileNotFoundError("no QM9 data")

    failed = QM9Reference(missing)
    while failed.error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert failed.smiles() is None and failed.lookup() is None and "no QM9 data" in failed.error


def test_generate_valid_molecules_only(monkeypatch):
    at = start()
    at.checkbox(key="gen_keep_valid").check()
    generate(at, n=2, steps=50)
    run = at.session_state["generation_run"]
    assert run.settings["keep_valid"] and all(g.valid for g in run.molecules)
    seeds = [g.seed for g in run.molecules]
    assert seeds == sorted(seeds) and run.seeds_tried >= len(seeds) and seeds[-1] < run.seeds_tried
    notes = [c.value for c in at.caption] + [w.value for w in at.warning]
    assert any(f"among {run.seeds_tried} seeds" in v or f"from {run.seeds_tried} seeds" in v for v in notes)

    from unigem_core import api

    monkeypatch.setattr(api, "generate_valid", lambda engine, n, **kwargs: ([], 4 * n))
    at.number_input(key="gen_seed").set_value(3)
    at.button(key="gen_go").click().run()
    assert "No valid molecule among 8 seeds" in at.error[0].value
    assert at.session_state["generation_run"] is run  # the last good run stays


def test_generate_novel_molecules_only(monkeypatch):
    """"Novel molecules only" skips the valid molecules the training set holds; it waits for that set to load."""
    from types import SimpleNamespace

    from app import resources
    from unigem_core import api

    engine = resources.get_engine("auto")
    plain = [g for g in api.generate(engine, 4, seed=0, steps=25, resample=1) if g.valid]
    assert plain
    known = frozenset({plain[0].smiles})  # "the training set holds the first valid molecule"
    holding = SimpleNamespace(lookup=lambda: None, smiles=lambda: known, error=None)
    monkeypatch.setattr(resources, "qm9_reference", lambda: holding)
    at = start()
    at.checkbox(key="gen_keep_novel").check()
    generate(at, n=2, steps=25)
    run = at.session_state["generation_run"]
    assert run.settings["keep_novel"] and run.settings["keep_valid"]
    assert all(g.valid and g.smiles not in known for g in run.molecules)
    assert plain[0].seed not in [g.seed for g in run.molecules]
    assert any("novel molecule" in c.value and "invalid or known" in c.value for c in at.caption)

    loading = SimpleNamespace(lookup=lambda: None, smiles=lambda: None, error=None)
    monkeypatch.setattr(resources, "qm9_reference", lambda: loading)
    at.run()
    assert at.checkbox(key="gen_keep_novel").disabled
    assert "once QM9's training molecules are read" in at.checkbox(key="gen_keep_novel").help
    failed = SimpleNamespace(lookup=lambda: None, smiles=lambda: None, error="FileNotFoundError: no QM9 data")
    monkeypatch.setattr(resources, "qm9_reference", lambda: failed)
    at.run()
    assert at.checkbox(key="gen_keep_novel").disabled
    assert "could not be read here (FileNotFoundError: no QM9 data)" in at.checkbox(key="gen_keep_novel").help


def test_generate_within_property_targets():
    """A narrowed slider is a target: the kept molecules are valid and predicted within it; an end left at the
    slider's extreme is open; the target survives a visit to another page."""
    from app import resources
    from app.state import target_scales
    from unigem_core import api

    engine = resources.get_engine("auto")
    scale = target_scales(engine.normalizer.mean, engine.normalizer.mad)["gap"]
    plain = sorted(g.molecule.properties["gap"] for g in api.generate(engine, 6, seed=0, steps=25, resample=1)
                   if g.valid)
    assert plain
    threshold = round(plain[len(plain) // 2] / scale.step - 0.5) * scale.step  # a slider stop; about half pass
    at = start()
    at.multiselect(key="gen_targets").select("gap").run()
    assert at.slider(key="gen_target_gap").value == (scale.low, scale.high)
    at.slider(key="gen_target_gap").set_range(threshold, scale.high)
    generate(at, n=2, steps=25)
    run = at.session_state["generation_run"]
    assert run.settings["targets"] == [("gap", threshold, None)] and run.settings["keep_valid"]
    assert run.molecules and all(g.valid and g.molecule.properties["gap"] >= threshold for g in run.molecules)
    notes = [c.value for c in at.caption] + [w.value for w in at.warning]
    assert any(f"with gap ≥ {threshold:,.0f} meV" in v and "off-target" in v for v in notes), notes

    at.switch_page("views/model.py").run()
    at.switch_page("views/generate.py").run()
    assert at.slider(key="gen_target_gap").value == (threshold, scale.high)


def test_target_sliders_span_the_training_data():
    from app.state import target_scales

    scales = target_scales((2.7, 75.0, -0.24, 0.25), (1.2, 6.0, 0.016, 0.04))  # mu [D], alpha, homo, lumo [eV]
    assert scales["mu"].low == 0.0 and scales["mu"].high == pytest.approx(7.5)  # a dipole is never negative
    assert (scales["homo"].low, scales["homo"].high, scales["homo"].step) == (-304.0, -176.0, 1.0)
    assert scales["lumo"].low == pytest.approx(90.0) and scales["lumo"].step == 1.0


def test_gallery_names_and_rings_the_unstable_atoms():
    """A run of two molecules, methane and methyl (CH3: its carbon has valence 3), shown by the gallery."""
    import numpy as np

    from app.state import GenerationRun
    from unigem_core.metrics import check_molecule
    from unigem_core.molecule import GeneratedMolecule, Molecule

    tetrahedron = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)
    methane = np.vstack([[0, 0, 0], 1.09 * tetrahedron])
    molecules = []
    for seed, n in ((0, 5), (1, 4)):
        symbols, positions = ("C", "H", "H", "H", "H")[:n], methane[:n]
        check = check_molecule(symbols, positions)
        molecules.append(GeneratedMolecule(seed=seed, molecule=Molecule(symbols, positions), atom_stable=check.atom_stable,
                                           stable=check.stable, valid=check.valid, smiles=check.smiles))
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.session_state["generation_run"] = GenerationRun(molecules, {"n": 2, "steps": 50, "seed": 0}, 0.1, "cpu, fp32")
    at.run()
    assert not at.exception, at.exception

    from app.tables import describe_problems
    from unigem_core.metrics import ValenceProblem

    many = [ValenceProblem(i, "C", 3, (4,)) for i in range(6)]
    assert describe_problems(many).endswith("C4 has valence 3 (C takes 4); 2 more")

    captions = [c.value for c in at.caption if "Unstable atoms" in c.value]
    assert len(captions) == 1 and "C1 has valence 3 (C takes 4)" in captions[0]  # only the methyl card
    views = iframes(at)
    assert '"highlight":[]' in views[0] and '"highlight":[0]' in views[1]
    table = at.dataframe[-1].value
    assert table["unstable atoms (valence)"].tolist() == ["", "C1(3)"]


def test_engine_is_shared_and_never_changed_by_sessions():
    import torch

    from app import resources

    engine = resources.get_engine("auto")
    before = {k: v.clone() for k, v in engine.model.state_dict().items()}
    first, second = start(), start()  # two browser sessions
    generate(first, n=1, steps=50)
    generate(second, n=1, steps=50)
    assert resources.get_engine("auto") is engine
    assert all(torch.equal(before[k], v) for k, v in engine.model.state_dict().items())
    assert first.session_state["generation_run"] is not second.session_state["generation_run"]


def test_gpu_choice_without_a_gpu_is_explained():
    from app import resources

    if resources.gpu_available():
        pytest.skip("this machine has a GPU")
    at = start()
    at.radio(key="gen_device").set_value("GPU").run()
    assert "No CUDA GPU" in at.warning[-1].value
    at.button(key="gen_go").click().run()
    assert not at.exception and "Cannot load the model" in at.error[0].value
    assert "generation_run" not in at.session_state


def test_trajectory_page_generates_one_molecule_when_there_is_none():
    at = start("views/trajectory.py")
    assert "generate molecules first, or one here" in at.info[0].value
    at.session_state["gen_seed"] = 7  # the Generate page's seed, steps and refinement are the ones used
    at.button(key="traj_generate").click().run()
    assert not at.exception, at.exception
    run = at.session_state["generation_run"]
    [g] = run.molecules
    assert g.valid and g.seed >= 7 and g.trajectory is not None and run.settings["steps"] == 50
    assert run.settings["resample"] == 1 and run.settings["keep_valid"]
    [player] = iframes(at)
    assert "playerState" in player and not at.info  # the page plays it at once
    at.switch_page("views/generate.py").run()  # and the Generate page's gallery shows it
    assert not at.exception and any(f"seed {g.seed}" in e.value for e in at.markdown)


def test_trajectory_page_plays_the_chosen_molecule():
    at = start("views/trajectory.py")
    assert "generate molecules first" in at.info[0].value
    at.switch_page("views/generate.py").run()
    generate(at, n=2, steps=50)
    at.switch_page("views/trajectory.py").run()
    assert not at.exception, at.exception

    run = at.session_state["generation_run"]
    trajectory = run.molecules[0].trajectory
    [player] = iframes(at)
    assert "playerState" in player and '"p":"nucleation"' in player and '"p":"growth"' in player
    assert '"e":null' in player  # nucleation frames carry no element
    assert len(at.get("plotly_chart")) == 1
    assert metric(at, "t") == str(trajectory.frames[0].t) and "Phase:** :gray-badge[nucleation]" in phase(at)

    last = len(trajectory.frames) - 1
    at.slider(key="traj_frame_0").set_value(last).run()
    assert metric(at, "t") == "0" and "Phase:** :green-badge[growth]" in phase(at)
    growth = at.dataframe[0].value
    assert len(growth) == sum(f.phase == "growth" for f in trajectory.frames)
    assert growth["type guess"].iloc[-1] == run.molecules[0].molecule.formula
    assert any(b.proto.label == "Trajectory as multi-frame XYZ" for b in at.get("download_button"))

    at.selectbox(key="traj_pick").set_value(1).run()
    assert not at.exception and at.session_state["trajectory_molecule"] == 1
    # the last frame rings the finished molecule's unstable atoms, as the gallery does
    unstable = [p.index for p in run.problems[1]]
    assert f'"highlight":{json.dumps(unstable, separators=(",", ":"))}' in iframes(at)[0]
    assert any("orange halos ring the unstable atoms" in c.value for c in at.caption) == bool(unstable)


# --- Predict -----------------------------------------------------------------------------------------

def test_predict_answers_good_records_and_explains_refusals():
    at = start("views/predict.py")
    files = [(name, (FIXTURES / name).read_bytes(), "text/plain") for name in ("good_and_bad.xyz", "mixed.sdf")]
    at.get("file_uploader")[0].set_value(files)
    at.text_area(key="pred_smiles").input("CCO ethanol\nClc1ccccc1 chlorobenzene\nC1CC( not-a-smiles")
    at.text_area(key="pred_xyz").input((FIXTURES / "good_and_bad.xyz").read_text().split("5\nchloro")[0])
    at.button(key="pred_go").click().run()
    assert not at.exception, at.exception

    table = at.dataframe[0].value
    assert len(table) == 4 + 4 + 1 + 3  # every record has a row, refused ones included
    predicted = table[table["status"].str.startswith("predicted")]
    assert sorted(predicted["name"]) == ["ethanol", "ethanol", "formamide", "methane", "water", "water"]
    assert predicted[[p.column for p in PROPERTIES]].notna().all().all()
    refused = table[table["status"].str.startswith("refused")].set_index("name")
    assert "contains Cl" in refused.loc["chloromethane", "status"]
    assert "32 atoms" in refused.loc["decane", "status"]
    assert "not numbers" in refused.loc["broken coordinates", "status"]
    assert refused[[p.column for p in PROPERTIES]].isna().all().all()
    assert set(table["source"]) == {"good_and_bad.xyz", "mixed.sdf", "pasted XYZ", "SMILES"}

    message = at.error[0].value
    for text in ("contains Cl", "has 32 atoms", "could not parse", "chlorobenzene", "not-a-smiles"):
        assert text in message
    assert "record 2 (chloromethane): contains Cl" in message  # one record number, not the reader's twice
    assert "6 predicted" in at.markdown[0].value and "6 refused" in at.markdown[0].value
    assert len(iframes(at)) == 1  # the selected record's 3D view
    detail = at.dataframe[1].value
    assert len(detail) == 12 and detail["Unit"].tolist() == [p.report_unit for p in PROPERTIES]
    from app import resources
    from app.tables import TYPICAL_ERROR

    card_mae = resources.model_card()["properties"]["mae"]  # the shipped card: each prediction's typical error
    assert detail[TYPICAL_ERROR].tolist() == [card_mae[p.key] for p in PROPERTIES]


def test_predict_puts_qm9s_dft_values_beside_a_molecule_qm9_holds(monkeypatch, small_qm9):
    """With QM9 read, each record names the QM9 molecule with its bond graph, and the selected one shows its DFT
    values and the prediction's difference from them; while QM9 loads, the page predicts without them."""
    from types import SimpleNamespace

    from app import resources
    from app.tables import QM9_DFT
    from unigem_core.data.qm9 import symbols_of
    from unigem_core.io import to_xyz
    from unigem_core.molecule import Molecule

    lookup, data = small_qm9
    at = start("views/predict.py")  # QM9 still loading (the qm9_loading fixture)
    first = Molecule(symbols_of(data.types[0]), data.positions[0, :data.n_atoms[0]], name="first")
    at.text_area(key="pred_xyz").input(to_xyz([first]))
    at.text_area(key="pred_smiles").input(f"{data.smiles[1]} second\nO=C1OC(=O)C=C1 anhydride")
    at.button(key="pred_go").click().run()
    assert not at.exception, at.exception
    assert "QM9" not in at.dataframe[0].value.columns
    assert any("QM9's index was still loading" in c.value for c in at.caption)
    failed = SimpleNamespace(lookup=lambda: None, smiles=lambda: None, error="FileNotFoundError: no QM9 data")
    monkeypatch.setattr(resources, "qm9_reference", lambda: failed)
    at.run()
    assert any("not available here (FileNotFoundError: no QM9 data)" in c.value for c in at.caption)

    ready = SimpleNamespace(lookup=lambda: lookup, smiles=lambda: lookup.training_smiles, error=None)
    monkeypatch.setattr(resources, "qm9_reference", lambda: ready)
    at.button(key="pred_go").click().run()
    assert not at.exception, at.exception
    assert at.dataframe[0].value["QM9"].tolist() == [f"#{data.index[0]} (test)", f"#{data.index[1]} (test)", ""]
    closest = at.dataframe[0].value["closest in QM9"].tolist()
    assert closest[:2] == ["", ""] and closest[2].startswith("#") and "Tanimoto" in closest[2]
    at.selectbox(key="pred_pick").set_value(2).run()  # the anhydride: not in QM9, so its closest molecule is named
    assert any(c.value.startswith("Not in QM9. Most similar there:") for c in at.caption)
    at.selectbox(key="pred_pick").set_value(0).run()
    detail = next(d.value for d in at.dataframe if QM9_DFT in d.value.columns)  # the first record is selected
    dft = [v * p.report_scale for v, p in zip(data.targets[0], PROPERTIES)]
    assert detail[QM9_DFT].tolist() == pytest.approx(dft)
    assert (detail["vs QM9"] - (detail["Predicted"] - detail[QM9_DFT])).abs().max() < 1e-9
    assert any(f"QM9 #{data.index[0]} (test split) has this bond graph" in c.value and "never saw it" in c.value
               for c in at.caption)
    assert any(e.label == "Against QM9: 2 records are QM9 molecules (2 outside its training split)" for e in at.expander)
    agreement = next(d.value for d in at.dataframe if "All found (MAE)" in d.value.columns).set_index("Symbol")
    run = at.session_state["prediction_run"]
    gap = [abs(p.properties["gap"] - p.qm9[0].properties["gap"]) for p in run.predictions[:2]]
    assert agreement.loc["gap", "All found (MAE)"] == pytest.approx(sum(gap) / 2)
    assert agreement.loc["gap", "Outside training split (MAE)"] == pytest.approx(sum(gap) / 2)

    from app.tables import results_table  # the CSV: QM9's DFT values after the predictions

    csv = results_table(run, dft=True)
    columns = list(csv.columns)
    assert columns.index("qm9 gap [meV]") > columns.index("gap [meV]") and "qm9 gap [meV]" not in at.dataframe[0].value
    assert csv["qm9 gap [meV]"].iloc[0] == pytest.approx(dft[[p.key for p in PROPERTIES].index("gap")])
    assert csv["qm9 gap [meV]"].isna().tolist() == [False, False, True]  # the anhydride is not in QM9


def test_property_rows_show_typical_error_and_the_files_own_values():
    from app.tables import HIGHEST, LOWEST, THIS_CONFORMER, TYPICAL_ERROR, property_rows

    predicted = {p.key: float(i) for i, p in enumerate(PROPERTIES)}
    plain = property_rows(predicted)
    assert list(plain.columns) == ["Property", "Symbol", "Predicted", "Unit"]
    assert plain["Predicted"].tolist() == list(range(12))
    table = property_rows(predicted, {"gap": 79.5}, {"gap": 6800.0, "mu": 1.5}).set_index("Symbol")
    assert list(table.columns) == ["Property", "Predicted", TYPICAL_ERROR, "Unit", "In file", "Difference"]
    assert table.loc["gap", TYPICAL_ERROR] == 79.5 and table[TYPICAL_ERROR].isna().sum() == 11
    assert table.loc["gap", "Difference"] == predicted["gap"] - 6800.0
    assert table.loc["mu", "Difference"] == predicted["mu"] - 1.5
    assert table["In file"].isna().sum() == 10  # only the tags the file has
    with_qm9 = property_rows(predicted, qm9={"gap": 6900.0}).set_index("Symbol")
    assert list(with_qm9.columns) == ["Property", "Predicted", "Unit", "QM9 (DFT)", "vs QM9"]
    assert with_qm9.loc["gap", "vs QM9"] == predicted["gap"] - 6900.0 and with_qm9["vs QM9"].isna().sum() == 11
    ranged = property_rows(predicted, ranges={p.key: (v - 1.0, v + 2.0) for p, v in zip(PROPERTIES, range(12))})
    assert list(ranged.columns) == ["Property", "Symbol", "Predicted", LOWEST, HIGHEST, "Unit"]
    assert ranged[LOWEST].tolist() == [v - 1.0 for v in range(12)] and ranged[HIGHEST].tolist()[3] == 5.0
    one = property_rows(predicted, ranges={"mu": (0.0, 1.0)}, conformer={"mu": 0.5}).set_index("Symbol")
    assert list(one.columns) == ["Property", "Predicted", LOWEST, HIGHEST, THIS_CONFORMER, "Unit"]
    assert one.loc["mu", THIS_CONFORMER] == 0.5 and one[THIS_CONFORMER].isna().sum() == 11


def test_typical_errors_come_from_the_card(monkeypatch, tmp_path):
    from app import resources

    card = tmp_path / "card.json"
    monkeypatch.setenv("UNIGEM_MODEL_CARD", str(card))
    assert resources.typical_errors() == {}  # no card
    card.write_text(json.dumps({"properties": {"mae": {"gap": 79.5, "mu": "n/a", "alpha": True}}}))
    assert resources.typical_errors() == {"gap": 79.5}  # numbers only
    card.write_text(json.dumps({"properties": {"mae": [1, 2]}}))
    assert resources.typical_errors() == {}
    assert resources.typical_errors(generated=True) == {}  # no generated molecules measured against QM9


def test_generated_molecules_get_the_errors_measured_on_generated_molecules(monkeypatch, tmp_path):
    """Where the card compared generated molecules with QM9's DFT values, the gallery shows those errors (from the
    evaluation that compared the most), not the test split's at DFT geometries."""
    from app import resources
    from app.tables import TYPICAL_ERROR

    shipped = json.loads((REPO / "checkpoints" / "model_card.json").read_text())
    generated = {p.key: 2.0 + k for k, p in enumerate(PROPERTIES)}
    shipped["generation"] = {"50+r1": {**shipped["generation"].get("50+r1", {}), "qm9": {
                                 "n_unseen": 50, "mae_vs_dft_unseen": generated, "mae_vs_dft": {"mu": 1.0}}},
                             "100": {**shipped["generation"].get("100", {}), "qm9": {
                                 "n_unseen": 10, "mae_vs_dft_unseen": {"mu": 9.0}}}}
    card = tmp_path / "card.json"
    card.write_text(json.dumps(shipped))
    monkeypatch.setenv("UNIGEM_MODEL_CARD", str(card))
    assert resources.typical_errors(generated=True) == generated
    at = generate(start(), n=1, steps=25)  # QM9 still loading (the qm9_loading fixture): no QM9 values in their place
    errors = next(d.value for d in at.dataframe if TYPICAL_ERROR in d.value.columns)[TYPICAL_ERROR]
    assert errors.tolist() == [generated[p.key] for p in PROPERTIES]


def test_a_typed_smiles_gets_the_typical_errors_of_built_geometries(monkeypatch, tmp_path):
    """A SMILES's geometry is RDKit's, not DFT's: the page says so, with the card's errors on such geometries."""
    from app import resources
    from app.tables import TYPICAL_ERROR

    shipped = json.loads((REPO / "checkpoints" / "model_card.json").read_text())
    shipped.pop("properties_from_smiles", None)
    card = tmp_path / "card.json"
    card.write_text(json.dumps(shipped))
    monkeypatch.setenv("UNIGEM_MODEL_CARD", str(card))
    at = start("views/predict.py")
    at.text_area(key="pred_smiles").input("CCO ethanol")
    at.button(key="pred_go").click().run()
    assert not at.exception, at.exception
    note = at.info[0].value
    assert "built from the bonds (RDKit's ETKDG, relaxed with MMFF94, then GFN2-xTB)" in note and "understate" in note
    dft = [shipped["properties"]["mae"][p.key] for p in PROPERTIES]
    assert at.dataframe[1].value[TYPICAL_ERROR].tolist() == dft  # the only errors the card has

    built = {p.key: 3.0 * v for p, v in zip(PROPERTIES, dft)}
    card.write_text(json.dumps({**shipped, "properties_from_smiles": {
        "mae": built, "mae_qm9_geometry": shipped["properties"]["mae"], "geometry": "smiles"}}))
    assert resources.typical_errors(built_3d=True) == built
    at.button(key="pred_go").click().run()
    assert f"off by {built['gap']:.0f} meV" in at.info[0].value
    assert at.dataframe[1].value[TYPICAL_ERROR].tolist() == [built[p.key] for p in PROPERTIES]


def test_a_flexible_smiles_shows_the_range_over_its_conformers():
    """Glycerol's dipole hangs on its conformer: the detail shows the mean with the lowest and highest conformer,
    and any one conformer in the viewer with its own values; the CSV the range; one conformer (faster) none."""
    from app.tables import HIGHEST, LOWEST, THIS_CONFORMER, results_table
    from unigem_core.io import read_molecules, to_sdf

    at = start("views/predict.py")
    at.text_area(key="pred_smiles").input("OCC(O)CO glycerol")
    at.button(key="pred_go").click().run()
    assert not at.exception, at.exception
    run = at.session_state["prediction_run"]
    conformers = run.predictions[0].conformers
    assert conformers > 1 and at.dataframe[0].value["conformers"].tolist() == [conformers]
    assert f"as {conformers} conformers" in at.info[0].value
    detail = next(d.value for d in at.dataframe if LOWEST in d.value.columns).set_index("Symbol")
    assert (detail[LOWEST] <= detail["Predicted"] + 1e-9).all()
    assert (detail["Predicted"] <= detail[HIGHEST] + 1e-9).all()
    assert detail.loc["mu", HIGHEST] - detail.loc["mu", LOWEST] > 0.3
    assert detail[THIS_CONFORMER].tolist() == [run.predictions[0].by_conformer[0][p.key] for p in PROPERTIES]
    at.slider(key="pred_conformer_0").set_value(conformers).run()  # the last conformer
    last = next(d.value for d in at.dataframe if LOWEST in d.value.columns)
    assert last[THIS_CONFORMER].tolist() == [run.predictions[0].by_conformer[-1][p.key] for p in PROPERTIES]
    csv = results_table(run, dft=True)
    assert csv["min mu [D]"].iloc[0] == detail.loc["mu", LOWEST] and "min mu [D]" not in at.dataframe[0].value
    sdf = read_molecules(to_sdf(run.molecules()).encode(), "p.sdf")  # every conformer, with its own predictions
    assert [r.name for r in sdf] == [f"glycerol, conformer {j} of {conformers}" for j in range(1, conformers + 1)]
    each = run.predictions[0].by_conformer
    assert [r.molecule.properties["mu"] for r in sdf] == pytest.approx([c["mu"] for c in each])

    at.number_input(key="pred_conformers").set_value(1)
    at.button(key="pred_go").click().run()
    single = at.session_state["prediction_run"]
    assert single.predictions[0].conformers == 1
    [mol] = single.molecules()
    assert mol.name == "glycerol" and mol.properties == single.predictions[0].properties
    assert not any(LOWEST in d.value.columns for d in at.dataframe) and "The model first moves it" in at.info[0].value
    assert "relaxed with MMFF94, then GFN2-xTB" in at.info[0].value

    at.selectbox(key="pred_relax").set_value("mmff")  # the force field alone: faster, further from DFT
    at.button(key="pred_go").click().run()
    assert at.session_state["prediction_run"].records[0].molecule.relaxation == "MMFF94"
    assert "(RDKit's ETKDG, relaxed with MMFF94)" in at.info[0].value


def test_predict_without_input_says_so():
    at = start("views/predict.py")
    at.button(key="pred_go").click().run()
    assert not at.exception and "Nothing to predict" in at.warning[0].value


# --- Model -------------------------------------------------------------------------------------------

def test_model_page_without_card(no_card):
    at = start("views/model.py")
    assert "No model card yet" in at.info[0].value
    from app import resources

    engine = resources.get_engine("auto")
    assert metric(at, "Diffusion steps T / t_n") == f"{engine.num_steps} / {engine.t_n}"


def test_model_page_with_card(monkeypatch, tmp_path):
    card = {
        "config": {"preset": "small", "model": {"hidden": 128}},
        "training_curve": [{"epoch": e, "step": 1000 * e, "atom_stability": 0.5 + 0.1 * e,
                            "molecule_stability": 0.1 * e, "validity": 0.2 * e, "loss": 2.0 / (e + 1)}
                           for e in range(4)],
        "generation": {"1000": {"atom_stability": 0.97, "molecule_stability": 0.7, "validity": 0.9,
                                "uniqueness": 0.98, "valid_x_unique": 0.88, "n_molecules": 1000,
                                "command": "unigem evaluate --steps 1000", "unstable_atoms": {"C:3": 39, "N:4": 1}},
                       "100": {"atom_stability": 0.9, "molecule_stability": 0.4, "validity": 0.8},
                       "100+r1": {"atom_stability": 0.95, "molecule_stability": 0.8, "validity": 0.9, "steps": 100,
                                  "resample": 1, "resample_below": 100},
                       "25+r3": {"atom_stability": 0.96, "molecule_stability": 0.85, "validity": 0.9, "steps": 25,
                                 "resample": 3, "novelty": 0.65,
                                 "qm9": {"n_valid": 900, "in_qm9": 0.4, "in_training_split": 0.3, "n_compared": 360,
                                         "mae_vs_dft": {"mu": 0.6}, "n_unseen": 90, "mae_vs_dft_unseen": {"mu": 0.7}}},
                       "10+r9": {"steps": 10, "resample": 9, "qm9": {"n_unseen": 5, "mae_vs_dft_unseen": {"mu": 9.0}}}},
        "properties": {"mae": {"mu": 0.5, "homo": 120.0}, "command": "unigem evaluate --properties"},
        "properties_from_smiles": {"mae": {"mu": 0.9}, "geometry": "smiles", "n_property_molecules": 998,
                                   "n_refused": 2, "conformers": 20, "conformers_mean": 12.24, "relax": "xtb",
                                   "n_force_field_only": 3,
                                   "command": "unigem evaluate --properties --geometry smiles"},
        "training": {"hardware": "1x H100", "seconds": 7200},
        "validation_curve": [{"step": 2000 * e, "epoch": e, "val_loss": 0.3 - 0.01 * e, "val_prop_mae_norm": 0.06}
                             for e in range(1, 4)],
        "validation_loss": {"validation_loss": {"loss": 0.2215, "coord": 0.197, "prop_mae_norm": 0.0489,
                                                "type_accuracy": 1.0},
                            "n_loss_molecules": 1024, "loss_precision": "fp32",
                            "command": "unigem evaluate --n 0 --loss --precision fp32 --json"},
    }
    path = tmp_path / "model_card.json"
    path.write_text(json.dumps(card))
    monkeypatch.setenv("UNIGEM_MODEL_CARD", str(path))
    at = start("views/model.py")
    assert not at.info and len(at.get("plotly_chart")) == 2  # the training and the validation curve

    tiles = [(m.label, m.value) for m in at.metric]
    first = tiles.index(("Molecule stability", "70.0%"))
    assert tiles[first:first + 4] == [("Molecule stability", "70.0%"), ("Valid × unique", "88.0%"),
                                      ("Molecule stability", "85.0%"),  # the best refined sampler
                                      ("Dipole moment MAE", "0.5 D")]
    captions = {c.value for c in at.caption}
    assert {"1,000 steps · published UniGEM: 89.8%", "1,000 steps · published UniGEM: 93.2%",
            "25 steps + 3 refinement rounds · published UniGEM: 89.8% · novel: 65.0%",
            "published EGNN: 0.029 D"} <= captions
    generation = at.dataframe[0].value
    assert generation["model"].tolist()[:4] == ["this model · 1,000 steps, 1,000 molecules", "this model · 100 steps",
                                                "this model · 100 steps + 1 refinement round below t = 100",
                                                "this model · 25 steps + 3 refinement rounds"]
    assert len(generation) == 5 + len(PUBLISHED_GENERATION)
    assert generation["Mol. stable"].iloc[0] == "70.0%"
    assert ("Where the molecules of 1,000 steps fail: 39 carbons with valence 3 (C takes 4), 1 nitrogen with valence 4 "
            "(N takes 3).") in [c.value for c in at.caption]
    mae = at.dataframe[1].value
    assert len(mae) == 12 and mae["this model (MAE)"].iloc[0] == 0.5 and mae["EGNN, published (MAE)"].iloc[0] == 0.029
    assert mae["from SMILES (MAE)"].iloc[0] == 0.9 and "unigem evaluate --properties --geometry smiles" in \
        [c.value for c in at.code]
    assert any("998 molecules (2 that RDKit could not build left out), 12.2 conformers each on average, relaxed with "
               "GFN2-xTB (3 kept their force-field geometry" in c.value for c in at.caption)
    assert mae["generated, vs QM9 (MAE)"].iloc[0] == 0.7  # the evaluation that compared the most molecules
    assert any("made with 25 steps + 3 refinement rounds, 40.0% have a bond graph that QM9 holds (30.0% in its "
               "training split); for the 90 found" in c.value for c in at.caption)
    assert "unigem evaluate --steps 1000" in [c.value for c in at.code]
    assert [m.value for m in at.metric][-3:] == ["0.2215", "0.1970", "0.0489"]
    assert "unigem evaluate --n 0 --loss --precision fp32 --json" in [c.value for c in at.code]
    training = at.dataframe[2].value
    assert "1x H100" in training["value"].tolist() and "2.00 h (7,200 s)" in training["value"].tolist()


def test_training_curve_shows_each_snapshot_and_a_running_mean(monkeypatch):
    from app.components import curves

    monkeypatch.setattr(curves, "CURVE_WINDOW", 3)
    stability = [0.5, 0.7, 0.6, 0.8, 0.7]
    curve = [{"epoch": 5 * (k + 1), "step": 1000 * (k + 1), "molecule_stability": p, "n_molecules": 100, "steps": 100,
              "command": f"unigem evaluate --checkpoint epoch{5 * (k + 1)}.pt"} for k, p in enumerate(stability)]
    fig = curves.curve_figure(list(reversed(curve)))  # in any order: drawn by step
    points, mean = fig.data
    assert list(points.x) == [1000, 2000, 3000, 4000, 5000] and points.mode == "markers"
    assert points.customdata[0] == "epoch 5 · 100 molecules"
    assert mean.mode == "lines" and mean.name == "molecule stability, mean of 3"
    assert list(mean.y) == pytest.approx([60.0, 60.0, 70.0, 70.0, 75.0])  # centred; two points at the ends
    caption = curves.curve_caption(curve)
    # the error at the mean of the last 3 points (70 %): sqrt(0.7 * 0.3 / 100) = 4.6 points
    assert "(100 molecules, 100 sampling steps)" in caption and "70 % molecule stability" in caption
    assert "±4.6 percentage points" in caption and "unigem evaluate --checkpoint epoch25.pt" in caption
    assert curves.curve_caption([{"step": 1, "validity": 0.5}]) == \
        "Each point measures one epoch's snapshot of the EMA weights as training ran."


def test_model_page_survives_a_broken_card(monkeypatch, tmp_path):
    path = tmp_path / "model_card.json"
    path.write_text('{"generation": {"50": {}}, "training_curve": [{"step": 1}], "properties": null')  # cut short
    monkeypatch.setenv("UNIGEM_MODEL_CARD", str(path))
    at = start("views/model.py")
    assert "No model card yet" in at.info[0].value
    path.write_text(json.dumps({"generation": {"50": {}}, "training_curve": [{"step": 1}], "properties": None}))
    at.run()
    assert not at.exception and len(at.dataframe[0].value) == 1 + len(PUBLISHED_GENERATION)


# --- Components (pure HTML builders) -----------------------------------------------------------------

def test_viewer_prefers_local_3dmol_and_falls_back_to_cdn(monkeypatch, tmp_path):
    from app.components import viewer

    monkeypatch.setattr(viewer, "LOCAL_JS", tmp_path / "missing.js")
    assert viewer.script_sources() == [viewer.CDN_URL]
    (tmp_path / "3Dmol-min.js").write_text("// stub")
    monkeypatch.setattr(viewer, "LOCAL_JS", tmp_path / "3Dmol-min.js")
    assert viewer.script_sources() == [viewer.STATIC_URL, viewer.CDN_URL]
    html = viewer.molecule_html(("C", "O"), [[0, 0, 0], [1.2, 0, 0]])
    assert "</script>" not in html.split("var DATA = ")[1].split(";\n")[0]  # data cannot end the script early
