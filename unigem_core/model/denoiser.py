"""The denoiser: the one network call used by training, sampling and property prediction (spec 2 and 3).

It adds the time channel (atom types are never an input: the type channels are the constant 1),
runs the branched EGNN with molecules at t <= t_n routed to the growth branch, and reads the three
heads: CoM-free coordinate noise eps = x_out - x_in, atom-type logits and normalised properties.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

from unigem_core.config import UniGEMConfig
from unigem_core.geometry import remove_mean
from unigem_core.model.cpu_shards import run_shards, shard_slices
from unigem_core.model.egnn import BranchedEGNN
from unigem_core.model.heads import AtomTypeHead, PropertyHead


@dataclass
class DenoiserOutput:
    eps: torch.Tensor  # [B, N, 3] predicted coordinate noise, CoM-free, zero on padding
    type_logits: torch.Tensor  # [B, N, 5] scores over H, C, N, O, F
    properties: torch.Tensor  # [B, 12] normalised ((y - mean) / MAD)

    @staticmethod
    def cat(parts: list[DenoiserOutput]) -> DenoiserOutput:
        """The outputs of consecutive shards of a batch as one."""
        if len(parts) == 1:
            return parts[0]
        return DenoiserOutput(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(DenoiserOutput)))


class Denoiser(nn.Module):
    def __init__(self, cfg: UniGEMConfig):
        super().__init__()
        self.num_steps = cfg.diffusion.num_steps
        self.hidden = cfg.model.hidden  # feature width: how much work a CPU shard of the batch holds (cpu_shards)
        self.t_n = cfg.diffusion.t_n
        # Input features per atom: [1, t/T]. The constant 1 stands for the six type/charge channels of
        # the published model, which are all set to 1 (their embedding collapses to one bias vector).
        self.egnn = BranchedEGNN(cfg.model, in_features=2)
        self.type_head = AtomTypeHead(cfg.model.hidden)
        self.property_head = PropertyHead(cfg.model.hidden)

    def forward(self, z_x: torch.Tensor, t: torch.Tensor, node_mask: torch.Tensor,
                growth: bool | None = None) -> DenoiserOutput:
        """z_x [B, N, 3] noisy CoM-free positions, t [B] integer steps, node_mask [B, N] bool.

        growth: None routes each molecule by its own t (t <= t_n: growth branch). A caller whose
        molecules all share one t (the sampler) passes the answer, so no tensor is read to route.
        Inference on CPU runs the molecules in cache-sized shards, side by side on the cores (cpu_shards).
        """
        if torch.is_grad_enabled() or z_x.device.type != "cpu":
            return self._forward(z_x, t, node_mask, growth)
        b, n, _ = z_x.shape
        threads = 1 if torch.compiler.is_compiling() else torch.get_num_threads()
        return DenoiserOutput.cat(run_shards(lambda s: self._forward(z_x[s], t[s], node_mask[s], growth),
                                             shard_slices(b, n, threads, self.hidden), threads))

    def _forward(self, z_x: torch.Tensor, t: torch.Tensor, node_mask: torch.Tensor,
                 growth: bool | None) -> DenoiserOutput:
        b, n, _ = z_x.shape
        mask = node_mask.to(z_x.dtype)  # [B, N]
        t_frac = (t.to(z_x.dtype) / self.num_steps).view(b, 1, 1).expand(b, n, 1)  # [B, N, 1]
        features = torch.cat([torch.ones_like(t_frac), t_frac], dim=-1) * mask.unsqueeze(-1)  # [B, N, 2]
        use_growth = t <= self.t_n if growth is None else growth  # [B] bool, or one bool for all
        h, x_out = self.egnn(features, z_x, node_mask, use_growth)
        # Coordinates stay in the input precision (fp32, or fp64 in tests) even under autocast.
        eps = torch.nan_to_num(remove_mean(x_out.to(z_x.dtype) - z_x, node_mask))  # [B, N, 3]
        return DenoiserOutput(eps=eps, type_logits=self.type_head(h).to(z_x.dtype),
                              properties=self.property_head(h, node_mask).to(z_x.dtype))
