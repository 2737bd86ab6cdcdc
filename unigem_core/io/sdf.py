"""SDF and MOL files (V2000 and V3000): one RDKit parse per record, hydrogens and a 3D geometry completed."""
from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial

from rdkit import Chem, rdBase

from unigem_core.constants import PROPERTIES
from unigem_core.io.domain import RELAXED_WITH, Build3D, add_hydrogens, check_composition, embed_3d
from unigem_core.io.records import rdkit_reason, record
from unigem_core.molecule import MoleculeInputError, Record

FLAT_WARNING = "2D coordinates (all z = 0): the model needs a 3D geometry"


def read_sdf(text: str, source: str, how: Build3D = Build3D()) -> Iterator[Record]:
    """Records end at a ``$$$$`` line; each one is parsed by its own RDKit SDMolSupplier. A 2D drawing gets
    3D conformers built from its bonds (embed_3d).

    Splitting here keeps record numbers exact: a supplier over the whole file silently drops
    records too short to be MOL blocks, which would shift every later number.
    """
    chunks = re.split(r"^\$\$\$\$[ \t]*$\n?", text, flags=re.MULTILINE)
    if not chunks[-1].strip():
        chunks.pop()  # text after the last $$$$
    for k, chunk in enumerate(chunks, start=1):
        title = chunk.split("\n", 1)[0].strip()
        name = title or f"{source or 'pasted'}#{k}"
        supplier = Chem.SDMolSupplier()
        supplier.SetData(chunk, sanitize=False, removeHs=False)
        with rdBase.CaptureErrorLog() as log:
            mol = supplier[0] if len(supplier) else None
        if mol is None:
            reason = rdkit_reason(log) if chunk.strip() else "empty record"
            yield Record(k, name, error=f"record {k}: could not parse ({reason})", source=source)
            continue
        rec = record(k, name, source, partial(_complete_sdf_mol, mol, chunk, how))
        if rec.ok:
            rec.molecule.properties = _sd_properties(mol)
        yield rec


def _sd_properties(mol: Chem.Mol) -> dict[str, float] | None:
    """Values under SD tags named like `PropertySpec.column` ("homo [meV]"): the unit is in the name."""
    values = {}
    for spec in PROPERTIES:
        try:
            values[spec.key] = float(mol.GetProp(spec.column))
        except (KeyError, ValueError):
            continue
    return values or None


def _complete_sdf_mol(mol: Chem.Mol, block: str, how: Build3D) -> tuple[Chem.Mol, list[str]]:
    """Give the record what the model needs: every hydrogen explicit and a 3D geometry."""
    warnings = check_composition(mol)
    n_missing = sum(atom.GetNumImplicitHs() for atom in mol.GetAtoms())
    header = (block.split("\n") + ["", ""])[1]
    z = mol.GetConformer().GetPositions()[:, 2]
    if mol.GetNumAtoms() >= 3 and not z.any() and header[20:22] != "3D":
        try:
            mol, built = embed_3d(_sanitized(block), 0, how)
            warnings.append(f"{FLAT_WARNING}; built 3D conformers from the bonds "
                            f"(ETKDG + {mol.GetProp(RELAXED_WITH) if mol.HasProp(RELAXED_WITH) else 'no relaxation'})")
            return mol, warnings + built
        except MoleculeInputError as exc:
            warnings.append(f"{FLAT_WARNING}; kept the flat one ({exc})")
    if n_missing:
        mol = add_hydrogens(mol)
        warnings.append(f"added {n_missing} hydrogens missing from the file, placed from the heavy-atom geometry")
    return mol, warnings


def _sanitized(block: str) -> Chem.Mol:
    """Re-read the block with sanitising, which also reads stereo from wedges and 2D coordinates."""
    with rdBase.CaptureErrorLog() as log:
        mol = Chem.MolFromMolBlock(block, sanitize=True, removeHs=False)
    if mol is None:
        raise MoleculeInputError(f"RDKit cannot sanitise it: {rdkit_reason(log)}")
    return mol
