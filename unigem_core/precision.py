"""Which dtype the network's dense work runs in: bf16 where the hardware computes it natively, else fp32.

bf16 autocast is the biggest speed lever on a CPU with AVX512-BF16 or AMX and on CUDA GPUs from
Ampere on; on a CPU without them (an AVX2-only Zen 3, say) oneDNN emulates bf16 and a training
step ran about 5x slower than in fp32 (bench/NOTES.md). "auto" picks per machine, so a
checkpoint or a command that says "auto" is fast wherever it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used, so the CLI can read CHOICES without loading it
    import torch

CHOICES = ("auto", "bf16", "fp32")


def native_bf16(device: torch.device) -> bool:
    """Whether this device does bf16 matrix products in hardware."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """"bf16" or "fp32" for `precision` ("auto", "bf16" or "fp32") on this device."""
    if precision not in CHOICES:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(CHOICES)}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(device: torch.device, precision: str):
    """The autocast context for `precision` on `device` (disabled for fp32)."""
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=resolve_precision(precision, device) == "bf16")
