"""Readers and writers of unigem_core.io: the input corpus, round trips, SMILES -> 3D, fuzzing.

The corpus in fixtures/inputs/ is described file by file in its README.md; each case below pins
the exact outcome: which records come back, their numbers and names, and the one-line errors.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rdkit import Chem
from rdkit.Chem import AllChem

from unigem_core.constants import CONFORMERS
from unigem_core.io import (
    FLAT_WARNING,
    molecule_to_rdkit,
    parse_text,
    read_molecules,
    read_smiles,
    to_sdf,
    to_xyz,
    trajectory_to_xyz,
    write_molecules,
)
from unigem_core.io import xtb
from unigem_core.molecule import Frame, Molecule, MoleculeInputError, Record, Trajectory

INPUTS = Path(__file__).parent / "fixtures" / "inputs"
OK = None  # expected error of a good record

# file -> [(record number, name, error or OK, warnings)]
CORPUS = {
    "good_multi.xyz": [(1, "water", OK, ()), (2, "good_multi.xyz#2", OK, ()), (3, "ethanol", OK, ())],
    "good_v2000.sdf": [(1, "acetone", OK, ()), (2, "formamide", OK, ()), (3, "benzene", OK, ())],
    "good.sdf.gz": [(1, "acetone", OK, ()), (2, "formamide", OK, ()), (3, "benzene", OK, ())],
    "v3000.sdf": [(1, "hydrogen cyanide", OK, ()), (2, "difluoroethanol", OK, ())],
    "single.mol": [(1, "acetonitrile", OK, ())],
    "crlf.sdf": [(1, "formamide", OK, ()), (2, "water", OK, ())],
    "broken_middle.sdf": [
        (1, "acetone", OK, ()),
        (2, "broken record", "record 2: could not parse (Atom line too short: '    0.0000    0.0000' on line 5)", ()),
        (3, "formamide", OK, ()),
    ],
    "wrong_count.xyz": [
        (1, "first water", OK, ()),
        (2, "four atom lines", "record 2: atom count line says 5 but 4 atom lines follow", ()),
        (3, "last water", OK, ()),
    ],
    "nan_coords.xyz": [
        (1, "water with nan", "record 1: atom 2 has non-finite coordinates (0.7700 nan -0.2000)", ()),
        (2, "methane", OK, ()),
        (3, "water with inf", "record 3: atom 3 has non-finite coordinates (-0.7700 0.1000 inf)", ()),
    ],
    "duplicate_atoms.xyz": [
        (1, "methane with a duplicated hydrogen", "record 1: atoms 4 and 5 overlap (0.000 A apart)", ()),
    ],
    "sulfur_chlorine.sdf": [
        (1, "formamide", OK, ()),
        (2, "2-chloroethanethiol", "record 2: contains S, Cl; the model knows only H, C, N, O, F", ()),
    ],
    "metal.xyz": [
        (1, "iron pentacarbonyl", "record 1: contains Fe; the model knows only H, C, N, O, F", ()),
        (2, "water", OK, ()),
    ],
    "charged.sdf": [
        (1, "methylammonium", "record 1: has net charge +1; the model knows only neutral molecules (QM9)", ()),
        (2, "nitromethane", OK, ()),  # N+ and O- cancel: a neutral molecule
    ],
    "qm9_raw.xyz": [(1, "gdb 1", OK, ())],  # QM9's own file: tabs, charges column, *^ exponent, trailer lines
    "too_many_atoms.xyz": [(1, "undecane", "record 1: has 35 atoms; the model handles at most 29", ())],
    "flat_2d.sdf": [
        (1, "L-lactic acid 2D", OK,
         (f"{FLAT_WARNING}; built 3D conformers from the bonds (ETKDG + MMFF94 + GFN2-xTB)",)),
    ],
    "implicit_h.sdf": [
        (1, "acetamide heavy atoms", OK,
         ("added 5 hydrogens missing from the file, placed from the heavy-atom geometry",)),
    ],
    "molecules.smi": [
        (1, "ethanol", OK, ()),
        (2, "C1CC", "record 2: could not parse SMILES 'C1CC' (unclosed ring for input: 'C1CC')", ()),
        (3, "benzene", OK, ()),
        (4, "ammonium", "record 4: has net charge +1; the model knows only neutral molecules (QM9)", ()),
        (5, "O=C=O", OK, ()),
    ],
    "empty.xyz": [(1, "empty.xyz", "no molecules found", ())],
    "garbage.bin": [(1, "garbage.bin", "binary data, not a text molecule file (expected XYZ, SDF/MOL or SMILES)", ())],
}


def outcome(records: list[Record]) -> list[tuple]:
    return [(r.index, r.name, r.error, r.warnings) for r in records]


def test_corpus_is_complete():
    on_disk = {p.name for p in INPUTS.iterdir() if p.name != "README.md"}
    assert on_disk == set(CORPUS)


@pytest.mark.parametrize("filename", sorted(CORPUS))
def test_corpus_outcome(filename):
    records = read_molecules(INPUTS / filename)
    assert outcome(records) == CORPUS[filename]
    for record in records:
        assert record.ok == (record.error is None)
        assert record.source == filename
        if record.ok:
            assert record.molecule.name == record.name
            assert set(record.molecule.symbols) <= {"H", "C", "N", "O", "F"}
        else:
            assert "\n" not in record.error


@pytest.mark.parametrize("filename", sorted(CORPUS))
def test_bytes_with_filename_read_like_the_path(filename):
    path = INPUTS / filename
    by_path, by_bytes = read_molecules(path), read_molecules(path.read_bytes(), filename=filename)
    assert outcome(by_bytes) == outcome(by_path)
    with path.open("rb") as stream:  # an open file, as Streamlit's UploadedFile
        assert outcome(read_molecules(stream)) == outcome(by_path)


def test_xyz_values_and_planar_molecule_without_warning():
    water, methane, ethanol = [r.molecule for r in read_molecules(INPUTS / "good_multi.xyz")]
    assert water.symbols == ("O", "H", "H")
    np.testing.assert_array_equal(water.positions[1], [-0.7670, -0.1849, 0.0])  # all z = 0 is fine in XYZ
    assert methane.formula == "CH4" and ethanol.formula == "C2H6O" and ethanol.n_atoms == 9


def test_qm9_raw_xyz():
    methane = read_molecules(INPUTS / "qm9_raw.xyz")[0].molecule
    assert methane.formula == "CH4"
    np.testing.assert_allclose(methane.positions[1], [2.150416e-3, -0.0060313176, 0.0019761204])


def test_gzip_and_crlf_read_like_plain_text():
    plain = read_molecules(INPUTS / "good_v2000.sdf")
    for other in (read_molecules(INPUTS / "good.sdf.gz"),
                  read_molecules((INPUTS / "good_v2000.sdf").read_bytes().replace(b"\n", b"\r\n"), "x.sdf")):
        for a, b in zip(plain, other, strict=True):
            assert a.molecule.symbols == b.molecule.symbols
            np.testing.assert_array_equal(a.molecule.positions, b.molecule.positions)
    crlf_xyz = (INPUTS / "good_multi.xyz").read_bytes().replace(b"\n", b"\r\n")
    assert outcome(read_molecules(crlf_xyz, "m.xyz"))[0] == (1, "water", None, ())


def test_truncated_gzip_is_one_error_record():
    data = (INPUTS / "good.sdf.gz").read_bytes()[:60]
    [record] = read_molecules(data, "cut.sdf.gz")
    assert record.error.startswith("could not decompress the gzip data (")


def test_sd_tags_named_by_column_become_properties():
    acetone = read_molecules(INPUTS / "good_v2000.sdf")[0].molecule
    assert acetone.properties == {"homo": -6543.2, "gap": 7000.5}


def test_flat_sdf_gets_a_3d_conformer_keeping_its_wedged_stereocentre():
    molecule = read_molecules(INPUTS / "flat_2d.sdf")[0].molecule
    assert molecule.formula == "C3H6O3" and molecule.n_atoms == 12
    centred = molecule.positions - molecule.positions.mean(axis=0)
    assert np.linalg.svd(centred, compute_uv=False)[-1] > 0.5  # genuinely three-dimensional
    mol = molecule_to_rdkit(molecule)
    Chem.AssignStereochemistryFrom3D(mol)
    assert mol.GetAtomWithIdx(1).GetProp("_CIPCode") == "S"  # L-lactic acid, as drawn


def test_sdf_without_hydrogens_gets_them_at_bond_distances():
    molecule = read_molecules(INPUTS / "implicit_h.sdf")[0].molecule
    assert molecule.formula == "C2H5NO"
    distances = np.linalg.norm(molecule.positions[:, None] - molecule.positions[None], axis=-1)
    heavy = [i for i, s in enumerate(molecule.symbols) if s != "H"]
    for h in (i for i, s in enumerate(molecule.symbols) if s == "H"):
        assert 0.95 < distances[h, heavy].min() < 1.15  # C-H 1.09, N-H 1.01


@pytest.mark.parametrize("filename", [None, "mystery.dat", "notes.txt"])
def test_format_is_sniffed_when_the_extension_does_not_say(filename):
    for source in ("good_multi.xyz", "good_v2000.sdf", "molecules.smi"):
        expected = [(r.index, r.error) for r in read_molecules(INPUTS / source)]
        got = read_molecules((INPUTS / source).read_bytes(), filename=filename)
        assert [(r.index, r.error) for r in got] == expected


def test_file_level_problems_are_one_error_record():
    [missing] = read_molecules(INPUTS / "absent.sdf")
    assert (missing.index, missing.name, missing.error) == (1, "absent.sdf", "could not read the file: No such file or directory")
    [unknown] = read_molecules(b"HEADER    PROTEIN\nATOM      1  N   MET A   1\n", "1abc.pdb")
    assert unknown.error == "could not tell the format: expected XYZ, SDF/MOL or SMILES"
    with pytest.raises(MoleculeInputError, match="unknown format 'pdb'"):
        read_molecules(b"", fmt="pdb")


def test_parse_text():
    [ethanol] = parse_text("CCO")
    assert (ethanol.name, ethanol.molecule.formula) == ("CCO", "C2H6O")
    [water] = parse_text("3\n\nO 0 0 0\nH 0.96 0 0\nh -0.24 0.93 0\n")  # lower case symbols are fine
    assert (water.name, water.molecule.symbols) == ("pasted#1", ("O", "H", "H"))
    [carbon] = parse_text("1\ncarbon\n6 0.0 0.0 0.0 extra columns\n")  # atomic numbers and extra columns too
    assert carbon.molecule.symbols == ("C",)
    assert parse_text("  \n\n")[0].error == "no molecules found"
    assert parse_text("CCO", fmt="xyz")[0].error == "record 1: expected an atom count line, found 'CCO'"
    assert parse_text("[CH3] methyl")[0].warnings == ("has unpaired electrons (radical); QM9 holds only closed-shell molecules",)


def test_read_smiles_builds_a_sensible_reproducible_ethanol():
    ethanol = read_smiles("CCO", name="ethanol")
    assert (ethanol.name, ethanol.n_atoms, ethanol.formula) == ("ethanol", 9, "C2H6O")
    assert ethanol.symbols[:3] == ("C", "C", "O")
    d = lambda i, j: np.linalg.norm(ethanol.positions[i] - ethanol.positions[j])  # noqa: E731
    assert d(0, 1) == pytest.approx(1.51, abs=0.03) and d(1, 2) == pytest.approx(1.42, abs=0.03)
    np.testing.assert_array_equal(read_smiles("CCO").positions, ethanol.positions)  # fixed seed


def test_a_flexible_smiles_is_built_as_its_conformers_lowest_energy_first():
    """mu and r2 hang on the conformer, so a SMILES gets several (api.predict_molecules averages over them)."""
    glycerol = read_smiles("OCC(O)CO", relax="mmff")
    assert 2 <= len(glycerol.conformers) <= CONFORMERS and glycerol.relaxation == "MMFF94"
    np.testing.assert_array_equal(glycerol.positions, glycerol.conformers[0])
    assert not np.allclose(glycerol.conformers[0], glycerol.conformers[1])  # RDKit's seed 0 made them all alike
    rdkit_mol = Chem.AddHs(Chem.MolFromSmiles("OCC(O)CO"))  # the atoms in read_smiles's order
    AllChem.EmbedMolecule(rdkit_mol, randomSeed=1)  # a force field needs a conformer; CalcEnergy takes others
    field = AllChem.MMFFGetMoleculeForceField(rdkit_mol, AllChem.MMFFGetMoleculeProperties(rdkit_mol))
    energies = [field.CalcEnergy(x.ravel().tolist()) for x in glycerol.conformers]
    assert energies == sorted(energies)
    np.testing.assert_array_equal(read_smiles("OCC(O)CO", relax="mmff").conformers, glycerol.conformers)  # fixed seed
    one = read_smiles("OCC(O)CO", conformers=1)
    assert one.conformers is None and len(one.geometries) == 1
    assert read_smiles("CCO").conformers is None  # every embedding of ethanol is one heavy-atom conformer
    assert len(parse_text("OCC(O)CO", "smiles", conformers=3)[0].molecule.geometries) <= 3
    with pytest.raises(ValueError, match="at least 1"):
        parse_text("CCO", conformers=0)
    with pytest.raises(ValueError, match="unknown relaxation 'dft'; choose from xtb, mmff"):
        read_smiles("CCO", relax="dft")


def test_on_record_sees_each_record_as_it_is_read():
    """A progress display: the callback gets every record, refused ones too, in input order, before the list."""
    seen = []
    records = parse_text("CCO ethanol\nC1CC broken\nO water", "smiles", conformers=1, relax="mmff",
                         on_record=seen.append)
    assert [r.name for r in seen] == ["ethanol", "broken", "water"] and seen == records
    seen.clear()
    assert read_molecules(INPUTS / "good_multi.xyz", on_record=seen.append) == seen and len(seen) == 3


def _gfn2(symbols, positions) -> tuple[float, float]:
    """GFN2-xTB's energy (hartree) and largest gradient component (hartree/bohr) at `positions` (Angstrom)."""
    from tblite.interface import Calculator

    numbers = np.array([Chem.Atom(s).GetAtomicNum() for s in symbols])
    calculator = Calculator("GFN2-xTB", numbers, np.asarray(positions) / xtb.BOHR)
    calculator.set("verbosity", 0)
    result = calculator.singlepoint()
    return float(result.get("energy")), float(np.abs(result.get("gradient")).max())


