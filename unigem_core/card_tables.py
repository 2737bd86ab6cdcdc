"""How a model card reads: its generation and property tables, for the app's Model page and as Markdown.

`markdown(card)` is the README's account of the shipped model (`unigem card --readme README.md` writes it
between the README's markers), so the numbers a reader sees there are the card's, measured by the
commands it names, and never copied by hand.
"""
from __future__ import annotations

import textwrap

from unigem_core.constants import PROPERTIES, PUBLISHED_EGNN_MAE, PUBLISHED_GENERATION

GENERATION_COLUMNS = {"atom_stability": "Atom stable", "molecule_stability": "Mol. stable", "validity": "Valid",
                      "uniqueness": "Unique", "valid_x_unique": "Valid × unique", "novelty": "Novel"}
FROM_SMILES = "from SMILES (MAE)"  # mae_rows' column of the errors on geometries RDKit built
GENERATED = "generated, vs QM9 (MAE)"  # mae_rows' column of generated molecules against QM9's DFT values
# How the property tables' H is made (engine.to_report_units), said under each of them
ENTHALPY_NOTE = ("H, in every column: the predicted U plus QM9's exact H - U of the molecule's atoms (kT minus the "
                 "atoms' H - U, about -(N - 1) kT; engine.enthalpy_offset), not the property head's own H output")
README_START = "<!-- model card: written by `unigem card --readme README.md`; do not edit by hand -->"
README_END = "<!-- end of model card -->"


def sampler_label(key: str, metrics: dict) -> str:
    """"1,000 steps", or "50 steps + 1 refinement round" for an evaluation with resampling (of every step, or
    "... below t = 100" where only the steps ending below a t were resampled)."""
    steps = metrics.get("steps") or _as_int(key.split("+")[0])
    rounds = metrics.get("resample") or 0
    if not rounds:
        return f"{steps:,} steps"
    below = f" below t = {metrics['resample_below']:,}" if metrics.get("resample_below") else ""
    return f"{steps:,} steps + {rounds} refinement round{'s' if rounds > 1 else ''}{below}"


def by_sampler(generation: dict) -> list[tuple[str, dict]]:
    """(label, metrics) per evaluation: most steps first, and at equal steps the plain sampler first."""
    def order(item):
        key, metrics = item
        return -(metrics.get("steps") or _as_int(key.split("+")[0])), metrics.get("resample") or 0
    return [(sampler_label(k, m), m) for k, m in sorted(generation.items(), key=order)]


def best_qm9_comparison(generation: dict) -> tuple[str, dict] | None:
    """Of a model card's generation evaluations, the one that compared the most generated molecules with QM9's DFT
    values outside its training split: (its key, its "qm9" result); None when none did."""
    measured = [(key, m["qm9"]) for key, m in generation.items()
                if isinstance(m, dict) and isinstance(m.get("qm9"), dict) and m["qm9"].get("mae_vs_dft_unseen")]
    return max(measured, key=lambda item: item[1].get("n_unseen") or 0, default=None)


def generated_vs_qm9(generation: dict) -> tuple[str, dict] | None:
    """The card's best measurement of generated molecules against QM9's DFT values (best_qm9_comparison), with
    its sampler's label."""
    best = best_qm9_comparison(generation)
    return None if best is None else (sampler_label(best[0], generation[best[0]]), best[1])


def generation_rows(generation: dict) -> list[dict]:
    """Measured rows (one per sampler setting) above the published Data / EDM / UniGEM rows, in %."""
    rows = []
    for label, metrics in by_sampler(generation):
        extra = f", {metrics['n_molecules']:,} molecules" if metrics.get("n_molecules") else ""
        rows.append({"model": f"this model · {label}{extra}",
                     **{name: percent(metrics.get(key)) for key, name in GENERATION_COLUMNS.items()}})
    for model, metrics in PUBLISHED_GENERATION.items():
        rows.append({"model": f"published · {model}",
                     **{name: percent(metrics.get(key)) for key, name in GENERATION_COLUMNS.items()}})
    return rows


def mae_rows(mae: dict, from_smiles: dict | None = None, generated: dict | None = None) -> list[dict]:
    """One row per property: this model's test MAE, the same molecules rebuilt from SMILES when measured,
    generated molecules against QM9's DFT values for the same bond graph when measured, EGNN's."""
    rows = []
    for p in PROPERTIES:
        row = {"property": f"{p.label} ({p.key})", "unit": p.report_unit, "this model (MAE)": mae.get(p.key)}
        if from_smiles:
            row[FROM_SMILES] = from_smiles.get(p.key)
        if generated:
            row[GENERATED] = generated.get(p.key)
        row["EGNN, published (MAE)"] = PUBLISHED_EGNN_MAE.get(p.key)
        rows.append(row)
    return rows


def percent(value) -> str:
    return "" if value is None else f"{100 * float(value):.1f}%"


