"""The EGNN with a shared trunk, a nucleation branch and a growth branch (spec 2.1).

This module knows nothing about diffusion: the caller says, per molecule, which branch to take.
"""
from __future__ import annotations

import torch
from torch import nn

from unigem_core.config import ModelConfig
from unigem_core.geometry import edge_mask_from, pairwise_sq_distances
from unigem_core.model.layers import EquivariantBlock


def _blocks(cfg: ModelConfig, n: int) -> nn.ModuleList:
    return nn.ModuleList(
        EquivariantBlock(cfg.hidden, cfg.coords_range, cfg.norm_constant, cfg.aggregation_norm, cfg.attention, cfg.tanh)
        for _ in range(n)
    )


class BranchedEGNN(nn.Module):
    """Embedding + shared blocks, then either the nucleation or the growth branch per molecule."""

    def __init__(self, cfg: ModelConfig, in_features: int):
        super().__init__()
        self.embedding = nn.Linear(in_features, cfg.hidden)
        self.trunk = _blocks(cfg, cfg.shared_blocks)
        self.nucleation = _blocks(cfg, cfg.branch_blocks)
        self.growth = _blocks(cfg, cfg.branch_blocks)

    @staticmethod
    def _run(blocks: nn.ModuleList, h, x, d0, node_mask, edge_mask):
        for block in blocks:
            h, x = block(h, x, d0, node_mask, edge_mask)
        return h, x

    def forward(self, features: torch.Tensor, x: torch.Tensor, node_mask: torch.Tensor,
                use_growth: torch.Tensor | bool) -> tuple[torch.Tensor, torch.Tensor]:
        """features [B, N, F], x [B, N, 3], node_mask [B, N] -> (h [B, N, H], x [B, N, 3]).

        use_growth: [B] bool, each molecule's branch; or one Python bool for the whole batch (the
        sampler's case), which routes without reading a tensor, so torch.compile sees one graph.
        """
        edge_mask = edge_mask_from(node_mask).to(x.dtype)  # [B, N, N, 1]
        d0 = pairwise_sq_distances(x)  # [B, N, N, 1]: the input distances, an edge feature in every block
        h = self.embedding(features) * node_mask.to(features.dtype).unsqueeze(-1)  # [B, N, H]
        h, x = self._run(self.trunk, h, x, d0, node_mask, edge_mask)
        if isinstance(use_growth, bool):
            return self._run(self.growth if use_growth else self.nucleation, h, x, d0, node_mask, edge_mask)
        if bool(use_growth.all()):
            return self._run(self.growth, h, x, d0, node_mask, edge_mask)
        if not bool(use_growth.any()):
            return self._run(self.nucleation, h, x, d0, node_mask, edge_mask)
        # Mixed batch (training): route each molecule by its own flag, then restore the order.
        h_out, x_out = torch.empty_like(h), torch.empty_like(x)
        for branch, rows in ((self.growth, use_growth), (self.nucleation, ~use_growth)):
            idx = rows.nonzero(as_tuple=True)[0]
            hb, xb = self._run(branch, h[idx], x[idx], d0[idx], node_mask[idx], edge_mask[idx])
            h_out = h_out.index_put((idx,), hb.to(h_out.dtype))
            x_out = x_out.index_put((idx,), xb.to(x_out.dtype))
        return h_out, x_out
