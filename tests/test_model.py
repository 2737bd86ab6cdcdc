"""E(3) equivariance, permutation equivariance, padding invariance and branch routing of the denoiser (float64)."""
from __future__ import annotations

import pytest
import torch

from conftest import random_batch
from unigem_core.geometry import random_rotation

T_VALUES = [0, 5, 10, 11, 500, 1000]  # both branches, around t_n = 10


@pytest.mark.parametrize("proper", [True, False], ids=["det+1", "det-1"])
def test_rotation_and_translation(tiny_model_f64, proper):
    x, mask = random_batch([7, 5, 9, 3, 6, 8])
    t = torch.tensor(T_VALUES)
    out = tiny_model_f64(x, t, mask)
    rot = random_rotation(torch.Generator().manual_seed(1), proper=proper)
    assert torch.det(rot).sign() == (1 if proper else -1)
    x_rot = x @ rot.T
    out_rot = tiny_model_f64(x_rot, t, mask)
    # The noise prediction rotates with the input; type scores and properties do not change.
    assert torch.allclose(out_rot.eps, out.eps @ rot.T, atol=1e-9)
    assert torch.allclose(out_rot.type_logits, out.type_logits, atol=1e-9)
    assert torch.allclose(out_rot.properties, out.properties, atol=1e-9)
    # A translation of the (CoM-free) input changes nothing either: the model only sees differences.
    shifted = (x + torch.tensor([3.0, -2.0, 1.0], dtype=x.dtype)) * mask.unsqueeze(-1)
    out_shift = tiny_model_f64(shifted, t, mask)
    assert torch.allclose(out_shift.eps, out.eps, atol=1e-9)
    assert torch.allclose(out_shift.properties, out.properties, atol=1e-9)


def test_eps_is_com_free_and_zero_on_padding(tiny_model_f64):
    x, mask = random_batch([4, 9, 6], n_max=11)
    out = tiny_model_f64(x, torch.tensor([0, 300, 10]), mask)
    assert torch.allclose((out.eps * mask.unsqueeze(-1)).sum(1), torch.zeros(3, 3, dtype=x.dtype), atol=1e-10)
    assert (out.eps[~mask] == 0).all()


def test_permutation_equivariance(tiny_model_f64):
    x, mask = random_batch([8])
    t = torch.tensor([3])
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(2))
    out = tiny_model_f64(x, t, mask)
    out_p = tiny_model_f64(x[:, perm], t, mask)
    assert torch.allclose(out_p.eps, out.eps[:, perm], atol=1e-9)
    assert torch.allclose(out_p.type_logits, out.type_logits[:, perm], atol=1e-9)
    assert torch.allclose(out_p.properties, out.properties, atol=1e-9)


def test_padding_changes_nothing(tiny_model_f64):
    x, mask = random_batch([6, 4])
    t = torch.tensor([7, 400])
    out = tiny_model_f64(x, t, mask)
    pad = 5
    x_pad = torch.cat([x, torch.zeros(2, pad, 3, dtype=x.dtype)], dim=1)
    mask_pad = torch.cat([mask, torch.zeros(2, pad, dtype=torch.bool)], dim=1)
    out_pad = tiny_model_f64(x_pad, t, mask_pad)
    assert torch.allclose(out_pad.eps[:, :6], out.eps, atol=1e-10)
    assert torch.allclose(out_pad.type_logits[:, :6][mask], out.type_logits[mask], atol=1e-10)
    assert torch.allclose(out_pad.properties, out.properties, atol=1e-10)


def test_each_molecule_routed_by_its_own_t(tiny_model_f64):
    """A molecule's output does not depend on which other molecules share its batch."""
    x, mask = random_batch([5, 5, 5, 5])
    t = torch.tensor([0, 10, 11, 900])
    together = tiny_model_f64(x, t, mask)
    for i in range(4):
        alone = tiny_model_f64(x[i:i + 1], t[i:i + 1], mask[i:i + 1])
        assert torch.allclose(alone.eps, together.eps[i:i + 1], atol=1e-10)
        assert torch.allclose(alone.properties, together.properties[i:i + 1], atol=1e-10)


def test_growth_and_nucleation_branches_differ(tiny_model_f64):
    """t = 10 goes to the growth branch and t = 11 to the nucleation branch: separate weights, different output."""
    x, mask = random_batch([6])
    e10 = tiny_model_f64(x, torch.tensor([10]), mask).eps
    e11 = tiny_model_f64(x, torch.tensor([11]), mask).eps
    growth_only = tiny_model_f64.egnn.growth
    with torch.no_grad():
        for p in growth_only.parameters():
            p.add_(0.1)
    assert not torch.allclose(tiny_model_f64(x, torch.tensor([10]), mask).eps, e10)
    assert torch.allclose(tiny_model_f64(x, torch.tensor([11]), mask).eps, e11)


def test_bf16_autocast_close_to_fp32(tiny_config):
    """Mixed precision stays within a stated tolerance of the fp32 path (relative to output scale)."""
    from unigem_core.model.denoiser import Denoiser

    torch.manual_seed(0)
    model = Denoiser(tiny_config).eval()
    x, mask = random_batch([9, 12, 7], dtype=torch.float32)
    t = torch.tensor([0, 5, 600])
    with torch.no_grad():
        ref = model(x, t, mask)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x, t, mask)
    for a, b in ((low.eps, ref.eps), (low.type_logits, ref.type_logits), (low.properties, ref.properties)):
        assert a.dtype == torch.float32
        scale = b.abs().max().clamp(min=1e-3)
        assert (a - b).abs().max() / scale < 0.05
