"""Helpers shared by the real-browser test and bench/concurrency.py: the app under `streamlit run`
on a free port, and where headless Chromium is.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("UNIGEM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AppServer:
    url: str  # "http://localhost:<port>/", the Generate page
    pid: int  # the server process (the Python running Streamlit), e.g. to sample its memory


@contextmanager
def streamlit_app(env: dict[str, str] | None = None, timeout: float = 60.0) -> Iterator[AppServer]:
    """`streamlit run app/main.py` on a free port, as a user would start it; stopped afterwards.

    The server's output goes to a temporary file (a pipe nobody reads could fill up and stall it)
    and is shown if the server does not come up.
    """
    port = free_port()
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", **(env or {})}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.headless", "true",
                                 "--server.port", str(port)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://localhost:{port}/"
        try:
            deadline = time.time() + timeout
            while not _healthy(url):
                if proc.poll() is not None or time.time() > deadline:
                    log.seek(0)
                    raise RuntimeError("streamlit did not start:\n" + log.read().decode(errors="replace"))
                time.sleep(0.5)
            yield AppServer(url=url, pid=proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
