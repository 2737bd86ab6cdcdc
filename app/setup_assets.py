"""One-time setup of the app: fetch 3Dmol.js for offline use and link the Streamlit config.

    python app/setup_assets.py            # idempotent; --force re-downloads

It runs `npm pack 3dmol@<THREEDMOL_VERSION>` in a temporary folder (npm checks the registry's
integrity hash), takes `package/build/3Dmol-min.js` out of the tarball, checks it against the
pinned SHA-256 and writes it to app/static/3Dmol-min.js (ignored by git; served by Streamlit at
/app/static/3Dmol-min.js). Without it the viewer loads the same version from the jsDelivr CDN.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.bootstrap import SOURCE, TARGET, ensure_config_link  # noqa: E402
from app.components.viewer import LOCAL_JS, THREEDMOL_VERSION  # noqa: E402

# SHA-256 of package/build/3Dmol-min.js in 3dmol@2.5.5 as published on the npm registry.
PINNED_SHA256 = {"2.5.5": "f7cc78921ae72e7623e89cdd111434f58c2efddd2ffda1cd212644b406fb8016"}
MEMBER = "package/build/3Dmol-min.js"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_3dmol(version: str = THREEDMOL_VERSION, dest: Path = LOCAL_JS, force: bool = False) -> Path:
    """Download the 3dmol npm package and copy its minified build to `dest`; skip if already there."""
    expected = PINNED_SHA256.get(version)
    if dest.exists() and not force and (expected is None or sha256(dest.read_bytes()) == expected):
        print(f"3Dmol.js {version} already at {dest}")
        return dest
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is not installed: install Node.js, or let the app load 3Dmol.js from the CDN")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([npm, "pack", f"3dmol@{version}", "--silent"], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL)
        tarball = next(Path(tmp).glob("3dmol-*.tgz"))
        with tarfile.open(tarball) as tar:
            data = tar.extractfile(MEMBER).read()
    if expected is not None and sha256(data) != expected:
        raise SystemExit(f"3Dmol-min.js from 3dmol@{version} has SHA-256 {sha256(data)}, expected {expected}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".part")
    partial.write_bytes(data)
    os.replace(partial, dest)  # atomic: a running app never serves half a file
    print(f"3Dmol.js {version} ({len(data) // 1024} KiB) written to {dest}")
    return dest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="download 3Dmol.js again")
    parser.add_argument("--version", default=THREEDMOL_VERSION, help="3dmol npm version (default: %(default)s)")
    args = parser.parse_args(argv)
    ensure_config_link()
    print(f"Streamlit config: {TARGET} -> {SOURCE}")
    fetch_3dmol(args.version, force=args.force)


if __name__ == "__main__":
    main()
