"""The validation loss: the training objective on a fixed slice of the validation split under fixed noise.

The val_* columns of a training log and `unigem evaluate --loss` are this number, so a shipped
release and any campaign checkpoint compare directly (in one precision).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from unigem_core.config import DiffusionConfig
from unigem_core.data.collate import collate
from unigem_core.data.normalizer import PropertyNormalizer
from unigem_core.data.qm9 import QM9Arrays, load_split
from unigem_core.diffusion.process import two_phase_loss
from unigem_core.diffusion.schedule import NoiseSchedule
from unigem_core.precision import autocast

VAL_BATCH = 128  # molecules per validation pass; with VAL_SEED it fixes the noise each molecule gets
VAL_SEED = 1234


def validation_molecules(n: int) -> QM9Arrays:
    """The first n molecules of the validation split: the fixed slice validation_loss is measured on."""
    if n < 1:
        raise ValueError(f"the validation loss needs at least 1 molecule, not {n}")
    valid = load_split("valid", progress=False)
    return valid.subset(np.arange(min(n, len(valid))))


@torch.no_grad()
def validation_loss(model: nn.Module, data: QM9Arrays, schedule: NoiseSchedule, normalizer: PropertyNormalizer,
                    cfg: DiffusionConfig, precision: str = "auto") -> dict:
    """The training objective of `model` on `data` under fixed noise, averaged over the molecules.

    The noise comes from one generator seeded VAL_SEED and drawn batch after batch, so two
    checkpoints (or two points of one run) see the same noise and their numbers compare: this is
    the val_* columns of a training log and `unigem evaluate --loss`.
    """
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(VAL_SEED)
    totals = {"val_loss": 0.0, "val_coord": 0.0, "val_prop_mae_norm": 0.0, "val_type_accuracy": 0.0}
    for start in range(0, len(data), VAL_BATCH):
        rows = np.arange(start, min(start + VAL_BATCH, len(data)))
        batch = collate(data, rows).to(device)
        with autocast(device, precision):
            terms = two_phase_loss(model, batch, schedule, normalizer, cfg, generator)
        for key, value in (("val_loss", terms.total), ("val_coord", terms.coord), ("val_prop_mae_norm", terms.prop),
                           ("val_type_accuracy", terms.type_accuracy)):
            totals[key] += float(value) * len(rows)
    return {k: v / max(len(data), 1) for k, v in totals.items()}
