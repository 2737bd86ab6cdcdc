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
- An SDF/MOL record drawn in 2D (all z = 0, three or more atoms, header not "3D") gets a 3D
  conformer built from its bonds, exactly as a SMILES does (ETKDG + MMFF, seed 0), with a warning;
  if that fails the flat geometry is kept, with the warning.
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
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import BinaryIO

import numpy as np
from rdkit import Chem, rdBase

from unigem_core.constants import PROPERTIES
from unigem_core.io.domain import add_hydrogens, check_composition, checked_molecule, embed_3d
from unigem_core.molecule import Molecule, MoleculeInputError, Record

_FORMAT_NAMES = {"xyz": "xyz", "sdf": "sdf", "sd": "sdf", "mol": "sdf", "smi": "smiles", "smiles": "smiles"}
FORMATS = tuple(_FORMAT_NAMES)  # accepted values of `fmt` (a CLI's --format choices)
FILE_EXTENSIONS = (*FORMATS, "txt", "gz")  # for an upload widget's filter; .gz holds any of the others
MAX_DECOMPRESSED_BYTES = 256 * 2**20  # guards the app against gzip bombs
_KNOWN_SYMBOLS = {Chem.GetPeriodicTable().GetElementSymbol(z): z for z in range(1, 119)}
_COUNT_LINE = re.compile(r"\s*(\d+)\s*$")  # an XYZ block starts with a line holding only the atom count
_CONTROL_BYTES = bytes(b for b in range(32) if chr(b) not in "\t\n\r\f\v")
FLAT_WARNING = "2D coordinates (all z = 0): the model needs a 3D geometry"


def read_molecules(data: bytes | str | os.PathLike | BinaryIO, filename: str | None = None,
                   fmt: str | None = None) -> list[Record]:
    """Read every record of a file: `data` is a path (str or Path), the file's bytes, or a binary file object.

    A str is always a path, never content: pasted text goes to `parse_text`. `filename` (default:
    the path's or file object's name) gives the extension and the fallback names "<filename>#<k>".
    The format comes from `fmt`, else from the extension (.xyz; .sdf, .sd, .mol; .smi, .smiles),
    else from the content (also for .txt, which falls back to one SMILES per line). gzip data
    (e.g. ``.sdf.gz``) is decompressed; CRLF and CR line endings are accepted.
    """
    if isinstance(data, (str, os.PathLike)):
        filename = filename or Path(data).name
        try:
            data = Path(data).read_bytes()
        except OSError as exc:
            return [_file_error(f"could not read the file: {exc.strerror or exc}", filename)]
    elif hasattr(data, "read"):  # an open binary file, or Streamlit's UploadedFile
        filename = filename or Path(getattr(data, "name", "") or "").name or None
        data = data.read()
        data = data.encode() if isinstance(data, str) else data
    fmt = _format_name(fmt)
    try:
        text = _decode(_decompress(bytes(data)))
    except MoleculeInputError as exc:
        return [_file_error(str(exc), filename)]
    inner_name = re.sub(r"\.gz$", "", filename or "", flags=re.IGNORECASE)  # mols.sdf.gz holds an SDF
    suffix = Path(inner_name).suffix.lower().lstrip(".")
    return _parse(text, fmt or _FORMAT_NAMES.get(suffix), filename or "", smiles_fallback=suffix == "txt")


def parse_text(text: str, fmt: str | None = None) -> list[Record]:
    """Read pasted text (XYZ, SDF/MOL block or SMILES lines); the format is sniffed unless `fmt` is given."""
    return _parse(text, _format_name(fmt), "", smiles_fallback=False)


def read_smiles(smiles: str, name: str = "", seed: int = 0) -> Molecule:
    """3D molecule with explicit H from a SMILES: ETKDG conformer (fixed seed), relaxed with MMFF (UFF fallback)."""
    with rdBase.BlockLogs():
        molecule, _ = _build(partial(_smiles_to_mol, smiles.strip(), seed))
    molecule.name = name or smiles.strip()
    return molecule


# --- whole input ---------------------------------------------------------------------------------

def _parse(text: str, fmt: str | None, source: str, smiles_fallback: bool) -> list[Record]:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        return [_file_error("no molecules found", source)]
    fmt = fmt or _sniff(text) or ("smiles" if smiles_fallback else None)
    if fmt is None:
        return [_file_error("could not tell the format: expected XYZ, SDF/MOL or SMILES", source)]
    reader = {"xyz": _read_xyz, "sdf": _read_sdf, "smiles": _read_smiles_lines}[fmt]
    with rdBase.BlockLogs():  # RDKit's own complaints become our one-line messages, not stderr noise
        records = list(reader(text, source))
    return records or [_file_error("no molecules found", source)]


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
    if _COUNT_LINE.match(first):
        return "xyz"
    token = first.split()[0]
    with rdBase.BlockLogs():
        if token.lower() == "smiles" or Chem.MolFromSmiles(token, sanitize=False) is not None:
            return "smiles"
    return None


def _file_error(message: str, source: str | None) -> Record:
    return Record(index=1, name=source or "input", error=message, source=source or "")


