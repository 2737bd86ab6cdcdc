"""What the pages keep in `st.session_state` and the tables built from it (no torch here).

Results live under plain keys (never widget keys), so they survive reruns and page switches:
  GENERATION -> GenerationRun   (Generate page; the Trajectory page reads it)
  PREDICTION -> PredictionRun   (Predict page)
"""
from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field, replace

import pandas as pd

from unigem_core.constants import PROPERTIES
from unigem_core.metrics import QM9Entry, QM9Lookup, Similar, ValenceProblem, to_smiles, valence_problems
from unigem_core.metrics.lookup import dft_errors
from unigem_core.molecule import GeneratedMolecule, Molecule, Record
from unigem_core.prediction import Prediction, predictions_table
from unigem_core.targets import PropertyRange
from unigem_core.targets import describe as describe_targets

GENERATION = "generation_run"
PREDICTION = "prediction_run"

ATOMS_FROM_DATA = "From the training distribution"  # choices of the "Atoms per molecule" radio
ATOMS_FIXED = "Fixed number"

# Widget keys -> their defaults. app/main.py writes these into session state before every run, which
# sets the defaults once and keeps a widget's value when its page is not drawn (Streamlit otherwise
# forgets it). Widgets with these keys are therefore created without a default of their own.
WIDGET_DEFAULTS = {
    "gen_n": 4,  # molecules per run
    "gen_steps": 50,  # a fast preview; the full 1,000 steps are one click away
    # refinement rounds of every step (sampler resampling); 0 is the paper's sampler. 50 steps + 1 round is
    # 101 network calls, as many as 100 plain steps, and made 85 % of molecules stable against 75 % (model card)
    "gen_resample": 1,
    "gen_atoms_mode": ATOMS_FROM_DATA,
    "gen_atoms": 19,  # close to the QM9 average of 18 atoms (hydrogens included)
    "gen_seed": 0,
    "gen_device": "Auto",
    "gen_only_valid": False,
    "gen_keep_valid": False,
    "gen_keep_novel": False,  # valid molecules that QM9's training set does not hold
    "gen_targets": [],  # property keys with a target range; each range lives under TARGET_KEY + key
    "pred_xyz": "",
    "pred_smiles": "",
    "traj_autoplay": True,
}


TARGET_KEY = "gen_target_"  # + property key: the (low, high) slider of that property's target
TARGET_SPAN = 4.0  # a target slider spans the training mean +- this many mean absolute deviations
NON_NEGATIVE = frozenset({"mu", "alpha", "gap", "r2", "zpve", "Cv"})  # their sliders start at 0 at the lowest
TARGET_SEEDS = 10  # with property targets, at most this many seeds per molecule asked for


@dataclass(frozen=True)
class TargetScale:
    """The range and step of one property's target slider, in reporting units."""

    low: float
    high: float
    step: float


def target_scales(mean: tuple[float, ...], mad: tuple[float, ...]) -> dict[str, TargetScale]:
    """Slider ranges from the model's property normaliser (training units): mean +- TARGET_SPAN MADs, in
    reporting units, on round steps of about a hundredth of the range. A slider end left at its extreme is
    an open bound, so molecules beyond the range are not lost."""
    scales = {}
    for p, m, d in zip(PROPERTIES, mean, mad):
        low, high = (m - TARGET_SPAN * d) * p.report_scale, (m + TARGET_SPAN * d) * p.report_scale
        if p.key in NON_NEGATIVE:
            low = max(low, 0.0)
        high = max(high, low + 1e-6)  # a degenerate normaliser still gives a slider
        step = 10.0 ** math.floor(math.log10((high - low) / 100))
        low, high = round(math.floor(low / step) * step, 9), round(math.ceil(high / step) * step, 9)
        scales[p.key] = TargetScale(low, high, step)
    return scales


def kept_kind(settings: dict, count: int) -> tuple[str, str]:
    """How a run that skipped seeds names what it kept and what it skipped:
    ("3 novel molecules with gap ≥ 7,000 meV", "invalid, known or off-target"); count 0 reads "No ...". """
    kind, skipped = ("novel", ["invalid", "known"]) if settings.get("keep_novel") else ("valid", ["invalid"])
    phrase = f"{count or 'No'} {kind} molecule{'s' if count > 1 else ''}"
    targets = settings.get("targets") or []
    if targets:
        phrase += " with " + describe_targets([PropertyRange(*t) for t in targets])
        skipped.append("off-target")
    return phrase, ", ".join(skipped[:-1]) + " or " + skipped[-1] if len(skipped) > 1 else skipped[0]


