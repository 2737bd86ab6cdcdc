"""One real-browser test: the app under `streamlit run`, driven by headless Chromium.

It checks what AppTest cannot: the served config takes effect (upload limit, static serving),
3Dmol.js loads from the app's own static route, and the WebGL canvas really draws a molecule
(counted from a screenshot), and the trajectory player animates. Skipped when Chromium or the
Playwright driver is missing (Debian: `apt-get install -y chromium`).
"""
from __future__ import annotations

import functools
import io
import time
from pathlib import Path

import numpy as np
import pytest
from browser_utils import CHROMIUM, CHROMIUM_ARGS, REPO, streamlit_app

LOCAL_3DMOL = REPO / "app" / "static" / "3Dmol-min.js"

if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)
sync_playwright = pytest.importorskip("playwright.sync_api", reason="Playwright driver not installed").sync_playwright
Image = pytest.importorskip("PIL.Image")
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_url():
    """`streamlit run app/main.py` on a free port, as a user would start it; stopped afterwards."""
    with streamlit_app() as server:
        yield server.url


def drawn_pixels(png: bytes, background=(255, 255, 255)) -> tuple[float, int]:
    """Share of pixels that differ from the background, and how many distinct colours there are."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16).reshape(-1, 3)  # [H*W, 3]
    drawn = (np.abs(pixels - np.array(background)).max(axis=1) > 40).mean()
    return float(drawn), len(np.unique(pixels, axis=0))


def wait_for_drawing(canvas, timeout: float = 30.0, min_share: float = 0.005) -> tuple[float, int]:
    """Screenshot the canvas until something is drawn on it (WebGL in software is slow to start)."""
    deadline = time.time() + timeout
    while True:
        share, colours = drawn_pixels(canvas.screenshot())
        if (share >= min_share and colours >= 10) or time.time() > deadline:
            return share, colours
        time.sleep(0.5)


def test_generate_draws_molecules_and_the_player_animates(app_url):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        scripts = []
        page.on("response", lambda r: scripts.append((r.url, r.status)) if "3Dmol" in r.url else None)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))

        # The upload limit of streamlit_config.toml (50 MB, not Streamlit's 200 MB) reaches the browser.
        page.goto(app_url + "predict")
        page.get_by_text("50MB per file").first.wait_for(timeout=60_000)

        page.goto(app_url)  # Generate is the default page, served at the root
        page.get_by_text("Preview · 50 steps").click()
        page.get_by_role("button", name="Generate").click()
        page.get_by_text("All properties").wait_for(timeout=120_000)

        viewer = page.locator('iframe[title^="Molecule #1"]')
        viewer.scroll_into_view_if_needed()
        canvas = viewer.content_frame.locator("canvas")
        canvas.wait_for(timeout=30_000)
        share, colours = wait_for_drawing(canvas)
        assert share >= 0.005 and colours >= 10, f"the 3D view looks blank: {share:.2%} drawn, {colours} colours"
        if LOCAL_3DMOL.exists():  # served by the app itself, so the viewer works offline
            assert any(url.endswith("/app/static/3Dmol-min.js") and status == 200 for url, status in scripts), scripts

        # Downloads are built on click (deferred callables), which only a real browser exercises.
        with page.expect_download() as download:
            page.get_by_role("button", name="SDF with properties").click()
        sdf = Path(download.value.path()).read_text()  # the default run: 4 molecules
        assert sdf.count("$$$$") == 4 and sdf.startswith("unigem_1_seed0") and ">  <homo [meV]>" in sdf

        page.get_by_role("button", name="Watch it form").first.click()
        player = page.locator('iframe[title^="Animated reverse diffusion"]')
        player.wait_for(timeout=60_000)
        frame = player.element_handle().content_frame()
        frame.locator("canvas").wait_for(timeout=30_000)
        play = frame.locator("[data-role=play]")
        play.click()  # autoplay is on, so this pauses
        assert frame.evaluate("window.playerState.playing") is False
        # Frame 0 is z_T, a unit-variance cloud of untyped (grey) atoms: drawn whatever the model learnt.
        frame.evaluate("(() => { const s = document.querySelector('[data-role=frame]'); s.value = 0;"
                       " s.dispatchEvent(new Event('input')); })()")
        share, _ = wait_for_drawing(frame.locator("canvas"))
        assert share >= 0.002, f"the player draws nothing: {share:.2%}"
        assert "Nucleation" in frame.locator("#phase").inner_text()
        play.click()
        time.sleep(1.5)
        assert frame.evaluate("window.playerState.playing") is True
        assert frame.evaluate("window.playerState.frame") > 0, "the animation does not advance"
        assert not errors, errors
        browser.close()


def orange_share(png: bytes) -> float:
    """Share of pixels in the orange of the unstable-atom halo (viewer.HALO_COLOUR, blended over the scene)."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16).reshape(-1, 3)  # [H*W, 3]
    r, g, b = rgb.T
    return float(((r > 180) & (g > 100) & (g < 215) & (r - b > 70)).mean())


def test_unstable_atoms_wear_a_halo(app_url):
    """The gallery rings an unstable atom (here the carbon of CH3) in orange; nothing else on the view is orange."""
    from app.components.viewer import molecule_html

    if not LOCAL_3DMOL.exists():
        pytest.skip("no local 3Dmol.js (python app/setup_assets.py)")
    tetrahedron = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1]]) / np.sqrt(3)
    symbols, positions = ("C", "H", "H", "H"), np.vstack([[0, 0, 0], 1.09 * tetrahedron])
    url = app_url + "viewer-check"  # answered below; relative script URLs resolve against the app
    shares = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 420, "height": 340})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        for highlight in ((), (0,)):
            html = molecule_html(symbols, positions, height=300, highlight=highlight)
            page.route(url, functools.partial(lambda body, route: route.fulfill(body=body, content_type="text/html"), html))
            page.goto(url)
            canvas = page.locator("#viewer canvas")
            canvas.wait_for(timeout=30_000)
            wait_for_drawing(canvas)
            time.sleep(0.5)  # the halo is drawn with the first frame, but give WebGL a beat
            shares[highlight] = orange_share(canvas.screenshot())
            page.unroute(url)
        browser.close()
    assert not errors, errors
    assert shares[()] < 0.0002 and shares[(0,)] > 0.001, shares  # the halo covers about 0.25 % of this view
