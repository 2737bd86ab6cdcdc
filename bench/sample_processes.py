"""Sampling wall clock with the batches in one process (all threads) or shared out over worker processes.

    python bench/sample_processes.py [--n 200] [--steps 50] [--batch-size 100] [--processes 1 2]

Runs `api.generate` on the shipped checkpoint for each setting in turn, twice, and prints the best
wall clock of each and molecule-steps per second. Worker start-up (spawn, imports, loading the
weights) is included, as a user of `unigem evaluate --processes N` pays it.
"""
from __future__ import annotations

import argparse
import time

import torch

from unigem_core import api


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    engine = api.load_model(device="cpu")
    best = {p: float("inf") for p in args.processes}
    for _ in range(args.rounds):
        for p in args.processes:
            start = time.perf_counter()
            api.generate(engine, args.n, steps=args.steps, seed=0, batch_size=args.batch_size, processes=p)
            best[p] = min(best[p], time.perf_counter() - start)
    calls = args.steps + 1
    print(f"{args.n} molecules, {args.steps} steps, batches of {args.batch_size}, torch threads {torch.get_num_threads()}")
    print("| processes | wall s (best) | molecule-steps/s | vs 1 process |")
    print("|---|---|---|---|")
    for p, wall in best.items():
        print(f"| {p} | {wall:.1f} | {args.n * calls / wall:.0f} | {best[args.processes[0]] / wall:.2f}x |")


if __name__ == "__main__":
    main()
