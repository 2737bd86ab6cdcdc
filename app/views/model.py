"""Model page: the shipped model card (checkpoints/model_card.json) beside the published UniGEM numbers.

Card schema (every key optional; missing parts are skipped with a note):
  config          UniGEMConfig.to_dict()
  training_curve  [{"epoch", "step", "atom_stability", "molecule_stability", "validity", "loss"}, ...]
  generation      {"<steps>" or "<steps>+r<rounds>": {atom_stability, molecule_stability, validity, uniqueness,
                               valid_x_unique, novelty, n_molecules, seconds, device, command, steps,
                               resample (refinement rounds, absent for the paper's sampler),
                               unstable_atoms: {"C:3": count, ...}}, ...}
  properties      {"mae": {key: value in reporting units}, "command": str, "split": str, "n_molecules": int}
  properties_from_smiles  the same from `--geometry smiles`, plus "mae_qm9_geometry" and "n_refused"
  training        {"hardware": ..., "seconds" or "hours": ..., ...} (shown as given)
  validation_curve  [{"step", "epoch", "val_loss", "val_coord", "val_prop_mae_norm", ...}, ...] (the log's rows)
  validation_loss   output of `unigem evaluate --n 0 --loss`: {"validation_loss": {loss, coord, ...}, "command", ...}
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app import resources
from app.components.curves import curve_caption, curve_figure, validation_figure
from unigem_core.card_tables import (ENTHALPY_NOTE, FROM_SMILES, GENERATED, by_sampler, generated_vs_qm9,
                                     generation_rows, mae_rows, percent)
from unigem_core.constants import PROPERTIES, PUBLISHED_EGNN_MAE, PUBLISHED_GENERATION
from unigem_core.metrics import ALLOWED_VALENCES

def flatten(tree: dict, prefix: str = "") -> list[dict]:
    """Nested config -> rows of (setting, value), e.g. model.hidden = 256."""
    rows = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += flatten(value, name + ".")
        else:
            rows.append({"setting": name, "value": str(value)})
    return rows


def generation_table(generation: dict) -> pd.DataFrame:
    """Measured rows (one per sampler setting) above the published Data / EDM / UniGEM rows, in %."""
    return pd.DataFrame(generation_rows(generation))


def mae_table(mae: dict, from_smiles: dict | None = None, generated: dict | None = None) -> pd.DataFrame:
    """One row per property: test MAE, from SMILES and generated vs QM9 where measured, EGNN's (mae_rows)."""
    return pd.DataFrame(mae_rows(mae, from_smiles, generated))


def _unstable_atoms(counts: dict[str, int], most: int = 6) -> str:
    """{"C:3": 39, ...} -> "39 carbons with valence 3 (C takes 4), ..." for the most common cases."""
    names = {"H": "hydrogen", "C": "carbon", "N": "nitrogen", "O": "oxygen", "F": "fluorine"}
    parts = []
    for key, n in list(counts.items())[:most]:
        symbol, _, valence = key.partition(":")
        name = names.get(symbol, symbol) + ("s" if n != 1 else "")
        takes = "/".join(map(str, ALLOWED_VALENCES.get(symbol, ()))) or "none"
        parts.append(f"{n} {name} with valence {valence} ({symbol} takes {takes})")
    rest = sum(list(counts.values())[most:])
    return ", ".join(parts) + (f", {rest} other atoms" if rest else "")


def _engine_facts():
    """What the loaded checkpoint says about itself, shown with or without a card; the engine or None."""
    try:
        engine = resources.get_engine("auto")
    except (RuntimeError, FileNotFoundError) as exc:
        st.error(f"Cannot load the model: {exc}")
        return
    info = engine.info or {}
    cols = st.columns(4)
    cols[0].metric("Preset", engine.config.preset)
    cols[1].metric("Training steps", f"{info.get('step') or 0:,}")
    cols[2].metric("Diffusion steps T / t_n", f"{engine.num_steps} / {engine.t_n}")
    cols[3].metric("Device", str(engine.device))
    st.caption(f"Checkpoint: `{engine.checkpoint}`")
    return engine


