"""Write molecules as SDF or XYZ, and a reverse-diffusion trajectory as a multi-frame XYZ (spec 6).

Writing never fails on chemistry: generated molecules can be odd, so bonds are perceived as far as
RDKit manages and no further. Coordinates round-trip through `readers.read_molecules` to 1e-4 A
(SDF V2000 keeps four decimals, XYZ six).
"""
from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import rdDetermineBonds

from unigem_core.constants import ELEMENTS, PROPERTIES
from unigem_core.molecule import Molecule, Trajectory

_SPECS = {spec.key: spec for spec in PROPERTIES}


def molecule_to_rdkit(molecule: Molecule) -> Chem.Mol:
    """RDKit molecule with bonds perceived from the coordinates; never raises for odd chemistry.

    Bond orders come from `rdDetermineBonds.DetermineBonds` with total charge 0; where no
    consistent assignment exists we fall back to connectivity (single bonds), then to no bonds.
    Every hydrogen is explicit, so atoms are marked NoImplicit: a reader must not invent hydrogens
    for an unusual valence. Name, formula and properties (SD tag per `PropertySpec.column`) are set
    as molecule properties.
    """
    bare = _atoms_only(molecule)
    mol = bare
    with rdBase.BlockLogs():
        for perceive in (_bond_orders, rdDetermineBonds.DetermineConnectivity):
            candidate = Chem.Mol(bare)  # a failed attempt may leave half-assigned bonds behind
            try:
                perceive(candidate)
            except Exception:  # RDKit raises several C++ error types for impossible valences
                continue
            mol = candidate
            break
        try:
            Chem.Kekulize(mol, clearAromaticFlags=True)  # bond types 1/2/3 are what every viewer reads
        except Exception:
            pass  # leave aromatic flags; RDKit still writes them (bond type 4)
        mol.UpdatePropertyCache(strict=False)
    mol.SetProp("_Name", _one_line(molecule.name))
    mol.SetProp("formula", molecule.formula)
    for key, value in (molecule.properties or {}).items():
        column = _SPECS[key].column if key in _SPECS else key
        mol.SetProp(column, f"{float(value):.10g}")
    return mol


def to_sdf(molecules: Sequence[Molecule]) -> str:
    """SDF text: title = name, SD tags "formula" and one per property, e.g. ``homo [meV]``."""
    buffer = io.StringIO()
    writer = Chem.SDWriter(buffer)
    writer.SetKekulize(False)  # molecule_to_rdkit kekulised where it could; never fail here
    for molecule in molecules:
        writer.write(molecule_to_rdkit(molecule))
    writer.close()
    return buffer.getvalue()


def to_xyz(molecules: Sequence[Molecule]) -> str:
    """Multi-molecule XYZ; the comment line reads ``name | formula | mu=1.61 D, homo=-266.4 meV``."""
    return "".join(_xyz_block(m.symbols, m.positions, _comment(m)) for m in molecules)


def trajectory_to_xyz(trajectory: Trajectory, final_symbols: Sequence[str]) -> str:
    """One XYZ frame per snapshot, playable as an animation in Avogadro, VMD, 3Dmol.js or ASE.

    Nucleation frames (t > t_n) have no atom types yet, but viewers need real elements in every
    frame, so they show the final molecule's symbols; growth frames show the type head's guess
    where the frame carries one. The comment line says which: ``t=… sigma_t=… phase=… elements=final``
    or ``elements=type head``.
    """
    blocks = []
    for frame in trajectory.frames:
        if frame.type_guess is not None:
            symbols, origin = [ELEMENTS[int(i)] for i in frame.type_guess], "type head"
        else:
            symbols, origin = list(final_symbols), "final"
        comment = (f"t={frame.t} sigma_t={frame.sigma_t:.4g} phase={frame.phase} "
                   f"t_n={trajectory.t_n} elements={origin}")
        blocks.append(_xyz_block(symbols, frame.positions, comment))
    return "".join(blocks)


def write_sdf(molecules: Sequence[Molecule], path: str | os.PathLike) -> None:
    Path(path).write_text(to_sdf(molecules))


def write_xyz(molecules: Sequence[Molecule], path: str | os.PathLike) -> None:
    Path(path).write_text(to_xyz(molecules))


def write_molecules(molecules: Sequence[Molecule], path: str | os.PathLike) -> None:
    """SDF or XYZ by the file's extension (.sdf, .sd, .mol, .xyz)."""
    suffix = Path(path).suffix.lower()
    if suffix in (".sdf", ".sd", ".mol"):
        write_sdf(molecules, path)
    elif suffix == ".xyz":
        write_xyz(molecules, path)
    else:
        raise ValueError(f"cannot write {suffix or 'files without an extension'}; use .sdf or .xyz")


def _atoms_only(molecule: Molecule) -> Chem.Mol:
    mol = Chem.RWMol()
    for symbol in molecule.symbols:
        atom = Chem.Atom(symbol)
        atom.SetNoImplicit(True)
        mol.AddAtom(atom)
    conformer = Chem.Conformer(molecule.n_atoms)
    for i, xyz in enumerate(molecule.positions):
        conformer.SetAtomPosition(i, xyz.tolist())
    conformer.Set3D(True)
    mol.AddConformer(conformer, assignId=True)
    return mol.GetMol()


def _bond_orders(mol: Chem.Mol) -> None:
    rdDetermineBonds.DetermineBonds(mol, charge=0)


def _comment(molecule: Molecule) -> str:
    values = ", ".join(
        f"{key}={value:.6g} {_SPECS[key].report_unit}" if key in _SPECS else f"{key}={value:.6g}"
        for key, value in (molecule.properties or {}).items()
    )
    return " | ".join(part for part in (_one_line(molecule.name), molecule.formula, values) if part)


def _xyz_block(symbols: Sequence[str], positions: np.ndarray, comment: str) -> str:
    if len(symbols) != len(positions):
        raise ValueError(f"{len(symbols)} symbols but {len(positions)} positions")
    rows = "".join(f"{s:<2} {x:13.6f} {y:13.6f} {z:13.6f}\n" for s, (x, y, z) in zip(symbols, np.asarray(positions)))
    return f"{len(symbols)}\n{comment}\n{rows}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
