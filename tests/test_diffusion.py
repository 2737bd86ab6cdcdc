"""Noise schedule values, timestep sampling, loss masking and sampler behaviour (spec 3, 4, 6)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import random_batch
from unigem_core.config import DiffusionConfig
from unigem_core.data.collate import Batch
from unigem_core.data.normalizer import PropertyNormalizer
from unigem_core.diffusion.process import sample_training_t, two_phase_loss
from unigem_core.diffusion.sampler import SamplerOptions, sample, timesteps
from unigem_core.diffusion.schedule import NoiseSchedule


@pytest.mark.parametrize("t, alpha, sigma", [(0, 0.99999, 0.00316), (10, 0.99990, 0.0145), (50, 0.9975, 0.0707),
                                             (100, 0.990, 0.141), (500, 0.75, 0.661), (1000, 0.0032, 0.99999)])
def test_schedule_matches_spec_table(t, alpha, sigma):
    s = NoiseSchedule(1000)
    tt = torch.tensor([t])
    assert s.alpha(tt).item() == pytest.approx(alpha, abs=2e-4)
    assert s.sigma(tt).item() == pytest.approx(sigma, rel=5e-3)


def test_schedule_is_variance_preserving_and_monotone():
    s = NoiseSchedule(1000)
    assert torch.allclose(s.alphas2 + s.sigmas2, torch.ones(1001, dtype=torch.float64))
    assert (s.gamma[1:] > s.gamma[:-1]).all()


def test_transition_matches_direct_formula():
    s = NoiseSchedule(1000)
    t, u = torch.tensor([500, 11, 1]), torch.tensor([499, 10, 0])
    a_ts, s2_ts = s.transition(t, u)
    assert torch.allclose(a_ts.double(), (s.alphas2[t] / s.alphas2[u]).sqrt(), rtol=1e-6)
    direct = s.sigmas2[t] - s.alphas2[t] / s.alphas2[u] * s.sigmas2[u]
    assert torch.allclose(s2_ts.double(), direct, rtol=1e-4)


def test_training_timesteps_oversample_growth_phase():
    cfg = DiffusionConfig()
    t = sample_training_t(64, cfg, torch.Generator().manual_seed(0))
    assert ((t <= cfg.t_n).sum().item(), (t > cfg.t_n).sum().item()) == (32, 32)
    assert t.min() >= 0 and t.max() <= cfg.num_steps


class _Fixed(torch.nn.Module):
    """A stand-in network with fixed outputs, to test what the loss counts."""

    def __init__(self, eps, logits, props, t_n=10):
        super().__init__()
        self.out, self.t_n = (eps, logits, props), t_n

    def forward(self, z, t, mask):
        from unigem_core.model.denoiser import DenoiserOutput
        return DenoiserOutput(*self.out)


def _batch(n_atoms, n_max):
    x, mask = random_batch(n_atoms, n_max=n_max, dtype=torch.float32)
    types = torch.zeros(len(n_atoms), n_max, dtype=torch.long)
    return Batch(positions=x, node_mask=mask, types=types, targets=torch.zeros(len(n_atoms), 12),
                 n_atoms=torch.tensor(n_atoms))


def test_type_and_property_losses_only_in_growth_phase():
    cfg = DiffusionConfig(growth_fraction=0.0)  # every molecule in the nucleation phase
    batch = _batch([5, 6], 6)
    norm = PropertyNormalizer(tuple([0.0] * 12), tuple([1.0] * 12))
    bad_logits = torch.zeros(2, 6, 5)
    bad_logits[..., 3] = 50.0  # confidently wrong types
    net = _Fixed(torch.zeros(2, 6, 3), bad_logits, torch.full((2, 12), 100.0))
    terms = two_phase_loss(net, batch, NoiseSchedule(), norm, cfg, torch.Generator().manual_seed(0))
    assert terms.total.item() == pytest.approx(terms.coord.item())
    cfg_growth = DiffusionConfig(growth_fraction=1.0)
    terms = two_phase_loss(net, batch, NoiseSchedule(), norm, cfg_growth, torch.Generator().manual_seed(0))
    assert terms.prop.item() == pytest.approx(100.0)
    assert terms.total.item() > 100.0


def test_padding_does_not_enter_the_loss():
    cfg = DiffusionConfig()
    norm = PropertyNormalizer(tuple([0.0] * 12), tuple([1.0] * 12))
    losses = []
    small = _batch([4, 5], 5)
    for n_max in (5, 9):  # the same molecules padded to two sizes
        pad = n_max - 5
        batch = Batch(positions=torch.nn.functional.pad(small.positions, (0, 0, 0, pad)),
                      node_mask=torch.nn.functional.pad(small.node_mask, (0, pad)),
                      types=torch.nn.functional.pad(small.types, (0, pad)), targets=small.targets, n_atoms=small.n_atoms)
        logits = torch.zeros(2, n_max, 5)
        logits[:, 5:] = 1e3  # garbage on padding slots must not count
        net = _Fixed(torch.zeros(2, n_max, 3), logits, torch.zeros(2, 12))
        losses.append(two_phase_loss(net, batch, NoiseSchedule(), norm, cfg, torch.Generator().manual_seed(0)).total.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


@pytest.mark.parametrize("spacing", [1.0, 3.0])
def test_strided_timesteps_keep_growth_phase(spacing):
    ts = timesteps(1000, 10, 50, spacing)
    assert ts[0] == 1000 and ts[-1] == 0 and 10 in ts
    assert all(a > b for a, b in zip(ts, ts[1:]))
    assert len(ts) - 1 == 50
    assert sum(t <= 10 for t in ts) >= 3
    assert timesteps(1000, 10, None, spacing) == list(range(1000, -1, -1))
    for steps in (2, 3, 7, 20, 99, 100, 250, 500, 900, 999):  # exactly the network calls asked for
        ts = timesteps(1000, 10, steps, spacing)
        assert len(ts) - 1 == steps and len(set(ts)) == len(ts) and ts[0] == 1000 and ts[-1] == 0, steps


def test_step_spacing_puts_more_steps_at_low_noise():
    even, dense = timesteps(1000, 10, 100, 1.0), timesteps(1000, 10, 100, 3.0)
    assert [t for t in even if t > 10][:4] == [1000, 989, 978, 967]  # spacing 1: the even stride of 11
    assert [t for t in even if t <= 10] == [t for t in dense if t <= 10] == list(range(10, -1, -1))
    assert sum(10 < t <= 100 for t in dense) > 2 * sum(10 < t <= 100 for t in even)
    with pytest.raises(ValueError, match="spacing must be positive"):
        timesteps(1000, 10, 100, 0.0)


def test_sampler_seed_gives_same_molecule_in_any_batch(tiny_config):
    from unigem_core.model.denoiser import Denoiser

    torch.manual_seed(0)
    model = Denoiser(tiny_config).eval()
    schedule = NoiseSchedule()
    opts = SamplerOptions(steps=40, precision="fp32")
    alone = sample(model, schedule, [7], [42], opts)
    batch = sample(model, schedule, [5, 7, 12], [3, 42, 9], opts)
    assert np.allclose(alone.positions[0], batch.positions[1], atol=1e-4)
    assert (alone.types[0] == batch.types[1]).all()
    again = sample(model, schedule, [7], [43], opts)
    assert not np.allclose(alone.positions[0], again.positions[0], atol=1e-2)


def test_sampler_records_two_phase_trajectory(tiny_config):
    from unigem_core.model.denoiser import Denoiser

    torch.manual_seed(0)
    model = Denoiser(tiny_config).eval()
    seen = []
    out = sample(model, NoiseSchedule(), [6, 8], [0, 1], SamplerOptions(steps=60, record_trajectory=True, nucleation_frames=20),
                 on_progress=lambda done, total: seen.append((done, total)))
    traj = out.trajectories[1]
    phases = [f.phase for f in traj.frames]
    assert phases[0] == "nucleation" and phases[-1] == "growth"
    assert phases.index("growth") == len([p for p in phases if p == "nucleation"])  # nucleation first, then growth
    growth = [f for f in traj.frames if f.phase == "growth"]
    assert all(f.type_guess is not None and f.type_guess.shape == (8,) for f in growth)
    assert all(f.type_guess is None for f in traj.frames if f.phase == "nucleation")
    assert [f.t for f in growth] == [t for t in timesteps(1000, 10, 60) if t <= 10]  # every growth step kept
    assert traj.frames[0].sigma_t > 0.99 and traj.frames[-1].t == 0
    assert np.allclose(traj.frames[-1].positions, out.positions[1])  # last frame is the final molecule
    assert seen[-1][0] == seen[-1][1]
    assert out.properties.shape == (2, 12)
    for pos in out.positions:
        assert np.allclose(pos.mean(0), 0, atol=1e-4)


def test_resampling_repeats_the_late_steps_and_keeps_seeds_per_molecule(tiny_config):
    """resample=R takes every step (or each step ending below resample_below) R more times; seed k is still one
    molecule."""
    from unigem_core.diffusion.sampler import network_calls
    from unigem_core.model.denoiser import Denoiser

    torch.manual_seed(0)
    model = Denoiser(tiny_config).eval()
    schedule = NoiseSchedule()
    ts = timesteps(1000, 10, 30)
    late = sum(s < 100 for s in ts[1:])
    assert 0 < late < 30
    plain = SamplerOptions(steps=30, precision="fp32")
    everywhere = SamplerOptions(steps=30, precision="fp32", resample=2)
    opts = SamplerOptions(steps=30, precision="fp32", resample=2, resample_below=100, record_trajectory=True,
                          nucleation_frames=10)
    assert network_calls(ts, plain) == 31 and network_calls(ts, everywhere) == 31 + 2 * 30
    assert network_calls(ts, opts) == 31 + 2 * late
    with pytest.raises(ValueError, match="at least 1"):
        SamplerOptions(resample=1, resample_below=0)

    calls = []
    net_forward = model.forward
    model.forward = lambda *args, **kwargs: calls.append(int(args[1][0])) or net_forward(*args, **kwargs)
    seen = []
    alone = sample(model, schedule, [7], [42], opts, on_progress=lambda done, total: seen.append((done, total)))
    model.forward = net_forward
    assert len(calls) == network_calls(ts, opts) and seen[-1] == (len(calls), len(calls))
    assert [done for done, _ in seen] == list(range(1, len(calls) + 1))
    assert calls.count(ts[-2]) == 3 and calls.count(ts[0]) == 1  # the last step before t = 0, and the first one
    frames = [f.t for f in alone.trajectories[0].frames]
    assert len(frames) == len(set(frames))  # one frame per step, whatever its rounds

    batch = sample(model, schedule, [5, 7, 12], [3, 42, 9], opts)
    assert np.allclose(alone.positions[0], batch.positions[1], atol=1e-4)
    assert (alone.types[0] == batch.types[1]).all()
    without = sample(model, schedule, [7], [42], plain)
    assert not np.allclose(alone.positions[0], without.positions[0], atol=1e-3)


def test_compiled_sampler_gives_the_same_molecule(tiny_config, monkeypatch):
    """SamplerOptions(compile=True): torch.compile with frozen weights samples what eager sampling does, here
    on two threads, so in shards of two sizes side by side (cpu_shards; the first call compiles them in turn)."""
    from unigem_core.diffusion.sampler import compiled
    from unigem_core.model import cpu_shards
    from unigem_core.model.denoiser import Denoiser

    monkeypatch.setattr(cpu_shards, "MIN_SHARD_WORK", 1)  # shards however tiny the network
    torch.manual_seed(0)
    model = Denoiser(tiny_config).eval()
    schedule = NoiseSchedule()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        eager = sample(model, schedule, [6, 9, 7], [1, 2, 3], SamplerOptions(steps=12, precision="fp32"))
        fast = sample(model, schedule, [6, 9, 7], [1, 2, 3], SamplerOptions(steps=12, precision="fp32", compile=True))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(eager.positions, fast.positions):
        assert np.allclose(a, b, atol=1e-3)
    assert all((a == b).all() for a, b in zip(eager.types, fast.types))
    assert np.allclose(eager.properties, fast.properties, atol=1e-3)
    assert compiled(model) is compiled(model)  # compiled once per model, then reused
