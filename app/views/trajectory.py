"""Trajectory page: watch one generated molecule form, frame by frame (spec 6).

The 3D player animates client-side (app.components.player). The Streamlit slider below it picks a
frame for the sigma_t timeline and the frame details, and the player opens on that frame too.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import resources
from app.components.gallery import SELECTED
from app.components.player import show_player
from app.components.sampling import run_generation
from app.state import GENERATION, WIDGET_DEFAULTS, GenerationRun
from app.tables import describe_problems
from unigem_core.constants import ELEMENTS
from unigem_core.io import trajectory_to_xyz
from unigem_core.molecule import Molecule, Trajectory


def _formula(type_guess: np.ndarray | None) -> str:
    if type_guess is None:
        return "no types yet"
    symbols = [ELEMENTS[int(k)] for k in type_guess]
    return Molecule(tuple(symbols), np.zeros((len(symbols), 3))).formula


def timeline_figure(trajectory: Trajectory, current: int) -> go.Figure:
    """sigma_t per recorded frame (log scale), the nucleation/growth boundary t_n and the current frame.

    The x axis counts recorded frames, not t: nucleation frames are sub-sampled while every growth
    step is kept, so the short growth phase gets room to be seen.
    """
    frames = trajectory.frames
    x = list(range(len(frames)))
    sigma = [max(f.sigma_t, 1e-8) for f in frames]
    hover = [f"t = {f.t}<br>σ_t = {f.sigma_t:.3g}<br>{f.phase}" for f in frames]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=sigma, mode="lines", name="σ_t", line={"color": "#1b6e8a", "width": 2},
                             hovertext=hover, hoverinfo="text"))
    first_growth = next((k for k, f in enumerate(frames) if f.phase == "growth"), len(frames) - 1)
    fig.add_vrect(x0=first_growth - 0.5, x1=len(frames) - 0.5, fillcolor="#2e8b57", opacity=0.12, line_width=0,
                  annotation_text="growth: types decided", annotation_position="top left")
    fig.add_vline(x=first_growth - 0.5, line={"color": "#2e8b57", "dash": "dash"},
                  annotation_text=f"t_n = {trajectory.t_n}", annotation_position="bottom left")
    f = frames[current]
    fig.add_trace(go.Scatter(x=[current], y=[sigma[current]], mode="markers", name="current frame",
                             marker={"color": "#e0251b", "size": 12}, hovertext=[hover[current]], hoverinfo="text"))
    ticks = sorted(set(np.linspace(0, first_growth, 5).round().astype(int).tolist() + [first_growth, len(frames) - 1]))
    fig.update_layout(height=300, margin={"l": 10, "r": 10, "t": 30, "b": 10}, showlegend=False,
                      title={"text": f"Noise level σ_t · frame {current + 1}/{len(frames)}, t = {f.t} ({f.phase})",
                             "font": {"size": 14}},
                      xaxis={"title": "diffusion step t (recorded frames)", "tickvals": ticks,
                             "ticktext": [str(frames[k].t) for k in ticks]},
                      yaxis={"title": "σ_t", "type": "log"})
    return fig


def growth_table(trajectory: Trajectory) -> pd.DataFrame:
    """The growth frames: what the type head believes at each step, and how many atoms changed."""
    rows, previous = [], None
    for f in trajectory.frames:
        if f.type_guess is None:
            continue
        changed = "" if previous is None else int((np.asarray(f.type_guess) != previous).sum())
        rows.append({"t": f.t, "σ_t": f.sigma_t, "type guess": _formula(f.type_guess), "atoms changed": changed})
        previous = np.asarray(f.type_guess)
    return pd.DataFrame(rows)


def _generate_one() -> None:
    """One valid molecule with the Generate page's current seed, steps and refinement (its defaults where the page
    has not been opened), as that page's run, so that the gallery shows it too; then the page plays it."""
    state = st.session_state

    def setting(key: str):
        return state.get(key, WIDGET_DEFAULTS[key])

    settings = {"n": 1, "steps": int(setting("gen_steps")), "n_atoms": None, "seed": int(setting("gen_seed")),
                "device": resources.DEVICES[setting("gen_device")], "keep_valid": True, "keep_novel": False,
                "resample": int(setting("gen_resample")), "targets": []}
    run = run_generation(settings)
    if run is not None and not run.molecules:
        st.error(f"No valid molecule among {run.seeds_tried} seeds: choose more steps on the Generate page.")
    elif run is not None:
        state[GENERATION], state[SELECTED] = run, 0
        st.rerun()


def render() -> None:
    st.title("Trajectory player")
    run: GenerationRun | None = st.session_state.get(GENERATION)
    if run is None or not any(g.trajectory is not None for g in run.molecules):
        st.info("Nothing to play yet: generate molecules first, or one here.")
        if st.button("Generate a valid molecule and watch it form", type="primary", icon=":material/play_circle:",
                     key="traj_generate"):
            _generate_one()
        st.page_link("views/generate.py", label="Go to Generate", icon=":material/science:")
        return
    options = [i for i, g in enumerate(run.molecules) if g.trajectory is not None]
    chosen = st.session_state.get(SELECTED, options[0])
    top = st.columns([3, 1], vertical_alignment="bottom")
    i = top[0].selectbox("Molecule", options, index=options.index(chosen) if chosen in options else 0,
                         format_func=run.label, key="traj_pick")
    autoplay = top[1].toggle("Autoplay", key="traj_autoplay")
    st.session_state[SELECTED] = i
    g = run.molecules[i]
    trajectory = g.trajectory
    n = len(trajectory.frames)
    st.caption(f"{n} recorded frames: nucleation (t > {trajectory.t_n}) sub-sampled, every growth step kept. "
               "Grey spheres have no element yet; colours appear as the growth head decides them.")

    left, right = st.columns([3, 2], gap="large")
    with right:
        frame = st.slider("Frame", 0, n - 1, 0, key=f"traj_frame_{i}",
                          help="Moves the marker on the timeline; the player opens on this frame too.")
        st.plotly_chart(timeline_figure(trajectory, frame), width="stretch", key="traj_timeline")
        f = trajectory.frames[frame]
        cols = st.columns(2)
        cols[0].metric("t", f"{f.t}")
        cols[1].metric("σ_t", f"{f.sigma_t:.3g}")
        phase = ":green-badge[growth]" if f.phase == "growth" else ":gray-badge[nucleation]"
        st.markdown(f"**Phase:** {phase} · **type guess:** {_formula(f.type_guess)} · "
                    f"**final:** {g.molecule.formula}")
        st.markdown("**Growth phase, step by step**")
        st.dataframe(growth_table(trajectory), hide_index=True, width="stretch",
                     column_config={"σ_t": st.column_config.NumberColumn(format="%.3g")})
        st.download_button("Trajectory as multi-frame XYZ", lambda: trajectory_to_xyz(trajectory, g.molecule.symbols),
                           f"unigem_{i + 1}_seed{g.seed}_trajectory.xyz", "chemical/x-xyz", on_click="ignore",
                           icon=":material/download:", key="dl_traj_xyz")
    with left:
        problems = run.problems[i]
        show_player(trajectory, start=frame, autoplay=autoplay, highlight=[p.index for p in problems])
        if problems:
            st.caption(":orange[In the last frame, orange halos ring the unstable atoms:] "
                       f"{describe_problems(problems)}.")

render()
