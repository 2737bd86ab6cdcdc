"""Seconds to build a SMILES as the Predict page does: MMFF94 alone, and then GFN2-xTB (bench/NOTES.md, "GFN2-xTB
geometries").

    python bench/build_speed.py --n 40 --rounds 2

QM9 validation SMILES from --start; each setting builds them all in turn, interleaved over --rounds rounds, and the
table gives the best round's seconds per molecule (wall clock and this process's CPU time).
"""
from __future__ import annotations

import argparse
import os
import time

from rdkit import rdBase

from unigem_core.constants import CONFORMERS
from unigem_core.data.qm9 import load_split
from unigem_core.io import read_smiles
from unigem_core.molecule import MoleculeInputError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--conformers", type=int, default=CONFORMERS)
    args = parser.parse_args()
    data = load_split("valid", progress=False)
    smiles = [str(s) for s in data.smiles[args.start:args.start + args.n]]
    settings = [("MMFF94", "mmff"), ("MMFF94 + GFN2-xTB", "xtb")]
    best = {label: (float("inf"), float("inf")) for label, _ in settings}
    counts = {}
    with rdBase.BlockLogs():
        for _ in range(args.rounds):
            for label, relax in settings:
                wall, cpu, built = time.perf_counter(), time.process_time(), 0
                for s in smiles:
                    try:
                        built += len(read_smiles(s, conformers=args.conformers, relax=relax).geometries)
                    except MoleculeInputError:
                        continue
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                best[label] = (min(best[label][0], wall), min(best[label][1], cpu))
                counts[label] = built
    print(f"{len(smiles)} validation SMILES from {args.start}, up to {args.conformers} conformers, "
          f"best of {args.rounds}; load average {os.getloadavg()[0]:.1f}")
    print("| build | s per molecule (wall) | CPU s per molecule | conformers per molecule |")
    print("|---|---|---|---|")
    for label, (wall, cpu) in best.items():
        print(f"| {label} | {wall / len(smiles):.3f} | {cpu / len(smiles):.3f} | {counts[label] / len(smiles):.1f} |")


if __name__ == "__main__":
    main()
