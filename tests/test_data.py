"""The QM9 cache: processes that build it at the same time (DDP ranks, sampling workers) all succeed."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from unigem_core.data.qm9 import qm9pack_data_dir

# Each writer waits, after writing its temporary file and before moving it into place, until the other
# has written too: the moment two ranks of `unigem train --processes 2` on a fresh machine reach together.
WRITER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    import numpy as np
    from unigem_core.data import qm9

    folder = Path(sys.argv[1])
    savez = np.savez

    def savez_then_wait(path, **arrays):
        savez(path, **arrays)
        (folder / f"written.{os.getpid()}").touch()
        deadline = time.monotonic() + 120
        while len(list(folder.glob("written.*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)

    np.savez = savez_then_wait
    arrays = qm9.load_qm9(folder, progress=False)
    print(len(arrays.n_atoms))
""")


def test_two_processes_building_the_cache_at_once_both_load_it(tmp_path):
    try:
        qm9pack_data_dir()
    except FileNotFoundError:
        pytest.skip("the QM9 data package is not installed")
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [w.communicate(timeout=300) for w in writers]
    for writer, (out, err) in zip(writers, results):
        assert writer.returncode == 0, err.strip().splitlines()[-1]
        assert out.strip() == "130831"
    cached = [p.name for p in tmp_path.glob("*.npz")]
    assert len(cached) == 1 and ".tmp." not in cached[0], cached  # one cache, no temporary file left behind


def test_the_portable_file_stands_in_for_qm9pack(tmp_path, monkeypatch):
    """write_portable keeps every field (positions to 0.0005 Angstrom, targets to float32), and load_qm9 reads it
    where qm9pack is not installed (a lent GPU machine); without either, the error names the package."""
    import numpy as np

    from unigem_core.data import qm9

    try:
        arrays = qm9.load_qm9(progress=False).subset(np.arange(0, 130_831, 97))
    except FileNotFoundError as error:
        pytest.skip(str(error))
    qm9.write_portable(tmp_path / qm9.PORTABLE_FILE, arrays)

    def missing():
        raise FileNotFoundError("the QM9 data package `qm9pack` is not installed: pip install qm9pack")

    monkeypatch.setattr(qm9, "qm9pack_data_dir", missing)
    back = qm9.load_qm9(tmp_path)
    assert np.abs(back.positions - arrays.positions).max() <= 0.51 * qm9.POSITION_QUANTUM
    np.testing.assert_allclose(back.targets, arrays.targets, rtol=1e-7, atol=1e-9)
    for field in ("types", "n_atoms", "smiles", "index"):
        assert (getattr(back, field) == getattr(arrays, field)).all(), field
        assert getattr(back, field).dtype.kind == getattr(arrays, field).dtype.kind, field
    assert back.positions.dtype == arrays.positions.dtype and (back.positions[back.types < 0] == 0).all()
    with pytest.raises(FileNotFoundError, match="qm9pack"):
        qm9.load_qm9(tmp_path / "empty")
