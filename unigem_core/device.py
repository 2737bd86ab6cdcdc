"""Where the work runs: the device to use, the CPU threads, and a description of the hardware.

The description goes into every training run's history and the model card ("AMD EPYC CPU (2 cores,
AVX2), 2 process(es) x 1 thread(s), fp32"; "(2 cores, AVX512, AVX512-BF16, AMX)" on a Xeon with AMX), so a
reader knows what the hours were spent on.
"""
from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys

import torch

from unigem_core.precision import resolve_precision


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU; asking for 'cuda' without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA GPU is available on this machine; use --device cpu or auto")
        return torch.device("cuda")
    if name == "cpu":
        return torch.device("cpu")
    raise ValueError(f"unknown device {name!r}; choose auto, cpu or cuda")


def set_cpu_threads(n: int) -> None:
    """Threads torch uses for CPU work in this process (a process-wide setting)."""
    torch.set_num_threads(max(1, int(n)))


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


@functools.cache  # process-wide and idempotent: once per process, however many models it loads
def keep_freed_memory() -> bool:
    """Let glibc reuse freed tensor memory instead of handing it back to the kernel after every call.

    glibc serves each allocation above its mmap threshold (32 MiB at most) with a fresh mmap and unmaps
    it on free, so every forward pass faults its large tensors ([B, N, N, H] edge features: 43 MB for 100
    QM9 molecules in `small`) in again, page by page. On the Zen 3 that was a third of sampling's CPU time
    spent in the kernel; with the heap kept, 100 molecules x 60 steps took 41 s instead of 58, and a
    one-process training step on 64 molecules 1.26x less CPU time (DDP ranks of 32 did not change;
    bench/NOTES.md, "Memory the kernel took back"). The heap above 1 GiB free is still returned.
    Returns whether it took (False off glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and other C libraries
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))


def describe_hardware(precision: str = "auto", processes: int = 1) -> str:
    """What a run of `processes` processes computes on, with the precision "auto" resolves to there."""
    if torch.cuda.is_available():
        used = resolve_precision(precision, torch.device("cuda"))
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}, {processes} process(es), {used}"
    used = resolve_precision(precision, torch.device("cpu"))
    return (f"{cpu_name()} CPU ({os.cpu_count()} cores, {cpu_features()}), "
            f"{processes} process(es) x {torch.get_num_threads()} thread(s), {used}")


def cpu_features() -> str:
    """The vector ISA torch dispatches to, plus the bf16 units that set its speed ("AVX512, AVX512-BF16, AMX").

    torch names a Zen 5 and a Xeon with AMX alike "AVX512"; on 2 cores their bf16 matmul peaks measured 412
    and 2288 GFLOP/s (bench/NOTES.md).
    """
    extras = [name for name, has in (("AVX512-BF16", torch.cpu._is_avx512_bf16_supported()),
                                     ("AMX", torch.cpu._is_amx_tile_supported())) if has]
    return ", ".join([torch.backends.cpu.get_cpu_capability(), *extras])


def cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name with its x86 family and model ("AMD EPYC (family 25, model 1)"), or the best
    platform can say. The family and model tell apart CPUs that share a name and differ in speed: an "AMD EPYC"
    of family 25 and model 1 is a Zen 3 (AVX2 only), of model 17 a Zen 4 (bf16 on 256-bit units)."""
    fields: dict[str, str] = {}
    try:
        with open(cpuinfo) as f:
            for line in f:
                if not line.strip():  # the first processor's block ends
                    break
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name
