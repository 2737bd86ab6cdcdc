"""The 3D molecule viewer: self-contained 3Dmol.js HTML, embedded with `st.iframe` (no torch here).

`st.components.v1.html` is deprecated in Streamlit 1.67; `st.iframe(html_string)` replaces it and
renders the string as the `srcdoc` of an iframe in which scripts run. 3Dmol.js is loaded from the
app's own static route (app/static/3Dmol-min.js, fetched by app/setup_assets.py) so the viewer
works offline, with the jsDelivr CDN as the fallback when that file is missing or fails to load.
A srcdoc iframe resolves relative URLs against the app page, so "app/static/..." reaches Streamlit's
static route for any page of the app.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import streamlit as st

THREEDMOL_VERSION = "2.5.5"  # the version py3Dmol 2.5.5 uses, so both draw alike
LOCAL_JS = Path(__file__).resolve().parent.parent / "static" / "3Dmol-min.js"
STATIC_URL = "app/static/3Dmol-min.js"  # relative: resolved against the page URL by the srcdoc iframe
CDN_URL = f"https://cdn.jsdelivr.net/npm/3dmol@{THREEDMOL_VERSION}/build/3Dmol-min.js"

# Element colours (CPK-like). Carbon is darker than the usual Jmol grey so that it stays distinct
# from the light grey of atoms that have no type yet (nucleation phase of the trajectory player).
ELEMENT_COLOURS = {"H": "#f4f4f4", "C": "#4a4a4a", "N": "#2f5fe0", "O": "#e0251b", "F": "#5cc44a"}
UNTYPED_COLOUR = "#b9bec4"
HALO_COLOUR = "#ff8c00"  # the halo around an atom whose valence is not allowed (gallery)
BACKGROUND = "#ffffff"


def script_sources() -> list[str]:
    """Where the browser looks for 3Dmol.js, in order: the local static copy if present, then the CDN."""
    return ([STATIC_URL] if LOCAL_JS.exists() else []) + [CDN_URL]


def to_json(value) -> str:
    """JSON that is safe inside a <script> element."""
    return json.dumps(value, separators=(",", ":")).replace("</", "<\\/")


def xyz_block(symbols: Sequence[str], positions: np.ndarray, comment: str = "") -> str:
    """A single-frame XYZ text, the format handed to 3Dmol.js."""
    rows = [f"{s} {x:.4f} {y:.4f} {z:.4f}" for s, (x, y, z) in zip(symbols, np.asarray(positions, float))]
    return "\n".join([str(len(rows)), comment.replace("\n", " "), *rows]) + "\n"


def extent(positions: np.ndarray) -> float:
    """Largest distance between two atoms (Angstrom); QM9 molecules span at most about 12 A."""
    x = np.asarray(positions, float).reshape(-1, 3)
    if len(x) < 2:
        return 0.0
    return float(np.linalg.norm(x[:, None] - x[None], axis=-1).max())


def focus_atoms(positions: np.ndarray, radius: float = 10.0) -> list[int] | None:
    """Atoms the camera should frame: None (all) for a compact molecule; for one scattered over
    hundreds of Angstrom (an untrained or failed sample) the densest cluster, so the view is not a
    blank box of sub-pixel atoms. The caller says so beside the view.
    """
    x = np.asarray(positions, float).reshape(-1, 3)
    if extent(x) <= 2 * radius:
        return None
    near = np.linalg.norm(x[:, None] - x[None], axis=-1) < radius  # [n, n]
    centre = int(near.sum(1).argmax())
    return np.flatnonzero(near[centre]).tolist()


# Shared JS: load 3Dmol.js from the first source that works, then call start(); report failures.
_LOADER_JS = """
function showMessage(text) {
  var m = document.getElementById('msg'); m.textContent = text; m.style.display = 'block';
}
function load3Dmol(sources, start) {
  if (window.$3Dmol) { start(); return; }
  if (!sources.length) {
    showMessage('3Dmol.js could not be loaded: run "python app/setup_assets.py" for an offline copy.');
    return;
  }
  var s = document.createElement('script');
  s.src = sources[0];
  s.onload = function () { window.$3Dmol ? start() : load3Dmol(sources.slice(1), start); };
  s.onerror = function () { load3Dmol(sources.slice(1), start); };
  document.head.appendChild(s);
}
function elementStyle(colours, stickRadius, sphereScale) {
  var scheme = {prop: 'elem', map: colours};
  return {stick: {radius: stickRadius, colorscheme: scheme}, sphere: {scale: sphereScale, colorscheme: scheme}};
}
function addHalos(viewer, centres, colour) {  // translucent spheres around atoms, e.g. the unstable ones
  centres.forEach(function (c) {
    viewer.addSphere({center: {x: c.x, y: c.y, z: c.z}, radius: 0.8, color: colour, opacity: 0.7});
  });
}
function hoverLabels(viewer) {
  viewer.setHoverable({}, true, function (atom, v) {
    if (!atom.label) atom.label = v.addLabel(atom.elem + (atom.index + 1), {position: atom,
      backgroundColor: '#1d2730', backgroundOpacity: 0.85, fontColor: 'white', fontSize: 11});
  }, function (atom, v) { if (atom.label) { v.removeLabel(atom.label); delete atom.label; } });
}
"""

_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8">
<style>
  html, body {{ margin: 0; padding: 0; background: {background}; overflow: hidden;
               font-family: "Source Sans Pro", "Segoe UI", Helvetica, Arial, sans-serif; color: #1d2730; }}
  #viewer {{ position: relative; width: 100%; height: {height}px; }}
  #msg {{ display: none; padding: 12px; background: #fff4e5; color: #7a4b00; font-size: 14px; }}
  .hint {{ position: absolute; z-index: 10; right: 6px; bottom: 4px; font-size: 11px; color: #8a949c;
           pointer-events: none; }}
  {css}
</style></head>
<body>
<div id="msg"></div>
<div id="viewer" data-role="molecule-viewer"><span class="hint">drag: rotate · scroll: zoom</span></div>
{body}
<script>
{loader}
{script}
</script>
</body></html>
"""


