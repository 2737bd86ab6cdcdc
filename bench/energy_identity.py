"""Would the model's enthalpy be better read off its internal energy?

QM9's atomization enthalpy and internal energy at 298 K differ by (N - 1) kT for a molecule of N atoms
(H = U + kT for the molecule and for each free atom; kT = 25.7 meV; exactly: engine.enthalpy_offset), so one output
of the property head can be derived from the other, as the engine now does. This measures, on a QM9 split at its
DFT geometries, the MAE of U and of the head's own H output, of H taken as U + enthalpy_offset, and of the average
of the two estimates, with the mean signed error of the four energies, and checks the relation against the split
(a straight-line fit of H - U against N, and the largest deviation of H - U from enthalpy_offset).

    python bench/energy_identity.py [--checkpoint checkpoints/unigem.pt] [--split valid] [--json]
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from unigem_core import api
from unigem_core.api import enthalpy_offset, predict_properties
from unigem_core.constants import PROPERTIES
from unigem_core.data.qm9 import load_split, symbols_of
from unigem_core.molecule import Molecule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="weights (default: the shipped ones)")
    parser.add_argument("--split", default="valid", choices=("train", "valid", "test"))
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()

    engine = api.load_model(args.checkpoint, "cpu")
    data = load_split(args.split, progress=False)
    molecules = [Molecule(symbols_of(data.types[i]), data.positions[i, :data.n_atoms[i]]) for i in range(len(data))]
    keys = [p.key for p in PROPERTIES]
    truth = data.targets * np.array([p.report_scale for p in PROPERTIES])
    answers = predict_properties(engine, molecules, 256, enthalpy_from_u=False)  # the head's own H
    predicted = np.array([[props[k] for k in keys] for props in answers])
    u, h = keys.index("U"), keys.index("H")
    n_atoms = data.n_atoms.astype(float)

    slope, intercept = np.polyfit(n_atoms, truth[:, h] - truth[:, u], 1)  # -kT and about +kT
    offset = np.array([enthalpy_offset(m.symbols) * 1000 for m in molecules])  # H - U of each molecule, meV
    from_u = predicted[:, u] + offset
    averaged_u = (predicted[:, u] + predicted[:, h] - offset) / 2

    def mae(values: np.ndarray, column: int) -> float:
        return float(np.abs(values - truth[:, column]).mean())

    result = {
        "split": args.split, "n_molecules": len(data), "kT_meV": float(-slope), "fit_intercept_meV": float(intercept),
        "fit_residual_max_meV": float(np.abs(truth[:, h] - truth[:, u] - slope * n_atoms - intercept).max()),
        "identity_residual_max_meV": float(np.abs(truth[:, h] - truth[:, u] - offset).max()),
        "mae_U": mae(predicted[:, u], u), "mae_H": mae(predicted[:, h], h), "mae_H_from_U": mae(from_u, h),
        "mae_U_averaged": mae(averaged_u, u), "mae_H_averaged": mae(averaged_u + offset, h),
        "predicted_H_minus_U_error_mean_meV": float((predicted[:, h] - predicted[:, u] - offset).mean()),
        "predicted_H_minus_U_error_mae_meV": float(np.abs(predicted[:, h] - predicted[:, u] - offset).mean()),
        "mean_error_meV": {k: float((predicted[:, i] - truth[:, i]).mean()) for i, k in enumerate(keys)
                           if k in ("U0", "U", "H", "G")},
        "checkpoint": args.checkpoint or "checkpoints/unigem.pt", "step": engine.info.get("step"),
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
