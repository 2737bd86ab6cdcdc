"""Training: resuming equals an uninterrupted run, a short run lowers the loss, DDP runs on two CPU processes."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from unigem_core import api
from unigem_core.config import preset
from unigem_core.data.collate import collate
from unigem_core.data.qm9 import load_split
from unigem_core.diffusion.schedule import NoiseSchedule
from unigem_core.train.card import build_card
from unigem_core.train.checkpoint import CheckpointError, inference_state, load_checkpoint
from unigem_core.train.ema import EMA
from unigem_core.train.loop import compile_blocks, cxx_compiler, fit, new_state, train_step, validate


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


def test_each_fit_call_is_recorded_in_the_state_and_the_card(tmp_path):
    """The history travels with the checkpoint (and its inference file) and becomes the card's command."""
    from unigem_core.train.card import describe_history

    cpu = torch.device("cpu")
    fit(_config(max_steps=2), tmp_path / "r", cpu, progress=False, command="unigem train --max-steps 2")
    state = fit(_config(), tmp_path / "r", cpu, resume=tmp_path / "r" / "last.pt", overrides={"max_steps": 3},
                progress=False, command="unigem train --resume last.pt")
    history = load_checkpoint(tmp_path / "r" / "last.pt")["history"]
    assert history == state.history
    assert [(h["from_step"], h["to_step"], h["command"], h["ended"]) for h in history] == [
        (0, 2, "unigem train --max-steps 2", "step target"), (2, 3, "unigem train --resume last.pt", "step target")]
    assert all("process(es)" in h["hardware"] and h["seconds"] >= 0 for h in history)
    assert load_checkpoint(tmp_path / "r" / "inference.pt")["history"] == history
    text = describe_history(history)
    assert text.startswith("steps 0 to 2: unigem train --max-steps 2 (step target, ")
    assert "; steps 2 to 3: unigem train --resume last.pt (step target, " in text
    killed = [dict(history[0], ended="running"), dict(history[1], ended="running")]
    assert "interrupted after its last checkpoint" in describe_history(killed)
    assert describe_history(killed).split("; ")[1].split("(")[1].startswith("in progress")
    card = build_card(tmp_path / "r" / "inference.pt", tmp_path / "r", [], [], "r", "")
    assert card["training"]["command"] == text


def test_the_cards_validation_rows_carry_the_precision_their_run_computed_in(tmp_path):
    from unigem_core.train.card import precision_at

    history = [{"from_step": 0, "to_step": 100},  # written from older cards: no hardware line
               {"from_step": 100, "to_step": 200, "hardware": "A CPU (AVX2), 2 process(es) x 1 thread(s), fp32"},
               {"from_step": 200, "to_step": 300, "hardware": "B CPU (2 cores), 2 process(es) x 1 thread(s), bf16"}]
    assert [precision_at(history, s) for s in (50, 100, 101, 200, 250, 300, 301)] == \
        [None, None, "fp32", "fp32", "bf16", "bf16", None]
    fit(_config(max_steps=2, val_every=1, val_molecules=8), tmp_path / "r", torch.device("cpu"), progress=False)
    card = build_card(tmp_path / "r" / "inference.pt", tmp_path / "r", [], [], "r", "")
    assert [(r["step"], r["precision"]) for r in card["validation_curve"]] == [(1, "fp32"), (2, "fp32")]


