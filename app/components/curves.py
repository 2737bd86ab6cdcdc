"""The model card's curves, as plotly figures: the training curve (each snapshot's fast preview and a running mean)
and the validation loss (one trace per precision). Pure builders over the card's rows, for the Model page."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

CURVE_METRICS = {"atom_stability": ("atom stability", "#0068c9"),
                 "molecule_stability": ("molecule stability", "#83c9ff"), "validity": ("validity", "#ff2b2b")}
# The curve's lines are running means over this many neighbouring points: one point is a fast preview of 100
# molecules, whose molecule stability alone is uncertain by about 4 percentage points (binomial standard error).
CURVE_WINDOW = 9


def curve_figure(curve: list[dict]) -> go.Figure:
    """Stability and validity (left axis, %) and loss (right axis) against the optimiser step: each snapshot's
    measurement as a faint point, with epoch and sample size on hover, and the running mean of CURVE_WINDOW
    points (centred; fewer at the ends) as a line, so that the trend stands out of the sampling noise."""
    frame = pd.DataFrame(curve)
    x = "step" if "step" in frame else ("epoch" if "epoch" in frame else None)
    frame = frame.sort_values(x).reset_index(drop=True) if x else frame
    xs = frame[x] if x else frame.index
    meta = frame.reindex(columns=["epoch", "n_molecules"])  # NaN where the card's rows lack them
    hover = [(f"epoch {e:,.0f} · " if pd.notna(e) else "") + (f"{n:,.0f} molecules" if pd.notna(n) else "")
             for e, n in zip(meta["epoch"], meta["n_molecules"])]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for key, (name, color) in CURVE_METRICS.items():
        if key not in frame or not frame[key].notna().any():
            continue
        values = frame[key] * 100
        fig.add_trace(go.Scatter(x=xs, y=values, name=f"{name}, each snapshot", mode="markers", legendgroup=key,
                                 marker={"color": color, "size": 5, "opacity": 0.35}, customdata=hover,
                                 hovertemplate=f"{name} %{{y:.1f}}%<br>%{{customdata}}<extra></extra>"),
                      secondary_y=False)
        mean = values.rolling(CURVE_WINDOW, center=True, min_periods=1).mean()
        fig.add_trace(go.Scatter(x=xs, y=mean, name=f"{name}, mean of {CURVE_WINDOW}", mode="lines", legendgroup=key,
                                 line={"color": color, "width": 2.5},
                                 hovertemplate=f"{name}, mean of {CURVE_WINDOW}: %{{y:.1f}}%<extra></extra>"),
                      secondary_y=False)
    if "loss" in frame and frame["loss"].notna().any():
        fig.add_trace(go.Scatter(x=xs, y=frame["loss"], name="training loss", mode="lines",
                                 line={"color": "#8a949c", "dash": "dot"}), secondary_y=True)
    fig.update_layout(height=400, margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"orientation": "h", "y": -0.2})
    fig.update_xaxes(title_text=x or "checkpoint")
    fig.update_yaxes(title_text="% of generated molecules / atoms", range=[0, 100], secondary_y=False)
    fig.update_yaxes(title_text="loss", secondary_y=True, showgrid=False)
    return fig


def curve_caption(curve: list[dict]) -> str:
    """What one point of the training curve is, and how uncertain: the sample size and sampler of its evaluations
    and the binomial standard error of the latest molecule stability (smoothed) at that size."""
    frame = pd.DataFrame(curve)
    parts = ["Each point measures one epoch's snapshot of the EMA weights as training ran"]
    if "n_molecules" in frame and frame["n_molecules"].notna().any():
        n = int(frame["n_molecules"].mode().iloc[0])
        steps = frame["steps"].mode().iloc[0] if "steps" in frame and frame["steps"].notna().any() else None
        parts[0] += f" ({n:,} molecules" + (f", {int(steps):,} sampling steps)" if steps else ")")
        if "molecule_stability" in frame and frame["molecule_stability"].notna().any():
            p = frame["molecule_stability"].dropna().tail(CURVE_WINDOW).mean()
            error = 100 * (p * (1 - p) / n) ** 0.5
            parts.append(f"at {100 * p:.0f} % molecule stability one point is uncertain by about ±{error:.1f} "
                         f"percentage points (binomial standard error), so the lines show the mean of {CURVE_WINDOW} "
                         "neighbouring points")
    if "command" in frame and frame["command"].notna().any():
        parts.append(f"the latest: `{frame['command'].dropna().iloc[-1]}`")
    return "; ".join(parts) + "."


# Validation losses computed in bf16 read higher than in fp32 for the same weights (by about 0.0025 where the
# campaign moved from fp32 to bf16 at step 229,462), so the curve has one trace per precision.
PRECISION_COLORS = {"fp32": "#0068c9", "bf16": "#ff8700", None: "#8a949c"}


def validation_figure(rows: list[dict]) -> go.Figure:
    """Validation loss (left axis), one trace per precision its run computed it in (the card's rows say, from the
    checkpoint's history), and its property term (right axis), both log scale, against the step."""
    frame = pd.DataFrame(rows)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    if "val_loss" in frame:
        precision = frame.reindex(columns=["precision"])["precision"]  # NaN where not recorded
        for used, color in PRECISION_COLORS.items():
            mine = precision.isna() if used is None else precision.eq(used)
            if not mine.any():
                continue
            name = (f"validation loss, {used}" if used else
                    "validation loss" + (", precision not recorded" if precision.notna().any() else ""))
            # the other precisions' points are gaps, so that no line bridges a switch
            fig.add_trace(go.Scatter(x=frame["step"], y=frame["val_loss"].where(mine), name=name,
                                     mode="lines+markers", connectgaps=False, line={"color": color},
                                     marker={"color": color, "size": 5}), secondary_y=False)
    if "val_prop_mae_norm" in frame:
        fig.add_trace(go.Scatter(x=frame["step"], y=frame["val_prop_mae_norm"], name="property term (normalised MAE)",
                                 mode="lines", line={"color": "#8a949c", "dash": "dot"}), secondary_y=True)
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"orientation": "h", "y": -0.25})
    fig.update_xaxes(title_text="step")
    # Log axes: the first epochs' drop would otherwise flatten the slow late gains a reader weighs
    fig.update_yaxes(title_text="loss (log)", type="log", tickformat=".2g", secondary_y=False)
    fig.update_yaxes(title_text="normalised MAE (log)", type="log", tickformat=".2g", secondary_y=True, showgrid=False)
    return fig
