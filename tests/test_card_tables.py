"""The model card read as tables and Markdown (unigem_core/card_tables.py), and the README's copy of it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from unigem_core import card_tables
from unigem_core.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _card() -> dict:
    generation = {
        "1000": {"steps": 1000, "n_molecules": 1000, "atom_stability": 0.9771, "molecule_stability": 0.762,
                 "validity": 0.877, "uniqueness": 1.0, "valid_x_unique": 0.877, "novelty": 0.814, "precision": "bf16",
                 "command": "unigem evaluate --n 1000 --steps 1000 --json"},
        "50+r1": {"steps": 50, "resample": 1, "n_molecules": 1000, "atom_stability": 0.988, "molecule_stability": 0.867,
                  "validity": 0.942, "precision": "bf16", "command": "unigem evaluate --n 1000 --steps 50 --resample 1",
                  "qm9": {"in_qm9": 0.297, "in_training_split": 0.245, "n_unseen": 49,
                          "mae_vs_dft_unseen": {"gap": 99.04, "mu": 0.44}}},
    }
    return {"name": "UniGEM test", "preset": "small",
            "training": {"steps": 1234, "epochs": 1.5, "wall_clock_hours": 0.5, "learning_rate": "0.0003"},
            "files": {"unigem.pt": {"sha256": "ab" * 32}},
            "generation": generation,
            "properties": {"split": "test", "n_property_molecules": 13083,
                           "mae": {"gap": 64.29, "mu": 0.06453, "U": 58.0},
                           "command": "unigem evaluate --n 0 --properties --json"},
            "properties_from_smiles": {"n_property_molecules": 995, "n_refused": 5, "relax": "xtb",
                                       "conformers_mean": 11.86, "mae": {"gap": 114.85},
                                       "command": "unigem evaluate --n 0 --properties --geometry smiles --json"},
            "validation_loss": {"validation_loss": {"loss": 0.18629, "coord": 0.17123, "prop_mae_norm": 0.03012},
                                "n_loss_molecules": 1024, "loss_precision": "fp32",
                                "command": "unigem evaluate --n 0 --loss --precision fp32 --json"}}


def test_markdown_shows_every_measured_number_beside_its_command():
    text = card_tables.markdown(_card())
    lines, flat = text.splitlines(), " ".join(text.split())  # flat: the prose unwrapped
    # the plain sampler with the most steps first, then the published rows
    rows = [line for line in lines if line.startswith("| this model") or line.startswith("| published")]
    assert rows[0].startswith("| this model · 1,000 steps, 1,000 molecules | 97.7% | 76.2% | 87.7% | 100.0% | 87.7% |")
    assert rows[1].startswith("| this model · 50 steps + 1 refinement round, 1,000 molecules | 98.8% | 86.7% |")
    assert rows[-1] == "| published · UniGEM | 99.0% | 89.8% | 95.0% |  | 93.2% |  |"
    assert "- 1,000 steps: `unigem evaluate --n 1000 --steps 1000 --json`" in lines
    # three significant figures, whole numbers from 100, the published EGNN values as printed in the paper
    gap = next(line for line in lines if line.startswith("| HOMO-LUMO gap"))
    assert gap == "| HOMO-LUMO gap (gap) | meV | 64.3 | 115 | 99.0 | 48 |"
    assert next(line for line in lines if "(U)" in line).split(" | ")[2] == "58.0"
    assert "995 of the first 1,000 test molecules" in flat and "11.9 conformers" in flat
    assert "of the valid molecules of 50 steps + 1 refinement round, 29.7% have a bond graph QM9 holds" in flat
    assert "Validation loss 0.1863" in flat and "`unigem evaluate --n 0 --loss --precision fp32 --json`" in flat
    assert "sha256 `abababababab…`" in flat and flat.startswith("**UniGEM test** (`small` preset): 1,234 optimiser")
    assert max(len(line) for line in lines if not line.startswith("|")) <= 110  # wrapped for reading the source


def test_markdown_of_a_card_measured_in_part_skips_what_it_lacks():
    card = {"name": "UniGEM", "preset": "small", "properties": {"mae": {"gap": 70.0}, "command": "unigem evaluate"}}
    text = card_tables.markdown(card)
    assert "Generation" not in text and "Validation loss" not in text and "from SMILES" not in text
    assert "| HOMO-LUMO gap (gap) | meV | 70.0 | 48 |" in text


def test_replace_block_keeps_the_rest_of_the_file_and_refuses_a_file_without_markers():
    readme = f"# Title\n\nbefore\n{card_tables.README_START}\nold numbers\n{card_tables.README_END}\nafter\n"
    new = card_tables.replace_block(readme, "new numbers\n")
    assert new == f"# Title\n\nbefore\n{card_tables.README_START}\nnew numbers\n{card_tables.README_END}\nafter\n"
    assert card_tables.readme_block(new) == "new numbers\n"
    with pytest.raises(ValueError, match="no model card block"):
        card_tables.replace_block("# Title\n", "numbers\n")


def test_cli_writes_the_card_into_a_readme(tmp_path, capsys):
    card, readme = tmp_path / "card.json", tmp_path / "README.md"
    card.write_text(json.dumps(_card()))
    readme.write_text(f"intro\n{card_tables.README_START}\n{card_tables.README_END}\nmore\n")
    assert main(["card", "--out", str(card), "--readme", str(readme)]) == 0
    assert card_tables.readme_block(readme.read_text()) == card_tables.markdown(_card())
    assert readme.read_text().startswith("intro\n") and readme.read_text().endswith("more\n")
    capsys.readouterr()
    assert main(["card", "--out", str(card), "--markdown"]) == 0
    assert capsys.readouterr().out == card_tables.markdown(_card())


def test_the_readme_shows_the_shipped_card():
    """The README's numbers of the shipped model are the card's: a release that changes the card must rewrite
    them with `unigem card --readme README.md` (scripts/release_model.sh does)."""
    card = json.loads((ROOT / "checkpoints" / "model_card.json").read_text())
    assert card_tables.readme_block((ROOT / "README.md").read_text()) == card_tables.markdown(card), (
        "README.md's model card is stale: run `unigem card --readme README.md`")
