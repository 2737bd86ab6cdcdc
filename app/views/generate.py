"""Generate page: sample new molecules with UniGEM and browse them in a gallery.

The sampler runs in two phases (spec 6): nucleation (t > t_n) moves coordinates only, growth
(t <= t_n) lets the growth head decide atom types; the twelve properties are read off the final
geometry. Results are kept in this session's `st.session_state` (app.state.GENERATION) across reruns
and pages, never in module state, so concurrent sessions cannot see each other's molecules. A run
first takes one of the process-wide job slots (app.resources.job_slots) and says so while it waits
(app.components.sampling).
"""
from __future__ import annotations

import math

import streamlit as st

from app import resources
from app.components.gallery import show_gallery
from app.components.sampling import run_generation
from app.state import (ATOMS_FIXED, ATOMS_FROM_DATA, GENERATION, TARGET_KEY, TARGET_SEEDS, WIDGET_DEFAULTS,
                       TargetScale, kept_kind, target_scales)
from unigem_core.constants import MAX_ATOMS, PROPERTIES

MIN_ATOMS = 5  # the smallest molecules worth generating; QM9 has a handful below this
PREVIEW_STEPS = (10, 25, 50, 100, 250)
REFINEMENT_ROUNDS = (0, 1, 3, 9)  # the choices of resampling rounds of every step (sampler.sample)
DEFAULT_STEPS = WIDGET_DEFAULTS["gen_steps"]
LABELS = {p.key: p.label for p in PROPERTIES}
UNITS = {p.key: p.report_unit for p in PROPERTIES}


def _steps_label(steps: int, full: int) -> str:
    return f"Full · {steps:,} steps" if steps == full else f"Preview · {steps} steps"


def _settings_form(engine_steps: int, scales: dict[str, TargetScale]) -> dict:
    """The generation controls; returns the chosen settings (nothing is run here)."""
    with st.container(border=True):
        left, middle, right = st.columns(3, gap="large")
        with left:
            n = st.slider("Number of molecules", 1, 16, key="gen_n",
                          help="Each molecule k gets seed + k, so a seed always gives the same molecules.")
            keep_valid = st.checkbox("Valid molecules only", key="gen_keep_valid",
                                     help="Skip the seeds whose molecule RDKit cannot sanitise and sample further "
                                          "seeds until there are enough (at most four times as many).")
            training = resources.qm9_reference()
            if training.smiles() is not None:
                why = ""
            elif training.error:
                why = f" Unavailable: QM9's training molecules could not be read here ({training.error})."
            else:
                why = " Available once QM9's training molecules are read."
            keep_novel = st.checkbox("Novel molecules only", key="gen_keep_novel", disabled=bool(why),
                                     help="Also skip the valid molecules that QM9's training set already holds "
                                          "(more refinement rounds make more of them)." + why)
            options = sorted({s for s in PREVIEW_STEPS if s < engine_steps} | {engine_steps})
            if st.session_state.get("gen_steps") not in options:  # a checkpoint with a different T
                st.session_state["gen_steps"] = min(options, key=lambda s: abs(s - DEFAULT_STEPS))
            steps = st.radio("Sampling steps", options, format_func=lambda s: _steps_label(s, engine_steps),
                             key="gen_steps",
                             help="The paper samples with all steps. Previews take fewer, larger steps, packed "
                                  "towards the low-noise end where the bonds settle: much faster, a little less "
                                  "accurate (the model card measures both).")
            resample = st.radio("Refinement rounds", REFINEMENT_ROUNDS, key="gen_resample", horizontal=True,
                                format_func=lambda r: "off" if r == 0 else str(r),
                                help="Each step is taken again after stepping back through the noising process: "
                                     "a corrector that makes more molecules stable and valid, for one extra network "
                                     "call per step and round. More rounds also give more molecules that QM9's "
                                     "training set already holds. Off is the paper's sampler. The Model page "
                                     "measures the settings of about 100 calls: 50 steps + 1 round, 25 + 3 and 10 + 9, "
                                     "the last the most stable and the least novel.")
        with middle:
            mode = st.radio("Atoms per molecule", (ATOMS_FROM_DATA, ATOMS_FIXED), key="gen_atoms_mode",
                            help="By default each molecule draws its atom count (hydrogens included) from QM9.")
            n_atoms = st.number_input("Fixed number of atoms", MIN_ATOMS, MAX_ATOMS, key="gen_atoms",
                                      disabled=mode != ATOMS_FIXED)
        with right:
            seed = st.number_input("Seed", 0, 2**31 - 1, key="gen_seed")
            device = st.radio("Device", list(resources.DEVICES), horizontal=True, key="gen_device",
                              help="Auto uses the GPU when there is one.")
            if device == "GPU" and not resources.gpu_available():
                st.warning("No CUDA GPU on this server: choose Auto or CPU.")
        targets = _targets_form(scales)
    return {"n": int(n), "steps": int(steps), "n_atoms": int(n_atoms) if mode == ATOMS_FIXED else None,
            "seed": int(seed), "device": resources.DEVICES[device],
            "keep_valid": bool(keep_valid or keep_novel or targets), "keep_novel": bool(keep_novel),
            "resample": int(resample), "targets": targets}


