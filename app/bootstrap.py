"""Make `streamlit run app/main.py` honour the top-level `streamlit_config.toml`.

Streamlit 1.67 reads config from `~/.streamlit/config.toml`, `$CWD/.streamlit/config.toml` and,
last and winning, `<folder of the main script>/.streamlit/config.toml`, i.e. app/.streamlit/.
It reads them when the server starts, before any app code runs, and afterwards polls each of those
paths (even missing ones) and reloads the options when one appears or changes.

So the link app/.streamlit/config.toml -> ../../streamlit_config.toml is made
  1. by `python app/setup_assets.py` (the setup step), so the very first start already has it, and
  2. by app/main.py on every run, as a safety net. When main.py has to create it, Streamlit's
     watcher reloads the options within a second: per-request options (server.maxUploadSize, the
     theme) apply at once; options read at server start (server.enableStaticServing) apply from
     the next start. The viewer falls back to the CDN meanwhile.
Where symlinks are not allowed (some Windows setups) a copy is kept in step with the source.
"""
from __future__ import annotations

import filecmp
import os
import shutil
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent
REPO_ROOT = APP_DIR.parent
SOURCE = REPO_ROOT / "streamlit_config.toml"
TARGET = APP_DIR / ".streamlit" / "config.toml"


def config_linked(source: Path = SOURCE, target: Path = TARGET) -> bool:
    """True when `target` already shows the content of `source` (link or identical copy)."""
    if not target.exists():
        return False
    if target.is_symlink():
        return target.resolve() == source.resolve()
    return filecmp.cmp(source, target, shallow=False)


def ensure_config_link(source: Path = SOURCE, target: Path = TARGET) -> bool:
    """Point `target` at `source`; returns True when something had to change.

    Never raises: a read-only checkout simply runs with Streamlit's defaults.
    """
    try:
        if not source.exists() or config_linked(source, target):
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        try:
            target.symlink_to(os.path.relpath(source, target.parent))
        except OSError:
            shutil.copyfile(source, target)
        return True
    except OSError:
        return False
