"""The `unigem` command line's arguments: one subparser per command, the shared option groups.

The commands themselves, and `main`, are in unigem_core/cli.py.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from unigem_core.constants import CONFORMERS, RELAX, RELAXATIONS, STEP_SPACING
from unigem_core.precision import CHOICES as PRECISIONS


def _add_sampling_processes_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--processes", type=int, default=1, help="CPU: sample the batches in this many worker processes, "
                   "sharing the torch threads (2 on a 2-core CPU is faster than 1); evaluate builds the molecules "
                   "of --geometry smiles in as many")
    p.add_argument("--compile", action="store_true", help="torch.compile the network with frozen weights: about "
                   "1.65x faster network calls on CPU after roughly a minute of compiling per batch shape; "
                   "pays off for long runs")


def _add_steps_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: all 1000)")
    p.add_argument("--spacing", type=float, default=STEP_SPACING,
                   help=f"with fewer steps than T, how the nucleation steps are spread: 1 = evenly, larger = denser "
                        f"at low noise, where the bonds settle (default {STEP_SPACING:g})")
    p.add_argument("--resample", type=int, default=0, help="take each step this many more times, going back through "
                   "the forward process first: a corrector, one network call per step and extra round (default 0, "
                   "the paper's sampler)")
    p.add_argument("--resample-below", type=int, default=None, metavar="T",
                   help="resample only the steps that end below t = T (default: every step)")


def _add_precision_arg(p: argparse.ArgumentParser, work: str = "sampling") -> None:
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help=f"{work} in bf16 or fp32; auto (default): "
                   "bf16 where the hardware has it (AVX512-BF16, AMX, a recent GPU), else fp32")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_conformers_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--conformers", type=_positive_int, default=CONFORMERS,
                   help="conformers RDKit builds for a molecule given by its bonds (a SMILES, a 2D drawing); its "
                   f"properties are their mean (default {CONFORMERS}; 1 is about 10x faster and less accurate)")
    p.add_argument("--relax", default=RELAX, choices=RELAXATIONS,
                   help="the last step of building those conformers: xtb relaxes each MMFF conformer with GFN2-xTB "
                   "(0.1-0.2 s a conformer; closer to QM9's DFT geometries and values), mmff stops at the force "
                   f"field (about 18x faster; default {RELAX})")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, default=None, help="model file (default: the shipped checkpoints/unigem.pt)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run the model")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unigem", description="UniGEM: generate 3D molecules and predict their properties.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model (resumes run_dir/last.pt when present)")
    p.add_argument("--preset", default="tiny", choices=["tiny", "small", "paper"])
    p.add_argument("--resume", type=Path, default=None, help="training checkpoint to resume from")
    p.add_argument("--run-dir", type=Path, default=None, help="where checkpoints and log.csv go (default runs/PRESET)")
    p.add_argument("--fresh", action="store_true", help="ignore an existing run_dir/last.pt")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--max-steps", type=int)
    p.add_argument("--max-minutes", type=float, help="stop after this wall-clock time (this invocation only)")
    p.add_argument("--checkpoint-minutes", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--micro-batch", type=int, help="CPU: molecules per forward/backward pass (0 = whole batch)")
    p.add_argument("--lr", type=float)
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--cooldown-steps", type=int, help="from the resumed step, let the learning rate fall linearly to 0 "
                   "over this many steps, then stop (a release branch; resume the campaign from the state before it)")
    p.add_argument("--ema-decay", type=float)
    p.add_argument("--slow-ema-decay", type=float, help="keep a second, slower EMA of the weights too (0: none), "
                   "e.g. the published 0.9999; `unigem export --slow-ema` exports it")
    _add_precision_arg(p, "dense work")
    p.add_argument("--train-subset", type=int, help="train on the first K training molecules only")
    p.add_argument("--val-every", type=int)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads per process (default: torch's choice, "
                   "or the cores shared out over --processes)")
    p.add_argument("--processes", type=int, default=1, help="data-parallel processes on this machine (runs torchrun; "
                   "the batch is shared out over them)")
    p.add_argument("--compile", action="store_true", help="run every EGNN block under torch.compile (dynamic shapes): "
                   "fuses the elementwise work of the edge tensors, after a minute or two of compiling at the start; "
                   "this invocation only (bench/NOTES.md has the speed-ups measured)")

    p = sub.add_parser("export", help="make an inference file from a training checkpoint")
    p.add_argument("source", type=Path)
    p.add_argument("--out", type=Path, default=Path("checkpoints/unigem.pt"))
    p.add_argument("--slow-ema", action="store_true", help="export the slower EMA (trained with --slow-ema-decay)")

    p = sub.add_parser("sample", help="generate molecules")
    p.add_argument("--n", type=int, default=10)
    _add_steps_args(p)
    p.add_argument("--atoms", type=int, default=None, help="atoms per molecule (default: drawn from QM9's histogram)")
    p.add_argument("--seed", type=int, default=0, help="molecule k gets seed SEED+k")
    p.add_argument("--valid-only", action="store_true", help="keep the valid molecules only, sampling further seeds "
                   "until N are found (at most 4N seeds)")
    p.add_argument("--novel-only", action="store_true", help="keep the valid molecules that QM9's training set does "
                   "not hold, sampling further seeds until N are found (at most 4N seeds; implies --valid-only)")
    p.add_argument("--where", action="append", default=[], metavar="TARGET",
                   help="keep the valid molecules whose predicted property meets TARGET, in reporting units "
                   "(gap>=7000, mu<=1, 60<=alpha<=80; repeat for several), sampling further seeds until N are found "
                   "(implies --valid-only)")
    p.add_argument("--max-seeds", type=int, default=None,
                   help="with --valid-only, --novel-only or --where: the most seeds to sample (default 4N)")
    _add_precision_arg(p)
    p.add_argument("--out", type=Path, required=True, help="output .sdf (properties as SD tags) or .xyz")
    p.add_argument("--trajectory", type=Path, default=None, help="also write the trajectories as multi-frame XYZ")
    _add_sampling_processes_arg(p)
    _add_model_args(p)

    p = sub.add_parser("evaluate", help="generation metrics (and property MAE) as JSON")
    p.add_argument("--n", type=int, default=1000, help="molecules to generate (0: none, with --loss or --properties)")
    _add_steps_args(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--properties", action="store_true", help="also the MAE of all twelve targets on a split")
    p.add_argument("--split", default="test", choices=["valid", "test"])
    p.add_argument("--geometry", default="qm9", choices=["qm9", "smiles"],
                   help="with --properties: each molecule at its DFT geometry (qm9), or rebuilt from QM9's SMILES "
                   "(RDKit's ETKDG + MMFF, then GFN2-xTB) as the Predict page builds a typed SMILES (smiles)")
    _add_conformers_arg(p)
    p.add_argument("--limit", type=int, default=None,
                   help="property MAE (and --loss) on the first LIMIT molecules of their split only")
    p.add_argument("--loss", action="store_true",
                   help="also the training objective on the first 1,024 validation molecules under fixed noise "
                        "(the val_loss column of a training log, for comparing checkpoints); --n 0 skips generation")
    p.add_argument("--reference", action="store_true", help="metrics of real QM9 test molecules (the Data row)")
    p.add_argument("--no-novelty", action="store_true", help="skip novelty (needs the training SMILES)")
    p.add_argument("--json", action="store_true", help="one-line JSON")
    _add_precision_arg(p)
    _add_sampling_processes_arg(p)
    _add_model_args(p)

    p = sub.add_parser("card", help="assemble the model card from evaluation JSON files and the training log")
    p.add_argument("--checkpoint", type=Path, default=Path("checkpoints/unigem.pt"))
    p.add_argument("--run-dir", type=Path, default=None)
    p.add_argument("--eval", nargs="*", default=[], help="outputs of `unigem evaluate --json`")
    p.add_argument("--curve", nargs="*", default=[], help="evaluations of epoch snapshots (with an 'epoch' key)")
    p.add_argument("--name", default="UniGEM")
    p.add_argument("--train-command", default="")
    p.add_argument("--resume-state", type=Path, default=None,
                   help="the training checkpoint the campaign resumes from, if not the shipped weights' own state")
    p.add_argument("--add", action="store_true", help="add the --eval results (generation, or properties from "
                   "SMILES; of the card's own weights) to the existing card at --out, leaving the rest as it is")
    p.add_argument("--markdown", action="store_true", help="print the card at --out as Markdown (its weights, "
                   "generation and property tables, each with its command) and write nothing")
    p.add_argument("--readme", type=Path, default=None, help="write that Markdown into this file (README.md) between "
                   "its model card markers, leaving the rest of the file as it is")
    p.add_argument("--out", type=Path, default=Path("checkpoints/model_card.json"))

    p = sub.add_parser("predict", help="predict the twelve properties of molecules in XYZ/SDF/SMILES files")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True, help="output CSV, one row per input record")
    p.add_argument("--no-refine", action="store_true", help="read the geometries RDKit builds (from a SMILES or a "
                   "2D drawing) as they are, without the model's refinement (three denoising steps from t = 30)")
    p.add_argument("--qm9", action="store_true", help="add the QM9 molecule with each record's bond graph: its number, "
                   "split and DFT values (the index of QM9 is built on first use: minutes, once per machine)")
    p.add_argument("--ranges", action="store_true", help="add each property's lowest and highest value over a built "
                   "molecule's conformers (columns 'min ...', 'max ...')")
    _add_conformers_arg(p)
    _add_model_args(p)

    p = sub.add_parser("app", help="start the Streamlit app")
    p.add_argument("streamlit_args", nargs=argparse.REMAINDER)
    return parser
