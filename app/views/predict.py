"""Predict page: the twelve QM9 properties of molecules the user brings (spec 7).

Inputs: XYZ/SDF/MOL/SMILES files (several, many records each, gzip allowed), pasted XYZ text, or
SMILES lines (3D conformers are built with RDKit and relaxed with GFN2-xTB; the properties are their mean).
Every record gets a row: its properties, or a clear reason why it was refused; one bad record never stops the
others.
"""
from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from app import resources
from app.components.viewer import show_molecule
from app.state import PREDICTION, PredictionRun
from app.tables import (PROPERTY_FORMATS, closest_note, property_columns, property_rows, qm9_agreement, qm9_note,
                        reason, results_table, to_csv)
from unigem_core import api
from unigem_core.constants import CONFORMERS, MAX_ATOMS, RELAX
from unigem_core.io import parse_text, read_molecules, to_sdf
from unigem_core.molecule import Record

FILE_TYPES = ["xyz", "sdf", "sd", "mol", "smi", "smiles", "txt", "gz"]
XYZ_EXAMPLE = """3
water
O   0.0000   0.0000   0.1173
H   0.0000   0.7572  -0.4692
H   0.0000  -0.7572  -0.4692"""
SMILES_EXAMPLE = "CCO ethanol\nc1ccccc1 benzene"
MAX_CONFORMERS = 100
# The relaxations a user picks from (constants.RELAXATIONS), as the page names them
RELAX_LABELS = {"xtb": "GFN2-xTB (closer to DFT)", "mmff": "MMFF force field only (about 18x faster)"}


def collect_records(files, xyz_text: str, smiles_text: str, conformers: int = CONFORMERS, relax: str = RELAX,
                    on_record: Callable[[Record], None] | None = None) -> list[Record]:
    """All input records in order: files first, then pasted XYZ, then SMILES lines (a molecule given by its bonds
    is built as `conformers` conformers, relaxed as `relax` says); `on_record` sees each as it is read."""
    records: list[Record] = []
    for f in files or []:
        records += read_molecules(f.getvalue(), f.name, conformers=conformers, relax=relax, on_record=on_record)
    if xyz_text.strip():
        for rec in parse_text(xyz_text, "xyz", on_record=on_record):
            rec.source = "pasted XYZ"
            records.append(rec)
    if smiles_text.strip():
        for rec in parse_text(smiles_text, "smiles", conformers=conformers, relax=relax, on_record=on_record):
            rec.source = "SMILES"
            records.append(rec)
    return records


def where(record: Record, prediction) -> str:
    """"**file.sdf**, record 3 (name)": how a message points at one record."""
    return f"**{record.source or 'input'}**, record {record.index} ({prediction.name})"


def _styled(table: pd.DataFrame):
    """Refused rows in red, so they stand out in a long table."""
    def colour(row: pd.Series) -> list[str]:
        return ["color: #b3261e" if row["status"].startswith("refused") else ""] * len(row)
    return table.style.apply(colour, axis=1)


def _inputs() -> tuple[list, str, str, int, str]:
    upload, paste, smiles = st.tabs(["Upload files", "Paste XYZ", "Type SMILES"])
    with upload:
        files = st.file_uploader("XYZ, SDF/MOL or SMILES files (several files, many molecules per file; .gz works)",
                                 type=FILE_TYPES, accept_multiple_files=True, key="pred_files")
    with paste:
        xyz_text = st.text_area("XYZ text (one or more blocks: atom count, comment line, then 'element x y z')",
                                height=200, placeholder=XYZ_EXAMPLE, key="pred_xyz")
    with smiles:
        smiles_text = st.text_area("SMILES, one per line, optionally followed by a name",
                                   height=200, placeholder=SMILES_EXAMPLE, key="pred_smiles",
                                   help="3D conformers are built with RDKit (ETKDG, then MMFF), hydrogens included, "
                                        "relaxed with GFN2-xTB and refined by the model's denoiser; the properties "
                                        "are their mean.")
    count, method, _ = st.columns([1, 1, 2])
    conformers = count.number_input(
        "Conformers per built molecule", min_value=1, max_value=MAX_CONFORMERS, value=CONFORMERS, key="pred_conformers",
        help="For a SMILES or a 2D drawing: how many conformers RDKit builds (near-duplicates dropped). The "
             f"predictions are their mean, and the record's detail shows their range. {CONFORMERS} came closer to "
             "QM9's values than 1 for every property measured; 1 is about ten times faster for long lists.")
    relax = method.selectbox(
        "Relax built conformers with", list(RELAX_LABELS), format_func=RELAX_LABELS.get, key="pred_relax",
        help="After the MMFF force field, GFN2-xTB (semi-empirical quantum chemistry) moves each conformer closer "
             "to a DFT geometry like QM9's: on QM9 molecules typed as SMILES it brought the predicted polarisability, "
             "orbital energies, U0 and heat capacity 16-28 % closer to QM9's values. It takes 0.1-0.2 s per "
             "conformer (about a second per SMILES); the force field alone is about 18 times faster.")
    return files, xyz_text, smiles_text, int(conformers), relax


