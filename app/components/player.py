"""Trajectory player: the reverse diffusion of one molecule, animated in the browser with 3Dmol.js.

All frames travel once inside the HTML; play/pause, the frame slider, speed and a small sigma_t
timeline run client-side, so playback is smooth and costs no Streamlit reruns. The two phases of
UniGEM (spec 6) look different on purpose:
  nucleation (t > t_n): coordinates only, atoms have no type -> neutral grey spheres, no bonds;
  growth (t <= t_n):    the growth head's type guess per atom (Frame.type_guess) -> element
                        colours and bonds, so one sees the types being decided.
No torch here: frames arrive as numpy arrays inside `unigem_core.molecule.Trajectory`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import streamlit as st

from app.components.viewer import (BACKGROUND, ELEMENT_COLOURS, HALO_COLOUR, UNTYPED_COLOUR, extent, page_html,
                                   script_sources, to_json)
from unigem_core.constants import ELEMENTS
from unigem_core.molecule import Molecule, Trajectory

MAX_FIT_EXTENT = 40.0  # Angstrom; frames wider than this are not used to place the camera

_CSS = """
  .bar { display: flex; align-items: center; gap: 10px; padding: 6px 4px; font-size: 14px; }
  .bar button { min-width: 84px; padding: 4px 10px; border: 1px solid #1b6e8a; border-radius: 6px;
                background: #1b6e8a; color: white; cursor: pointer; font-size: 14px; }
  .bar input[type=range] { flex: 1; }
  .status { display: flex; align-items: center; gap: 10px; padding: 2px 4px 4px; font-size: 14px; }
  .pill { padding: 2px 10px; border-radius: 10px; font-weight: 600; color: white; }
  .pill.nucleation { background: #8a949c; } .pill.growth { background: #2e8b57; }
  svg { display: block; }
"""

_BODY = """
<div class="bar">
  <button id="play" data-role="play">&#9654; Play</button>
  <input id="frame" data-role="frame" type="range" min="0" max="{last}" value="{start}" step="1">
  <span id="counter"></span>
  <select id="speed" title="playback speed"><option value="0.5">0.5&times;</option>
    <option value="1" selected>1&times;</option><option value="2">2&times;</option>
    <option value="4">4&times;</option></select>
  <label><input id="loop" type="checkbox" checked> loop</label>
</div>
<div class="status"><span id="phase" class="pill"></span><span id="info"></span></div>
<svg id="timeline" width="100%" height="46" viewBox="0 0 1000 46" preserveAspectRatio="none"></svg>
"""

_SCRIPT = """
var D = __DATA__;
var UNTYPED = '__UNTYPED__';
load3Dmol(__SOURCES__, function () {
  var viewer = $3Dmol.createViewer(document.getElementById('viewer'), {backgroundColor: '__BG__', antialias: true});
  if (!viewer) { showMessage('This browser cannot draw 3D (WebGL is unavailable).'); return; }
  var slider = document.getElementById('frame'), button = document.getElementById('play');
  var state = {frame: D.start, playing: false, timer: null};
  window.playerState = state;

  function xyz(f) {
    var lines = [f.x.length / 3, 't=' + f.t];
    for (var i = 0; i < f.x.length / 3; i++) {
      lines.push((f.e ? f.e[i] : 'C') + ' ' + f.x[3 * i] + ' ' + f.x[3 * i + 1] + ' ' + f.x[3 * i + 2]);
    }
    return lines.join('\\n') + '\\n';
  }
  // One camera for the whole film: fit the frame that spreads widest, then never move it.
  viewer.addModel(xyz(D.frames[D.widest]), 'xyz', {assignBonds: false});
  viewer.zoomTo(); viewer.zoom(0.85); viewer.removeAllModels();

  // sigma_t strip, as on the page's timeline: one step per recorded frame, log sigma_t, growth shaded.
  var svg = document.getElementById('timeline'), NS = 'http://www.w3.org/2000/svg';
  var last = Math.max(D.frames.length - 1, 1), lo = Math.log10(D.sigmaMin), hi = Math.log10(D.sigmaMax);
  function px(i) { return 10 + 980 * i / last; }
  function py(s) { return 40 - 34 * (Math.log10(Math.max(s, D.sigmaMin)) - lo) / Math.max(hi - lo, 1e-6); }
  function el(name, attrs) { var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]); svg.appendChild(e); return e; }
  var g0 = D.firstGrowth - 0.5;
  el('rect', {x: px(g0), y: 0, width: px(last) - px(g0) + 10, height: 46, fill: '#e3f3ea'});
  el('polyline', {points: D.frames.map(function (f, i) { return px(i) + ',' + py(f.s); }).join(' '),
                  fill: 'none', stroke: '#1b6e8a', 'stroke-width': 2, 'vector-effect': 'non-scaling-stroke'});
  el('line', {x1: px(g0), x2: px(g0), y1: 0, y2: 46, stroke: '#2e8b57', 'stroke-dasharray': '4,3'});
  var dot = el('rect', {y: 0, width: 5, height: 46, fill: '#e0251b'});  // the current frame

  function draw(i) {
    var f = D.frames[i];
    state.frame = i; slider.value = i;
    viewer.removeAllModels();
    var m = viewer.addModel(xyz(f), 'xyz', {assignBonds: !!f.e});
    if (f.e) m.setStyle({}, elementStyle(D.colours, 0.14, 0.28));
    else m.setStyle({}, {sphere: {color: UNTYPED, radius: 0.32}});
    viewer.removeAllShapes();
    if (i === D.frames.length - 1) {  // the finished molecule: ring its unstable atoms, as the gallery does
      addHalos(viewer, D.highlight.map(function (k) { return {x: f.x[3 * k], y: f.x[3 * k + 1], z: f.x[3 * k + 2]}; }),
               D.halo);
    }
    viewer.render();
    var phase = document.getElementById('phase');
    phase.className = 'pill ' + f.p;
    phase.textContent = f.p === 'growth' ? 'Growth: atom types decided' : 'Nucleation: no atom types yet';
    document.getElementById('info').textContent = 't = ' + f.t + ' / ' + D.T + '   \\u03c3_t = ' + f.s.toFixed(4)
        + (f.formula ? '   type guess: ' + f.formula : '');
    document.getElementById('counter').textContent = 'frame ' + (i + 1) + '/' + D.frames.length;
    dot.setAttribute('x', px(i) - 2.5);
  }
  function delay(i) {
    var speed = parseFloat(document.getElementById('speed').value);
    var base = i === D.frames.length - 1 ? 1500 : (D.frames[i].p === 'growth' ? 350 : 60);
    return base / speed;
  }
  function tick() {
    var next = state.frame + 1;
    if (next >= D.frames.length) {
      if (!document.getElementById('loop').checked) { pause(); return; }
      next = 0;
    }
    draw(next);
    state.timer = setTimeout(tick, delay(next));
  }
  function play() { state.playing = true; button.innerHTML = '&#10074;&#10074; Pause';
    if (state.frame >= D.frames.length - 1) draw(0);
    state.timer = setTimeout(tick, delay(state.frame)); }
  function pause() { state.playing = false; button.innerHTML = '&#9654; Play'; clearTimeout(state.timer); }
  button.onclick = function () { state.playing ? pause() : play(); };
  slider.oninput = function () { pause(); draw(parseInt(slider.value, 10)); };
  window.addEventListener('resize', function () { viewer.resize(); viewer.render(); });
  draw(D.start);
  if (D.autoplay) play();
});
"""


def _formula(symbols: Sequence[str]) -> str:
    return Molecule(tuple(symbols), np.zeros((len(symbols), 3))).formula


def player_data(trajectory: Trajectory, start: int = 0, autoplay: bool = True,
                highlight: Sequence[int] = ()) -> dict:
    """Everything the browser needs, as JSON-ready values (coordinates rounded to 1e-3 Angstrom).

    `highlight`: atoms ringed in the last frame (the finished molecule's unstable atoms).
    """
    frames = []
    for f in trajectory.frames:
        symbols = None if f.type_guess is None else [ELEMENTS[int(k)] for k in f.type_guess]
        frames.append({"t": int(f.t), "s": float(f.sigma_t), "p": f.phase,
                       "x": np.round(np.asarray(f.positions, float), 3).ravel().tolist(),
                       "e": symbols, "formula": _formula(symbols) if symbols else ""})
    # The camera fits the widest frame that is still molecule-sized (an untrained model can end
    # scattered over thousands of Angstrom; then the start, a unit-variance cloud, is framed).
    spread = [extent(f.positions) for f in trajectory.frames]
    framable = [k for k, s in enumerate(spread) if s <= MAX_FIT_EXTENT] or [0]
    return {"frames": frames, "T": int(trajectory.num_steps), "tn": int(trajectory.t_n),
            "sigmaMax": max([f["s"] for f in frames] + [1e-6]), "sigmaMin": max(min(f["s"] for f in frames), 1e-6),
            "firstGrowth": next((k for k, f in enumerate(frames) if f["p"] == "growth"), len(frames) - 1),
            "widest": max(framable, key=spread.__getitem__),
            "start": int(min(max(start, 0), len(frames) - 1)), "autoplay": bool(autoplay),
            "colours": ELEMENT_COLOURS, "highlight": [int(k) for k in highlight], "halo": HALO_COLOUR}


def player_html(trajectory: Trajectory, start: int = 0, autoplay: bool = True, height: int = 420,
                highlight: Sequence[int] = ()) -> str:
    """The self-contained player page (see the module docstring)."""
    data = player_data(trajectory, start, autoplay, highlight)
    script = (_SCRIPT.replace("__DATA__", to_json(data)).replace("__SOURCES__", to_json(script_sources()))
              .replace("__UNTYPED__", UNTYPED_COLOUR).replace("__BG__", BACKGROUND))
    body = _BODY.format(last=len(data["frames"]) - 1, start=data["start"])
    return page_html(script, height, body=body, css=_CSS)


def show_player(trajectory: Trajectory, start: int = 0, autoplay: bool = True, height: int = 420,
                highlight: Sequence[int] = ()) -> None:
    """Embed the player in the page; the iframe also holds the controls and the sigma_t strip."""
    st.iframe(player_html(trajectory, start, autoplay, height, highlight), height=height + 130,
              alt="Animated reverse diffusion of the selected molecule")
