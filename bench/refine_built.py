"""How much the model's refinement of RDKit-built geometries helps property prediction (bench/NOTES.md,
"Refining built geometries").

QM9 molecules are rebuilt from their SMILES as the Predict page builds a typed SMILES (ETKDG + MMFF), then
refined by `engine.refine_geometries` with several (t_from, steps) settings; the table gives the MAE of a
few targets against QM9's values, beside the unrefined geometries and the molecules' own DFT geometries.
The split defaults to validation, so the setting is chosen without looking at the test split.

    python bench/refine_built.py --split valid --n 1000
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from unigem_core import api
from unigem_core.constants import PROPERTIES
from unigem_core.data.qm9 import load_split, symbols_of
from unigem_core.io import read_smiles
from unigem_core.molecule import Molecule, MoleculeInputError

SETTINGS = ((10, 1), (20, 2), (30, 1), (30, 3), (30, 30), (40, 4), (60, 6), (150, 15))  # (t_from, steps)
SHOWN = ("mu", "alpha", "homo", "lumo", "gap", "r2", "U0", "Cv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="valid", choices=["valid", "test"])
    parser.add_argument("--n", type=int, default=1000, help="the first N molecules of the split")
    parser.add_argument("--checkpoint", default=None)
    args = parser.parse_args()

    engine = api.load_model(args.checkpoint, "cpu")
    data = load_split(args.split)
    kept, built = [], []
    for i in range(min(args.n, len(data))):
        try:
            built.append(read_smiles(str(data.smiles[i]), conformers=1))  # one conformer: refinement alone
            kept.append(i)
        except MoleculeInputError:
            continue
    dft = [Molecule(symbols_of(data.types[i]), data.positions[i, :data.n_atoms[i]]) for i in kept]
    scale = np.array([p.report_scale for p in PROPERTIES])
    truth = data.targets[kept] * scale
    print(f"{args.split}: {len(kept)} of the first {args.n} molecules built from SMILES "
          f"({args.n - len(kept)} refused by RDKit)\n")
    print("| geometry | network calls | " + " | ".join(SHOWN) + " |")
    print("|---" * (len(SHOWN) + 2) + "|")

    def row(label: str, calls: str, molecules: list[Molecule]) -> None:
        predicted = np.array([[p[s.key] for s in PROPERTIES] for p in api.predict_properties(engine, molecules)])
        mae = dict(zip((p.key for p in PROPERTIES), np.abs(predicted - truth).mean(0)))
        print(f"| {label} | {calls} | " + " | ".join(f"{mae[k]:.3g}" for k in SHOWN) + " |", flush=True)

    row("DFT (QM9's own)", "-", dft)
    row("RDKit, as built", "-", built)
    for t_from, steps in SETTINGS:
        start = time.perf_counter()
        refined = api.refine_geometries(engine, built, t_from=t_from, steps=steps)
        row(f"refined from t = {t_from} ({time.perf_counter() - start:.0f} s)", str(steps), refined)


if __name__ == "__main__":
    main()
