"""Centre-of-mass handling, masks and rotations for padded batches of point clouds.

Shapes: x [B, N, 3], node_mask [B, N] (bool or 0/1). "Centre of mass" here is the unweighted mean
of the real atoms' positions, as in the spec (section 1 and 3.2).
"""
from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
    """Mean over real atoms. x [B, N, D], node_mask [B, N] -> [B, 1, D]."""
    m = node_mask.to(x.dtype).unsqueeze(-1)  # [B, N, 1]
    return (x * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)


def remove_mean(x: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
    """Project onto the centre-of-mass-free subspace; padding stays exactly zero."""
    m = node_mask.to(x.dtype).unsqueeze(-1)
    return (x - masked_mean(x, node_mask)) * m


def assert_mean_zero(x: torch.Tensor, node_mask: torch.Tensor, tol: float = 1e-3) -> None:
    """Runtime check at module boundaries: centre-of-mass free and zero on padding."""
    m = node_mask.to(x.dtype).unsqueeze(-1)
    drift = masked_mean(x, node_mask).abs().max().item()
    scale = max(1.0, x.abs().max().item())
    if drift > tol * scale:
        raise AssertionError(f"positions are not centre-of-mass free (drift {drift:.2e})")
    if (x * (1 - m)).abs().max().item() > 0:
        raise AssertionError("padding atoms carry non-zero positions")


def com_free_noise(n_atoms: int, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise for one molecule, projected to zero mean. -> [n_atoms, 3] float32 (CPU)."""
    eps = torch.randn(n_atoms, 3, generator=generator)
    return eps - eps.mean(0, keepdim=True)


def batch_noise(n_atoms: list[int], n_max: int, generators: list[torch.Generator]) -> torch.Tensor:
    """Per-molecule CoM-free noise, each drawn from its molecule's own generator. -> [B, n_max, 3].

    One generator per molecule makes seed k give the same molecule whatever the batch size.
    """
    out = torch.zeros(len(n_atoms), n_max, 3)
    for i, (n, g) in enumerate(zip(n_atoms, generators)):
        out[i, :n] = com_free_noise(n, g)
    return out


def random_rotation(generator: torch.Generator | None = None, dtype=torch.float64, proper: bool = True) -> torch.Tensor:
    """A uniformly random 3x3 orthogonal matrix with det +1 (proper) or -1 (with a reflection)."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    if not proper:
        q = q @ torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    return q.to(dtype)


def pairwise_sq_distances(x: torch.Tensor) -> torch.Tensor:
    """x [B, N, 3] -> squared distances [B, N, N, 1]."""
    diff = x.unsqueeze(2) - x.unsqueeze(1)  # [B, N, N, 3]
    return (diff * diff).sum(-1, keepdim=True)


def edge_mask_from(node_mask: torch.Tensor) -> torch.Tensor:
    """Fully connected graph over real atoms without self-loops. [B, N] -> [B, N, N, 1]."""
    m = node_mask.to(torch.float32)
    n = m.shape[1]
    eye = torch.eye(n, device=m.device, dtype=m.dtype)
    return (m.unsqueeze(2) * m.unsqueeze(1) * (1 - eye)).unsqueeze(-1)