def test_built_conformers_are_relaxed_with_gfn2_xtb_lowest_energy_first():
    """GFN2-xTB moves the force field's conformers to its own minima, closer to DFT geometries (io/xtb.py)."""
    glycerol = read_smiles("OCC(O)CO")
    force_field = read_smiles("OCC(O)CO", relax="mmff")
    assert glycerol.relaxation == "MMFF94 + GFN2-xTB" and force_field.relaxation == "MMFF94"
    assert len(glycerol.conformers) == len(force_field.conformers)  # none dropped: same bonds, SCF converged
    relaxed = [_gfn2(glycerol.symbols, x) for x in glycerol.conformers]
    assert max(g for _, g in relaxed) <= 2 * xtb.GRADIENT_TOLERANCE  # each at a GFN2 minimum
    assert max(_gfn2(force_field.symbols, x)[1] for x in force_field.conformers) > 5 * xtb.GRADIENT_TOLERANCE
    energies = [e for e, _ in relaxed]
    assert energies == sorted(energies)
    np.testing.assert_array_equal(read_smiles("OCC(O)CO").conformers, glycerol.conformers)  # reproducible


def test_a_failed_relaxation_keeps_the_force_field_geometry_with_a_warning(monkeypatch):
    """One conformer's SCF failure drops that conformer; if none survives, the MMFF geometries stay."""
    def fail(numbers, positions, unpaired=0):
        raise xtb.RelaxationError("GFN2-xTB failed (SCF not converged)")

    monkeypatch.setattr(xtb, "relax", fail)
    rec = parse_text("OCC(O)CO glycerol", "smiles")[0]
    assert rec.ok and rec.molecule.relaxation == "MMFF94"
    assert rec.warnings == ("GFN2-xTB failed (SCF not converged); kept the MMFF94 geometry",)
    calls = []

    def moved(numbers, positions, unpaired=0):  # the second conformer's relaxation breaks a bond
        calls.append(1)
        positions = np.array(positions)
        if len(calls) == 2:
            positions[0] += 3.0
        return positions, -float(len(calls))

    monkeypatch.setattr(xtb, "relax", moved)
    rec = parse_text("OCC(O)CO glycerol", "smiles")[0]
    n = len(calls)
    assert rec.ok and len(rec.molecule.geometries) == n - 1 and rec.molecule.relaxation == "MMFF94 + GFN2-xTB"
    assert rec.warnings == (f"GFN2-xTB changed the bonds (1 of {n} conformers, left out)",)


