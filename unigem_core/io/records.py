"""One input record at a time: whatever goes wrong with a record becomes its own one-line error.

Every reader (xyz.py, sdf.py, smiles.py) builds each record through `record`, so a bad record never
costs the others their answer, and RDKit's assorted C++ errors reach the user as one readable line.
"""
from __future__ import annotations

import re
from collections.abc import Callable

from rdkit import Chem, rdBase

from unigem_core.io.domain import checked_molecule
from unigem_core.molecule import Molecule, MoleculeInputError, Record


def file_error(message: str, source: str | None) -> Record:
    """A problem with the whole input (unreadable, empty, binary): the one Record a caller gets back."""
    return Record(index=1, name=source or "input", error=message, source=source or "")


def record(index: int, name: str, source: str, make_mol: Callable[[], tuple[Chem.Mol, list[str]]]) -> Record:
    """One record; whatever goes wrong becomes this record's error and leaves the others alone."""
    try:
        molecule, warnings = build(make_mol)
    except MoleculeInputError as exc:
        return Record(index, name, error=f"record {index}: {exc}", source=source)
    molecule.name = name
    return Record(index, name, molecule, warnings=tuple(warnings), source=source)


def build(make_mol: Callable[[], tuple[Chem.Mol, list[str]]]) -> tuple[Molecule, list[str]]:
    """The checked Molecule and warnings of make_mol(); any failure as a MoleculeInputError of one line."""
    try:
        mol, warnings = make_mol()
        return checked_molecule(mol), warnings
    except MoleculeInputError:
        raise
    except Exception as exc:  # RDKit raises assorted C++ errors on hostile input; make them one readable line
        raise MoleculeInputError(f"could not parse ({first_line(str(exc))})") from None


def rdkit_reason(log: rdBase.CaptureErrorLog) -> str:
    """The first informative line of RDKit's captured error log."""
    try:
        messages = log.messages
    except UnicodeDecodeError:  # RDKit may echo a line cut inside a multi-byte character
        return "RDKit's message is not readable text"
    for line in messages.splitlines():
        line = re.sub(r"^\[[\d:]+\]\s*", "", line).strip()
        for prefix in ("ERROR: ", "SMILES Parse Error: "):
            line = line.removeprefix(prefix)
        if line and not line.startswith("****") and not line.endswith("Violation"):
            return line
    return "RDKit gave no reason"


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no reason given")[:200]
