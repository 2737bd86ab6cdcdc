"""A straightforward fp32 reference of the UniGEM network, in the published edge-list style (spec 2).

This is the baseline of bench/run.py, written the way the published EDM/UniGEM code computes the
same function (our own code, nothing copied):

* node tensors are flattened to [B*N, F]; the graph is an explicit edge list (row, col) holding
  every ordered pair inside each molecule, padding and self-pairs included, removed by edge_mask;
* every edge gathers its two nodes with index tensors, h[row] and h[col], and concatenates
  [h_i, h_j, d2_ij, d0_ij] into one [E, 2H+2] input of the first Linear of phi_e and phi_x;
* messages and coordinate updates are summed into their target node with index_add_
  (an unsorted segment sum);
* the growth / nucleation routing selects molecules with index tensors and rebuilds the edge list
  of the selection, as the published code does for its two half batches.

`ReferenceDenoiser.from_denoiser(model)` takes the weights of a `Denoiser`: the first Linear of an
edge or coordinate MLP is the concatenation [W_a | W_b | W_e] of our per-node factors, so
tests/test_numerics.py can check in float64 that both formulations give the same outputs.
"""
from __future__ import annotations

import torch
from torch import nn

from unigem_core.config import ModelConfig, UniGEMConfig
from unigem_core.constants import NUM_ELEMENTS, NUM_PROPERTIES
from unigem_core.geometry import remove_mean
from unigem_core.model.denoiser import DenoiserOutput


def full_edges(n_molecules: int, n_nodes: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """All ordered pairs (i, j) inside each molecule of a flattened batch. -> row, col [B*N*N] int64."""
    local = torch.arange(n_nodes, device=device)
    offsets = torch.arange(n_molecules, device=device) * n_nodes  # [B]
    row = (offsets[:, None, None] + local[None, :, None]).expand(n_molecules, n_nodes, n_nodes)
    col = (offsets[:, None, None] + local[None, None, :]).expand(n_molecules, n_nodes, n_nodes)
    return row.reshape(-1), col.reshape(-1)


def segment_sum(data: torch.Tensor, segment: torch.Tensor, n_segments: int) -> torch.Tensor:
    """sum of data[e] over the edges e with segment[e] == s. data [E, D] -> [n_segments, D]."""
    return data.new_zeros(n_segments, data.shape[1]).index_add_(0, segment, data)


class GCL(nn.Module):
    """Invariant sublayer: messages phi_e([h_i, h_j, e_ij]), attention, sum over j, node update."""

    def __init__(self, hidden: int, aggregation_norm: float, attention: bool):
        super().__init__()
        self.aggregation_norm = aggregation_norm
        self.use_attention = attention
        self.edge_mlp = nn.Sequential(nn.Linear(2 * hidden + 2, hidden), nn.SiLU(),
                                      nn.Linear(hidden, hidden), nn.SiLU())
        self.att_mlp = nn.Sequential(nn.Linear(hidden, 1), nn.Sigmoid())
        self.node_mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, h, row, col, edge_attr, edge_mask, node_mask):
        m = self.edge_mlp(torch.cat([h[row], h[col], edge_attr], dim=1))  # [E, H]
        if self.use_attention:
            m = m * self.att_mlp(m)  # [E, H]
        m = m * edge_mask  # [E, H]
        agg = segment_sum(m, row, h.shape[0]) / self.aggregation_norm  # [B*N, H]
        h = h + self.node_mlp(torch.cat([h, agg], dim=1))  # [B*N, H]
        return h * node_mask


