"""Shared fixtures: small random molecules and a tiny model in float64."""
from __future__ import annotations

import unigem_core  # noqa: F401  first: sets OpenMP's passive waiting before torch loads
import pytest
import torch

from unigem_core.config import preset
from unigem_core.model.denoiser import Denoiser


@pytest.fixture
def tiny_config():
    return preset("tiny")


@pytest.fixture
def tiny_model_f64(tiny_config):
    torch.manual_seed(0)
    model = Denoiser(tiny_config).double().eval()
    # The coordinate head starts near zero (gain 0.001); scale it up so equivariance is tested on a
    # model whose coordinate update is not negligible.
    for name, p in model.named_parameters():
        if "coord_out" in name:
            p.data.normal_(0, 0.3)
    return model


def random_batch(n_atoms: list[int], n_max: int | None = None, seed: int = 0, dtype=torch.float64):
    """CoM-free random positions with padding. -> (x [B, N, 3], mask [B, N])."""
    from unigem_core.geometry import remove_mean

    g = torch.Generator().manual_seed(seed)
    n_max = n_max or max(n_atoms)
    mask = torch.arange(n_max).unsqueeze(0) < torch.tensor(n_atoms).unsqueeze(1)
    x = torch.randn(len(n_atoms), n_max, 3, generator=g, dtype=dtype) * 1.5
    return remove_mean(x, mask), mask


@pytest.fixture(scope="session")
def small_qm9(tmp_path_factory):
    """A QM9Lookup over the first 40 molecules of QM9's test split, with those molecules' arrays (seconds to build,
    where the whole of QM9 takes minutes)."""
    import numpy as np

    from unigem_core.data.qm9 import load_split, symbols_of
    from unigem_core.metrics.lookup import QM9Lookup, qm9_fingerprints
    from unigem_core.metrics.reference import strings_of

    try:
        data = load_split("test", progress=False).subset(np.arange(40))
    except FileNotFoundError as error:  # the QM9 data package is not installed
        pytest.skip(str(error))
    strings = [strings_of(symbols_of(data.types[r]), data.positions[r, :data.n_atoms[r]], str(data.smiles[r]))
               for r in range(len(data))]
    fingerprints = qm9_fingerprints(strings, tmp_path_factory.mktemp("qm9"))
    return QM9Lookup(strings, data.index, data.smiles, data.targets, ["test"] * len(data), fingerprints), data