def test_micro_batches_take_the_same_step_as_the_whole_batch():
    """Passes of 5, 5, 5 and 1 molecules accumulate the gradient of one pass over all 16 (float64)."""
    cpu = torch.device("cpu")
    train = load_split("train", progress=False).subset(np.arange(64))
    batch = collate(train, np.arange(16, 32))
    batch.positions = batch.positions.double()
    after = {}
    for micro in (0, 5):
        state = new_state(_config(micro_batch=micro, lr=1e-3), train, cpu)
        state.model.double()
        state.ema = EMA(state.model, state.config.train.ema_decay)
        metrics = train_step(state, batch, NoiseSchedule())
        after[micro] = (metrics, [p.detach().clone() for p in state.model.parameters()])
    (whole, p_whole), (micro, p_micro) = after[0], after[5]
    for key in ("loss", "coord", "atom_type", "prop", "type_accuracy", "grad_norm"):
        assert abs(whole[key] - micro[key]) <= 1e-12 * max(1.0, abs(whole[key])), key
    assert whole["grad_norm"] > 0
    for a, b in zip(p_whole, p_micro):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_compiled_blocks_take_the_same_step_as_eager_ones():
    """`unigem train --compile`: the blocks under torch.compile give the step's losses and gradient of the eager
    ones (fp32; the fused kernels may round in another order), and the state-dict keys do not change."""
    if not cxx_compiler():
        pytest.skip("no C++ compiler for Inductor's CPU kernels")
    cpu = torch.device("cpu")
    train = load_split("train", progress=False).subset(np.arange(64))
    batch = collate(train, np.arange(16, 32))
    results = {}
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    for compiled in (False, True):
        state = new_state(_config(micro_batch=0, lr=1e-3), train, cpu)
        keys = list(state.model.state_dict())
        if compiled:
            assert compile_blocks(state.model)
            assert list(state.model.state_dict()) == keys
        metrics = train_step(state, batch, NoiseSchedule())
        results[compiled] = (metrics, [p.detach().clone() for p in state.model.parameters()])
        assert (counters["stats"]["unique_graphs"] > 0) == compiled  # the compiled step ran compiled graphs
    (eager, p_eager), (comp, p_comp) = results[False], results[True]
    for key in ("loss", "coord", "atom_type", "prop", "grad_norm"):
        assert abs(eager[key] - comp[key]) <= 1e-4 * max(1.0, abs(eager[key])), key
    for a, b in zip(p_eager, p_comp):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_compile_falls_back_to_eager_without_a_cxx_compiler(monkeypatch, capsys):
    from unigem_core.train import loop

    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(loop.shutil, "which", lambda name: None)
    model = new_state(_config(), load_split("train", progress=False).subset(np.arange(8)), torch.device("cpu")).model
    assert not compile_blocks(model)
    assert "training eagerly" in capsys.readouterr().err
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in model.modules())


def test_short_training_lowers_the_loss(tmp_path):
    cpu = torch.device("cpu")
    cfg = _config(max_steps=150, ema_decay=0.9, lr=2e-3, precision="bf16")
    valid = load_split("valid", progress=False).subset(np.arange(256))
    schedule = NoiseSchedule()
    before = validate(new_state(cfg, load_split("train", progress=False).subset(np.arange(256)), cpu), valid, schedule)
    state = fit(cfg, tmp_path / "run", cpu, progress=False)
    after = validate(state, valid, schedule)
    assert after["val_loss"] < 0.8 * before["val_loss"]
    assert after["val_type_accuracy"] > before["val_type_accuracy"]
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(rows) == 151 and rows[0].startswith("step,epoch,loss")


def test_evaluate_loss_reproduces_the_logged_validation_loss(tmp_path):
    """`unigem evaluate --loss` on a run's checkpoint gives the number its log's val_loss column holds."""
    fit(_config(max_steps=2, val_every=2, val_molecules=40), tmp_path / "run", torch.device("cpu"), progress=False)
    with open(tmp_path / "run" / "log.csv") as f:
        logged = [row for row in csv.DictReader(f) if row["val_loss"]]
    assert [row["step"] for row in logged] == ["2"]
    result = api.evaluate_loss(api.load_model(tmp_path / "run" / "last.pt", "cpu"), precision="fp32")
    assert result["n_loss_molecules"] == 40
    assert result["validation_loss"]["loss"] == pytest.approx(float(logged[0]["val_loss"]), rel=1e-9)
    assert result["validation_loss"]["coord"] == pytest.approx(float(logged[0]["val_coord"]), rel=1e-9)


