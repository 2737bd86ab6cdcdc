"""Training: resuming equals an uninterrupted run, a short run lowers the loss, DDP runs on two CPU processes."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import torch

from unigem_core.config import preset
from unigem_core.data.qm9 import load_split
from unigem_core.diffusion.schedule import NoiseSchedule
from unigem_core.train.checkpoint import load_checkpoint
from unigem_core.train.loop import fit, new_state, validate


def _config(**changes):
    base = dict(train_subset=256, batch_size=16, val_every=0, log_every=1, precision="fp32", checkpoint_minutes=100.0)
    return preset("tiny").with_train(**{**base, **changes})


def test_resume_equals_uninterrupted(tmp_path):
    cpu = torch.device("cpu")
    straight = fit(_config(max_steps=4), tmp_path / "a", cpu, progress=False)
    fit(_config(max_steps=2), tmp_path / "b", cpu, progress=False)
    resumed = fit(_config(max_steps=4), tmp_path / "b", cpu, resume=tmp_path / "b" / "last.pt",
                  overrides={"max_steps": 4}, progress=False)
    assert resumed.step == straight.step == 4
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    for a, b in zip(straight.ema.model.parameters(), resumed.ema.model.parameters()):
        assert torch.equal(a, b)
    # The checkpoint on disk loads safely and says what it is.
    ckpt = load_checkpoint(tmp_path / "b" / "last.pt")
    assert ckpt["step"] == 4 and ckpt["config"]["preset"] == "tiny"


def test_short_training_lowers_the_loss(tmp_path):
    cpu = torch.device("cpu")
    cfg = _config(max_steps=150, ema_decay=0.9, lr=2e-3, precision="bf16")
    valid = load_split("valid", progress=False).subset(np.arange(256))
    schedule = NoiseSchedule()
    before = validate(new_state(cfg, load_split("train", progress=False).subset(np.arange(256)), cpu), valid, schedule, cpu)
    state = fit(cfg, tmp_path / "run", cpu, progress=False)
    after = validate(state, valid, schedule, cpu)
    assert after["val_loss"] < 0.8 * before["val_loss"]
    assert after["val_type_accuracy"] > before["val_type_accuracy"]
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(rows) == 151 and rows[0].startswith("step,epoch,loss")


def test_ddp_two_cpu_processes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "unigem_core.cli", "train", "--preset", "tiny", "--device", "cpu", "--max-steps", "3",
           "--train-subset", "128", "--batch-size", "8", "--val-every", "0", "--run-dir", str(tmp_path / "ddp")]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    ckpt = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert ckpt["step"] == 3