def _refusals(run: PredictionRun) -> None:
    refused = [(r, p) for r, p in zip(run.records, run.predictions) if p.error]
    ok = len(run.predictions) - len(refused)
    st.markdown(f"**{len(run.predictions)} record{'s' if len(run.predictions) != 1 else ''}:** "
                f":green[{ok} predicted] · :red[{len(refused)} refused]")
    if refused:
        lines = [f"- {where(r, p)}: {reason(p.error)}" for r, p in refused[:50]]
        more = f"\n- … and {len(refused) - 50} more (see the table)" if len(refused) > 50 else ""
        st.error(f"Refused records (the model reads neutral molecules of H, C, N, O, F with at most "
                 f"{MAX_ATOMS} atoms):\n" + "\n".join(lines) + more)
    warned = [(r, p) for r, p in zip(run.records, run.predictions) if p.warnings and not p.error]
    if warned:
        st.warning("Predicted with a caveat:\n" + "\n".join(
            f"- {where(r, p)}: {'; '.join(p.warnings)}" for r, p in warned[:50]))


def _detail(run: PredictionRun) -> None:
    good = [k for k, p in enumerate(run.predictions) if p.properties is not None]
    if not good:
        return
    st.subheader("Selected record")

    def label(k: int) -> str:
        r, p = run.records[k], run.predictions[k]
        return f"{r.source or 'input'} · record {r.index} · {p.name} · {p.formula}"

    k = st.selectbox("Record", good, format_func=label, key="pred_pick")
    rec, pred = run.records[k], run.predictions[k]
    from_smiles = resources.typical_errors(built_3d=True) if rec.molecule.built_3d else {}
    if rec.molecule.built_3d:
        _built_geometry_note(from_smiles, pred.conformers, rec.molecule.relaxation)
    if pred.qm9:
        st.caption(f":material/menu_book: {qm9_note(pred.qm9)} QM9's SMILES: `{pred.qm9[0].smiles}`.")
    elif pred.closest is not None:
        st.caption(closest_note(pred.closest))
    positions, title, conformer = rec.molecule.positions, label(k), None
    if pred.by_conformer:  # one of them in the viewer, with its own predictions in the table
        j = st.slider("Conformer (1: lowest energy)", 1, len(pred.by_conformer), 1, key=f"pred_conformer_{k}",
                      help="The viewer shows this conformer as it was built (ETKDG, then "
                           f"{rec.molecule.relaxation or 'no relaxation'}); the table adds the model's "
                           "predictions for it (read after its refinement)")
        positions, conformer = rec.molecule.conformers[j - 1], pred.by_conformer[j - 1]
        title = f"{title} · conformer {j}"
    table = property_rows(pred.properties, from_smiles or resources.typical_errors(), rec.molecule.properties,
                          pred.qm9[0].properties if pred.qm9 else None, pred.ranges, conformer)
    columns = property_columns(built_3d=bool(from_smiles))
    if rec.molecule.properties or pred.qm9:  # reference values and the differences need the page's width
        show_molecule(rec.molecule.symbols, positions, height=320, title=title)
        st.dataframe(table, hide_index=True, width="stretch", height=35 * 13 + 3, column_config=columns)
        return
    left, right = st.columns([2, 3], gap="large")
    with left:
        show_molecule(rec.molecule.symbols, positions, height=380, title=title)
    with right:
        st.dataframe(table, hide_index=True, width="stretch", height=35 * 13 + 3, column_config=columns)


def _counter(place) -> Callable[[Record], None]:
    """An on_record callback that keeps "12 records read, the last: glycerol" in `place` (an st.empty)."""
    read = []

    def tick(rec: Record) -> None:
        read.append(rec)
        place.caption(f"{len(read)} record{'s' if len(read) != 1 else ''} read, the last: {rec.name}")
    return tick


