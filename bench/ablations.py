"""Each speed idea of unigem_core/model/layers.py and egnn.py, measured by undoing it (or by trying
an alternative) and timing that variant interleaved with the current code.

    python bench/ablations.py [--threads 1] [--rounds 6] [--compile]

Workloads: `train` = forward + backward of the `paper` Denoiser under bf16 autocast on one real
QM9 batch of 64 (what train_step spends its time on); `infer` = one inference_mode call at
batch 64 (what sampling and prediction spend it on). Times are process CPU seconds with one
thread by default, which other jobs on a shared machine disturb much less than wall clock.
The printed factor is time(variant) / time(current): above 1 means the current code is faster.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import time

OMP_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY", "(default)")  # as OpenMP will read it when torch loads

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from unigem_core.config import preset
from unigem_core.data.collate import collate, epoch_batches
from unigem_core.data.qm9 import load_split
from unigem_core.model import cpu_shards, egnn, layers
from unigem_core.model.denoiser import Denoiser


class LinearEdgeTerm(layers.PairwiseLinear):
    """Before: W_e e_ij by its own K=2 Linear, written as a [B, N, N, H] tensor and then added."""

    def forward(self, h, e):
        return self.src(h).unsqueeze(2) + self.dst(h).unsqueeze(1) + self.edge(e)


class AddcmulEdgeTerm(layers.PairwiseLinear):
    """Alternative: W_e e_ij as two broadcast multiply-adds, d2_ij w_0 + d0_ij w_1."""

    def forward(self, h, e):
        nodes = self.src(h).unsqueeze(2) + self.dst(h).unsqueeze(1)
        w = self.edge.weight.to(nodes.dtype)
        e = e.to(nodes.dtype)
        return torch.addcmul(torch.addcmul(nodes, e[..., :1], w[:, 0]), e[..., 1:], w[:, 1])


class SeparateGate(layers.EquivariantBlock):
    """Before: m * sigmoid(Linear(m)), then * edge_mask: two [B, N, N, H] products, then the sum."""

    def edge_model(self, h, e, edge_mask):
        m = F.silu(self.edge_out(F.silu(self.edge_in(h, e))))
        m = m * torch.sigmoid(self.attention(m))
        return m * edge_mask.to(m.dtype), None

    def node_model(self, h, m, w, node_mask):
        agg = m.sum(2) / self.aggregation_norm
        h = h + self.node_mlp(torch.cat([h, agg.to(h.dtype)], dim=-1))
        return h * node_mask.to(h.dtype).unsqueeze(-1)


class EinsumAggregation(layers.EquivariantBlock):
    """Alternative: sum_j w_ij m_ij as a batched matrix product instead of multiply + sum."""

    def node_model(self, h, m, w, node_mask):
        agg = torch.einsum("bijh,bij->bih", m, w.squeeze(-1)) / self.aggregation_norm
        h = h + self.node_mlp(torch.cat([h, agg.to(h.dtype)], dim=-1))
        return h * node_mask.to(h.dtype).unsqueeze(-1)


class _RowDot(torch.autograd.Function):
    """y = m w + b for a Linear(H, 1), with a broadcast backward instead of K=1 matrix products."""

    @staticmethod
    def forward(ctx, m, w, b):
        ctx.save_for_backward(m, w)
        ctx.has_bias = b is not None
        return F.linear(m, w, b)

    @staticmethod
    def backward(ctx, g):
        m, w = ctx.saved_tensors
        grad_w = (g.reshape(1, -1) @ m.reshape(-1, m.shape[-1])).to(w.dtype)
        return g * w.view(-1), grad_w, g.sum().reshape(1) if ctx.has_bias else None


def _rowdot(lin, m):
    return _RowDot.apply(m, lin.weight.to(m.dtype), None if lin.bias is None else lin.bias.to(m.dtype))


class RowDotHeads(layers.EquivariantBlock):
    """Alternative: the attention and coordinate-output Linear(H, 1) with the custom backward above."""

    def edge_model(self, h, e, edge_mask):
        m = F.silu(self.edge_out(F.silu(self.edge_in(h, e))))
        return m, torch.sigmoid(_rowdot(self.attention, m)) * edge_mask.to(m.dtype)

    def coord_model(self, h, x, e, diff, edge_mask, node_mask):
        c = _rowdot(self.coord_out, F.silu(self.coord_mid(F.silu(self.coord_in(h, e)))))
        c = torch.tanh(c) * self.coords_range
        direction = diff / (torch.sqrt(e[..., :1] + 1e-8) + self.norm_constant)
        update = (direction * (c.to(diff.dtype) * edge_mask.to(diff.dtype))).sum(2) / self.aggregation_norm
        return (x + update) * node_mask.to(x.dtype).unsqueeze(-1)


@contextlib.contextmanager
def swapped(model, cls, base):
    """Temporarily give every `base` module of the model the class `cls` (same parameters)."""
    mods = [m for m in model.modules() if type(m) is base]
    for m in mods:
        m.__class__ = cls
    try:
        yield
    finally:
        for m in mods:
            m.__class__ = base


@contextlib.contextmanager
def patched(module, name, value):
    old = vars(module)[name]  # as stored (a staticmethod stays one)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


def _run_bf16_h(run):
    def run_with_bf16_h(blocks, h, *rest):
        return run(blocks, h.to(torch.bfloat16) if torch.is_autocast_enabled("cpu") else h, *rest)
    return staticmethod(run_with_bf16_h)


VARIANTS = {
    # name: (workloads, context factory)
    "W_e e as its own K=2 Linear + add (before)": (
        ("train", "infer"), lambda m: swapped(m, LinearEdgeTerm, layers.PairwiseLinear)),
    "W_e e as two broadcast multiply-adds (addcmul)": (
        ("train", "infer"), lambda m: swapped(m, AddcmulEdgeTerm, layers.PairwiseLinear)),
    "gate and edge mask as two [B,N,N,H] products (before)": (
        ("train", "infer"), lambda m: swapped(m, SeparateGate, layers.EquivariantBlock)),
    "aggregation by einsum (batched matmul)": (
        ("train", "infer"), lambda m: swapped(m, EinsumAggregation, layers.EquivariantBlock)),
    "Linear(H,1) with hand-written broadcast backward": (
        ("train",), lambda m: swapped(m, RowDotHeads, layers.EquivariantBlock)),
    "residual stream h kept in bf16 between blocks": (
        ("train",), lambda m: patched(egnn.BranchedEGNN, "_run", _run_bf16_h(egnn.BranchedEGNN._run))),
    "no CPU inference grouping by edges (before)": (
        ("infer",), lambda m: patched(cpu_shards, "CPU_INFERENCE_EDGES", 10 ** 12)),
}


def workload(kind: str, model, batch):
    x, t, mask = batch

    def train():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x, t, mask)
            loss = sum(y.float().square().mean() for y in (out.eps, out.type_logits, out.properties))
        loss.backward()

    def infer():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            model(x, torch.full_like(t, 500), mask)

    return train if kind == "train" else infer


def compare(base, variant, rounds: int) -> tuple[float, float]:
    """Interleaved CPU times; returns (median time of base, median of the per-round ratios variant/base)."""
    base(), variant()
    times = {"base": [], "variant": []}
    rng = random.Random(0)
    for _ in range(rounds):
        order = [("base", base), ("variant", variant)]
        rng.shuffle(order)
        for name, fn in order:
            start = time.process_time()
            fn()
            times[name].append(time.process_time() - start)
    return statistics.median(times["base"]), statistics.median(v / b for v, b in zip(times["variant"], times["base"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--atoms", type=int, default=19, help="pick a real batch padded to this many atoms")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(dynamic=True) of every block")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train = load_split("train", progress=False)
    batches = epoch_batches(train.n_atoms, 64, 0, 0, 50)
    rows = next(b for b in batches if train.n_atoms[b].max() == args.atoms)
    b = collate(train, rows)
    g = torch.Generator().manual_seed(0)
    t = torch.cat([torch.randint(11, 1001, (32,), generator=g), torch.randint(0, 11, (32,), generator=g)])
    batch = (b.positions, t, b.node_mask)
    torch.manual_seed(0)
    model = Denoiser(preset("paper"))
    print(f"threads {args.threads}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(default)')}, "
          f"batch of 64 padded to {args.atoms} atoms, {args.rounds} interleaved rounds, process CPU time")
    for name, (kinds, context) in VARIANTS.items():
        for kind in kinds:
            base = workload(kind, model, batch)

            def variant(kind=kind, context=context):
                with context(model):
                    workload(kind, model, batch)()
            t_base, factor = compare(base, variant, args.rounds)
            print(f"{kind:5s}  {factor:5.2f}  (current {t_base:.3f} s)  {name}", flush=True)
    if args.compile:
        import copy

        compiled = copy.deepcopy(model)
        for block in compiled.modules():
            if isinstance(block, layers.EquivariantBlock):
                block.compile(dynamic=True)
        for kind in ("train", "infer"):
            start = time.perf_counter()
            workload(kind, compiled, batch)()
            print(f"torch.compile warm-up ({kind}): {time.perf_counter() - start:.0f} s wall", flush=True)
            t_base, factor = compare(workload(kind, model, batch), workload(kind, compiled, batch), args.rounds)
            print(f"{kind:5s}  {factor:5.2f}  (current {t_base:.3f} s)  torch.compile(dynamic=True) of every block")


if __name__ == "__main__":
    sys.exit(main())