class EquivariantUpdate(nn.Module):
    """x_i += sum_j (x_i - x_j) / (|x_i - x_j| + c) * tanh(phi_x([h_i, h_j, e_ij])) * range."""

    def __init__(self, hidden: int, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        last = nn.Linear(hidden, 1, bias=False)
        self.coord_mlp = nn.Sequential(nn.Linear(2 * hidden + 2, hidden), nn.SiLU(),
                                       nn.Linear(hidden, hidden), nn.SiLU(), last)

    def forward(self, h, x, row, col, coord_diff, edge_attr, edge_mask, node_mask):
        c = self.coord_mlp(torch.cat([h[row], h[col], edge_attr], dim=1))  # [E, 1]
        if self.cfg.tanh:
            c = torch.tanh(c) * self.cfg.coords_range
        trans = coord_diff * c * edge_mask  # [E, 3]
        x = x + segment_sum(trans, row, x.shape[0]) / self.cfg.aggregation_norm  # [B*N, 3]
        return x * node_mask


class ReferenceBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm_constant = cfg.norm_constant
        self.gcl = GCL(cfg.hidden, cfg.aggregation_norm, cfg.attention)
        self.update = EquivariantUpdate(cfg.hidden, cfg)

    def forward(self, h, x, row, col, d0, edge_mask, node_mask):
        diff = x[row] - x[col]  # [E, 3]
        radial = (diff ** 2).sum(1, keepdim=True)  # [E, 1]
        coord_diff = diff / (torch.sqrt(radial + 1e-8) + self.norm_constant)  # [E, 3]
        edge_attr = torch.cat([radial, d0], dim=1)  # [E, 2]
        h = self.gcl(h, row, col, edge_attr, edge_mask, node_mask)
        x = self.update(h, x, row, col, coord_diff, edge_attr, edge_mask, node_mask)
        return h, x


class ReferenceDenoiser(nn.Module):
    """Same inputs and outputs as unigem_core.model.denoiser.Denoiser; flattened edge-list internals."""

    def __init__(self, cfg: UniGEMConfig):
        super().__init__()
        mc = cfg.model
        self.num_steps, self.t_n = cfg.diffusion.num_steps, cfg.diffusion.t_n
        self.embedding = nn.Linear(2, mc.hidden)
        self.trunk = nn.ModuleList(ReferenceBlock(mc) for _ in range(mc.shared_blocks))
        self.nucleation = nn.ModuleList(ReferenceBlock(mc) for _ in range(mc.branch_blocks))
        self.growth = nn.ModuleList(ReferenceBlock(mc) for _ in range(mc.branch_blocks))
        h = mc.hidden
        self.type_mlp = nn.Sequential(nn.Linear(h, h), nn.SiLU(), nn.Linear(h, NUM_ELEMENTS))
        self.prop_node_mlp = nn.Sequential(nn.Linear(h, h), nn.SiLU(), nn.Linear(h, h))
        self.prop_graph_mlp = nn.Sequential(nn.Linear(h, h), nn.SiLU(), nn.Linear(h, NUM_PROPERTIES))

    @staticmethod
    def _run(blocks, h, x, x_in, node_mask, n_molecules, n_nodes):
        """Blocks on a flattened batch of n_molecules x n_nodes: h [M, H], x and x_in [M, 3], node_mask [M, 1]."""
        row, col = full_edges(n_molecules, n_nodes, h.device)
        edge_mask = node_mask[row] * node_mask[col] * (row != col).unsqueeze(1).to(h.dtype)  # [E, 1]
        d0 = ((x_in[row] - x_in[col]) ** 2).sum(1, keepdim=True)  # [E, 1] input squared distances
        for block in blocks:
            h, x = block(h, x, row, col, d0, edge_mask, node_mask)
        return h, x

    def forward(self, z_x: torch.Tensor, t: torch.Tensor, node_mask: torch.Tensor,
                growth: bool | None = None) -> DenoiserOutput:
        # `growth` (the sampler's hint that all molecules share a branch) is ignored: routing by t
        # per molecule, as the published code does, gives the same answer.
        b, n, _ = z_x.shape
        mask = node_mask.to(z_x.dtype).reshape(b * n, 1)  # [B*N, 1]
        t_frac = (t.to(z_x.dtype) / self.num_steps).repeat_interleave(n).unsqueeze(1)  # [B*N, 1]
        h = self.embedding(torch.cat([torch.ones_like(t_frac), t_frac], dim=1) * mask) * mask  # [B*N, H]
        x = z_x.reshape(b * n, 3)
        h_t, x_t = self._run(self.trunk, h, x, x, mask, b, n)  # the shared trunk on the whole batch
        h_out, x_out = torch.empty_like(h_t), torch.empty_like(x_t)
        use_growth = t <= self.t_n  # [B]
        for blocks, rows in ((self.growth, use_growth), (self.nucleation, ~use_growth)):
            molecules = rows.nonzero(as_tuple=True)[0]
            if len(molecules) == 0:
                continue
            nodes = (molecules[:, None] * n + torch.arange(n, device=z_x.device)).reshape(-1)  # [b_k*N]
            hb, xb = self._run(blocks, h_t[nodes], x_t[nodes], x[nodes], mask[nodes], len(molecules), n)
            h_out = h_out.index_copy(0, nodes, hb)
            x_out = x_out.index_copy(0, nodes, xb)
        eps = remove_mean((x_out - x).reshape(b, n, 3), node_mask).nan_to_num()  # [B, N, 3]
        type_logits = self.type_mlp(h_out).reshape(b, n, NUM_ELEMENTS)
        pooled = (self.prop_node_mlp(h_out) * mask).reshape(b, n, -1).sum(1)  # [B, H]
        return DenoiserOutput(eps=eps, type_logits=type_logits, properties=self.prop_graph_mlp(pooled))

    @classmethod
    def from_denoiser(cls, model: nn.Module, cfg: UniGEMConfig) -> "ReferenceDenoiser":
        """A reference holding the same weights as `model` (a Denoiser), in the same dtype."""
        ref = cls(cfg).to(next(model.parameters()).dtype)
        with torch.no_grad():
            ref.embedding.load_state_dict(model.egnn.embedding.state_dict())
            for mine, theirs in ((ref.trunk, model.egnn.trunk), (ref.nucleation, model.egnn.nucleation),
                                 (ref.growth, model.egnn.growth)):
                for r, o in zip(mine, theirs):
                    _copy_block(r, o)
            ref.type_mlp.load_state_dict(model.type_head.mlp.state_dict())
            ref.prop_node_mlp.load_state_dict(model.property_head.node_mlp.state_dict())
            ref.prop_graph_mlp.load_state_dict(model.property_head.graph_mlp.state_dict())
        return ref


def _concat_linear(target: nn.Linear, pairwise: nn.Module) -> None:
    """Linear on [h_i, h_j, e_ij] from the factors W_a (with the bias), W_b, W_e of a PairwiseLinear."""
    target.weight.copy_(torch.cat([pairwise.src.weight, pairwise.dst.weight, pairwise.edge.weight], dim=1))
    target.bias.copy_(pairwise.src.bias)


def _copy_block(ref: ReferenceBlock, ours: nn.Module) -> None:
    _concat_linear(ref.gcl.edge_mlp[0], ours.edge_in)
    ref.gcl.edge_mlp[2].load_state_dict(ours.edge_out.state_dict())
    ref.gcl.att_mlp[0].load_state_dict(ours.attention.state_dict())
    ref.gcl.node_mlp.load_state_dict(ours.node_mlp.state_dict())
    _concat_linear(ref.update.coord_mlp[0], ours.coord_in)
    ref.update.coord_mlp[2].load_state_dict(ours.coord_mid.state_dict())
    ref.update.coord_mlp[4].load_state_dict(ours.coord_out.state_dict())
