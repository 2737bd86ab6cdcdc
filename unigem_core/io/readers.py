"""Read molecules from XYZ, SDF/MOL (V2000 and V3000) and SMILES, one Record per input record.

Every format is turned into RDKit molecules, and each one passes the same checks of the model's
domain (domain.py). A refused record becomes ``Record(error="record 3: ...")`` with one readable
line; the other records still come back, in input order. A problem with the input as a whole
(unreadable file, empty, binary, unknown format) comes back as a single Record with index 1 and an
error without the "record k:" prefix, so callers handle one shape of result. Nothing here raises
except MoleculeInputError: from `read_smiles`, or for an unknown ``fmt`` argument.

Choices a chemist would expect (the app and the CLI rely on them):
- XYZ is taken as written: it has no bonds, so missing hydrogens cannot be detected there.
- An SDF/MOL record without its hydrogens gets them, placed from the heavy-atom geometry (warning).
- A SMILES, and an SDF/MOL record drawn in 2D (all z = 0, three or more atoms, header not "3D") with a
  warning, get 3D conformers built from their bonds (ETKDG + MMFF, seed 0, then GFN2-xTB unless `relax` is
  "mmff"; `conformers` of them, 20 by default, lowest energy first: Molecule.conformers); if that fails the
  flat drawing is kept, with the warning.
- Formal charges that cancel (a nitro group written N+/O-) are accepted; a net charge is refused.
  The model sees only elements and positions, and bond perception of generated molecules may
  itself write such charge-separated groups, so refusing every charged atom would refuse our own
  output.
- Radicals are accepted with a warning (the model cannot see spin).
- SD tags named like a property column ("homo [meV]") are read into `Molecule.properties`.
"""
from __future__ import annotations

import gzip
import io
import os
import re
import zlib
from functools import partial
from pathlib import Path
from collections.abc import Callable
from typing import BinaryIO

from rdkit import Chem, rdBase

from unigem_core.constants import CONFORMERS, RELAX
from unigem_core.io.domain import Build3D
from unigem_core.io.records import build, file_error
from unigem_core.io.sdf import FLAT_WARNING, read_sdf
from unigem_core.io.smiles import read_smiles_lines, smiles_to_mol
from unigem_core.io.xyz import COUNT_LINE, read_xyz
from unigem_core.molecule import Molecule, MoleculeInputError, Record

__all__ = ["FILE_EXTENSIONS", "FLAT_WARNING", "FORMATS", "parse_text", "read_molecules", "read_smiles"]

_FORMAT_NAMES = {"xyz": "xyz", "sdf": "sdf", "sd": "sdf", "mol": "sdf", "smi": "smiles", "smiles": "smiles"}
FORMATS = tuple(_FORMAT_NAMES)  # accepted values of `fmt` (a CLI's --format choices)
FILE_EXTENSIONS = (*FORMATS, "txt", "gz")  # for an upload widget's filter; .gz holds any of the others
MAX_DECOMPRESSED_BYTES = 256 * 2**20  # guards the app against gzip bombs
_CONTROL_BYTES = bytes(b for b in range(32) if chr(b) not in "\t\n\r\f\v")


def read_molecules(data: bytes | str | os.PathLike | BinaryIO, filename: str | None = None,
                   fmt: str | None = None, conformers: int = CONFORMERS, relax: str = RELAX,
                   on_record: Callable[[Record], None] | None = None) -> list[Record]:
    """Read every record of a file: `data` is a path (str or Path), the file's bytes, or a binary file object.

    A str is always a path, never content: pasted text goes to `parse_text`. `filename` (default:
    the path's or file object's name) gives the extension and the fallback names "<filename>#<k>".
    The format comes from `fmt`, else from the extension (.xyz; .sdf, .sd, .mol; .smi, .smiles),
    else from the content (also for .txt, which falls back to one SMILES per line). gzip data
    (e.g. ``.sdf.gz``) is decompressed; CRLF and CR line endings are accepted. A molecule given by its bonds
    alone gets `conformers` 3D conformers, relaxed as `relax` says (constants.RELAXATIONS). `on_record` is called
    with each record as soon as it is read (building a SMILES's conformers takes seconds: a progress display).
    """
    how = Build3D(conformers, relax)
    if isinstance(data, (str, os.PathLike)):
        filename = filename or Path(data).name
        try:
            data = Path(data).read_bytes()
        except OSError as exc:
            return [file_error(f"could not read the file: {exc.strerror or exc}", filename)]
    elif hasattr(data, "read"):  # an open binary file, or Streamlit's UploadedFile
        filename = filename or Path(getattr(data, "name", "") or "").name or None
        data = data.read()
        data = data.encode() if isinstance(data, str) else data
    fmt = _format_name(fmt)
    try:
        text = _decode(_decompress(bytes(data)))
    except MoleculeInputError as exc:
        return [file_error(str(exc), filename)]
    inner_name = re.sub(r"\.gz$", "", filename or "", flags=re.IGNORECASE)  # mols.sdf.gz holds an SDF
    suffix = Path(inner_name).suffix.lower().lstrip(".")
    return _parse(text, fmt or _FORMAT_NAMES.get(suffix), filename or "", suffix == "txt", how, on_record)


