"""What relaxing a SMILES's conformers with GFN2-xTB buys over the MMFF force field (bench/NOTES.md, "GFN2-xTB
geometries").

QM9 molecules are rebuilt from their SMILES twice, as the Predict page builds a typed SMILES: with `relax="mmff"`
(ETKDG + MMFF94) and with `relax="xtb"` (the same conformers, then GFN2-xTB). The table gives the MAE of a few
targets against QM9's values, without and with the model's refinement, for the mean over the conformers (what
Predict reports), for GFN2-xTB's lowest-energy conformer and a Boltzmann weighting at 298 K over its energies,
and, as a ceiling no user has, the conformer closest to QM9's own geometry; then the build time per molecule and
how close the conformers come to QM9's geometry (heavy-atom RMSD). The split defaults to validation, so the choice
is made without looking at the test split.

    python bench/xtb_geometries.py --split valid --n 300
"""
from __future__ import annotations

import time

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import AllChem

from built_conformers import _heavy_atoms_of_dft, _heavy_rmsd, _values, mae_table, setup
from unigem_core import api
from unigem_core.constants import PROPERTIES
from unigem_core.data.qm9 import symbols_of
from unigem_core.io import read_smiles, xtb
from unigem_core.molecule import MoleculeInputError

KT = 0.593  # kcal/mol at 298 K


def main() -> None:
    args, engine, data = setup(__doc__)
    keys = [p.key for p in PROPERTIES]
    kept, builds, energies, rmsds = [], {"mmff": [], "xtb": []}, [], {"mmff": [], "xtb": []}
    seconds = {"mmff": 0.0, "xtb": 0.0}
    with rdBase.BlockLogs():
        for i in range(min(args.n, len(data))):
            smiles = str(data.smiles[i])
            try:
                built = {}
                for relax in builds:
                    start = time.perf_counter()
                    built[relax] = read_smiles(smiles, conformers=args.conformers, relax=relax)
                    seconds[relax] += time.perf_counter() - start
                reference = _heavy_atoms_of_dft(data, i)
            except (MoleculeInputError, ValueError, RuntimeError):
                continue  # RDKit refused the SMILES, or could not read bonds from the DFT geometry
            mol = Chem.AddHs(Chem.MolFromSmiles(smiles))  # read_smiles's atoms, in its order
            AllChem.EmbedMolecule(mol, randomSeed=1)
            if sorted(built["xtb"].symbols) != sorted(symbols_of(data.types[i])) or not mol.GetNumConformers() \
                    or built["xtb"].relaxation != "MMFF94 + GFN2-xTB":
                continue
            heavy = Chem.RemoveHs(mol)
            try:
                each = {relax: np.array([_heavy_rmsd(heavy, mol, x, reference) for x in m.geometries])
                        for relax, m in built.items()}
            except RuntimeError:
                continue  # the DFT geometry reads as another graph than the SMILES (a few per cent of QM9)
            kept.append(i)
            for relax in builds:
                builds[relax].append(built[relax])
                rmsds[relax].append(each[relax])
            energies.append(np.array([_gfn2_energy(built["xtb"].symbols, x) for x in built["xtb"].geometries]))
    n = len(kept)
    counts = {relax: np.mean([len(m.geometries) for m in ms]) for relax, ms in builds.items()}
    print(f"{args.split}: {n} of the first {args.n} molecules built with both; conformers per molecule: MMFF "
          f"{counts['mmff']:.1f}, GFN2-xTB {counts['xtb']:.1f} (at most {args.conformers}); build time per molecule: "
          f"MMFF {seconds['mmff'] / n:.2f} s, MMFF + GFN2-xTB {seconds['xtb'] / n:.2f} s")
    for relax in builds:
        closest, first = np.mean([r.min() for r in rmsds[relax]]), np.mean([r[0] for r in rmsds[relax]])
        print(f"heavy-atom RMSD to QM9's geometry, {relax}: closest conformer {closest:.3f} A, "
              f"first (lowest energy) {first:.3f} A")
    print()
    row = mae_table(engine, data, kept)
    for refined in (False, True):
        for relax, label in (("mmff", "MMFF94"), ("xtb", "GFN2-xTB")):
            per = [_values(each, keys) for each in api.predict_molecules(engine, builds[relax], refine_built=refined)]
            row(f"{label}, mean (Predict)", refined, np.array([p.mean(0) for p in per]))
            if relax == "xtb":
                row(f"{label}, lowest energy", refined, np.array([p[0] for p in per]))
                weights = [np.exp(-(e - e.min()) / KT) for e in energies]
                row(f"{label}, Boltzmann mean, 298 K", refined,
                    np.array([w @ p / w.sum() for p, w in zip(per, weights)]))
            row(f"{label}, closest to QM9's (ceiling)", refined,
                np.array([p[np.argmin(r)] for p, r in zip(per, rmsds[relax])]))


def _gfn2_energy(symbols: tuple[str, ...], positions: np.ndarray) -> float:
    """GFN2-xTB's energy of one geometry in kcal/mol (a single point: the conformer is already at its minimum)."""
    from tblite.interface import Calculator

    numbers = np.array([Chem.Atom(s).GetAtomicNum() for s in symbols])
    calculator = Calculator(xtb.METHOD, numbers, np.asarray(positions) / xtb.BOHR)
    calculator.set("verbosity", 0)
    return float(calculator.singlepoint().get("energy")) * xtb.HARTREE_KCAL


if __name__ == "__main__":
    main()