def _built_geometry_note(from_smiles: dict[str, float], conformers: int, relaxation: str | None) -> None:
    """Why a molecule typed as SMILES (or drawn in 2D) is predicted less well than one with its DFT geometry, and
    what its conformers mean; from_smiles: the card's typical errors of such geometries ({} when it has none);
    relaxation: what relaxed the conformers (Molecule.relaxation)."""
    relaxed = f"relaxed with {relaxation.replace(' + ', ', then ')}" if relaxation else "not relaxed"
    at_dft = ((resources.model_card() or {}).get("properties_from_smiles") or {}).get("mae_qm9_geometry") or {}
    if "gap" in from_smiles and isinstance(at_dft.get("gap"), (int, float)):
        size = (f" On QM9's test molecules built this way the gap is off by {from_smiles['gap']:.0f} meV on "
                f"average, against {at_dft['gap']:.0f} meV at their DFT geometries; the typical errors below are "
                "those of built geometries.")
    elif from_smiles:
        size = " The typical errors below are those of QM9's test molecules built this way."
    else:
        size = " The typical errors below were measured at DFT geometries, so they understate this one's."
    if conformers > 1:
        built = (f"This geometry was built from the bonds as {conformers} conformers (RDKit's ETKDG, {relaxed}; "
                 "the slider picks the one in the viewer), not a DFT optimisation like QM9's. The model moves each "
                 "towards the DFT geometries it learnt (three denoising steps from t = 30) and the values are their "
                 "mean; a wide range between the lowest and highest conformer (the dipole moment, the spatial extent "
                 "r2) means the answer hangs on which conformer the molecule takes.")
    else:
        built = (f"This geometry was built from the bonds (RDKit's ETKDG, {relaxed}), not a DFT optimisation like "
                 "QM9's. The model first moves it towards the DFT geometries it learnt (three denoising steps from "
                 "t = 30).")
    st.info(built + " The predictions stay less accurate than for a geometry from a quantum-chemistry calculation."
            + size, icon=":material/info:")


def render() -> None:
    st.title("Predict properties")
    st.caption("The growth branch of the same network reads all twelve QM9 properties from a 3D geometry "
               "with explicit hydrogens. Energies are in meV, as in the paper's tables.")
    files, xyz_text, smiles_text, conformers, relax = _inputs()
    if st.button("Predict", type="primary", icon=":material/query_stats:", key="pred_go"):
        with st.spinner("Reading the input (a SMILES or a 2D drawing gets its 3D conformers built"
                        + (", about a second each with GFN2-xTB" if relax == "xtb" else "") + ")…"):
            count = st.empty()
            records = collect_records(files, xyz_text, smiles_text, conformers, relax, _counter(count))
            count.empty()
        if not records:
            st.warning("Nothing to predict: upload a file, paste XYZ text or type a SMILES first.")
        else:
            try:
                engine = resources.get_engine("auto")
            except (RuntimeError, FileNotFoundError) as exc:
                st.error(f"Cannot load the model: {exc}")
                return
            lookup = resources.qm9_reference().lookup()  # None while QM9 loads: no DFT values this time
            with st.spinner(f"Predicting {len(records)} record(s)…"):
                predictions = api.predict_records(engine, records, lookup=lookup)
                st.session_state[PREDICTION] = PredictionRun(records, predictions, with_qm9=lookup is not None)
    run: PredictionRun | None = st.session_state.get(PREDICTION)
    if run is None:
        return
    _refusals(run)
    table = results_table(run)
    number = st.column_config.NumberColumn
    integer = number(format="%d")
    columns = {"atoms": integer, "conformers": integer, **{c: number(format=f) for c, f in PROPERTY_FORMATS.items()}}
    st.dataframe(_styled(table), hide_index=True, width="stretch", column_config=columns)
    csv_button, sdf_button, _ = st.columns([1, 1, 2])
    csv_button.download_button("Table as CSV", lambda: to_csv(results_table(run, dft=True)), "unigem_predictions.csv",
                               "text/csv", on_click="ignore", icon=":material/download:", key="dl_pred_csv",
                               width="stretch")
    sdf_button.download_button("Molecules as SDF", lambda: to_sdf(run.molecules()), "unigem_predictions.sdf",
                               "chemical/x-mdl-sdfile", on_click="ignore", icon=":material/download:",
                               key="dl_pred_sdf", width="stretch",
                               help="Each predicted molecule in 3D with its predictions as SD tags; a SMILES's "
                                    "conformers one by one, each with its own predictions")
    _against_qm9(run)
    _detail(run)


def _against_qm9(run: PredictionRun) -> None:
    """A batch check: how close the predictions of the records QM9 holds came to its DFT values (or why QM9 was
    not looked up)."""
    if not run.with_qm9:
        error = resources.qm9_reference().error
        st.caption(f"QM9's DFT values are not available here ({error})." if error else
                   "QM9's index was still loading: press Predict again in a moment to see QM9's DFT values beside "
                   "the records it holds.")
        return
    agreement = qm9_agreement(run.predictions)
    if agreement is None:
        return
    table, found, unseen = agreement
    held = f"{found} records are QM9 molecules" if found > 1 else "1 record is a QM9 molecule"
    with st.expander(f"Against QM9: {held} ({unseen} outside its training split)"):
        st.caption("Mean absolute difference between the predictions and QM9's DFT values (at QM9's own geometry) for "
                   "the records whose bond graph QM9 holds; the model never saw the values of those outside the "
                   "training split. A geometry other than QM9's DFT one (a force field's, a generated one) adds to it.")
        number = st.column_config.NumberColumn
        st.dataframe(table, hide_index=True, width="stretch",
                     column_config={"All found (MAE)": number(format="%.3g"),
                                    "Outside training split (MAE)": number(format="%.3g")})


render()
