"""Several users generating at once: time per session, memory, and no cross-talk (real server, real browsers).

    python bench/concurrency.py [--sessions 4] [--n 2] [--steps 50] [--seed 0]

Starts `streamlit run app/main.py` on a free port, opens one headless-Chromium context per session,
gives each its own seed (seed, seed + 1000, ...) and presses Generate in all of them at once. While they
run, one more session opens the app and we time its first page. The server's resident memory is
sampled throughout. Afterwards each session's molecules, read off the page (card titles and the XYZ
inside each 3D view), are compared with a direct `api.generate` call with the same settings (the page's
default refinement round included): same seeds, same formulas in the same order, same coordinates. Prints
a table and writes bench/results/concurrency-<date>.json. Needs Chromium (/usr/bin/chromium) and the Playwright driver.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from browser_utils import CHROMIUM, CHROMIUM_ARGS, streamlit_app  # noqa: E402

CARD = re.compile(r"#(\d+) · (\S+) · (\d+) atoms · seed (\d+)")  # "#1 · C7H10O2 · 19 atoms · seed 3"
XYZ = re.compile(r'"xyz":("(?:[^"\\]|\\.)*")')  # the XYZ block inside a viewer's srcdoc, as a JSON string
TIMEOUT_MS = 300_000
MATCH = {True: "yes", False: "NO", None: "? (the page ran other steps)"}


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (psutil if installed, else /proc)."""
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except ImportError:
        status = Path(f"/proc/{pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


class MemorySampler(threading.Thread):
    """Samples a process's RSS every `every` seconds until stopped."""

    def __init__(self, pid: int, every: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.every, self.samples = pid, every, []  # (seconds since start, MiB)
        self._stop_event = threading.Event()

    def run(self) -> None:
        start = time.perf_counter()
        while not self._stop_event.is_set():
            try:
                self.samples.append((time.perf_counter() - start, rss_mb(self.pid)))
            except (OSError, AttributeError):
                return  # the process is gone
            self._stop_event.wait(self.every)

    def stop(self) -> list[tuple[float, float]]:
        self._stop_event.set()
        self.join()
        return self.samples


async def open_app(browser, url: str):
    """A fresh browser context on the Generate page; returns the page and when it loaded and was drawn."""
    page = await (await browser.new_context(viewport={"width": 1400, "height": 1000})).new_page()
    start = time.perf_counter()
    await page.goto(url)  # returns on the load event: the HTML and the JavaScript bundle are in
    loaded = time.perf_counter() - start
    await page.get_by_role("button", name="Generate").wait_for(timeout=TIMEOUT_MS)  # the script ran: form drawn
    return page, {"loaded_seconds": round(loaded, 2), "drawn_seconds": round(time.perf_counter() - start, 2)}


async def settle(page) -> None:
    """Wait until the script run triggered by the last widget change is over (a run still going would redraw
    the widgets with the server's values and undo the next change)."""
    await asyncio.sleep(0.2)
    idle = page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]')
    await idle.wait_for(timeout=TIMEOUT_MS)


async def prepare(browser, url: str, seed: int, n: int, steps: int):
    """Open the app and set n, steps and seed the way a user would."""
    page, _ = await open_app(browser, url)
    slider = page.get_by_role("slider")
    await slider.focus()
    await slider.press("Home")  # 1 molecule
    for _ in range(n - 1):
        await slider.press("ArrowRight")
    await settle(page)
    await page.get_by_text(re.compile(rf"· {steps:,} steps$")).click()  # "Preview · 50 steps", "Full · 1,000 steps"
    await settle(page)
    assert await page.get_by_role("radio", name=re.compile(rf"· {steps:,} steps$")).is_checked()
    seed_box = page.get_by_label("Seed")
    await seed_box.fill(str(seed))
    await seed_box.press("Enter")
    await settle(page)
    assert await slider.input_value() == str(n), "could not set the number of molecules"
    assert await seed_box.input_value() == str(seed), "could not set the seed"
    return page


async def generate(page) -> dict:
    """Press Generate and wait for the gallery; returns the time taken and whether the page had to wait."""
    waiting = page.get_by_text("Waiting for a free slot")
    done = page.get_by_text("All properties")
    start = time.perf_counter()
    await page.get_by_role("button", name="Generate").click()
    waited = False
    while not await done.count():
        waited = waited or await waiting.count() > 0
        if time.perf_counter() - start > TIMEOUT_MS / 1000:
            raise TimeoutError("no gallery after the run")
        await asyncio.sleep(0.1)
    return {"seconds": time.perf_counter() - start, "waited_for_slot": waited, "finished_at": time.perf_counter()}


def fetch_page_files(url: str) -> float:
    """Seconds to fetch the app's HTML and the scripts it names over plain HTTP: the server's share of a first
    page load, without a browser (all the bench's browsers share this machine's CPUs with the server)."""
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        html = response.read().decode()
    for src in re.findall(r'<script[^>]* src="([^"]+)"', html):
        with urllib.request.urlopen(urllib.parse.urljoin(url, src), timeout=60) as response:
            response.read()
    return time.perf_counter() - start


async def metric(page, label: str) -> str:
    """The value of one of the gallery's summary metrics, e.g. "Sampling steps" -> "50" (the line after the
    label; a delta such as "+ 1 round" may follow it)."""
    text = await page.get_by_test_id("stMetric").filter(has_text=label).inner_text()
    return [line.strip() for line in text.split("\n") if line.strip()][1]


async def molecules_shown(page) -> list[dict]:
    """Formula, atom count and seed from each card title, and the XYZ block from its 3D view, in order."""
    cards = []
    for text in await page.locator('[data-testid="stMarkdownContainer"]').all_inner_texts():
        match = CARD.search(text)
        if match:
            cards.append({"index": int(match[1]), "formula": match[2], "n_atoms": int(match[3]), "seed": int(match[4])})
    for card in cards:
        view = page.locator(f'iframe[title^="Molecule #{card["index"]} "]')
        card["xyz"] = json.loads(XYZ.search(await view.get_attribute("srcdoc"))[1])
    return cards


async def run_load(url: str, args, memory: MemorySampler) -> dict:
    from playwright.async_api import async_playwright

    seeds = [args.seed + 1000 * i for i in range(args.sessions)]
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for _ in range(2):  # the first visitor also loads the engine: time the second, alone on the server
            page, alone = await open_app(browser, url)
            await page.context.close()
        alone["http_fetch_seconds"] = round(fetch_page_files(url), 2)
        pages = await asyncio.gather(*(prepare(browser, url, s, args.n, args.steps) for s in seeds))
        rss_before = memory.samples[-1][1]  # engine loaded, every session's page drawn
        load_start = time.perf_counter()
        runs = asyncio.gather(*(generate(page) for page in pages))  # all sessions press Generate together
        await asyncio.sleep(args.late_after)
        late_start = time.perf_counter()
        fetch = asyncio.create_task(asyncio.to_thread(fetch_page_files, url))
        _, late = await open_app(browser, url)  # one more user arrives while the others run
        late_end = time.perf_counter()
        late["http_fetch_seconds"] = round(await fetch, 2)
        results = await runs
        shown = [{"molecules": await molecules_shown(page), "steps": await metric(page, "Sampling steps"),
                  "sampling_seconds": float((await metric(page, "Time")).split()[0])} for page in pages]
        await browser.close()
    sessions = [{"session": i + 1, "seed": seed, "seconds": round(r["seconds"], 2),
                 "waited_for_slot": r["waited_for_slot"], **page}
                for i, (seed, r, page) in enumerate(zip(seeds, results, shown))]
    late = {**late, "alone": alone,
            "sessions_running_when_opened": sum(r["finished_at"] > late_start for r in results),
            "sessions_running_when_drawn": sum(r["finished_at"] > late_end for r in results)}
    return {"sessions": sessions, "all_done_seconds": round(max(r["finished_at"] for r in results) - load_start, 2),
            "late_session": late, "rss_before_load_mb": round(rss_before, 1)}


def check_against_direct_calls(sessions: list[dict], n: int, steps: int) -> None:
    """Add `matches_direct_call` to each session: its page shows what api.generate gives for its seed."""
    import numpy as np
    import torch

    from app import resources
    from app.state import WIDGET_DEFAULTS
    from unigem_core import api

    torch.set_num_threads(resources.threads_per_job(resources.max_concurrent_jobs()))  # as the server computes
    engine = api.load_model(resources.checkpoint_path(), device="auto")
    for s in sessions:
        direct = api.generate(engine, n, steps=steps, seed=s["seed"], resample=WIDGET_DEFAULTS["gen_resample"])
        shown = s["molecules"]
        same_ids = [(m["seed"], m["formula"]) for m in shown] == [(g.seed, g.molecule.formula) for g in direct]
        deviation = max((float(np.abs(_xyz_positions(m["xyz"]) - g.molecule.positions).max())
                         for m, g in zip(shown, direct)), default=float("inf")) if same_ids else float("inf")
        s["direct_formulas"] = [g.molecule.formula for g in direct]
        s["max_coordinate_deviation"] = deviation
        s["matches_direct_call"] = same_ids and deviation < 1e-3  # the page prints 4 decimals
        if s["steps"] != f"{steps:,}":  # then the bench failed to set the steps: not a sign of cross-talk
            s["matches_direct_call"] = None


def _xyz_positions(block: str):
    import numpy as np

    rows = block.strip("\n").split("\n")[2:]
    return np.array([[float(v) for v in row.split()[1:4]] for row in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=4, help="browser sessions generating at once")
    ap.add_argument("--n", type=int, default=2, help="molecules per session (1 to 16)")
    ap.add_argument("--steps", type=int, default=50, help="sampling steps, one of the page's choices: 50, 100, 250, all")
    ap.add_argument("--seed", type=int, default=0, help="session i uses seed + 1000 i")
    ap.add_argument("--late-after", type=float, default=0.5, help="seconds after the presses until one more user comes")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()

    from app import resources

    with streamlit_app() as server:
        memory = MemorySampler(server.pid)
        memory.start()
        time.sleep(0.5)
        idle_mb = memory.samples[-1][1]
        try:
            result = asyncio.run(run_load(server.url, args, memory))
        finally:
            samples = memory.stop()
    check_against_direct_calls(result["sessions"], args.n, args.steps)

    peak_mb = max(mb for _, mb in samples)
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "cpus": os.cpu_count(),
            "max_concurrent_jobs": resources.max_concurrent_jobs(),
            "threads_per_job": resources.threads_per_job(resources.max_concurrent_jobs()),
            "sessions": args.sessions, "n": args.n, "steps": args.steps,
            "load_avg_1min": os.getloadavg()[0]}
    memory_summary = {"server_started_mb": round(idle_mb, 1), "before_load_mb": result.pop("rss_before_load_mb"),
                      "peak_mb": round(peak_mb, 1), "end_mb": round(samples[-1][1], 1)}
    print_report(meta, result, memory_summary)

    for s in result["sessions"]:
        for m in s["molecules"]:
            if s["matches_direct_call"]:
                m.pop("xyz")  # keep the JSON small; kept where something does not match
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"concurrency-{datetime.date.today().isoformat()}.json"
    path.write_text(json.dumps({**meta, **result, "memory": memory_summary,
                                "memory_samples": [(round(t, 2), round(mb, 1)) for t, mb in samples]}, indent=1))
    print(f"wrote {path}")
    matches = [s["matches_direct_call"] for s in result["sessions"]]
    if False in matches:
        sys.exit("cross-talk: some session does not show the molecules of its own seed")
    if None in matches:
        sys.exit("inconclusive: some session ran with other steps than asked (the bench could not set them)")


def print_report(meta: dict, result: dict, memory: dict) -> None:
    print(f"{meta['sessions']} sessions x {meta['n']} molecules x {meta['steps']} steps, "
          f"{meta['max_concurrent_jobs']} jobs at once, {meta['threads_per_job']} thread(s) each, "
          f"{meta['cpus']} CPUs (load {meta['load_avg_1min']:.1f})")
    print(f"{'session':>7}  {'seed':>5}  {'seconds':>7}  {'sampling':>8}  {'waited':>6}  {'molecules':<40}  "
          f"matches direct call")
    for s in result["sessions"]:
        mols = ", ".join(f"{m['formula']} (seed {m['seed']})" for m in s["molecules"])
        print(f"{s['session']:>7}  {s['seed']:>5}  {s['seconds']:>7.2f}  {s['sampling_seconds']:>8.1f}  "
              f"{'yes' if s['waited_for_slot'] else 'no':>6}  {mols:<40}  "
              f"{MATCH[s['matches_direct_call']]} (max |dx| {s['max_coordinate_deviation']:.1e} A)")
    late = result["late_session"]
    print(f"seconds: press Generate -> gallery shown; sampling: the page's own Time metric. "
          f"All sessions done {result['all_done_seconds']:.2f} s after the presses.")
    alone = late["alone"]
    print(f"late session: page loaded in {late['loaded_seconds']:.2f} s, form drawn in {late['drawn_seconds']:.2f} s, "
          f"page files over plain HTTP in {late['http_fetch_seconds']:.2f} s (alone: {alone['loaded_seconds']:.2f}, "
          f"{alone['drawn_seconds']:.2f}, {alone['http_fetch_seconds']:.2f} s); it opened with "
          f"{late['sessions_running_when_opened']} sessions running, {late['sessions_running_when_drawn']} when drawn")
    print(f"server RSS: {memory['server_started_mb']:.0f} MiB at start, {memory['before_load_mb']:.0f} MiB before "
          f"the presses, peak {memory['peak_mb']:.0f} MiB, end {memory['end_mb']:.0f} MiB")


if __name__ == "__main__":
    main()
