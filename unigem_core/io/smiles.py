"""SMILES: one per line (optionally with a name), each built in 3D (ETKDG + MMFF + GFN2-xTB) with explicit hydrogens."""
from __future__ import annotations

from collections.abc import Iterator
from functools import partial

from rdkit import Chem, rdBase

from unigem_core.io.domain import Build3D, check_composition, embed_3d
from unigem_core.io.records import rdkit_reason, record
from unigem_core.molecule import MoleculeInputError, Record


def read_smiles_lines(text: str, source: str, how: Build3D = Build3D()) -> Iterator[Record]:
    """One SMILES per line, optionally followed by a name; '#' lines and a 'smiles ...' header are skipped.
    Each gets its 3D conformers (embed_3d)."""
    k = 0
    for line in text.split("\n"):
        fields = line.split(maxsplit=1)
        if not fields or fields[0].startswith("#") or (k == 0 and fields[0].lower() == "smiles"):
            continue
        k += 1
        smiles = fields[0]
        name = fields[1].strip() if len(fields) > 1 else smiles
        yield record(k, name, source, partial(smiles_to_mol, smiles, 0, how))


def smiles_to_mol(smiles: str, seed: int, how: Build3D = Build3D()) -> tuple[Chem.Mol, list[str]]:
    if not smiles:
        raise MoleculeInputError("empty SMILES")
    with rdBase.CaptureErrorLog() as log:
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise MoleculeInputError(f"could not parse SMILES {smiles[:60]!r} ({rdkit_reason(log)})")
    warnings = check_composition(mol)
    mol, built = embed_3d(mol, seed, how)
    return mol, warnings + built