def test_ddp_two_cpu_processes_stop_together_on_sigterm(tmp_path):
    """`unigem train --processes 2` runs DDP under torchrun (gloo); SIGTERM to the launcher stops both
    ranks at the same step, and rank 0 writes that step's checkpoint."""
    run_dir = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "unigem_core.cli", "train", "--preset", "tiny", "--device", "cpu", "--processes", "2",
           "--train-subset", "20000", "--batch-size", "8", "--val-every", "0", "--checkpoint-minutes", "100",
           "--run-dir", str(run_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = run_dir / "log.csv"
    deadline = time.time() + 180
    while (not log.exists() or len(log.read_text().splitlines()) < 3) and time.time() < deadline:
        time.sleep(0.1)  # two log rows (20 steps) in
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=180)
    printed = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(printed) == 2, err[-2000:]  # one line per rank, both finished
    assert printed[0]["step"] == printed[1]["step"] > 0
    ckpt = load_checkpoint(run_dir / "last.pt")
    assert ckpt["step"] == printed[0]["step"]
    assert ckpt["config"]["train"]["batch_size"] == 8  # the whole batch; each rank took 4
    [segment] = ckpt["history"]  # the command as typed, not torchrun's, and why it ended
    assert "--processes 2" in segment["command"] and segment["ended"] == "signal"
    assert segment["to_step"] == ckpt["step"] and "2 process(es)" in segment["hardware"]


_RANK_SCRIPT = """
import datetime, json, sys
import torch
from unigem_core.config import preset
from unigem_core.train.loop import fit
rank, minutes, run_dir = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
torch.distributed.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
config = preset("tiny").with_train(train_subset=256, batch_size=16, val_every=0, log_every=1, precision="fp32",
                                   checkpoint_minutes=100.0, max_minutes=minutes)
state = fit(config, run_dir, torch.device("cpu"), progress=False)
print(json.dumps({"rank": rank, "step": state.step}), flush=True)
torch.distributed.destroy_process_group()
"""


