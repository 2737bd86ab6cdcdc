"""Numerics of the fast paths: the dense model equals the published-style reference, and bf16 stays close to fp32.

The benchmark (bench/run.py) compares our dense EGNN with bench/reference_egnn.py; the first two
tests prove that both compute the same function (outputs and weight gradients) in float64, with
padding and a batch that routes molecules to both branches.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from conftest import random_batch
from unigem_core.config import preset
from unigem_core.model.denoiser import Denoiser

OUTPUTS = ("eps", "type_logits", "properties")


def _reference_module():
    path = Path(__file__).resolve().parent.parent / "bench" / "reference_egnn.py"
    spec = importlib.util.spec_from_file_location("reference_egnn", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pair(preset_name: str):
    """Our Denoiser in float64 and the reference holding the same weights."""
    cfg = preset(preset_name)
    torch.manual_seed(0)
    ours = Denoiser(cfg).double()
    # A coordinate head well above its near-zero init, so the compared coordinate updates are not negligible.
    for name, p in ours.named_parameters():
        if "coord_out" in name:
            p.data.normal_(0, 0.01)
    reference = _reference_module().ReferenceDenoiser.from_denoiser(ours, cfg)
    return ours, reference


def _mixed_batch():
    # padding (n_max 11 > every molecule), and t on both sides of t_n = 10
    x, mask = random_batch([7, 5, 9, 3], n_max=11)
    return x, torch.tensor([0, 10, 11, 700]), mask


def test_reference_and_dense_agree_in_float64():
    ours, reference = _pair("paper")
    x, t, mask = _mixed_batch()
    with torch.no_grad():
        a, b = ours(x, t, mask), reference(x, t, mask)
    for key in OUTPUTS:
        mine, theirs = getattr(a, key), getattr(b, key)
        assert theirs.abs().max() > 1e-3, f"{key} is too small to compare"
        assert torch.allclose(mine, theirs, rtol=0, atol=1e-8 * max(1.0, theirs.abs().max().item())), key
    assert (a.eps[~mask] == 0).all() and (b.eps[~mask] == 0).all()


def test_reference_and_dense_gradients_agree_in_float64():
    """Training compares equal math too: the weight gradients of one loss agree (the `small`
    preset: the same blocks, narrower and fewer, to keep the float64 backward quick)."""
    ours, reference = _pair("small")
    x, t, mask = _mixed_batch()
    g = torch.Generator().manual_seed(3)
    shapes = {"eps": x.shape, "type_logits": (*mask.shape, 5), "properties": (len(x), 12)}
    weights = {k: torch.randn(shape, generator=g, dtype=x.dtype) for k, shape in shapes.items()}
    for model in (ours, reference):
        model.zero_grad()
        out = model(x, t, mask)
        sum((getattr(out, k) * weights[k]).sum() for k in OUTPUTS).backward()
    pairs = [(ours.egnn.embedding.weight.grad, reference.embedding.weight.grad)]
    for mine, theirs in ((ours.egnn.trunk[0], reference.trunk[0]), (ours.egnn.growth[-1], reference.growth[-1]),
                         (ours.egnn.nucleation[0], reference.nucleation[0])):
        first = [mine.edge_in.src.weight.grad, mine.edge_in.dst.weight.grad, mine.edge_in.edge.weight.grad]
        pairs += [(torch.cat(first, dim=1), theirs.gcl.edge_mlp[0].weight.grad),  # [W_a | W_b | W_e]
                  (mine.coord_mid.weight.grad, theirs.update.coord_mlp[2].weight.grad),
                  (mine.attention.weight.grad, theirs.gcl.att_mlp[0].weight.grad)]
    for mine, theirs in pairs:
        assert theirs.abs().max() > 0
        assert torch.allclose(mine, theirs, rtol=0, atol=1e-8 * max(1.0, theirs.abs().max().item()))


def test_bf16_autocast_paper_model_close_to_fp32():
    """bf16 autocast (training and sampling precision) against fp32, on the paper-sized model.

    Tolerance: bf16 keeps 8 significant bits (rounding 2^-9, about 0.2%). Along one path there are
    9 blocks with about four bf16 roundings each (two matmuls, two activations, in both the edge
    and the coordinate model); independent roundings add up like a random walk, about
    sqrt(36) x 0.2% = 1.2% of the output scale. We allow twice that for the relative L2 error of
    each output (2.5%) and 5% of the largest value for the worst element; measured at this seed:
    eps 0.35%, type logits 1.4%, properties 0.6% (worst element 1.7% of the largest logit).
    The coordinates and the residual stream h stay in fp32; only the dense work is bf16.
    """
    torch.manual_seed(0)
    model = Denoiser(preset("paper")).eval()
    x, mask = random_batch([29, 18, 12, 25, 9, 20], dtype=torch.float32)
    t = torch.tensor([0, 5, 10, 11, 400, 1000])
    with torch.no_grad():
        ref = model(x, t, mask)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x, t, mask)
    for key in OUTPUTS:
        a, b = getattr(low, key), getattr(ref, key)
        assert a.dtype == torch.float32
        if key == "type_logits":  # padding atoms have logits too; only real atoms matter
            a, b = a[mask], b[mask]
        assert ((a - b).norm() / b.norm()) < 0.025, key
        assert ((a - b).abs().max() / b.abs().max()) < 0.05, key


def test_grouped_cpu_inference_equals_one_pass(tiny_model_f64, monkeypatch):
    """Inference on CPU runs molecules in groups (cpu_shards.CPU_INFERENCE_EDGES); the result is unchanged."""
    from unigem_core.model import cpu_shards

    x, mask = random_batch([7, 5, 9, 3, 6, 8, 4], n_max=10)
    t = torch.tensor([0, 10, 11, 700, 3, 1000, 50])  # groups with one branch, and groups with both
    one_pass = tiny_model_f64(x, t, mask)  # autograd on: never grouped
    monkeypatch.setattr(cpu_shards, "CPU_INFERENCE_EDGES", 2 * 10 * 10)  # two molecules per group
    monkeypatch.setattr(cpu_shards, "MIN_SHARD_WORK", 1)  # on several threads too, however tiny the network
    with torch.no_grad():
        grouped = tiny_model_f64(x, t, mask)
    for key in OUTPUTS:
        assert torch.allclose(getattr(grouped, key), getattr(one_pass, key), rtol=0, atol=1e-12), key
