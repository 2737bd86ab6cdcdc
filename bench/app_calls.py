"""Wall seconds of the calls the app makes most, with the shipped model, as the app makes them.

    python bench/app_calls.py [--threads 2] [--rounds 3] [--checkpoint checkpoints/unigem.pt]

unigem_core is imported before torch, as in the app and the CLI, so OpenMP threads wait passively
(unigem_core/__init__.py). The CLI and the API use torch's thread count (all cores); the app sets its own
(app/resources.py, threads_per_job). Rows: the Generate page's default (4 molecules, 50 steps and one refinement
round), the Trajectory page (one molecule with its frames), a larger gallery (16), and the Predict page
on 256 QM9 test molecules at their DFT geometries. Median of `--rounds` after one untimed run.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import unigem_core  # noqa: F401  first: OpenMP's passive waiting, as the app has it

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's, all cores)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "unigem.pt")
    args = ap.parse_args()

    import torch

    from unigem_core.data.qm9 import load_split, symbols_of
    from unigem_core.device import keep_freed_memory
    from unigem_core.engine import load_model, predict_properties
    from unigem_core.generation import generate
    from unigem_core.molecule import Molecule

    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the app's engine does
    engine = load_model(args.checkpoint, "cpu")
    test = load_split("test", progress=False)
    molecules = [Molecule(symbols=symbols_of(test.types[i]), positions=test.positions[i, :test.n_atoms[i]])
                 for i in range(256)]
    calls = {
        "generate 4 molecules, 50 steps + 1 round (Generate's default)":
            lambda: generate(engine, 4, seed=0, steps=50, resample=1),
        "generate 1 molecule with its trajectory, 50 + 1 (Trajectory)":
            lambda: generate(engine, 1, seed=0, steps=50, resample=1, record_trajectory=True),
        "generate 16 molecules, 50 + 1": lambda: generate(engine, 16, seed=0, steps=50, resample=1),
        "predict 256 QM9 test molecules, fp32 (Predict)": lambda: predict_properties(engine, molecules),
    }
    print(f"{torch.get_num_threads()} thread(s), checkpoint {args.checkpoint.name}")
    for name, call in calls.items():
        call()
        seconds = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - start)
        print(f"{name}: {statistics.median(seconds):.2f} s")


if __name__ == "__main__":
    main()
