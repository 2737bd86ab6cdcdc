"""Stopping a training run cleanly: a signal asks for a stop after the current step, with a checkpoint."""
from __future__ import annotations

import signal
import threading

import torch


class StopRequest:
    """SIGTERM or Ctrl-C asks training to stop after the current step, with a checkpoint.

    The same signal a second time aborts at once; a different one is ignored (torchrun answers a
    Ctrl-C by sending its workers SIGTERM, which must not cut their checkpoint short).
    """

    def __init__(self) -> None:
        self.requested: int | None = None  # the signal that asked
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.requested == signum:
            raise KeyboardInterrupt
        if self.requested is None:
            self.requested = signum
            print(f"\n{signal.Signals(signum).name}: stopping after this step, with a checkpoint "
                  "(send it again to abort at once)", flush=True)

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def agreed(self, world: int, also: bool = False) -> bool:
        """Whether to stop now (a signal, or `also`: this rank's own reason, such as its time budget).

        Under DDP every rank calls this at every step and all stop together when any one wants to;
        a rank that left alone would leave the others waiting in their next collective.
        """
        if world == 1:
            return self.requested is not None or also
        flag = torch.tensor([float(self.requested is not None or also)])
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())
