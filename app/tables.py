"""The tables, labels and notes the pages build from a run's molecules and predictions (no torch here).

Pure functions over app.state's runs and unigem_core's results, so the AppTests and the CSV downloads check the
same rows the pages draw.
"""
from __future__ import annotations

import io
import re

import pandas as pd

from app.state import GenerationRun, PredictionRun
from unigem_core.constants import PROPERTIES
from unigem_core.metrics import QM9Entry, QM9Lookup, Similar, ValenceProblem
from unigem_core.metrics.lookup import dft_errors
from unigem_core.molecule import GeneratedMolecule, Molecule
from unigem_core.prediction import Prediction, predictions_table


# printf formats of the property columns: energies in meV to 0.1 meV, the rest to four significant digits.
PROPERTY_FORMATS = {p.column: "%.1f" if p.report_unit == "meV" else "%.4g" for p in PROPERTIES}


LOWEST, HIGHEST = "Lowest conformer", "Highest conformer"  # property_rows: the range over a molecule's conformers
THIS_CONFORMER = "This conformer"  # property_rows: the values of the conformer in the viewer
TYPICAL_ERROR = "Typical error"  # the column of property_rows that holds the model's test MAE
TYPICAL_ERROR_HELP = ("The model's mean absolute error for this property on the 13,083 molecules of the QM9 test "
                      "split (Model page): how far off a prediction typically is")
TYPICAL_ERROR_GENERATED_HELP = ("The model's mean absolute error for this property on generated molecules whose bond "
                                 "graph QM9 holds outside its training split: the prediction from the generated "
                                 "geometry against QM9's DFT value (Model page). Larger than at DFT geometries: a "
                                 "generated geometry is not a DFT optimum")
TYPICAL_ERROR_BUILT_HELP = ("The model's mean absolute error for this property on the QM9 test split's molecules "
                            "rebuilt from their SMILES as this one was (RDKit conformers, refined by the model, "
                            "their predictions averaged; Model page): larger than at the DFT geometries the model "
                            "learnt from")
PREDICTED_BUILT_HELP = "The mean of the predictions for the conformers RDKit built, each refined by the model"


QM9_DFT = "QM9 (DFT)"  # the column of property_rows that holds QM9's value for the same molecule
QM9_DFT_HELP = ("QM9's value for the molecule with this bond graph, computed with DFT (B3LYP/6-31G(2df,p)) at QM9's "
                "own geometry: the kind of answer the model learnt to give")


def qm9_label(entries: tuple[QM9Entry, ...]) -> str:
    """"#1234 (test)", with "+1" for each further QM9 molecule of the same bond graph; "" for none."""
    if not entries:
        return ""
    more = f" +{len(entries) - 1}" if len(entries) > 1 else ""
    return f"#{entries[0].number} ({entries[0].split}){more}"


def qm9_note(entries: tuple[QM9Entry, ...]) -> str:
    """One sentence on where QM9 holds the molecule and what that means for its predictions."""
    first = entries[0]
    others = ""
    if len(entries) > 1:
        others = (f" (and {len(entries) - 1} more with the same bond graph: "
                  + ", ".join(f"#{e.number}" for e in entries[1:4]) + (", …" if len(entries) > 4 else "") + ")")
    seen = ("the model was trained on its DFT values" if first.split == "train"
            else "the model never saw it in training")
    return f"{first.label} has this bond graph{others}: its DFT values stand beside the predictions; {seen}."


def closest_label(near: Similar | None) -> str:
    """"#1234 (Tanimoto 0.62)", or "" for none."""
    return "" if near is None else f"#{near.entry.number} (Tanimoto {near.tanimoto:.2f})"


def closest_note(near: Similar) -> str:
    """One sentence on the QM9 molecule most like a molecule that QM9 does not hold."""
    gap = near.entry.properties.get("gap")
    dft = f"; its DFT gap is {gap:,.0f} meV" if gap is not None else ""
    return (f"Not in QM9. Most similar there: `{near.entry.smiles}`, {near.entry.label}, Tanimoto "
            f"{near.tanimoto:.2f} (ECFP4){dft}.")


def reason(error: str) -> str:
    """The refusal message without the reader's "record 3: " prefix (the table has its own column)."""
    return re.sub(r"^record \d+: ", "", error)


