"""Molecule files in and out: XYZ, SDF/MOL and SMILES readers with per-record errors, SDF/XYZ writers.

RDKit lives behind this package (and metrics/); the app and the CLI see only Molecule and Record.
"""
from unigem_core.io.readers import FILE_EXTENSIONS, FLAT_WARNING, FORMATS, parse_text, read_molecules, read_smiles
from unigem_core.io.writers import (
    molecule_to_rdkit,
    to_sdf,
    to_xyz,
    trajectory_to_xyz,
    write_molecules,
    write_sdf,
    write_xyz,
)

__all__ = [
    "FILE_EXTENSIONS",
    "FLAT_WARNING",
    "FORMATS",
    "molecule_to_rdkit",
    "parse_text",
    "read_molecules",
    "read_smiles",
    "to_sdf",
    "to_xyz",
    "trajectory_to_xyz",
    "write_molecules",
    "write_sdf",
    "write_xyz",
]
