"""The process-wide settings in unigem_core.device."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Page faults taken by allocating, touching and freeing a 48 MiB tensor (above glibc's largest mmap
# threshold) five times, before keep_freed_memory() and after it, once the heap has grown to hold the
# tensor (aligned allocations take a few rounds to find room); in a child process, since the setting
# cannot be undone.
_FAULTS = """
import json, resource, torch
from unigem_core.device import keep_freed_memory

def faults(rounds=5):
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        x = torch.ones(12 * 1024 * 1024)
        del x
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start

before = faults()
took = keep_freed_memory()
faults(20)
print(json.dumps({"took": took, "before": before, "after": faults()}))
"""


def test_freed_tensor_memory_is_reused_without_page_faults():
    out = subprocess.run([sys.executable, "-c", _FAULTS], capture_output=True, text=True, check=True, timeout=120)
    result = json.loads(out.stdout)
    if not result["took"]:
        pytest.skip("not glibc: the C library's own allocator policy applies")
    pages = 5 * 48 * 1024 * 1024 // 4096
    assert result["before"] > pages / 2, result  # glibc mapped and faulted each tensor in anew
    assert result["after"] < pages / 20, result


def test_cpu_name_carries_the_family_and_model_of_the_first_processor(tmp_path):
    from unigem_core.device import cpu_name

    info = tmp_path / "cpuinfo"
    block = "processor\t: {i}\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: {model}\nmodel name\t: AMD EPYC\n\n"
    info.write_text(block.format(i=0, model=1) + block.format(i=1, model=17))
    assert cpu_name(str(info)) == "AMD EPYC (family 25, model 1)"
    info.write_text("processor\t: 0\nmodel name\t: Some ARM core\n")  # no x86 family: the name alone
    assert cpu_name(str(info)) == "Some ARM core"