def results_table(run: PredictionRun, dft: bool = False) -> pd.DataFrame:
    """One row per record: where it came from, its status, identity, the QM9 molecule with its bond graph (when
    the prediction was made with QM9's lookup), then the twelve properties; dft (for the CSV) adds that QM9
    molecule's DFT values ("qm9 gap [meV]", as `unigem predict --qm9` writes them) and each property's range over
    a built molecule's conformers ("min gap [meV]", "max gap [meV]", as `unigem predict --ranges`)."""
    rows = []
    answers = predictions_table(run.predictions, qm9=dft and run.with_qm9, ranges=dft)  # QM9's, ranges: the CSV
    for rec, pred, row in zip(run.records, run.predictions, answers):
        error, warnings = row.pop("error"), row.pop("warnings")
        status = f"refused: {reason(error)}" if error else ("predicted" + (f" ({warnings})" if warnings else ""))
        atoms = row.pop("n_atoms") or None  # 0 means the record was never read
        qm9 = {"QM9": qm9_label(pred.qm9), "closest in QM9": closest_label(pred.closest)} if run.with_qm9 else {}
        values = {key: row.pop(key) for key in [k for k in row if k.startswith("qm9")]}  # with dft: number, split, ...
        values = {key: value for key, value in values.items() if key.startswith("qm9 ")}  # ... keep the DFT values
        rows.append({"source": rec.source or "", "record": rec.index, "name": row.pop("name"), "status": status,
                     "formula": row.pop("formula"), **qm9, "atoms": atoms, "geometry": row.pop("geometry"), **row,
                     **values})
    return pd.DataFrame(rows)


def qm9_agreement(predictions: list[Prediction]) -> tuple[pd.DataFrame, int, int] | None:
    """How close the predictions of the records QM9 holds came to its DFT values: a table of the mean absolute
    difference per property, over all of them and over those outside QM9's training split (whose values the
    model never saw), with the two counts; None when no predicted record is in QM9."""
    errors = dft_errors([(p.properties, p.qm9) for p in predictions if p.qm9 and p.properties])
    if not errors["n_compared"]:
        return None
    unseen = errors["mae_vs_dft_unseen"] or {}
    table = pd.DataFrame([{"Property": p.label, "Symbol": p.key, "Unit": p.report_unit,
                           "All found (MAE)": errors["mae_vs_dft"][p.key],
                           "Outside training split (MAE)": unseen.get(p.key)} for p in PROPERTIES])
    return table, errors["n_compared"], errors["n_unseen"]


def property_rows(properties: dict[str, float] | None, typical_error: dict[str, float] | None = None,
                  in_file: dict[str, float] | None = None, qm9: dict[str, float] | None = None,
                  ranges: dict[str, tuple[float, float]] | None = None,
                  conformer: dict[str, float] | None = None) -> pd.DataFrame:
    """The twelve properties of one molecule as a small table: property, predicted value, unit.

    `typical_error` (the model card's test-split MAE per property) adds how far off a prediction
    typically is; `in_file` (values read from the input's SD tags) adds them and the prediction's
    difference from them, so a chemist who knows the answer sees at once how close the model came;
    `qm9` (QM9Entry.properties of the same molecule) adds QM9's DFT values and the difference from them;
    `ranges` (Prediction.ranges of a molecule built as several conformers, whose mean `properties` holds) adds the
    lowest and highest value over them, and `conformer` (one of Prediction.by_conformer) that conformer's values.
    """
    rows = []
    for p in PROPERTIES:
        value = None if properties is None else properties.get(p.key)
        row = {"Property": p.label, "Symbol": p.key, "Predicted": value}
        if ranges:
            row[LOWEST], row[HIGHEST] = ranges.get(p.key, (None, None))
        if conformer:
            row[THIS_CONFORMER] = conformer.get(p.key)
        if typical_error:
            row[TYPICAL_ERROR] = typical_error.get(p.key)
        row["Unit"] = p.report_unit
        if in_file:
            known = in_file.get(p.key)
            row["In file"] = known
            row["Difference"] = None if value is None or known is None else value - known
        if qm9:
            dft = qm9.get(p.key)
            row[QM9_DFT] = dft
            row["vs QM9"] = None if value is None or dft is None else value - dft
        rows.append(row)
    return pd.DataFrame(rows)


