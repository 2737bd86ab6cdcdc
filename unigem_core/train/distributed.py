"""Data-parallel training over several processes: launching them, joining their group, who is who.

`unigem train --processes N` re-runs itself under torchrun (`launch`); each rank then joins the
process group (`init_distributed`): gloo on CPU, NCCL on CUDA. Several GPUs or nodes: call torchrun
yourself with `-m unigem_core.cli train ...`.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import torch


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0 and 1 outside a process group)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def init_distributed(device_name: str) -> torch.device | None:
    """Join the torchrun process group when launched by torchrun; returns this rank's device."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def launch(argv: list[str], processes: int, threads: int | None, command_line: str) -> int:
    """`unigem train --processes N` (its arguments `argv`): the same command under torchrun.

    The N processes share the cores, `threads` each (default: the cores divided among them); on a
    2-core CPU two processes of one thread train about 1.6x faster than one process of two threads
    (bench/NOTES.md). SIGTERM and Ctrl-C are passed on, so every rank stops with a checkpoint.
    """
    rest, skip = [], False
    for arg in argv:  # drop --processes N / --processes=N
        if skip:
            skip = False
        elif arg == "--processes":
            skip = True
        elif not arg.startswith("--processes="):
            rest.append(arg)
    per_process = threads or max(1, (os.cpu_count() or 1) // processes)
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
           "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "unigem_core.cli", *rest]
    if not threads:
        cmd += ["--threads", str(per_process)]
    # the ranks record the command as typed (with --processes), not the torchrun one, in the run's history
    env = {**os.environ, "OMP_NUM_THREADS": str(per_process), "UNIGEM_TRAIN_COMMAND": command_line}
    child = subprocess.Popen(cmd, env=env, start_new_session=True)  # signals reach it once, from here
    forward = lambda signum, frame: child.send_signal(signum)  # noqa: E731
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
