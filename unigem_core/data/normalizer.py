"""Property normalisation by the training split's mean and mean absolute deviation (spec 2.2)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class PropertyNormalizer:
    mean: tuple[float, ...]  # per target, training units
    mad: tuple[float, ...]  # mean |y - mean| per target

    @classmethod
    def fit(cls, targets: np.ndarray) -> "PropertyNormalizer":
        mean = targets.mean(0)
        return cls(tuple(float(v) for v in mean), tuple(float(v) for v in np.abs(targets - mean).mean(0)))

    def _tensors(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.tensor(self.mean, dtype=like.dtype, device=like.device),
                torch.tensor(self.mad, dtype=like.dtype, device=like.device))

    def normalize(self, y: torch.Tensor) -> torch.Tensor:
        mean, mad = self._tensors(y)
        return (y - mean) / mad

    def denormalize(self, y: torch.Tensor) -> torch.Tensor:
        mean, mad = self._tensors(y)
        return y * mad + mean
