"""The gallery of generated molecules: summary, downloads, one card per molecule and a full table.

Each card holds a 3D view, formula, SMILES (heavy-atom form), stability/validity badges (an unstable
molecule's offending atoms are named and wear a halo in the view), whether QM9's training set already
holds the molecule, and the twelve predicted properties, beside QM9's DFT values where QM9 holds a
molecule with the same bond graph. Cards are paged (GALLERY_PAGE molecules at a time) because every 3D
view is a WebGL context and browsers allow only about sixteen per page.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from app.components.viewer import extent, focus_atoms, show_molecule
from app.state import GenerationRun, kept_kind
from app.tables import (PROPERTY_FORMATS, QM9_DFT, QM9_DFT_HELP, TYPICAL_ERROR, TYPICAL_ERROR_GENERATED_HELP,
                        TYPICAL_ERROR_HELP, closest_note, describe_problems, generation_table, is_novel,
                        named_molecules, property_columns, property_rows, qm9_note, to_csv)
from unigem_core.constants import PROPERTIES
from unigem_core.io import to_sdf, to_xyz
from unigem_core.metrics import QM9Entry, QM9Lookup, Similar, ValenceProblem

if TYPE_CHECKING:
    from app.resources import QM9Reference

GALLERY_PAGE = 9  # cards per gallery page (3 rows of 3)
COLUMNS = 3
SELECTED = "trajectory_molecule"  # index of the molecule the Trajectory page opens with
NOVEL_HELP = ("Share of the valid molecules whose SMILES (hydrogens explicit, as for the model card's novelty) "
              "is not among QM9's training molecules")


def _summary(run: GenerationRun, known: frozenset[str] | None, unavailable: str | None) -> None:
    n = len(run.molecules)
    steps = run.settings.get("steps")
    cols = st.columns(6)
    cols[0].metric("Molecules", n)
    cols[1].metric("Valid", f"{sum(g.valid for g in run.molecules) / n:.0%}", help="RDKit sanitises the molecule")
    cols[2].metric("Stable", f"{sum(g.stable for g in run.molecules) / n:.0%}",
                   help="every atom has an allowed valence")
    rounds = run.settings.get("resample") or 0
    cols[3].metric("Sampling steps", f"{steps:,}" if steps else "all",
                   delta=f"+ {rounds} round{'s' if rounds > 1 else ''}" if rounds else None,  # fits a narrow column
                   delta_color="off", help="Rounds of refinement: every step taken again (Generate's settings)")
    cols[4].metric("Time", f"{run.seconds:.1f} s", help=f"on {run.device}")
    if known is not None:
        marks = [m for m in (is_novel(g, known) for g in run.molecules) if m is not None]  # the valid molecules
        novel, note = (f"{sum(marks) / len(marks):.0%}" if marks else "–"), ""
    elif unavailable:
        novel, note = "n/a", f". QM9's training molecules could not be read here ({unavailable})."
    else:
        novel, note = "…", " (still reading them)"
    cols[5].metric("Novel", novel, help=NOVEL_HELP + note)
    if run.seeds_tried is not None:
        first = run.settings.get("seed", 0)
        found, other = kept_kind(run.settings, n)
        seeds = f"{run.seeds_tried} seeds ({first}-{first + run.seeds_tried - 1})"
        if n < run.settings.get("n", n):
            advice = "widen the property targets" if run.settings.get("targets") else "sample with more steps"
            st.warning(f"Only {found} among {seeds}: {advice} for more.")
        else:
            skipped = run.seeds_tried - n
            st.caption(f"{found} from {seeds}; {skipped} {other} one{'s' if skipped != 1 else ''} skipped.")


def _downloads(run: GenerationRun, indices: list[int], known: frozenset[str] | None, lookup: QM9Lookup | None) -> None:
    """SDF (properties as SD tags), XYZ and CSV of the molecules shown; built only when clicked."""
    stem = f"unigem_seed{run.settings.get('seed', 0)}"
    count = f"{len(indices)} molecule" + ("s" if len(indices) != 1 else "")
    cols = st.columns(3)
    cols[0].download_button(f"SDF with properties ({count})", lambda: to_sdf(named_molecules(run, indices)),
                            f"{stem}.sdf", "chemical/x-mdl-sdfile", on_click="ignore", icon=":material/download:",
                            key="dl_gen_sdf", width="stretch")
    cols[1].download_button(f"XYZ ({count})", lambda: to_xyz(named_molecules(run, indices)), f"{stem}.xyz",
                            "chemical/x-xyz", on_click="ignore", icon=":material/download:", key="dl_gen_xyz",
                            width="stretch")
    cols[2].download_button(f"Table as CSV ({count})", lambda: to_csv(generation_table(run, indices, known, lookup)),
                            f"{stem}.csv", "text/csv", on_click="ignore", icon=":material/download:",
                            key="dl_gen_csv", width="stretch")


def _badges(run: GenerationRun, i: int, known: frozenset[str] | None) -> str:
    g = run.molecules[i]
    stable = ":green-badge[:material/check: stable]" if g.stable else ":orange-badge[:material/warning: unstable]"
    valid = ":green-badge[:material/check: valid]" if g.valid else ":red-badge[:material/close: invalid]"
    n_ok = "?" if g.atom_stable is None else int(g.atom_stable.sum())
    badges = f"{stable} {valid} :gray-badge[{n_ok}/{g.molecule.n_atoms} atoms stable]"
    novel = None if known is None else is_novel(g, known)
    if novel is not None:
        badges += (" :blue-badge[:material/auto_awesome: novel]" if novel
                   else " :gray-badge[:material/menu_book: in QM9's training set]")
    return badges


def _valence_caption(problems: list[ValenceProblem]) -> None:
    """Which atoms make the molecule unstable, and why; they wear an orange halo in the view."""
    st.caption(f":orange[Unstable atoms (orange halo):] {describe_problems(problems)}.",
               help="Bond orders come from interatomic distances (the paper's bond-length table; no formal "
                    "charges), and an atom is stable when their sum is an allowed valence of its element. "
                    "Hover over an atom in the view to see its label.")


def _properties(properties: dict[str, float] | None, typical_error: dict[str, float], error_help: str,
                qm9: tuple[QM9Entry, ...]) -> None:
    """The twelve predictions, with the typical errors (error_help: which) and, where QM9 holds the molecule,
    its DFT values."""
    with st.expander("12 predicted properties" + (" · QM9's DFT values" if qm9 else "")):
        if qm9:
            st.caption(qm9_note(qm9))
        # a card is narrow: the symbols stand for the names (listed under "All properties")
        # and with QM9's values beside the predictions, those stand where the typical errors stood
        number, text = st.column_config.NumberColumn, st.column_config.TextColumn
        columns = {**property_columns(), "Symbol": text("Property", width=60), "Unit": text("Unit", width=44),
                   "Predicted": number("Predicted", format="%.5g", width=66),
                   TYPICAL_ERROR: number("±", format="%.2g", help=error_help, width=40),
                   QM9_DFT: number("QM9", format="%.5g", help=QM9_DFT_HELP, width=66)}
        st.dataframe(property_rows(properties, typical_error, qm9=qm9[0].properties if qm9 else None),
                     hide_index=True, width="stretch", column_config=columns,
                     column_order=["Symbol", "Predicted", QM9_DFT if qm9 else TYPICAL_ERROR, "Unit"])


def _card(run: GenerationRun, i: int, typical_error: tuple[dict[str, float], str], known: frozenset[str] | None,
          qm9: tuple[tuple[QM9Entry, ...], Similar | None]) -> None:
    g = run.molecules[i]
    with st.container(border=True):
        st.markdown(f"**#{i + 1} · {g.molecule.formula}** · {g.molecule.n_atoms} atoms · seed {g.seed}")
        problems = run.problems[i]
        show_molecule(g.molecule.symbols, g.molecule.positions, height=250, title=f"Molecule {run.label(i)}",
                      highlight=[p.index for p in problems])
        st.markdown(_badges(run, i, known))
        if problems:
            _valence_caption(problems)
        focus = focus_atoms(g.molecule.positions)
        if focus is not None:
            st.caption(f":orange[Atoms are scattered over {extent(g.molecule.positions):,.0f} Å]; the view frames "
                       f"the densest cluster ({len(focus)} of {g.molecule.n_atoms} atoms).")
        smiles = run.readable_smiles[i]
        if smiles:
            st.code(smiles, language=None, wrap_lines=True)
        else:
            st.caption("No SMILES: RDKit cannot sanitise this molecule.")
        matches, near = qm9
        if near is not None:
            st.caption(closest_note(near), help="How much QM9 knows of molecules like this one: Tanimoto similarity "
                       "of ECFP4 fingerprints (Morgan, radius 2) of the bond graphs, 1 for the same graph")
        _properties(g.molecule.properties, *typical_error, matches)
        if g.trajectory is not None and st.button("Watch it form", icon=":material/play_circle:",
                                                  key=f"traj_{i}", width="stretch"):
            st.session_state[SELECTED] = i
            st.switch_page("views/trajectory.py")


def show_gallery(run: GenerationRun, typical_error: dict[str, float] | None = None,
                 reference: QM9Reference | None = None, generated_errors: bool = False) -> None:
    """Everything below the Generate button once molecules exist.

    `typical_error` (the model card's MAE per property: measured on generated molecules when `generated_errors`,
    else the test split's at DFT geometries) goes beside each molecule's predictions;
    `reference` (app.resources.QM9Reference) marks each valid molecule novel or in QM9's training set and
    puts QM9's DFT values beside the predictions of a molecule QM9 holds. While it loads, or when QM9 could
    not be read (its `error` says why), the marks and values are left out.
    """
    training_smiles = None if reference is None else reference.smiles()
    lookup = None if reference is None else reference.lookup()
    _summary(run, training_smiles, None if reference is None else reference.error)
    only_valid = run.seeds_tried is None and st.toggle("Show only valid molecules", key="gen_only_valid")
    indices = [i for i, g in enumerate(run.molecules) if g.valid or not only_valid]
    _downloads(run, indices, training_smiles, lookup)
    if not indices:
        st.warning("None of these molecules is valid. Turn off the filter, or sample with more steps.")
        return
    pages = (len(indices) + GALLERY_PAGE - 1) // GALLERY_PAGE
    page = 1
    if pages > 1:
        page = st.segmented_control("Gallery page", list(range(1, pages + 1)), default=1, key="gen_page") or 1
    shown = indices[(page - 1) * GALLERY_PAGE: page * GALLERY_PAGE]
    matches = run.qm9(lookup) or [()] * len(run.molecules)
    closest = run.closest(lookup) or [None] * len(run.molecules)
    error_help = TYPICAL_ERROR_GENERATED_HELP if generated_errors else TYPICAL_ERROR_HELP
    for row in range(0, len(shown), COLUMNS):
        for col, i in zip(st.columns(COLUMNS), shown[row:row + COLUMNS]):
            with col:
                _card(run, i, (typical_error or {}, error_help), training_smiles, (matches[i], closest[i]))
    st.subheader("All properties")
    st.caption(", ".join(f"{p.key}: {p.label}" for p in PROPERTIES))
    st.dataframe(generation_table(run, indices, training_smiles, lookup), hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format=f) for c, f in PROPERTY_FORMATS.items()})