def _at_a_glance(card: dict) -> None:
    """The headline numbers of the shipped model, each beside its published counterpart (all from the card)."""
    measured = by_sampler(card.get("generation") or {})
    plain = [(label, m) for label, m in measured if not m.get("resample")]
    # (label, value, caption); the sampler goes into the caption, which wraps, where a label would be cut short
    tiles = []
    if plain:  # the paper's sampler with the most steps: the published protocol
        label, metrics = plain[0]
        for key, name in (("molecule_stability", "Molecule stability"), ("valid_x_unique", "Valid × unique")):
            if metrics.get(key) is not None:
                tiles.append((name, percent(metrics[key]),
                              f"{label} · published UniGEM: {percent(PUBLISHED_GENERATION['UniGEM'][key])}"))
    refined = [(label, m) for label, m in measured if m.get("resample") and m.get("molecule_stability") is not None]
    if refined:  # the best refined sampler measured (the Generate page's default is one of these)
        label, metrics = max(refined, key=lambda item: item[1]["molecule_stability"])
        novel = f" · novel: {percent(metrics['novelty'])}" if metrics.get("novelty") is not None else ""
        tiles.append(("Molecule stability", percent(metrics["molecule_stability"]),
                      f"{label} · published UniGEM: "
                      f"{percent(PUBLISHED_GENERATION['UniGEM']['molecule_stability'])}{novel}"))
    mae = (card.get("properties") or {}).get("mae") or {}
    for p in PROPERTIES:
        if p.key in ("gap", "mu") and mae.get(p.key) is not None:
            tiles.append((f"{p.label} MAE", f"{mae[p.key]:.3g} {p.report_unit}",
                          f"published EGNN: {PUBLISHED_EGNN_MAE[p.key]:.3g} {p.report_unit}"))
    if not tiles:
        return
    st.subheader("At a glance")
    for col, (label, value, caption) in zip(st.columns(len(tiles)), tiles):
        col.metric(label, value)
        col.caption(caption)


def _training(card: dict) -> None:
    training = card.get("training")
    if not training:
        return
    st.subheader("Hardware and time spent")
    rows = [{"item": k.replace("_", " "), "value": _readable(k, v)} for k, v in training.items()]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def _validation(result: dict | None) -> None:
    """The training objective of the shipped weights: the yardstick a later checkpoint must beat."""
    if not result or not result.get("validation_loss"):
        return
    st.subheader("Validation loss")
    terms = result["validation_loss"]
    cols = st.columns(3)
    cols[0].metric("Loss", f"{terms['loss']:.4f}")
    cols[1].metric("Coordinate term", f"{terms['coord']:.4f}")
    cols[2].metric("Property term (normalised MAE)", f"{terms['prop_mae_norm']:.4f}")
    st.caption(f"The training objective on the first {result.get('n_loss_molecules', 0):,} validation molecules "
               f"under fixed noise, in {result.get('loss_precision', '?')}; lower is better. The same command with "
               "`--checkpoint runs/small/last.pt` gives a training checkpoint's number, to compare.")
    if result.get("command"):
        st.code(result["command"], language="bash")


def _readable(key: str, value) -> str:
    if isinstance(value, (int, float)) and key.endswith(("seconds", "_s")):
        return f"{value / 3600:.2f} h ({value:,.0f} s)"
    return value if isinstance(value, str) else str(value)