def test_the_bond_check_reads_the_molecules_own_bonds_not_distances_alone():
    """Across bicyclo[1.1.1]pentane the bridgeheads sit within 1.3 times the covalent radii (rdDetermineBonds would
    bond them) but are not bonded: the check keeps such a cage, and still sees a broken or a new bond."""
    from rdkit.Chem import rdDetermineBonds

    from unigem_core.io.domain import _keeps_bonds

    mol = Chem.AddHs(Chem.MolFromSmiles("C1C2CC1C2"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    AllChem.MMFFOptimizeMolecule(mol)
    positions = mol.GetConformer().GetPositions()
    heads = [a.GetIdx() for a in mol.GetAtoms() if a.GetSymbol() == "C" and a.GetTotalNumHs(includeNeighbors=True) == 1]
    assert len(heads) == 2 and np.linalg.norm(positions[heads[0]] - positions[heads[1]]) < 1.3 * 2 * 0.76
    perceived = Chem.Mol(mol)
    rdDetermineBonds.DetermineConnectivity(perceived)
    assert perceived.GetNumBonds() == mol.GetNumBonds() + 1  # distances alone read a bridgehead bond
    assert _keeps_bonds(mol, positions)
    hydrogen = mol.GetAtomWithIdx(heads[0]).GetNeighbors()[-1].GetIdx()
    assert mol.GetAtomWithIdx(hydrogen).GetSymbol() == "H"
    broken = positions.copy()
    broken[hydrogen] += 2.0 * (positions[hydrogen] - positions[heads[0]])  # C-H to about 3.3 A
    assert not _keeps_bonds(mol, broken)
    crowded = positions.copy()
    crowded[heads[1]] = positions[heads[0]] + 1.5 / np.linalg.norm(positions[heads[1]] - positions[heads[0]]) \
        * (positions[heads[1]] - positions[heads[0]])  # the bridgeheads 1.5 A apart: a new bond
    assert not _keeps_bonds(mol, crowded)


def test_built_geometries_are_marked_and_a_strained_cage_still_embeds():
    """Coordinates RDKit built (a SMILES, a 2D drawing) are marked, so the Predict page can say what they cost."""
    assert read_smiles("CCO").built_3d and read_molecules(INPUTS / "flat_2d.sdf")[0].molecule.built_3d
    assert not read_molecules(INPUTS / "good_v2000.sdf")[0].molecule.built_3d
    assert not read_molecules(INPUTS / "good_multi.xyz")[0].molecule.built_3d
    cage = read_smiles("CC12CCC1C1CC2O1")  # a QM9 test molecule ETKDG embeds only with more iterations
    assert cage.formula == "C8H12O" and cage.built_3d


@pytest.mark.parametrize("smiles, message", [
    ("C1CC", "could not parse SMILES 'C1CC' (unclosed ring for input: 'C1CC')"),
    ("", "empty SMILES"),
    ("CCS", "contains S; the model knows only H, C, N, O, F"),
    ("[Na+].[Cl-]", "contains Na, Cl; the model knows only H, C, N, O, F"),
    ("CC(=O)[O-]", "has net charge -1; the model knows only neutral molecules (QM9)"),
    ("CCCCCCCCCCC", "has 35 atoms; the model handles at most 29"),
])
def test_read_smiles_refuses_with_one_line(smiles, message):
    with pytest.raises(MoleculeInputError) as caught:
        read_smiles(smiles)
    assert str(caught.value) == message


# --- writers -------------------------------------------------------------------------------------

def sample_molecules() -> list[Molecule]:
    molecules = [r.molecule for r in read_molecules(INPUTS / "good_multi.xyz")]
    molecules.append(read_smiles("c1ccccc1O", name="phenol"))
    molecules[0].properties = {"homo": -7123.4, "mu": 1.85}
    rng = np.random.default_rng(0)  # a chemically odd "generated" molecule: bonds cannot be assigned
    molecules.append(Molecule(("C", "C", "N", "O", "F"), rng.uniform(-1.6, 1.6, (5, 3)), name="odd"))
    return molecules


@pytest.mark.parametrize("write, suffix", [(to_sdf, "sdf"), (to_xyz, "xyz")])
def test_writers_round_trip(write, suffix):
    molecules = sample_molecules()
    records = read_molecules(write(molecules).encode(), filename=f"out.{suffix}")
    assert [r.error for r in records] == [None] * len(molecules)
    assert [r.name for r in records] == [m.name or f"out.{suffix}#{k}" for k, m in enumerate(molecules, 1)]
    for record, molecule in zip(records, molecules):
        assert record.molecule.symbols == molecule.symbols
        np.testing.assert_allclose(record.molecule.positions, molecule.positions, atol=1e-4)
        assert not any("hydrogens" in w for w in record.warnings)  # no hydrogens invented on the way back
    if suffix == "sdf":
        assert records[0].molecule.properties == {"homo": -7123.4, "mu": 1.85}


def test_planar_molecule_in_a_3d_sdf_is_not_called_2d():
    water = read_molecules(INPUTS / "good_multi.xyz")[0].molecule  # lies in the z = 0 plane
    [record] = read_molecules(to_sdf([water]).encode(), "water.sdf")
    assert record.ok and record.warnings == ()
    np.testing.assert_allclose(record.molecule.positions, water.positions, atol=1e-4)


def test_sdf_tags_and_xyz_comment():
    water = sample_molecules()[0]
    sdf = to_sdf([water])
    assert sdf.startswith("water\n") and "<homo [meV]>" in sdf and "<formula>" in sdf and "H2O" in sdf
    assert to_xyz([water]).split("\n")[1] == "water | H2O | homo=-7123.4 meV, mu=1.85 D"


def test_write_molecules_picks_the_format_by_extension(tmp_path):
    molecules = sample_molecules()[:2]
    for name in ("out.sdf", "out.xyz"):
        write_molecules(molecules, tmp_path / name)
        assert [r.molecule.formula for r in read_molecules(tmp_path / name)] == ["H2O", "CH4"]
    with pytest.raises(ValueError, match=".csv"):
        write_molecules(molecules, tmp_path / "out.csv")


def test_bonds_perceived_from_coordinates():
    ethanol = molecule_to_rdkit(read_smiles("CCO"))
    assert sorted(b.GetBondTypeAsDouble() for b in ethanol.GetBonds()) == [1.0] * 8
    benzene = molecule_to_rdkit(read_smiles("c1ccccc1"))
    orders = [b.GetBondTypeAsDouble() for b in benzene.GetBonds() if b.GetBeginAtom().GetSymbol() == "C"
              and b.GetEndAtom().GetSymbol() == "C"]
    assert sorted(orders) == [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]  # kekulised for every viewer
    assert Chem.MolToSmiles(Chem.RemoveHs(benzene)) == "c1ccccc1"


@pytest.mark.parametrize("symbols", [("C", "C"), ("C", "O", "O", "O"), ("N",) * 7, ("F", "F", "F")])
def test_molecule_to_rdkit_never_fails(symbols):
    rng = np.random.default_rng(len(symbols))
    molecule = Molecule(symbols, rng.uniform(-1.5, 1.5, (len(symbols), 3)), name="odd")
    mol = molecule_to_rdkit(molecule)
    assert [a.GetSymbol() for a in mol.GetAtoms()] == list(symbols)
    assert Chem.MolToMolBlock(mol, kekulize=False)


def test_trajectory_xyz_plays_in_viewers():
    final = ("C", "O", "H", "H")
    rng = np.random.default_rng(1)
    frames = [
        Frame(t=1000, sigma_t=1.0, phase="nucleation", positions=rng.normal(size=(4, 3)).astype(np.float32)),
        Frame(t=10, sigma_t=0.0145, phase="growth", positions=rng.normal(size=(4, 3)).astype(np.float32),
              type_guess=np.array([1, 3, 0, 2])),
        Frame(t=0, sigma_t=0.0, phase="growth", positions=rng.normal(size=(4, 3)).astype(np.float32)),
    ]
    text = trajectory_to_xyz(Trajectory(frames, t_n=100, num_steps=1000), final)
    comments = text.split("\n")[1::6]
    assert comments == ["t=1000 sigma_t=1 phase=nucleation t_n=100 elements=final",
                        "t=10 sigma_t=0.0145 phase=growth t_n=100 elements=type head",
                        "t=0 sigma_t=0 phase=growth t_n=100 elements=final"]
    records = read_molecules(text.encode(), "trajectory.xyz")
    assert [r.molecule.symbols for r in records] == [final, ("C", "O", "H", "N"), final]
    for record, frame in zip(records, frames):
        np.testing.assert_allclose(record.molecule.positions, frame.positions, atol=1e-6)


# --- fuzzing: nothing but Records (or MoleculeInputError) comes out -----------------------------

def corpus_bytes() -> list[bytes]:
    return [(INPUTS / name).read_bytes() for name in sorted(CORPUS)]


def check_records(records):
    assert records and all(isinstance(r, Record) for r in records)
    for record in records:
        assert record.ok or (record.error and "\n" not in record.error)


FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FILENAMES = st.sampled_from([None, "x.xyz", "x.sdf", "x.mol", "x.smi", "x.txt", "x.sdf.gz", "x.bin"])


@FUZZ
@given(data=st.binary(max_size=400), filename=FILENAMES)
def test_fuzz_bytes(data, filename):
    check_records(read_molecules(data, filename=filename))


@FUZZ
@given(text=st.text(max_size=300), fmt=st.sampled_from([None, "xyz", "sdf", "smi"]))
def test_fuzz_text(text, fmt):
    check_records(parse_text(text, fmt=fmt))


@FUZZ
@given(source=st.sampled_from(corpus_bytes()), cuts=st.lists(st.tuples(st.integers(0, 3000), st.binary(max_size=8)),
                                                             max_size=4), filename=FILENAMES)
def test_fuzz_corrupted_corpus(source, cuts, filename):
    data = bytearray(gzip.decompress(source) if source[:2] == b"\x1f\x8b" else source)
    for position, replacement in cuts:  # overwrite, delete or insert a few bytes of a real file
        position = position % (len(data) + 1)
        data[position:position + len(replacement) // 2] = replacement
    check_records(read_molecules(bytes(data), filename=filename))


def corpus_lines() -> list[list[str]]:
    texts = [gzip.decompress(b) if b[:2] == b"\x1f\x8b" else b for b in corpus_bytes()]
    return [t.decode("latin-1").split("\n") for t in texts if b"\x00" not in t]


@FUZZ
@given(lines=st.sampled_from(corpus_lines()), filename=FILENAMES,
       edits=st.lists(st.tuples(st.integers(0, 200), st.sampled_from(["delete", "repeat", "insert"]), st.text(max_size=30)),
                      max_size=5))
def test_fuzz_edited_corpus_lines(lines, edits, filename):
    lines = list(lines)
    for position, edit, new_line in edits:  # structural damage: lost, repeated or foreign lines
        position %= len(lines) + 1
        if edit == "delete":
            del lines[position:position + 1]
        elif edit == "repeat":
            lines[position:position] = lines[position:position + 1]
        else:
            lines.insert(position, new_line)
    check_records(read_molecules("\n".join(lines).encode(), filename=filename))
