"""The polynomial noise schedule of the variance-preserving process (spec 3.1).

alpha_t^2 = (1 - (t/T)^p)^2, step ratios clipped at 0.001, then squeezed: (1 - 2s) alpha^2 + s.
sigma_t^2 = 1 - alpha_t^2. Everything is a table over the integer steps t = 0..T.
"""
from __future__ import annotations

import numpy as np
import torch


def polynomial_alphas2(num_steps: int, power: float = 2.0, precision: float = 1e-5) -> np.ndarray:
    """alpha_t^2 for t = 0..T as float64. [T + 1]."""
    t = np.arange(num_steps + 1, dtype=np.float64)
    alphas2 = (1.0 - (t / num_steps) ** power) ** 2
    # Clip each step's ratio alpha_t^2 / alpha_{t-1}^2 from below for stability, then re-accumulate.
    ratios = np.clip(alphas2 / np.concatenate([[1.0], alphas2[:-1]]), 0.001, 1.0)
    alphas2 = np.cumprod(ratios)
    return (1.0 - 2.0 * precision) * alphas2 + precision


class NoiseSchedule:
    """alpha_t, sigma_t and the transition terms between two steps, for integer tensors of t."""

    def __init__(self, num_steps: int = 1000, power: float = 2.0, precision: float = 1e-5):
        self.num_steps = num_steps
        alphas2 = polynomial_alphas2(num_steps, power, precision)
        self.alphas2 = torch.from_numpy(alphas2)  # [T + 1] float64
        self.sigmas2 = 1.0 - self.alphas2
        self.gamma = torch.log(self.sigmas2) - torch.log(self.alphas2)  # -log SNR

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return self.alphas2.to(t.device)[t].sqrt().float()

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigmas2.to(t.device)[t].sqrt().float()

    def sigma_value(self, t: int) -> float:
        return float(self.sigmas2[t].sqrt())

    def transition(self, t: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha_{t|s} = alpha_t / alpha_s and sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2, for s < t.

        Computed in float64 through gamma, as the difference of two nearly equal numbers loses
        precision in float32 when the steps are close.
        """
        g_t, g_s = self.gamma.to(t.device)[t], self.gamma.to(t.device)[s]
        sigma2_ts = -torch.expm1(torch.nn.functional.softplus(g_s) - torch.nn.functional.softplus(g_t))
        log_alpha2_ts = torch.nn.functional.logsigmoid(-g_t) - torch.nn.functional.logsigmoid(-g_s)
        return torch.exp(0.5 * log_alpha2_ts).float(), sigma2_ts.float()
