"""Forward noising of coordinates and the two-phase training loss (spec 3.2 and 4).

Only coordinates are diffused; atom types and properties are supervised from the geometry, and
only in the growth phase (t <= t_n), which gets `growth_fraction` of every batch.

Deliberate deviation from the published loss: the coordinate error is averaged over each
molecule's real atoms (3 n_i numbers) instead of over the batch's padded size 3 N_max, and the
type loss over real atoms instead of N_max slots. Our batches are bucketed by size, so N_max
varies by batch; a per-molecule average keeps every molecule's weight independent of its batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from unigem_core.config import DiffusionConfig
from unigem_core.constants import MAX_ATOMS, NUM_ELEMENTS
from unigem_core.data.collate import Batch
from unigem_core.data.normalizer import PropertyNormalizer
from unigem_core.diffusion.schedule import NoiseSchedule
from unigem_core.geometry import remove_mean


@dataclass
class LossTerms:
    total: torch.Tensor  # scalar, what is back-propagated
    coord: torch.Tensor  # scalar, mean over the batch of the eps error
    atom_type: torch.Tensor  # scalar, mean over growth-phase molecules
    prop: torch.Tensor  # scalar, mean over growth-phase molecules (normalised L1)
    type_accuracy: torch.Tensor  # scalar, fraction of growth-phase atoms typed right

    def as_floats(self) -> dict[str, float]:
        return {k: float(v.detach()) for k, v in self.__dict__.items()}


def sample_training_t(batch_size: int, cfg: DiffusionConfig, generator: torch.Generator) -> torch.Tensor:
    """Integer t per molecule: a `growth_fraction` share uniform on {0..t_n}, the rest on {t_n+1..T}. [B]."""
    n_growth = int(round(batch_size * cfg.growth_fraction))
    growth = torch.randint(0, cfg.t_n + 1, (n_growth,), generator=generator)
    nucleation = torch.randint(cfg.t_n + 1, cfg.num_steps + 1, (batch_size - n_growth,), generator=generator)
    return torch.cat([nucleation, growth])


def noise_positions(x: torch.Tensor, t: torch.Tensor, node_mask: torch.Tensor, schedule: NoiseSchedule,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """z_t = alpha_t x + sigma_t eps with CoM-free eps. x [B, N, 3] -> (z_t, eps), both [B, N, 3]."""
    b, n, _ = x.shape
    # Draw for MAX_ATOMS slots and crop, so a molecule's noise does not depend on its batch's padding.
    eps = torch.randn(b, max(n, MAX_ATOMS), 3, generator=generator)[:, :n].to(x.device)
    eps = remove_mean(eps, node_mask)
    alpha = schedule.alpha(t.cpu()).to(x.device).view(-1, 1, 1)
    sigma = schedule.sigma(t.cpu()).to(x.device).view(-1, 1, 1)
    return alpha * x + sigma * eps, eps


def type_loss(logits: torch.Tensor, types: torch.Tensor, node_mask: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-molecule atom-type loss averaged over real atoms. logits [B, N, 5] -> [B]."""
    mask = node_mask.to(logits.dtype)
    if kind == "ce":
        per_atom = F.cross_entropy(logits.transpose(1, 2), types, reduction="none")  # [B, N]
    elif kind == "l1":  # the published code: L1 to one-hot / 4
        per_atom = (logits - F.one_hot(types, NUM_ELEMENTS).to(logits.dtype) / 4).abs().mean(-1)
    else:
        raise ValueError(f"unknown type_loss {kind!r}")
    return (per_atom * mask).sum(1) / mask.sum(1).clamp(min=1)


@dataclass
class MoleculeLosses:
    """The loss pieces of each molecule, [B] each; `total` carries the gradient, the rest are for logging."""
    total: torch.Tensor
    coord: torch.Tensor
    atom_type: torch.Tensor
    prop: torch.Tensor
    correct: torch.Tensor  # growth-phase atoms typed right (0 for nucleation molecules)
    atoms: torch.Tensor  # real atoms
    growth: torch.Tensor  # 1.0 for growth-phase molecules

    def detach(self) -> "MoleculeLosses":
        return MoleculeLosses(**{k: v.detach() for k, v in self.__dict__.items()})

    @staticmethod
    def cat(parts: list["MoleculeLosses"]) -> "MoleculeLosses":
        return MoleculeLosses(**{k: torch.cat([getattr(p, k) for p in parts]) for k in parts[0].__dict__})

    def summary(self) -> LossTerms:
        n_growth = self.growth.sum().clamp(min=1)
        return LossTerms(total=self.total.mean(), coord=self.coord.mean(), atom_type=(self.atom_type * self.growth).sum() / n_growth,
                         prop=(self.prop * self.growth).sum() / n_growth,
                         type_accuracy=self.correct.sum() / (self.atoms * self.growth).sum().clamp(min=1))


def noise_batch(batch: Batch, schedule: NoiseSchedule, cfg: DiffusionConfig,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training timesteps and noised coordinates for a batch: (t [B], z_t [B, N, 3], eps [B, N, 3])."""
    t = sample_training_t(len(batch), cfg, generator).to(batch.positions.device)
    z, eps = noise_positions(batch.positions, t, batch.node_mask, schedule, generator)
    return t, z, eps


def molecule_losses(model, batch: Batch, t: torch.Tensor, z: torch.Tensor, eps: torch.Tensor,
                    normalizer: PropertyNormalizer, cfg: DiffusionConfig) -> MoleculeLosses:
    """Each molecule's UniGEM loss (spec 4.3): eps error always, type and property terms in the growth phase."""
    out = model(z, t, batch.node_mask)
    mask = batch.node_mask.to(z.dtype)  # [B, N]
    atoms = mask.sum(1)
    coord = 0.5 * ((eps - out.eps) ** 2).sum((1, 2)) / (3 * atoms)  # [B]
    growth = (t <= cfg.t_n).to(z.dtype)  # [B]
    l_type = type_loss(out.type_logits, batch.types, batch.node_mask, cfg.type_loss)  # [B]
    l_prop = (out.properties - normalizer.normalize(batch.targets)).abs().mean(-1)  # [B]
    total = coord + growth * (cfg.type_weight * l_type + cfg.property_weight * l_prop)
    correct = ((out.type_logits.argmax(-1) == batch.types).to(z.dtype) * mask).sum(1) * growth
    return MoleculeLosses(total=total, coord=coord, atom_type=l_type, prop=l_prop, correct=correct, atoms=atoms, growth=growth)


def two_phase_loss(model, batch: Batch, schedule: NoiseSchedule, normalizer: PropertyNormalizer,
                   cfg: DiffusionConfig, generator: torch.Generator) -> LossTerms:
    """The UniGEM objective for one batch, averaged over its molecules."""
    t, z, eps = noise_batch(batch, schedule, cfg, generator)
    return molecule_losses(model, batch, t, z, eps, normalizer, cfg).summary()