def _targets_form(scales: dict[str, TargetScale]) -> list[tuple[str, float | None, float | None]]:
    """Property targets: a range slider per chosen property; returns (key, low, high) for those whose range
    was narrowed, an end left at the slider's extreme being open (None)."""
    chosen = st.multiselect("Property targets", [p.key for p in PROPERTIES], key="gen_targets",
                            format_func=lambda key: f"{LABELS[key]} ({key})",
                            placeholder="Any predicted properties",
                            help="Keep the valid molecules whose predicted properties fall in these ranges, sampling "
                                 f"further seeds until there are enough (at most {TARGET_SEEDS} times as many). The "
                                 "screen is on the model's predictions, which carry its typical error (Model page).")
    targets = []
    for start in range(0, len(chosen), 3):
        for col, key in zip(st.columns(3), chosen[start:start + 3]):
            scale, widget = scales[key], TARGET_KEY + key
            value = st.session_state.get(widget)
            if value is None or not scale.low <= value[0] <= value[1] <= scale.high:  # new, or another model's scale
                st.session_state[widget] = (scale.low, scale.high)
            with col:
                low, high = st.slider(f"{LABELS[key]} [{UNITS[key]}]", scale.low, scale.high, step=scale.step,
                                      key=widget, format=f"%.{max(0, -math.floor(math.log10(scale.step)))}f",
                                      help="An end left at the slider's extreme is open.")
            bounds = (None if low <= scale.low else float(low), None if high >= scale.high else float(high))
            if bounds != (None, None):
                targets.append((key, *bounds))
    if chosen and not targets:
        st.caption("Move a slider's ends to set a target.")
    return targets


def render() -> None:
    st.title("Generate molecules")
    st.caption("UniGEM samples 3D molecules in two phases: **nucleation** moves untyped points into a scaffold, "
               "then **growth** (the last t_n steps) decides every atom's element. Twelve QM9 properties are "
               "predicted from the final geometry by the same network.")
    try:
        engine = resources.get_engine("auto")
    except (RuntimeError, FileNotFoundError) as exc:
        st.error(f"Cannot load the model: {exc}")
        return
    if not (engine.info or {}).get("step"):
        st.warning("The loaded checkpoint has not been trained yet (0 optimiser steps): its molecules are noise, "
                   "useful only to try the app. See the Model page.", icon=":material/warning:")
    settings = _settings_form(engine.num_steps, target_scales(engine.normalizer.mean, engine.normalizer.mad))
    if st.button("Generate", type="primary", icon=":material/science:", key="gen_go"):
        run = run_generation(settings)
        if run is not None and not run.molecules:
            found, _ = kept_kind(settings, 0)
            if settings.get("targets"):
                advice = "widen the property targets"
            else:
                box = "Novel" if settings.get("keep_novel") else "Valid"
                advice = f"sample with more steps, or turn off \"{box} molecules only\""
            st.error(f"{found} among {run.seeds_tried} seeds: {advice}.")
        elif run is not None:
            st.session_state[GENERATION] = run
    run = st.session_state.get(GENERATION)
    if run is None:
        st.info("Choose the settings above and press **Generate**. A preview with 50 steps takes seconds on a CPU.")
        return
    generated = resources.typical_errors(generated=True)  # measured on generated molecules, where the card has them
    show_gallery(run, generated or resources.typical_errors(), resources.qm9_reference(),
                 generated_errors=bool(generated))


render()
