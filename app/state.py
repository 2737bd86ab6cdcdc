"""What the pages keep in `st.session_state`: result keys, widget defaults, target sliders, the runs (no torch here;
the tables built from the runs: app.tables).

Results live under plain keys (never widget keys), so they survive reruns and page switches:
  GENERATION -> GenerationRun   (Generate page; the Trajectory page reads it)
  PREDICTION -> PredictionRun   (Predict page)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from unigem_core.constants import PROPERTIES
from unigem_core.metrics import QM9Entry, QM9Lookup, Similar, ValenceProblem, to_smiles, valence_problems
from unigem_core.molecule import GeneratedMolecule, Molecule, Record
from unigem_core.prediction import Prediction
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
    # 101 network calls, as many as 100 plain steps, and makes more molecules stable (the model card's rows)
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
