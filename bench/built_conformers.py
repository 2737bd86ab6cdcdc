"""How a SMILES's conformers should become one prediction (bench/NOTES.md, "Conformers of built geometries").

QM9 molecules are rebuilt from their SMILES as the Predict page builds a typed SMILES (RDKit ETKDG + MMFF, up to
`--conformers` conformers, near-duplicates pruned); the table gives the MAE of a few targets against QM9's values
for ways of turning the conformers into one answer, each without and with the model's refinement of the
geometries: one conformer (the single-conformer build), the conformer of lowest MMFF energy, the mean over all
conformers (what Predict reports), a Boltzmann-weighted mean at 298 K over their MMFF energies, and, as a ceiling
no user has, the conformer closest to QM9's own geometry (heavy-atom RMSD). The split defaults to validation, so
the choice is made without looking at the test split.

    python bench/built_conformers.py --split valid --n 300
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import AllChem, rdDetermineBonds, rdMolAlign

from unigem_core import api
from unigem_core.constants import CONFORMERS, PROPERTIES
from unigem_core.data.qm9 import load_split, symbols_of
from unigem_core.io import read_smiles, to_xyz
from unigem_core.molecule import Molecule, MoleculeInputError

SHOWN = ("mu", "alpha", "homo", "lumo", "gap", "r2", "U0", "Cv")
KT = 0.593  # kcal/mol at 298 K, MMFF's energy unit


def main() -> None:
    args, engine, data = setup(__doc__)
    keys = [p.key for p in PROPERTIES]
    kept, single, ensembles, energies, rmsds = [], [], [], [], []
    start = time.perf_counter()
    with rdBase.BlockLogs():
        for i in range(min(args.n, len(data))):
            smiles = str(data.smiles[i])
            try:
                built = read_smiles(smiles, conformers=args.conformers)
                one = read_smiles(smiles, conformers=1)
                reference = _heavy_atoms_of_dft(data, i)
            except (MoleculeInputError, ValueError, RuntimeError):
                continue  # RDKit refused the SMILES, or could not read bonds from the DFT geometry
            mol = Chem.AddHs(Chem.MolFromSmiles(smiles))  # read_smiles's atoms, in its order
            AllChem.EmbedMolecule(mol, randomSeed=1)
            if sorted(built.symbols) != sorted(symbols_of(data.types[i])) or not mol.GetNumConformers():
                continue
            field = AllChem.MMFFGetMoleculeForceField(mol, AllChem.MMFFGetMoleculeProperties(mol))
            heavy = Chem.RemoveHs(mol)
            try:
                rmsd = [_heavy_rmsd(heavy, mol, x, reference) for x in built.geometries]
            except RuntimeError:
                continue  # the DFT geometry reads as another graph than the SMILES (a few per cent of QM9)
            kept.append(i)
            single.append(one)
            ensembles.append(built)
            energies.append(np.array([field.CalcEnergy(x.ravel().tolist()) if field else 0.0
                                      for x in built.geometries]))
            rmsds.append(np.array(rmsd))
    counts = np.array([len(m.geometries) for m in ensembles])
    print(f"{args.split}: {len(kept)} of the first {args.n} molecules built ({time.perf_counter() - start:.0f} s); "
          f"conformers per molecule: mean {counts.mean():.1f} of at most {args.conformers}, "
          f"{np.mean(counts == 1):.0%} with one\n")
    row = mae_table(engine, data, kept)
    for refined in (False, True):
        row("one conformer", refined, np.array([[each[0][k] for k in keys] for each in api.predict_molecules(
            engine, single, refine_built=refined)]))
        per = [_values(each, keys) for each in api.predict_molecules(engine, ensembles, refine_built=refined)]
        row("lowest MMFF energy", refined, np.array([p[np.argmin(e)] for p, e in zip(per, energies)]))
        row("mean (Predict)", refined, np.array([p.mean(0) for p in per]))
        weights = [np.exp(-(e - e.min()) / KT) for e in energies]
        row("Boltzmann mean, 298 K", refined, np.array([w @ p / w.sum() for p, w in zip(per, weights)]))
        row("closest to QM9's (ceiling)", refined, np.array([p[np.argmin(r)] for p, r in zip(per, rmsds)]))
        spread = np.mean([p.max(0) - p.min(0) for p in per], axis=0)
        print("| (range over conformers, mean) | " + ("yes" if refined else "no") + " | "
              + " | ".join(f"{spread[keys.index(k)]:.3g}" for k in SHOWN) + " |")


def setup(doc: str) -> tuple[argparse.Namespace, api.Engine, object]:
    """The command line shared by the benches of built geometries, the model and the split's data."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--split", default="valid", choices=["valid", "test"])
    parser.add_argument("--n", type=int, default=300, help="the first N molecules of the split")
    parser.add_argument("--conformers", type=int, default=CONFORMERS)
    parser.add_argument("--checkpoint", default=None)
    args = parser.parse_args()
    return args, api.load_model(args.checkpoint, "cpu"), load_split(args.split)


def mae_table(engine: api.Engine, data, kept: list[int]) -> Callable[[str, bool, np.ndarray], None]:
    """Print the table's head and its first row, the molecules at QM9's DFT geometries; returns the function
    that prints a row: row(label, refined, predictions [molecules, 12] in reporting units)."""
    keys = [p.key for p in PROPERTIES]
    truth = data.targets[kept] * np.array([p.report_scale for p in PROPERTIES])
    print("| geometry | refined | " + " | ".join(SHOWN) + " |")
    print("|---" * (len(SHOWN) + 2) + "|")

    def row(label: str, refined: bool, predicted: np.ndarray) -> None:
        mae = dict(zip(keys, np.abs(predicted - truth).mean(0)))
        print(f"| {label} | {'yes' if refined else 'no'} | " + " | ".join(f"{mae[k]:.3g}" for k in SHOWN) + " |",
              flush=True)

    dft = [Molecule(symbols_of(data.types[i]), data.positions[i, :data.n_atoms[i]]) for i in kept]
    row("DFT (QM9's own)", False, _values(api.predict_properties(engine, dft), keys))
    return row


def _heavy_rmsd(heavy: Chem.Mol, mol: Chem.Mol, positions: np.ndarray, reference: Chem.Mol) -> float:
    conformer = heavy.GetConformer()
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() > 1:  # AddHs put the hydrogens last, so the heavy atoms keep their indices
            conformer.SetAtomPosition(atom.GetIdx(), positions[atom.GetIdx()].tolist())
    return rdMolAlign.GetBestRMS(heavy, reference)


def _heavy_atoms_of_dft(data, i: int) -> Chem.Mol:
    n = data.n_atoms[i]
    mol = Chem.MolFromXYZBlock(to_xyz([Molecule(symbols_of(data.types[i]), data.positions[i, :n])]))
    rdDetermineBonds.DetermineBonds(mol, charge=0)
    return Chem.RemoveHs(mol)


def _values(predictions: list[dict[str, float]], keys: list[str]) -> np.ndarray:
    return np.array([[p[k] for k in keys] for p in predictions])


if __name__ == "__main__":
    main()
