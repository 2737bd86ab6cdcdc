"""Profile one `paper` training step on 64 real QM9 molecules with torch.profiler.

    python bench/profile_step.py [--precision bf16|fp32] [--threads 1] [--batch 64] [--rows 40]

Prints the operators by self CPU time, grouped by input shape. On a machine shared with other
jobs, run it with --threads 1 (and OMP_WAIT_POLICY=PASSIVE for more threads): the profiler
measures wall time, and with busy cores every parallel region can wait a whole scheduler slice for
its second thread, which inflates small operators far beyond their cost.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from unigem_core.config import preset
from unigem_core.data.collate import collate, epoch_batches
from unigem_core.data.qm9 import load_split
from unigem_core.diffusion.schedule import NoiseSchedule
from unigem_core.train.loop import new_state, train_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rows", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train = load_split("train", progress=False)
    cfg = preset("paper").with_train(precision=args.precision, batch_size=args.batch)
    state = new_state(cfg, train, torch.device("cpu"))
    batch = collate(train, epoch_batches(train.n_atoms, args.batch, 0, 0, 50)[0])
    schedule = NoiseSchedule()
    train_step(state, batch, schedule)  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    train_step(state, batch, schedule)
    print(f"batch {tuple(batch.positions.shape)}, {args.threads} threads: one step "
          f"{time.perf_counter() - wall:.3f} s wall, {time.process_time() - cpu:.3f} s CPU")
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        train_step(state, batch, schedule)
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=args.rows,
                                                             max_name_column_width=40, max_shapes_column_width=70))


if __name__ == "__main__":
    main()