# --- one record ------------------------------------------------------------------------------------

def _record(index: int, name: str, source: str, make_mol: Callable[[], tuple[Chem.Mol, list[str]]]) -> Record:
    """One record; whatever goes wrong becomes this record's error and leaves the others alone."""
    try:
        molecule, warnings = _build(make_mol)
    except MoleculeInputError as exc:
        return Record(index, name, error=f"record {index}: {exc}", source=source)
    molecule.name = name
    return Record(index, name, molecule, warnings=tuple(warnings), source=source)


def _build(make_mol: Callable[[], tuple[Chem.Mol, list[str]]]) -> tuple[Molecule, list[str]]:
    try:
        mol, warnings = make_mol()
        return checked_molecule(mol), warnings
    except MoleculeInputError:
        raise
    except Exception as exc:  # RDKit raises assorted C++ errors on hostile input; make them one readable line
        raise MoleculeInputError(f"could not parse ({_first_line(str(exc))})") from None


def _rdkit_reason(log: rdBase.CaptureErrorLog) -> str:
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


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no reason given")[:200]


# --- XYZ ---------------------------------------------------------------------------------------------

def _read_xyz(text: str, source: str) -> Iterator[Record]:
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
        count = _COUNT_LINE.match(lines[i])
        if count is None:
            found, i = lines[i].strip(), i + 1
            while i < len(lines) and not _COUNT_LINE.match(lines[i]):  # skip to the next block
                i += 1
            yield Record(k, fallback, error=f"record {k}: expected an atom count line, found {found[:40]!r}",
                         source=source)
            continue
        n_atoms, comment = int(count[1]), lines[i + 1] if i + 1 < len(lines) else ""
        end = i + 2
        while end < len(lines) and lines[end].strip() and not _COUNT_LINE.match(lines[end]):
            end += 1
        body = lines[i + 2:end]
        if len(body) > n_atoms and not _looks_like_atom(body[n_atoms]):
            body = body[:n_atoms]  # a trailer, not one atom too many
        yield _record(k, _xyz_name(comment) or fallback, source, partial(_xyz_block_to_mol, n_atoms, body))
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


# --- SDF / MOL -----------------------------------------------------------------------------------

def _read_sdf(text: str, source: str) -> Iterator[Record]:
    """Records end at a ``$$$$`` line; each one is parsed by its own RDKit SDMolSupplier.

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
            reason = _rdkit_reason(log) if chunk.strip() else "empty record"
            yield Record(k, name, error=f"record {k}: could not parse ({reason})", source=source)
            continue
        record = _record(k, name, source, partial(_complete_sdf_mol, mol, chunk))
        if record.ok:
            record.molecule.properties = _sd_properties(mol)
        yield record


def _sd_properties(mol: Chem.Mol) -> dict[str, float] | None:
    """Values under SD tags named like `PropertySpec.column` ("homo [meV]"): the unit is in the name."""
    values = {}
    for spec in PROPERTIES:
        try:
            values[spec.key] = float(mol.GetProp(spec.column))
        except (KeyError, ValueError):
            continue
    return values or None


def _complete_sdf_mol(mol: Chem.Mol, block: str) -> tuple[Chem.Mol, list[str]]:
    """Give the record what the model needs: every hydrogen explicit and a 3D geometry."""
    warnings = check_composition(mol)
    n_missing = sum(atom.GetNumImplicitHs() for atom in mol.GetAtoms())
    header = (block.split("\n") + ["", ""])[1]
    z = mol.GetConformer().GetPositions()[:, 2]
    if mol.GetNumAtoms() >= 3 and not z.any() and header[20:22] != "3D":
        try:
            mol = embed_3d(_sanitized(block), seed=0)
            warnings.append(f"{FLAT_WARNING}; built a 3D conformer from the bonds (ETKDG + MMFF)")
            return mol, warnings
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
        raise MoleculeInputError(f"RDKit cannot sanitise it: {_rdkit_reason(log)}")
    return mol


# --- SMILES --------------------------------------------------------------------------------------

def _read_smiles_lines(text: str, source: str) -> Iterator[Record]:
    """One SMILES per line, optionally followed by a name; '#' lines and a 'smiles ...' header are skipped."""
    k = 0
    for line in text.split("\n"):
        fields = line.split(maxsplit=1)
        if not fields or fields[0].startswith("#") or (k == 0 and fields[0].lower() == "smiles"):
            continue
        k += 1
        smiles = fields[0]
        name = fields[1].strip() if len(fields) > 1 else smiles
        yield _record(k, name, source, partial(_smiles_to_mol, smiles, 0))


def _smiles_to_mol(smiles: str, seed: int) -> tuple[Chem.Mol, list[str]]:
    if not smiles:
        raise MoleculeInputError("empty SMILES")
    with rdBase.CaptureErrorLog() as log:
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise MoleculeInputError(f"could not parse SMILES {smiles[:60]!r} ({_rdkit_reason(log)})")
    warnings = check_composition(mol)
    return embed_3d(mol, seed), warnings