def page_html(script: str, height: int, body: str = "", css: str = "") -> str:
    """A complete HTML document with one 3Dmol viewer div (#viewer) and the loader; `script` calls load3Dmol."""
    return _PAGE.format(background=BACKGROUND, height=height, css=css, body=body, loader=_LOADER_JS, script=script)


def molecule_html(symbols: Sequence[str], positions: np.ndarray, height: int = 300, spin: bool = False,
                  highlight: Sequence[int] = ()) -> str:
    """HTML that draws one molecule as balls and sticks; bonds are perceived by 3Dmol.js from distances.

    `highlight`: 0-based indices of atoms to ring with a translucent halo (the gallery's unstable atoms).
    """
    data = {"xyz": xyz_block(symbols, positions), "colours": ELEMENT_COLOURS, "spin": spin,
            "focus": focus_atoms(positions), "highlight": [int(i) for i in highlight], "halo": HALO_COLOUR}
    script = f"""
var DATA = {to_json(data)};
load3Dmol({to_json(script_sources())}, function () {{
  var el = document.getElementById('viewer');
  var viewer = $3Dmol.createViewer(el, {{backgroundColor: '{BACKGROUND}', antialias: true}});
  if (!viewer) {{ showMessage('This browser cannot draw 3D (WebGL is unavailable).'); return; }}
  viewer.addModel(DATA.xyz, 'xyz');
  viewer.setStyle({{}}, elementStyle(DATA.colours, 0.14, 0.28));
  if (DATA.highlight.length) addHalos(viewer, viewer.getModel().selectedAtoms({{index: DATA.highlight}}), DATA.halo);
  hoverLabels(viewer);
  viewer.zoomTo(DATA.focus ? {{index: DATA.focus}} : {{}});
  viewer.zoom(DATA.focus && DATA.focus.length < 3 ? 0.3 : 0.9);
  if (DATA.spin) viewer.spin('y', 0.5);
  viewer.render();
  window.addEventListener('resize', function () {{ viewer.resize(); viewer.render(); }});
}});
"""
    return page_html(script, height)


def show_molecule(symbols: Sequence[str], positions: np.ndarray, height: int = 300, title: str = "",
                  highlight: Sequence[int] = ()) -> None:
    """Draw a molecule in the page (an `st.iframe`), with halos around the `highlight` atoms."""
    st.iframe(molecule_html(symbols, positions, height, highlight=highlight), height=height + 4,
              alt=title or "3D view of the molecule")