def markdown(card: dict) -> str:
    """The card's weights, generation table, property table and validation loss as Markdown, each number
    beside the command that measured it (the commands run on the shipped file, checkpoints/unigem.pt)."""
    out = [_weights(card)]
    generation = card.get("generation") or {}
    if generation:
        precisions = " and ".join(sorted({str(m["precision"]) for m in generation.values() if m.get("precision")}))
        out += ["", f"Generation (molecules with QM9's atom counts{', in ' + precisions if precisions else ''}"
                "; the published rows are from the UniGEM paper, its 1,000-step sampler):", ""]
        out += _table(generation_rows(generation))
        out += ["", "Measured with:", ""]
        out += [f"- {label}: `{m['command']}`" for label, m in by_sampler(generation) if m.get("command")]
    properties = card.get("properties") or {}
    if properties.get("mae"):
        smiles = card.get("properties_from_smiles") or {}
        generated = generated_vs_qm9(generation)
        rows = mae_rows(properties["mae"], smiles.get("mae"), generated and generated[1]["mae_vs_dft_unseen"])
        out += ["", f"Property prediction, mean absolute error on QM9's {properties.get('split', 'test')} split "
                f"({properties.get('n_property_molecules', 0):,} molecules at their DFT geometries):", ""]
        published = "EGNN, published (MAE)"  # as the paper gives them, not to three figures
        out += _table([{k: (f"{v:g}" if k == published and v is not None else _number(v)) for k, v in row.items()}
                       for row in rows])
        out += ["", f"- this model: `{properties['command']}`"]
        if smiles.get("command"):
            built = smiles.get("n_property_molecules", 0)
            asked = built + (smiles.get("n_refused") or 0)
            out.append(f"- {FROM_SMILES}: {built:,} of the first {asked:,} test molecules, rebuilt from QM9's SMILES "
                       "as the Predict page builds a typed SMILES "
                       f"({_smiles_build(smiles)}), each refined by the model, predictions averaged over the "
                       f"conformers: `{smiles['command']}`")
        if generated:
            label, qm9 = generated
            out.append(f"- {GENERATED}: of the valid molecules of {label}, {percent(qm9.get('in_qm9'))} have a "
                       f"bond graph QM9 holds ({percent(qm9.get('in_training_split'))} in its training split); "
                       f"the {qm9.get('n_unseen', 0):,} found only outside the training split, predictions from "
                       "the generated geometry against QM9's DFT values (that run's command, above)")
        out.append(f"- {ENTHALPY_NOTE}")
    validation = card.get("validation_loss") or {}
    if validation.get("validation_loss"):
        terms = validation["validation_loss"]
        out += ["", f"Validation loss {terms['loss']:.4f} (coordinates {terms['coord']:.4f}, properties "
                f"{terms['prop_mae_norm']:.4f} as normalised MAE) on {validation.get('n_loss_molecules', 0):,} "
                f"validation molecules under fixed noise, {validation.get('loss_precision', '?')}: "
                f"`{validation['command']}`"]
    return "\n".join(_wrap(line) for line in out) + "\n"


def replace_block(text: str, block: str) -> str:
    """`text` (the README) with what lies between README_START and README_END replaced by `block`."""
    start, end = _block_span(text)
    return text[:start] + block + text[end:]


def readme_block(text: str) -> str:
    """What lies between the README's markers (replace_block's `block`)."""
    start, end = _block_span(text)
    return text[start:end]


def _block_span(text: str) -> tuple[int, int]:
    """Where the block starts (after the start marker's line) and ends (at the end marker) in `text`."""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"no model card block: the text lacks the lines {README_START!r} and {README_END!r}, "
                         "in that order")
    return start + len(README_START) + 1, end


def _weights(card: dict) -> str:
    training = card.get("training") or {}
    sha = ((card.get("files") or {}).get("unigem.pt") or {}).get("sha256")
    text = f"**{card.get('name', 'UniGEM')}** (`{card.get('preset', '?')}` preset)"
    if training.get("steps") is not None:
        text += (f": {training['steps']:,} optimiser steps, {training.get('epochs', 0):g} epochs, "
                 f"{training.get('wall_clock_hours', 0):g} h of training")
    if training.get("learning_rate"):
        text += f"; learning rate {training['learning_rate']}"
    return text + (f". Weights: `checkpoints/unigem.pt`, sha256 `{sha[:12]}…`." if sha else ".")


def _smiles_build(smiles: dict) -> str:
    mean = smiles.get("conformers_mean")
    parts = ["RDKit's ETKDG + MMFF" + (", then GFN2-xTB" if smiles.get("relax") == "xtb" else "")]
    if isinstance(mean, (int, float)):
        parts.append(f"{mean:.1f} conformers per molecule on average")
    return "; ".join(parts)


def _wrap(line: str, width: int = 110) -> str:
    """A paragraph or list item of the Markdown wrapped for reading its source (a table row stays whole)."""
    if line.startswith("|"):
        return line
    indent = "  " if line.startswith("- ") else ""
    return textwrap.fill(line, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


def _table(rows: list[dict]) -> list[str]:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return lines


def _number(value) -> str:
    """Three significant figures (whole numbers from 100 up); a string (a label) as it is; nothing when missing."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return f"{float(value):.0f}" if abs(float(value)) >= 100 else f"{float(value):#.3g}"


def _as_int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