def property_columns(built_3d: bool = False) -> dict:
    """Streamlit column settings for a property_rows table: number formats, and what each column means
    (built_3d: the typical errors are those of geometries RDKit built, typical_errors(built_3d=True))."""
    import streamlit as st

    number = st.column_config.NumberColumn
    return {"Predicted": number(format="%.6g", help=PREDICTED_BUILT_HELP if built_3d else None),
            LOWEST: number(format="%.6g", help="The lowest value predicted for one of the molecule's conformers"),
            HIGHEST: number(format="%.6g", help="The highest value predicted for one of the molecule's conformers"),
            THIS_CONFORMER: number(format="%.6g", help="The prediction for the conformer in the viewer"),
            TYPICAL_ERROR: number(format="%.3g", help=TYPICAL_ERROR_BUILT_HELP if built_3d else TYPICAL_ERROR_HELP),
            "In file": number(format="%.6g", help="The value given in the uploaded file's SD tags"),
            "Difference": number(format="%.3g", help="Predicted minus the value in the file"),
            QM9_DFT: number(format="%.6g", help=QM9_DFT_HELP),
            "vs QM9": number(format="%.3g", help="Predicted minus QM9's DFT value")}


def is_novel(g: GeneratedMolecule, training_smiles: frozenset[str]) -> bool | None:
    """Whether a valid molecule's SMILES (spec 8.3 form) is absent from QM9's training set; None if it is invalid."""
    return g.smiles not in training_smiles if g.valid else None


def generation_table(run: GenerationRun, indices: list[int] | None = None,
                     training_smiles: frozenset[str] | None = None, lookup: QM9Lookup | None = None) -> pd.DataFrame:
    """One row per generated molecule: identity, checks, then the twelve properties with units.

    With `training_smiles`, a "novel" column says whether each valid molecule is absent from QM9's
    training set (empty for an invalid one); with `lookup`, a "QM9" column names the QM9 molecule with
    the same bond graph, in any split (qm9_label), and for a valid molecule QM9 lacks, "closest in QM9" the
    most similar one.
    """
    matches, closest = run.qm9(lookup), run.closest(lookup)
    rows = []
    for i in range(len(run.molecules)) if indices is None else indices:
        g = run.molecules[i]
        stable_atoms = 0 if g.atom_stable is None else int(g.atom_stable.sum())
        row = {"#": i + 1, "seed": g.seed, "formula": g.molecule.formula, "atoms": g.molecule.n_atoms,
               "SMILES": run.readable_smiles[i] or "", "stable": g.stable, "valid": g.valid,
               "stable atoms": f"{stable_atoms}/{g.molecule.n_atoms}",
               "unstable atoms (valence)": " ".join(f"{p.label}({p.valence})" for p in run.problems[i])}
        if training_smiles is not None:
            row["novel"] = is_novel(g, training_smiles)
        if matches is not None:
            row["QM9"] = qm9_label(matches[i])
            row["closest in QM9"] = closest_label(closest[i])
        row.update({p.column: (g.molecule.properties or {}).get(p.key) for p in PROPERTIES})
        rows.append(row)
    return pd.DataFrame(rows)


def describe_problems(problems: list[ValenceProblem], most: int = 4) -> str:
    """"C5 has valence 3 (C takes 4); ...; 2 more": the first few unstable atoms of a molecule, and how many else."""
    more = f"; {len(problems) - most} more" if len(problems) > most else ""
    return "; ".join(str(p) for p in problems[:most]) + more


def to_csv(frame: pd.DataFrame) -> str:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, float_format="%.6g")
    return buffer.getvalue()


def named_molecules(run: GenerationRun, indices: list[int]) -> list[Molecule]:
    """The molecules to write to SDF/XYZ, named so that a file row maps back to the gallery."""
    out = []
    for i in indices:
        m = run.molecules[i].molecule
        out.append(Molecule(m.symbols, m.positions, name=f"unigem_{i + 1}_seed{run.molecules[i].seed}",
                            properties=m.properties))
    return out