@dataclass
class GenerationRun:
    """One press of "Generate": the molecules and the settings that made them."""

    molecules: list[GeneratedMolecule]
    settings: dict  # n, steps, n_atoms (None = training distribution), seed, device, keep_valid, keep_novel,
    # targets ((key, low, high) in reporting units, None for an open bound)
    seconds: float  # wall-clock time of the sampling
    device: str  # the device the engine ran on and its precision, e.g. "cpu, fp32"
    seeds_tried: int | None = None  # with keep_valid: how many seeds were sampled to find the ones kept
    readable_smiles: list[str | None] = field(default_factory=list)  # heavy-atom SMILES, None if invalid
    problems: list[list[ValenceProblem]] = field(default_factory=list)  # per molecule, its unstable atoms
    qm9_matches: list[tuple[QM9Entry, ...]] | None = None  # per molecule, QM9's with its bond graph (see qm9)
    qm9_closest: list[Similar | None] | None = None  # per molecule QM9 lacks, the most similar QM9 molecule
    qm9_source: int | None = None  # id() of the lookup that found them

    def qm9(self, lookup: QM9Lookup | None) -> list[tuple[QM9Entry, ...]] | None:
        """Per molecule, the QM9 molecules with its bond graph (none for an invalid one); None until the lookup
        is there. Looked up once per lookup (with closest's answers): the page asks on every rerun."""
        if lookup is None:
            return None
        if self.qm9_source != id(lookup):
            answers = [lookup.match(g.molecule) if g.valid else ([], None) for g in self.molecules]
            self.qm9_matches = [tuple(entries) for entries, _ in answers]
            self.qm9_closest = [near for _, near in answers]
            self.qm9_source = id(lookup)
        return self.qm9_matches

    def closest(self, lookup: QM9Lookup | None) -> list[Similar | None] | None:
        """Per molecule, the QM9 molecule most like it (ECFP4 Tanimoto) where QM9 does not hold it (None for a
        molecule QM9 holds or an invalid one); None until the lookup is there."""
        return None if self.qm9(lookup) is None else self.qm9_closest

    def __post_init__(self) -> None:
        if not self.readable_smiles:
            self.readable_smiles = [to_smiles(g.molecule.symbols, g.molecule.positions, keep_hydrogens=False)
                                    for g in self.molecules]
        if not self.problems:
            self.problems = [valence_problems(g.molecule.symbols, g.molecule.positions) for g in self.molecules]

    def label(self, i: int) -> str:
        """How molecule i is named in selectors and captions: "#3 · C7H10O2 · seed 2"."""
        g = self.molecules[i]
        return f"#{i + 1} · {g.molecule.formula} · seed {g.seed}"


@dataclass
class PredictionRun:
    """One press of "Predict": every input record with its answer, in input order."""

    records: list[Record]
    predictions: list[Prediction]  # one per record
    with_qm9: bool = False  # predicted with QM9's lookup: each Prediction.qm9 says where QM9 holds the molecule

    @property
    def n_refused(self) -> int:
        return sum(p.error is not None for p in self.predictions)

    def molecules(self) -> list[Molecule]:
        """Every predicted record as molecules carrying their predictions, for an SDF: a given geometry once, a
        molecule built as several conformers once per conformer ("glycerol, conformer 3 of 12", with that
        conformer's own predictions; the table holds their mean)."""
        out = []
        for rec, pred in zip(self.records, self.predictions):
            if pred.properties is None:
                continue
            mol = rec.molecule
            if not pred.by_conformer:
                out.append(replace(mol, name=pred.name, properties=pred.properties, conformers=None))
                continue
            n = len(pred.by_conformer)
            out += [replace(mol, name=f"{pred.name}, conformer {j + 1} of {n}", positions=positions,
                            properties=values, conformers=None)
                    for j, (positions, values) in enumerate(zip(mol.conformers, pred.by_conformer))]
        return out


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
