"""Checkpoints: safe loading, clear errors for broken files, checksum verification, and surviving SIGKILL."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from unigem_core import api
from unigem_core.config import preset
from unigem_core.train.checkpoint import CheckpointError, atomic_save, load_checkpoint


@pytest.fixture
def shipped_copy(tmp_path):
    """A copy of the shipped checkpoint (and card) that a test may damage."""
    dst = tmp_path / "ckpt"
    dst.mkdir()
    shutil.copy(api.DEFAULT_CHECKPOINT, dst / "unigem.pt")
    return dst / "unigem.pt"


def test_truncated_checkpoint_is_a_clear_error(shipped_copy):
    data = shipped_copy.read_bytes()
    shipped_copy.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=str(shipped_copy.name) + ".*cannot be read"):
        api.load_model(shipped_copy)


def test_garbage_checkpoint_is_a_clear_error(shipped_copy):
    shipped_copy.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="cannot be read"):
        api.load_model(shipped_copy)


def test_checkpoint_for_another_architecture(shipped_copy):
    state = load_checkpoint(shipped_copy)
    other = "paper" if state["config"]["preset"] != "paper" else "tiny"
    state["config"] = preset(other).to_dict()  # weights of one model, config of another
    atomic_save(state, shipped_copy)
    with pytest.raises(CheckpointError, match="does not fit"):
        api.load_model(shipped_copy)


def test_checksum_in_model_card_is_verified(shipped_copy):
    card = {"files": {"unigem.pt": {"sha256": "0" * 64}}}
    (shipped_copy.parent / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="SHA-256"):
        api.load_model(shipped_copy)


def test_pickled_code_is_refused(tmp_path):
    """weights_only=True: a checkpoint that would run code on load is rejected, not executed."""
    path = tmp_path / "evil.pt"
    torch.save({"format": "unigem-inference-v1", "payload": Path("x")}, path)
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(path)


def _train_cmd(run_dir: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "unigem_core.cli", "train", "--preset", "tiny", "--device", "cpu", "--threads", "1",
            "--max-steps", str(steps), "--train-subset", "256", "--batch-size", "16", "--val-every", "0",
            "--precision", "fp32", "--checkpoint-minutes", "0", "--run-dir", str(run_dir)]


def test_sigkill_during_checkpointing_then_resume_matches(tmp_path):
    """Kill a run that writes a checkpoint after every step; the checkpoint is never half-written, and the
    resumed run ends with exactly the weights of an uninterrupted one."""
    steps = 40
    # Same command, same thread count, uninterrupted (float sums depend on the thread count).
    subprocess.run(_train_cmd(tmp_path / "straight", steps), check=True, capture_output=True, timeout=300)
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(run_dir, steps), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run_dir / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.7)  # somewhere in the middle of the run, very likely inside a checkpoint write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = load_checkpoint(run_dir / "last.pt")  # loads: the rename is atomic
    assert 0 < ckpt["step"] < steps, "the kill should land mid-run"
    result = subprocess.run(_train_cmd(run_dir, steps), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-1000:]
    resumed = load_checkpoint(run_dir / "last.pt")
    assert resumed["step"] == steps
    for name, value in straight.items():
        assert torch.equal(value, resumed["model"][name]), name


def test_sigterm_stops_training_with_a_checkpoint(tmp_path):
    """A stopped session's SIGTERM ends training at a step boundary and writes that step's checkpoint."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "unigem_core.cli", "train", "--preset", "tiny", "--device", "cpu", "--threads", "1",
           "--train-subset", "20000", "--batch-size", "8", "--val-every", "0", "--checkpoint-minutes", "100",
           "--run-dir", str(run_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run_dir / "log.csv").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(2.0)  # a few steps in: no checkpoint is due (100 minutes, 2,500 steps to the epoch's end)
    assert not (run_dir / "last.pt").exists()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-1000:]
    assert "SIGTERM: stopping after this step" in out + err
    printed = json.loads(out.strip().splitlines()[-1])
    ckpt = load_checkpoint(run_dir / "last.pt")
    assert ckpt["step"] == printed["step"] > 0
    assert ckpt["history"][-1]["ended"] == "signal" and ckpt["history"][-1]["to_step"] == ckpt["step"]