def render() -> None:
    st.title("Model card")
    engine = _engine_facts()
    card = resources.model_card()
    if card is None:
        st.info("No model card yet (checkpoints/model_card.json is written when training finishes). "
                "The checkpoint above may be untrained: generated molecules and predicted properties are then "
                "not meaningful.")
        if engine is not None:
            with st.expander("Configuration of the loaded checkpoint"):
                st.dataframe(pd.DataFrame(flatten(engine.config.to_dict())), hide_index=True, width="stretch")
        return
    if card.get("summary"):
        st.markdown(str(card["summary"]))
    _at_a_glance(card)

    st.subheader("Training curve")
    if card.get("training_curve"):
        st.plotly_chart(curve_figure(card["training_curve"]), width="stretch", key="model_curve")
        st.caption(curve_caption(card["training_curve"]))
    else:
        st.caption("The card holds no training curve.")
    validation_rows = [r for r in card.get("validation_curve") or [] if r.get("step") is not None]
    if validation_rows:
        st.plotly_chart(validation_figure(validation_rows), width="stretch", key="model_validation_curve")
        n_val = ((card.get("config") or {}).get("train") or {}).get("val_molecules", 1024)
        st.caption(f"Validation loss of the EMA weights on {n_val:,} validation molecules under fixed noise, from "
                   "the training log; lower is better. The runs computed it in bf16 or fp32, as their hardware did, "
                   "and bf16 reads higher for the same weights: compare points of one colour.")

    st.subheader("Generation quality")
    generation = card.get("generation") or {}
    st.dataframe(generation_table(generation), hide_index=True, width="stretch")
    if not generation:
        st.caption("Not measured yet; the published rows are from the UniGEM paper (Table 1).")
    for label, metrics in by_sampler(generation):
        if metrics.get("unstable_atoms"):
            st.caption(f"Where the molecules of {label} fail: {_unstable_atoms(metrics['unstable_atoms'])}.")
    for label, metrics in by_sampler(generation):
        if metrics.get("command"):
            st.caption(f"Measured with ({label}):")
            st.code(metrics["command"], language="bash")

    st.subheader("Property prediction (test-set MAE)")
    properties = card.get("properties") or {}
    smiles = card.get("properties_from_smiles") or {}
    generated = generated_vs_qm9(generation)
    number = st.column_config.NumberColumn
    table = mae_table(properties.get("mae") or {}, smiles.get("mae"), generated and generated[1]["mae_vs_dft_unseen"])
    st.dataframe(table, hide_index=True, width="stretch", height=35 * 13 + 3,
                 column_config={"this model (MAE)": number(format="%.4g", help="At QM9's DFT geometries"),
                                FROM_SMILES: number(format="%.4g", help="The same test molecules rebuilt from QM9's "
                                                    "SMILES (conformers from RDKit's ETKDG + MMFF"
                                                    + (", then GFN2-xTB" if smiles.get("relax") == "xtb" else "")
                                                    + ", each refined by the model, their predictions averaged), "
                                                    "as the Predict page treats a typed SMILES"),
                                GENERATED: number(format="%.4g", help="Generated molecules whose bond graph QM9 holds "
                                                  "outside its training split: the predictions from the generated "
                                                  "geometry against QM9's DFT values"),
                                "EGNN, published (MAE)": number(format="%.4g")})
    if properties.get("command"):
        st.code(properties["command"], language="bash")
    if smiles.get("command"):
        refused = smiles.get("n_refused")
        mean = smiles.get("conformers_mean")
        st.caption(f"From SMILES: {smiles.get('n_property_molecules', 0):,} molecules"
                   + (f" ({refused} that RDKit could not build left out)" if refused else "")
                   + (f", {mean:.1f} conformers each on average" if isinstance(mean, (int, float)) else
                      ", one conformer each")
                   + (", relaxed with GFN2-xTB" if smiles.get("relax") == "xtb" else ", relaxed with MMFF")
                   + (f" ({kept} kept their force-field geometry: GFN2-xTB failed on each conformer or changed "
                      "its bonds)"
                      if (kept := smiles.get("n_force_field_only")) else "")
                   + ". A geometry not optimised with DFT is what costs the accuracy:")
        st.code(smiles["command"], language="bash")
    if generated:
        label, qm9 = generated
        st.caption(f"Generated, vs QM9: of the valid molecules made with {label}, {percent(qm9.get('in_qm9'))} "
                   f"have a bond graph that QM9 holds ({percent(qm9.get('in_training_split'))} in its training "
                   f"split); for the {qm9['n_unseen']:,} found only outside the training split, the predictions read "
                   "from the generated geometry are compared with QM9's DFT values at its own geometry, so the "
                   "errors include how far the generated geometry lies from QM9's (the command is that run's, above).")
    if properties.get("mae"):
        st.caption(ENTHALPY_NOTE + ".")

    _validation(card.get("validation_loss"))
    _training(card)
    with st.expander("Configuration"):
        config = card.get("config") or (engine.config.to_dict() if engine is not None else {})
        st.dataframe(pd.DataFrame(flatten(config)), hide_index=True, width="stretch")


render()
