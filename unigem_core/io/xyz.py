"""XYZ files: concatenated blocks of a count line, a comment line and the atom lines (QM9's own files too)."""
from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial

import numpy as np
from rdkit import Chem

from unigem_core.io.records import record
from unigem_core.molecule import MoleculeInputError, Record

_KNOWN_SYMBOLS = {Chem.GetPeriodicTable().GetElementSymbol(z): z for z in range(1, 119)}
COUNT_LINE = re.compile(r"\s*(\d+)\s*$")  # an XYZ block starts with a line holding only the atom count


def read_xyz(text: str, source: str) -> Iterator[Record]:
    """Concatenated XYZ blocks: a count line, a comment line (the name), then the atom lines.

    RDKit's XYZ reader takes one block with exactly four columns, so blocks are split and their
    atom lines tidied here (atomic numbers or lower case for symbols, extra columns, QM9's
    Mathematica exponents ``1.2*^-6``) before `Chem.MolFromXYZBlock` builds each molecule.
    Lines after the atoms that are not atom lines (QM9's frequencies, SMILES and InChI) are skipped.
    """
    lines = text.split("\n")
    i, k = 0, 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        k += 1
        fallback = f"{source or 'pasted'}#{k}"
        count = COUNT_LINE.match(lines[i])
        if count is None:
            found, i = lines[i].strip(), i + 1
            while i < len(lines) and not COUNT_LINE.match(lines[i]):  # skip to the next block
                i += 1
            yield Record(k, fallback, error=f"record {k}: expected an atom count line, found {found[:40]!r}",
                         source=source)
            continue
        n_atoms, comment = int(count[1]), lines[i + 1] if i + 1 < len(lines) else ""
        end = i + 2
        while end < len(lines) and lines[end].strip() and not COUNT_LINE.match(lines[end]):
            end += 1
        body = lines[i + 2:end]
        if len(body) > n_atoms and not _looks_like_atom(body[n_atoms]):
            body = body[:n_atoms]  # a trailer, not one atom too many
        yield record(k, _xyz_name(comment) or fallback, source, partial(_xyz_block_to_mol, n_atoms, body))
        i = end


def _xyz_name(comment: str) -> str:
    qm9 = re.match(r"gdb\s+(\d+)\t", comment)  # QM9's own files: "gdb 17<TAB>rotational constants ..."
    if qm9:
        return f"gdb {qm9[1]}"
    return comment.split(" | ", 1)[0].strip()  # to_xyz writes "name | formula | properties"


def _looks_like_atom(line: str) -> bool:
    fields = line.split()
    return len(fields) >= 4 and (fields[0].isalpha() or fields[0].isdigit()) and len(fields[0]) <= 3


def _xyz_block_to_mol(n_atoms: int, atom_lines: list[str]) -> tuple[Chem.Mol, list[str]]:
    if n_atoms != len(atom_lines):
        raise MoleculeInputError(f"atom count line says {n_atoms} but {len(atom_lines)} atom lines follow")
    if n_atoms == 0:
        raise MoleculeInputError("has no atoms")
    rows = [_xyz_atom(a, line) for a, line in enumerate(atom_lines, start=1)]
    mol = Chem.MolFromXYZBlock(f"{n_atoms}\n\n" + "".join(f"{row}\n" for row in rows))
    if mol is None:
        raise MoleculeInputError("could not parse the atom lines")
    for atom in mol.GetAtoms():
        atom.SetNoImplicit(True)  # XYZ lists every atom: RDKit must not count hydrogens of its own
    return mol, []


def _xyz_atom(index: int, line: str) -> str:
    fields = line.split()
    if len(fields) < 4:
        raise MoleculeInputError(f"atom {index}: expected 'element x y z', found {line.strip()[:40]!r}")
    element = fields[0]
    if element.isdigit() and int(element) in _KNOWN_SYMBOLS.values():
        element = Chem.GetPeriodicTable().GetElementSymbol(int(element))
    element = element.capitalize()
    if element not in _KNOWN_SYMBOLS:
        raise MoleculeInputError(f"atom {index}: unknown element {fields[0][:10]!r}")
    try:
        xyz = [float(value.replace("*^", "e")) for value in fields[1:4]]
    except ValueError:
        raise MoleculeInputError(f"atom {index}: coordinates {' '.join(fields[1:4])[:40]!r} are not numbers") from None
    if not np.isfinite(xyz).all():
        raise MoleculeInputError(f"atom {index} has non-finite coordinates ({' '.join(fields[1:4])[:40]})")
    return f"{element} {xyz[0]!r} {xyz[1]!r} {xyz[2]!r}"
