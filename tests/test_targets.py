"""Property targets: reading them, screening predicted properties, and keeping the molecules that meet them."""
from __future__ import annotations

import pytest

from unigem_core.molecule import GeneratedMolecule, Molecule
from unigem_core.targets import PropertyRange, describe, parse_range, within


@pytest.mark.parametrize("text, expected", [
    ("gap>=7000", PropertyRange("gap", low=7000.0)),
    ("gap > 7000", PropertyRange("gap", low=7000.0)),
    ("mu<=1.5", PropertyRange("mu", high=1.5)),
    ("mu ≤ 1.5", PropertyRange("mu", high=1.5)),
    ("homo>=-6.5e3", PropertyRange("homo", low=-6500.0)),
    ("60 <= alpha <= 80", PropertyRange("alpha", 60.0, 80.0)),
    ("-80000<U0<-70000", PropertyRange("U0", -80000.0, -70000.0)),
])
def test_targets_are_read_in_every_form(text, expected):
    assert parse_range(text) == expected


@pytest.mark.parametrize("text, message", [
    ("gapp>=7", "unknown property 'gapp'; choose from mu, alpha"),
    ("gap=>7", "cannot read the property target 'gap=>7'"),
    ("gap", "cannot read"),
    ("gap>=seven", "cannot read"),
    ("9<=mu<=3", "is empty: 9 > 3"),
    ("gap>=inf", "cannot read"),
])
def test_bad_targets_say_why(text, message):
    with pytest.raises(ValueError, match=message):
        parse_range(text)


def test_a_target_needs_a_finite_bound():
    with pytest.raises(ValueError, match="needs a lower or an upper bound"):
        PropertyRange("gap")
    with pytest.raises(ValueError, match="finite"):
        PropertyRange("gap", low=float("nan"))


def test_bounds_are_inclusive_and_missing_values_fail():
    window = PropertyRange("gap", 6000.0, 8000.0)
    assert window.contains({"gap": 6000.0}) and window.contains({"gap": 8000.0})
    assert not window.contains({"gap": 5999.9}) and not window.contains({"gap": 8000.1})
    assert not window.contains({"mu": 1.0}) and not window.contains(None)
    assert not window.contains({"gap": float("nan")})
    assert within({"gap": 7000.0, "mu": 0.5}, [window, PropertyRange("mu", high=1.0)])
    assert not within({"gap": 7000.0, "mu": 1.5}, [window, PropertyRange("mu", high=1.0)])
    assert within({}, [])


def test_targets_describe_themselves_in_reporting_units():
    assert describe([PropertyRange("gap", low=7000.0), PropertyRange("mu", 0.5, 1.25)]) == \
        "gap ≥ 7,000 meV, 0.5 ≤ mu ≤ 1.25 D"
    assert PropertyRange("Cv", high=30.0).describe() == "Cv ≤ 30 cal/(mol K)"


def test_generate_valid_keeps_the_first_molecules_within_the_targets(monkeypatch):
    """Only valid molecules whose predictions meet every target are kept, in seed order; max_seeds caps the search."""
    from unigem_core import api, generation

    def fake(engine, n, seed=0, **options):  # gap = 1000 * seed meV; every fifth seed invalid
        mols = []
        for s in range(seed, seed + n):
            mol = Molecule(("C",), [[0.0, 0.0, 0.0]], properties={"gap": 1000.0 * s, "mu": 1.0})
            mols.append(GeneratedMolecule(seed=s, molecule=mol, valid=s % 5 != 0, smiles=f"S{s}"))
        return mols

    monkeypatch.setattr(generation, "generate", fake)
    targets = [api.parse_range("3000<=gap<=12000"), api.parse_range("mu<=1")]
    kept, tried = api.generate_valid(None, 4, seed=0, targets=targets)
    assert [g.seed for g in kept] == [3, 4, 6, 7]
    kept, tried = api.generate_valid(None, 20, seed=0, targets=targets, max_seeds=50)
    assert [g.seed for g in kept] == [3, 4, 6, 7, 8, 9, 11, 12] and tried == 50  # nothing above 12,000 meV
    kept, _ = api.generate_valid(None, 2, seed=0, targets=targets, exclude={"S3"})
    assert [g.seed for g in kept] == [4, 6]  # novelty and targets together
