"""Precision choice: "auto" gives bf16 only where the hardware computes it natively."""
from __future__ import annotations

import pytest
import torch

from unigem_core import precision
from unigem_core.config import preset
from unigem_core.diffusion.sampler import SamplerOptions
from unigem_core.precision import autocast, resolve_precision

CPU = torch.device("cpu")


@pytest.mark.parametrize("native", [True, False])
def test_auto_follows_the_cpu(monkeypatch, native):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert precision.native_bf16(CPU) is native
    assert resolve_precision("auto", CPU) == ("bf16" if native else "fp32")
    with autocast(CPU, "auto"):
        assert torch.is_autocast_enabled("cpu") is native
    # An explicit choice is honoured whatever the hardware.
    assert resolve_precision("bf16", CPU) == "bf16" and resolve_precision("fp32", CPU) == "fp32"
    with autocast(CPU, "bf16"):
        assert torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast(CPU, "fp32"):
        assert not torch.is_autocast_enabled("cpu")


def test_amx_alone_counts_as_native(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert resolve_precision("auto", CPU) == "bf16"


def test_unknown_precision_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        resolve_precision("fp16", CPU)


def test_defaults_are_auto():
    assert preset("small").train.precision == "auto"
    assert SamplerOptions().precision == "auto"


def test_training_hardware_names_the_precision(monkeypatch):
    from unigem_core.device import describe_hardware

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    if torch.cuda.is_available():
        pytest.skip("names the GPU instead")
    assert describe_hardware("auto").endswith(", fp32") and describe_hardware("bf16").endswith(", bf16")
    assert torch.backends.cpu.get_cpu_capability() in describe_hardware()
    assert "2 process(es)" in describe_hardware(processes=2)
    assert "AMX" not in describe_hardware()
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert "AMX), " in describe_hardware()
