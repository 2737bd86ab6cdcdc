"""Batches: padded tensors of a set of molecules, cropped to the largest molecule in the batch (spec 1)."""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from unigem_core.data.qm9 import QM9Arrays
from unigem_core.geometry import remove_mean


@dataclass
class Batch:
    positions: torch.Tensor  # [B, N, 3] float32, CoM-free, zero on padding
    node_mask: torch.Tensor  # [B, N] bool
    types: torch.Tensor  # [B, N] int64 element index, 0 on padding
    targets: torch.Tensor  # [B, 12] float32, training units (not normalised)
    n_atoms: torch.Tensor  # [B] int64

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return self.positions.shape[0]

    def rows(self, start: int, stop: int) -> "Batch":
        """Molecules start..stop-1, with the same padding."""
        return Batch(**{f.name: getattr(self, f.name)[start:stop] for f in fields(self)})


def collate(arrays: QM9Arrays, rows: np.ndarray) -> Batch:
    """Gather molecules `rows` of `arrays` into one Batch padded to their largest atom count."""
    n_max = int(arrays.n_atoms[rows].max())
    types = torch.from_numpy(arrays.types[rows, :n_max].astype(np.int64))  # [B, N]
    node_mask = types >= 0
    positions = torch.from_numpy(arrays.positions[rows, :n_max])  # [B, N, 3]
    return Batch(
        positions=remove_mean(positions, node_mask),
        node_mask=node_mask,
        types=types.clamp(min=0),
        targets=torch.from_numpy(arrays.targets[rows].astype(np.float32)),
        n_atoms=torch.from_numpy(arrays.n_atoms[rows].astype(np.int64)),
    )


def epoch_batches(n_atoms: np.ndarray, batch_size: int, seed: int, epoch: int, bucket_batches: int = 50) -> list[np.ndarray]:
    """The batches of one epoch, as row indices; a pure function of (seed, epoch) so resuming is exact.

    Molecules are shuffled, cut into pools of `bucket_batches` batches, and sorted by size inside a
    pool before being cut into batches: each batch then holds molecules of similar size, which cuts
    the padded N^2 edge work by about a third at no cost in randomness across the epoch. The last
    incomplete batch is dropped, as in the published loader.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(n_atoms))
    pool = max(1, bucket_batches) * batch_size
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start:start + pool]
        chunk = chunk[np.argsort(n_atoms[chunk], kind="stable")] if bucket_batches > 1 else chunk
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk) - batch_size + 1, batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]
