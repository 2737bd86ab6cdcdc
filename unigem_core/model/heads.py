"""Output heads on the final node states of either branch (spec 2.2).

The atom-type and property heads are shared by both branches; they only receive a loss in the
growth phase. Properties are predicted all twelve at once, in normalised units.
"""
from __future__ import annotations

import torch
from torch import nn

from unigem_core.constants import NUM_ELEMENTS, NUM_PROPERTIES


class AtomTypeHead(nn.Module):
    """Per-atom scores over H, C, N, O, F. h [B, N, H] -> [B, N, 5]."""

    def __init__(self, hidden: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, NUM_ELEMENTS))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.mlp(h)


class PropertyHead(nn.Module):
    """Per-atom MLP, masked SUM over atoms, graph MLP. h [B, N, H], node_mask [B, N] -> [B, 12].

    Padding atoms are masked before the sum in every code path (the published inference path
    forgot this; spec 7).
    """

    def __init__(self, hidden: int):
        super().__init__()
        self.node_mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.graph_mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, NUM_PROPERTIES))

    def forward(self, h: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        per_atom = self.node_mlp(h) * node_mask.to(h.dtype).unsqueeze(-1)  # [B, N, H]
        # sum in at least fp32: a bf16 sum over 29 atoms would lose the property's last digits
        pooled = per_atom.to(torch.promote_types(per_atom.dtype, torch.float32)).sum(1)  # [B, H]
        return self.graph_mlp(pooled)  # [B, 12]