def parse_text(text: str, fmt: str | None = None, conformers: int = CONFORMERS, relax: str = RELAX,
               on_record: Callable[[Record], None] | None = None) -> list[Record]:
    """Read pasted text (XYZ, SDF/MOL block or SMILES lines); the format is sniffed unless `fmt` is given."""
    return _parse(text, _format_name(fmt), "", False, Build3D(conformers, relax), on_record)


def read_smiles(smiles: str, name: str = "", seed: int = 0, conformers: int = CONFORMERS,
                relax: str = RELAX) -> Molecule:
    """3D molecule with explicit H from a SMILES: up to `conformers` ETKDG conformers (fixed seed), each relaxed
    with MMFF (UFF fallback) and then, unless `relax` is "mmff", with GFN2-xTB; lowest energy first
    (Molecule.conformers; positions holds the first)."""
    with rdBase.BlockLogs():
        molecule, _ = build(partial(smiles_to_mol, smiles.strip(), seed, Build3D(conformers, relax)))
    molecule.name = name or smiles.strip()
    return molecule


# --- whole input ---------------------------------------------------------------------------------

def _parse(text: str, fmt: str | None, source: str, smiles_fallback: bool, how: Build3D,
           on_record: Callable[[Record], None] | None = None) -> list[Record]:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        return [file_error("no molecules found", source)]
    fmt = fmt or _sniff(text) or ("smiles" if smiles_fallback else None)
    if fmt is None:
        return [file_error("could not tell the format: expected XYZ, SDF/MOL or SMILES", source)]
    reader = {"xyz": read_xyz, "sdf": partial(read_sdf, how=how), "smiles": partial(read_smiles_lines, how=how)}[fmt]
    records = []
    with rdBase.BlockLogs():  # RDKit's own complaints become our one-line messages, not stderr noise
        for rec in reader(text, source):
            records.append(rec)
            if on_record is not None:
                on_record(rec)
    return records or [file_error("no molecules found", source)]


def _format_name(fmt: str | None) -> str | None:
    if fmt is None:
        return None
    name = _FORMAT_NAMES.get(fmt.lower().lstrip("."))
    if name is None:
        raise MoleculeInputError(f"unknown format {fmt!r}; expected one of {', '.join(sorted(_FORMAT_NAMES))}")
    return name


def _decompress(data: bytes) -> bytes:
    if data[:2] != b"\x1f\x8b":  # gzip's magic number, whatever the file is called
        return data
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            data = stream.read(MAX_DECOMPRESSED_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise MoleculeInputError(f"could not decompress the gzip data ({exc})") from None
    if len(data) > MAX_DECOMPRESSED_BYTES:
        raise MoleculeInputError(f"decompressed data exceed {MAX_DECOMPRESSED_BYTES // 2**20} MiB")
    return data


def _decode(data: bytes) -> str:
    # Text files hold no NUL and almost no control characters; random binary is ~10% control bytes.
    if b"\x00" in data or len(data) - len(data.translate(None, _CONTROL_BYTES)) > 0.05 * len(data):
        raise MoleculeInputError("binary data, not a text molecule file (expected XYZ, SDF/MOL or SMILES)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # old Windows tools write Latin-1 titles; every byte decodes


def _sniff(text: str) -> str | None:
    if re.search(r"^(M  END|\$\$\$\$)\s*$|V[23]000\s*$", text, re.MULTILINE):
        return "sdf"
    first = next(line for line in text.split("\n") if line.strip())
    if COUNT_LINE.match(first):
        return "xyz"
    token = first.split()[0]
    with rdBase.BlockLogs():
        if token.lower() == "smiles" or Chem.MolFromSmiles(token, sanitize=False) is not None:
            return "smiles"
    return None
