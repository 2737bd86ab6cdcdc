"""One equivariant EGNN block in a dense, batched formulation (spec 2.1).

Molecules are padded to N atoms and the graph is fully connected, so every edge tensor is
[B, N, N, H]. The first linear layer of the edge and coordinate models acts on [h_i, h_j, e_ij];
it is computed per node, W [h_i, h_j, e_ij] = W_a h_i + W_b h_j + W_e e_ij, which turns two
[B, N, N, 2H+2] x [2H+2, H] products into two [B, N, H] x [H, H] ones.

Speed (bench/ablations.py, CPU, bf16 autocast): the matrix products are cheap in bf16, so much of
the time goes to passes over [B, N, N, H] tensors. The block saves the ones it can: W_e e_ij is
accumulated onto the pairwise sum by the matrix product itself (addmm), and the attention gate and
the edge mask are multiplied together as [B, N, N, 1] weights before they touch the messages.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class PairwiseLinear(nn.Module):
    """Linear map of [h_i, h_j, e_ij] for all pairs, computed per node. -> [B, N, N, H_out]."""

    def __init__(self, hidden: int, edge_features: int, out: int):
        super().__init__()
        self.src = nn.Linear(hidden, out)  # W_a h_i + b
        self.dst = nn.Linear(hidden, out, bias=False)  # W_b h_j
        self.edge = nn.Linear(edge_features, out, bias=False)  # W_e e_ij

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        # h [B, N, H], e [B, N, N, E]
        nodes = self.src(h).unsqueeze(2) + self.dst(h).unsqueeze(1)  # [B, N, N, H_out]: W_a h_i + b + W_b h_j
        # + W_e e_ij, accumulated onto the pairwise sum by one addmm (beta = 1) rather than formed as
        # a [B, N, N, H_out] product of its own and then added (the K=2 product is all memory traffic)
        out = torch.addmm(nodes.flatten(0, 2), e.flatten(0, 2).to(nodes.dtype), self.edge.weight.t().to(nodes.dtype))
        return out.view(nodes.shape)  # [B, N, N, H_out]


class EquivariantBlock(nn.Module):
    """Edge model, node model and coordinate model of one EGNN block (one invariant sublayer)."""

    def __init__(self, hidden: int, coords_range: float = 15.0, norm_constant: float = 1.0,
                 aggregation_norm: float = 1.0, attention: bool = True, tanh: bool = True):
        super().__init__()
        self.coords_range = coords_range
        self.norm_constant = norm_constant
        self.aggregation_norm = aggregation_norm
        self.use_attention = attention
        self.use_tanh = tanh
        # edge model phi_e: Linear -> SiLU -> Linear -> SiLU, then the attention gate
        self.edge_in = PairwiseLinear(hidden, 2, hidden)
        self.edge_out = nn.Linear(hidden, hidden)
        self.attention = nn.Linear(hidden, 1)
        # node model phi_h: Linear -> SiLU -> Linear on [h_i, sum_j m_ij]
        self.node_mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        # coordinate model phi_x: Linear -> SiLU -> Linear -> SiLU -> Linear(no bias), small init
        self.coord_in = PairwiseLinear(hidden, 2, hidden)
        self.coord_mid = nn.Linear(hidden, hidden)
        self.coord_out = nn.Linear(hidden, 1, bias=False)
        nn.init.xavier_uniform_(self.coord_out.weight, gain=0.001)

    def edge_model(self, h: torch.Tensor, e: torch.Tensor,
                   edge_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Messages m_ij = phi_e(h_i, h_j, e_ij) and their weights w_ij = a_ij * edge_mask_ij.

        The gated message is m_ij * w_ij; the product is left to the aggregation, so the gate and
        the mask cost one [B, N, N, 1] product instead of two [B, N, N, H] ones.
        """
        m = F.silu(self.edge_out(F.silu(self.edge_in(h, e))))  # [B, N, N, H]
        w = edge_mask.to(m.dtype)  # [B, N, N, 1]
        if self.use_attention:
            w = torch.sigmoid(self.attention(m)) * w  # [B, N, N, 1]: a_ij = sigmoid(Linear(m_ij))
        return m, w

    def node_model(self, h: torch.Tensor, m: torch.Tensor, w: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        agg = (m * w).sum(2) / self.aggregation_norm  # [B, N, H]: sum_j a_ij m_ij over real neighbours
        h = h + self.node_mlp(torch.cat([h, agg.to(h.dtype)], dim=-1))
        return h * node_mask.to(h.dtype).unsqueeze(-1)

    def coord_model(self, h: torch.Tensor, x: torch.Tensor, e: torch.Tensor, diff: torch.Tensor,
                    edge_mask: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        c = self.coord_out(F.silu(self.coord_mid(F.silu(self.coord_in(h, e)))))  # [B, N, N, 1]
        if self.use_tanh:
            c = torch.tanh(c) * self.coords_range
        dist = torch.sqrt(e[..., :1] + 1e-8) + self.norm_constant  # [B, N, N, 1], in the dtype of x (fp32/fp64)
        direction = diff / dist  # [B, N, N, 3]
        update = (direction * (c.to(diff.dtype) * edge_mask.to(diff.dtype))).sum(2) / self.aggregation_norm  # [B, N, 3]
        return (x + update) * node_mask.to(x.dtype).unsqueeze(-1)

    def forward(self, h: torch.Tensor, x: torch.Tensor, d0: torch.Tensor, node_mask: torch.Tensor,
                edge_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h [B, N, H], x [B, N, 3], d0 [B, N, N, 1] input squared distances, masks [B, N] and [B, N, N, 1]."""
        diff = x.unsqueeze(2) - x.unsqueeze(1)  # [B, N, N, 3]
        d2 = (diff * diff).sum(-1, keepdim=True)  # [B, N, N, 1]
        e = torch.cat([d2, d0], dim=-1)  # [B, N, N, 2] current and input squared distances
        m, w = self.edge_model(h, e, edge_mask)
        h = self.node_model(h, m, w, node_mask)
        x = self.coord_model(h, x, e, diff, edge_mask, node_mask)
        return h, x