def test_ddp_ranks_stop_together_when_one_ranks_clock_runs_out_first(tmp_path):
    """Each rank reads its own clock. Here rank 1's budget is 0.6 s and rank 0 has none, the extreme of the
    skew that ended a 27-minute run with a gloo error and no final checkpoint: rank 1 left the loop alone
    and rank 0 failed in its next collective. The budget goes through the ranks' stop vote, so both end at
    one step and rank 0 writes it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "rank.py"
    script.write_text(_RANK_SCRIPT)
    procs = []
    for rank, minutes in ((0, 0.0), (1, 0.01)):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, str(script), str(rank), str(minutes), str(tmp_path / "run")],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outcomes = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail("a rank still runs after rank 1's budget ran out")
        outcomes.append((proc.returncode, out, err))
    for code, out, err in outcomes:
        assert code == 0, err[-2000:]
    steps = [json.loads(out.strip().splitlines()[-1])["step"] for _, out, _ in outcomes]
    assert steps[0] == steps[1] > 0
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == steps[0]


def test_resume_drops_the_time_budget_but_keeps_the_step_target(tmp_path):
    cpu = torch.device("cpu")
    fit(_config(max_steps=2, max_minutes=30.0), tmp_path / "a", cpu, progress=False)
    from unigem_core.train.loop import load_state

    plain = load_state(tmp_path / "a" / "last.pt", cpu)
    assert plain.config.train.max_minutes == 0.0 and plain.config.train.max_steps == 2
    told = load_state(tmp_path / "a" / "last.pt", cpu, overrides={"max_minutes": 5.0, "max_steps": 9})
    assert told.config.train.max_minutes == 5.0 and told.config.train.max_steps == 9


def _log_lrs(run_dir):
    with open(run_dir / "log.csv") as f:
        return {int(r["step"]): float(r["lr"]) for r in csv.DictReader(f)}


def test_cooldown_decays_the_rate_to_zero_stops_and_resumes_exactly(tmp_path):
    """A cool-down branch starts at the resumed step, falls linearly to 0 and stops; cut short, it resumes exactly."""
    cpu = torch.device("cpu")
    lr = _config().train.lr
    fit(_config(max_steps=2), tmp_path / "stable", cpu, progress=False)
    start = tmp_path / "stable" / "last.pt"
    straight = fit(_config(), tmp_path / "a", cpu, resume=start, overrides={"cooldown_steps": 4, "max_steps": 100},
                   progress=False)
    assert straight.step == 6 and straight.config.train.cooldown_start == 2
    lrs = _log_lrs(tmp_path / "a")  # the row of step s logs the rate its update used (step s - 1)
    assert [lrs[s] for s in (3, 4, 5, 6)] == pytest.approx([lr, 0.75 * lr, 0.5 * lr, 0.25 * lr])
    fit(_config(), tmp_path / "b", cpu, resume=start, overrides={"cooldown_steps": 4, "max_steps": 4}, progress=False)
    resumed = fit(_config(), tmp_path / "b", cpu, resume=tmp_path / "b" / "last.pt", overrides={"max_steps": 100},
                  progress=False)
    assert resumed.step == 6  # the cool-down's end bounds any step target
    again = fit(_config(), tmp_path / "b", cpu, resume=tmp_path / "b" / "last.pt", progress=False)
    assert again.step == 6  # resuming a finished cool-down trains no further step
    fit(_config(), tmp_path / "c", cpu, resume=tmp_path / "b" / "last.pt", progress=False)
    assert load_checkpoint(tmp_path / "c" / "last.pt")["step"] == 6  # nor into a new directory, which gets the state
    for (name, a), (_, b) in zip(straight.ema.model.state_dict().items(), resumed.ema.model.state_dict().items()):
        assert torch.equal(a, b), name
    # The model card of the cooled weights names the schedule and the state the campaign resumes from.
    loss = {"validation_loss": {"loss": 0.5}, "n_loss_molecules": 40, "command": "unigem evaluate --n 0 --loss"}
    card = build_card(tmp_path / "a" / "inference.pt", tmp_path / "a", [loss], [], "cooled", "unigem train ...",
                      resume_state=start)
    assert card["validation_loss"] == loss and card["generation"] == {} and card["properties"] is None
    training = card["training"]
    assert training["steps"] == 6 and "falls linearly to 0 from step 2 to step 6" in training["learning_rate"]
    assert training["resume_state"].startswith(f"{start}: step 2,") and f"--resume {start} " in training["resume_command"]


def test_card_keys_generation_by_sampler_and_adds_evaluations_of_its_own_weights(tmp_path, capsys):
    from unigem_core.cli import main
    from unigem_core.train.card import generation_key, write_card

    plain = {"atom_stability": 0.97, "molecule_stability": 0.7, "steps": 100, "step": 50, "command": "unigem evaluate"}
    refined = {**plain, "molecule_stability": 0.8, "resample": 1, "resample_below": 100}
    assert generation_key(plain) == "100" and generation_key(refined) == "100+r1"
    card_path = tmp_path / "card.json"
    write_card({"training": {"steps": 50}, "generation": {"100": plain}, "name": "m"}, card_path)
    (tmp_path / "r1.json").write_text(json.dumps(refined))
    assert main(["card", "--add", "--eval", str(tmp_path / "r1.json"), "--out", str(card_path)]) == 0
    card = json.loads(card_path.read_text())
    assert card["generation"] == {"100": plain, "100+r1": refined} and card["name"] == "m"
    (tmp_path / "other.json").write_text(json.dumps({**refined, "step": 60}))  # another model's evaluation
    assert main(["card", "--add", "--eval", str(tmp_path / "other.json"), "--out", str(card_path)]) == 2
    assert "step 60" in capsys.readouterr().err and json.loads(card_path.read_text()) == card
    smiles = {"mae": {"mu": 0.6}, "geometry": "smiles", "n_refused": 0, "step": 50, "command": "unigem evaluate"}
    (tmp_path / "smiles.json").write_text(json.dumps(smiles))
    assert main(["card", "--add", "--eval", str(tmp_path / "smiles.json"), "--out", str(card_path)]) == 0
    assert json.loads(card_path.read_text()) == {**card, "properties_from_smiles": smiles}
    (tmp_path / "dft.json").write_text(json.dumps({**smiles, "geometry": "qm9"}))  # the card's own, not added
    assert main(["card", "--add", "--eval", str(tmp_path / "dft.json"), "--out", str(card_path)]) == 2


def test_card_takes_evaluations_of_a_staged_copy_of_the_weights_and_refuses_other_weights():
    """A release measures a staged copy first: same checksum, so the card names the shipped file in its command."""
    from unigem_core.train.card import as_shipped

    staged = {"molecule_stability": 0.8, "step": 7, "checkpoint": "runs/x/release/unigem.pt", "checkpoint_sha256": "ab" * 32,
              "command": "unigem evaluate --checkpoint runs/x/release/unigem.pt --n 1000 --steps 100 --json"}
    shipped = as_shipped(staged, "checkpoints/unigem.pt", "ab" * 32, 7)
    assert shipped["command"] == "unigem evaluate --n 1000 --steps 100 --json"  # the default checkpoint needs no flag
    assert shipped["checkpoint"] == "checkpoints/unigem.pt" and shipped["measured_as"] == "runs/x/release/unigem.pt"
    elsewhere = as_shipped({**staged, "command": staged["command"].replace("--checkpoint ", "--checkpoint=")}, "m.pt",
                           "ab" * 32, 7)
    assert elsewhere["command"] == "unigem evaluate --checkpoint m.pt --n 1000 --steps 100 --json"
    assert elsewhere["checkpoint"] == "m.pt"
    kept = as_shipped(staged, "checkpoints/unigem.pt", "ab" * 32, 7)
    assert as_shipped(kept, "checkpoints/unigem.pt", "ab" * 32, 7) == kept  # already the shipped file's record
    with pytest.raises(ValueError, match="other weights"):
        as_shipped(staged, "checkpoints/unigem.pt", "cd" * 32, 7)
    older = {k: v for k, v in staged.items() if k != "checkpoint_sha256"}  # made before evaluate recorded checksums
    assert as_shipped(older, "checkpoints/unigem.pt", "cd" * 32, 7) == older
    with pytest.raises(ValueError, match="step 7"):
        as_shipped(older, "checkpoints/unigem.pt", "cd" * 32, 8)


def test_slow_ema_starts_from_the_first_resumes_exactly_and_exports(tmp_path, capsys):
    """--slow-ema-decay switched on at a resume: a second EMA that starts as the first, resumes exactly, exports."""
    from unigem_core.cli import main

    cpu = torch.device("cpu")
    fit(_config(max_steps=2), tmp_path / "base", cpu, progress=False)  # a campaign without one
    start = tmp_path / "base" / "last.pt"
    same = fit(_config(), tmp_path / "same", cpu, resume=start,
               overrides={"max_steps": 4, "slow_ema_decay": _config().train.ema_decay}, progress=False)
    for a, b in zip(same.ema.model.parameters(), same.slow_ema.model.parameters()):
        assert torch.equal(a, b)  # the same decay from the same start is the same average

    slow = {"slow_ema_decay": 0.999}
    straight = fit(_config(), tmp_path / "a", cpu, resume=start, overrides={"max_steps": 5, **slow}, progress=False)
    fit(_config(), tmp_path / "b", cpu, resume=start, overrides={"max_steps": 3, **slow}, progress=False)
    resumed = fit(_config(), tmp_path / "b", cpu, resume=tmp_path / "b" / "last.pt", overrides={"max_steps": 5},
                  progress=False)
    assert resumed.config.train.slow_ema_decay == 0.999  # the checkpoint's config keeps it
    for (name, a), (_, b) in zip(straight.slow_ema.model.state_dict().items(),
                                 resumed.slow_ema.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert not all(torch.equal(a, b) for a, b in zip(straight.ema.model.parameters(),
                                                     straight.slow_ema.model.parameters()))

    out = tmp_path / "slow.pt"
    assert main(["export", str(tmp_path / "a" / "last.pt"), "--slow-ema", "--out", str(out)]) == 0
    exported, ckpt = load_checkpoint(out), load_checkpoint(tmp_path / "a" / "last.pt")
    assert exported["weights"] == "slow_ema" and exported["step"] == 5
    assert all(torch.equal(exported["model"][k], v) for k, v in ckpt["slow_ema"].items())
    with pytest.raises(CheckpointError, match="holds no 'slow_ema' weights"):
        inference_state(load_checkpoint(start), "slow_ema")
    assert main(["export", str(start), "--slow-ema", "--out", str(out)]) != 0
    assert "holds no 'slow_ema' weights" in capsys.readouterr().err
