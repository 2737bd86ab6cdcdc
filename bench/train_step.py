"""Whole training steps (noise, forward, backward, clipping, AdamW, EMA) for several `micro_batch`
settings, interleaved on the same real QM9 batches.

    python bench/train_step.py [--preset small] [--micro 0 8 16 32] [--threads 1] [--batches 12] [--rounds 3] [--return-memory]
    python bench/train_step.py --micro 32 --compile   # each setting eager and with every block under torch.compile

Each round runs every setting over the same `--batches` batches of one epoch (bucketed as in
training) from the same starting weights; the table gives molecules per CPU second (process time,
which other jobs on a shared machine disturb less than wall clock) and per wall second, best round.
"""
from __future__ import annotations

import argparse
import copy
import time

import torch

from unigem_core.config import preset
from unigem_core.data.collate import collate, epoch_batches
from unigem_core.data.qm9 import load_split
from unigem_core.device import keep_freed_memory
from unigem_core.diffusion.schedule import NoiseSchedule
from unigem_core.train.loop import compile_blocks, new_state, train_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="small", choices=["tiny", "small", "paper"])
    ap.add_argument("--micro", type=int, nargs="+", default=[0, 8, 16, 32])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compile", action="store_true",
                    help="time each setting also with every EGNN block under torch.compile(dynamic=True); the "
                         "compiling happens in an untimed pass over all the batches first")
    ap.add_argument("--return-memory", action="store_true",
                    help="let glibc hand freed tensors back to the kernel (as before unigem_core.device.keep_freed_memory)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.return_memory:
        keep_freed_memory()  # as `unigem train` does
    train = load_split("train", progress=False)
    config = preset(args.preset)
    rows = epoch_batches(train.n_atoms, config.train.batch_size, seed=0, epoch=0)[:args.batches]
    batches = [collate(train, r) for r in rows]
    base = new_state(config, train, torch.device("cpu"))
    schedule = NoiseSchedule(config.diffusion.num_steps, config.diffusion.power, config.diffusion.precision)
    settings = [(m, c) for m in args.micro for c in ((False, True) if args.compile else (False,))]
    best = {s: (float("inf"), float("inf")) for s in settings}
    states = {}
    for _ in range(args.rounds):
        for micro, compiled in settings:
            state = states.get(micro) if compiled else None  # the same compiled blocks every round
            if state is None:
                state = copy.deepcopy(base)
                state.config = config.with_train(micro_batch=micro)
                if compiled:  # compiling is paid once, untimed, over every shape the timed pass will meet
                    states[micro] = state
                    compile_blocks(state.model)
                    for batch in batches:
                        train_step(state, batch, schedule)
            if compiled:  # back to the starting point of the eager rounds
                state.model.load_state_dict(base.model.state_dict())
                state.optimizer.load_state_dict(base.optimizer.state_dict())
                state.generator.set_state(base.generator.get_state())  # the same noise as the eager rounds
            train_step(state, batches[0], schedule)  # warm-up: allocator, oneDNN primitives
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for batch in batches:
                train_step(state, batch, schedule)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            best[micro, compiled] = (min(best[micro, compiled][0], cpu), min(best[micro, compiled][1], wall))
    n = sum(len(b) for b in batches)
    ref = best[settings[0]][0]
    memory = "freed memory returned to the kernel" if args.return_memory else "freed memory kept"
    print(f"{args.preset}, {len(batches)} batches of {config.train.batch_size}, {args.threads} thread(s), {memory}, "
          f"best of {args.rounds}")
    print("| micro_batch | blocks | molecules / CPU s | molecules / wall s | CPU time vs first |")
    print("|---|---|---|---|---|")
    for (micro, compiled), (cpu, wall) in best.items():
        print(f"| {micro or 'whole'} | {'compiled' if compiled else 'eager'} | {n / cpu:.1f} | {n / wall:.1f} "
              f"| {cpu / ref:.3f} |")


if __name__ == "__main__":
    main()
