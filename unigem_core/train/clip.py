"""Adaptive gradient clipping (spec 5): max_norm = 1.5 mean + 2 std of the recent gradient norms."""
from __future__ import annotations

import math
from collections import deque

import torch


class AdaptiveClipper:
    def __init__(self, history: int = 50, initial: float = 3000.0):
        # Seeded with a large value so the first steps are effectively unclipped, as published.
        self.norms: deque[float] = deque([initial], maxlen=history)

    def max_norm(self) -> float:
        t = torch.tensor(list(self.norms), dtype=torch.float64)
        std = t.std().item() if len(t) > 1 else 0.0
        return 1.5 * t.mean().item() + 2.0 * std

    def clip(self, parameters) -> float:
        """Clip in place; return the gradient norm before clipping. A clipped norm enters the history as the threshold."""
        limit = self.max_norm()
        norm = float(torch.nn.utils.clip_grad_norm_(parameters, max_norm=limit))
        if math.isfinite(norm):
            self.norms.append(min(norm, limit))
        return norm

    def state_dict(self) -> dict:
        return {"norms": list(self.norms), "maxlen": self.norms.maxlen}

    def load_state_dict(self, state: dict) -> None:
        self.norms = deque(state["norms"], maxlen=state["maxlen"])
