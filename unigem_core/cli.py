"""`unigem train | sample | evaluate | predict | export | app`: the engine from the command line.

Every command defaults to the checkpoint shipped in checkpoints/, and on bad input exits non-zero
with one readable line (no traceback).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from unigem_core.constants import RESAMPLE_BELOW, STEP_SPACING
from unigem_core.molecule import MoleculeInputError
from unigem_core.precision import CHOICES as PRECISIONS


class CLIError(Exception):
    """An error the user can act on; printed as one line."""


def _add_sampling_processes_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--processes", type=int, default=1, help="CPU: sample the batches in this many worker processes, "
                   "sharing the torch threads (2 on a 2-core CPU is faster than 1)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network with frozen weights: about "
                   "1.65x faster network calls on CPU after roughly a minute of compiling per batch shape; "
                   "pays off for long runs")


def _add_steps_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: all 1000)")
    p.add_argument("--spacing", type=float, default=STEP_SPACING,
                   help=f"with fewer steps than T, how the nucleation steps are spread: 1 = evenly, larger = denser "
                        f"at low noise, where the bonds settle (default {STEP_SPACING:g})")
    p.add_argument("--resample", type=int, default=0, help="take each step that ends below --resample-below this many "
                   "more times, going back through the forward process first: a corrector for the late steps, "
                   "one network call per extra round (default 0)")
    p.add_argument("--resample-below", type=int, default=RESAMPLE_BELOW, help=f"where resampling starts "
                   f"(default t = {RESAMPLE_BELOW})")


def _add_precision_arg(p: argparse.ArgumentParser, work: str = "sampling") -> None:
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help=f"{work} in bf16 or fp32; auto (default): "
                   "bf16 where the hardware has it (AVX512-BF16, AMX, a recent GPU), else fp32")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, default=None, help="model file (default: the shipped checkpoints/unigem.pt)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run the model")


def cmd_train(args) -> int:
    import os

    if args.processes > 1 and "RANK" not in os.environ:
        from unigem_core.train.distributed import launch

        return launch(args.argv, args.processes, args.threads, args.command_line)
    import torch

    from unigem_core.config import preset
    from unigem_core.device import resolve_device
    from unigem_core.train.distributed import init_distributed
    from unigem_core.train.loop import fit

    overrides = {k: v for k, v in {"max_steps": args.max_steps, "max_minutes": args.max_minutes, "lr": args.lr, "warmup_steps": args.warmup_steps,
                                   "cooldown_steps": args.cooldown_steps,
                                   "batch_size": args.batch_size, "micro_batch": args.micro_batch, "precision": args.precision,
                                   "checkpoint_minutes": args.checkpoint_minutes, "ema_decay": args.ema_decay,
                                   "slow_ema_decay": args.slow_ema_decay,
                                   "train_subset": args.train_subset, "val_every": args.val_every}.items() if v is not None}
    if args.threads:
        torch.set_num_threads(args.threads)
    device = init_distributed(args.device) or resolve_device(args.device)
    config = preset(args.preset).with_train(**overrides)
    run_dir = args.run_dir or Path("runs") / args.preset
    resume = args.resume
    if resume is None and (run_dir / "last.pt").exists() and not args.fresh:
        resume = run_dir / "last.pt"
        print(f"resuming from {resume} (use --fresh to start over)", file=sys.stderr)
    command = os.environ.get("UNIGEM_TRAIN_COMMAND") or args.command_line
    state = fit(config, run_dir, device, resume=resume, overrides=overrides if resume else None, command=command)
    print(json.dumps({"run_dir": str(run_dir), "step": state.step, "epoch": state.epoch,
                      "elapsed_s": round(state.elapsed_s, 1)}))
    return 0


def cmd_export(args) -> int:
    from unigem_core.train.checkpoint import CheckpointError, atomic_save, inference_state, load_checkpoint

    state = load_checkpoint(args.source)
    if state["format"].startswith("unigem-training"):
        out = inference_state(state, "slow_ema" if args.slow_ema else "ema")
    elif args.slow_ema:
        raise CheckpointError(f"{args.source} is an inference file: --slow-ema needs a training checkpoint")
    else:
        out = state
    atomic_save(out, args.out)
    print(f"wrote {args.out} (step {out.get('step')})")
    return 0


class _ProgressBar:
    """A tqdm bar on stderr, created at the first update (so an early error prints only its one line)."""

    def __init__(self, desc: str):
        self.desc, self.bar = desc, None

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.desc, file=sys.stderr, dynamic_ncols=True)
        self.bar.total, self.bar.n = total, done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_sample(args) -> int:
    from unigem_core import api
    from unigem_core.io import to_sdf, trajectory_to_xyz, to_xyz

    engine = api.load_model(args.checkpoint, args.device)
    bar = _ProgressBar("sampling")
    options = dict(steps=args.steps, n_atoms=args.atoms, record_trajectory=args.trajectory is not None,
                   on_progress=bar, precision=args.precision, processes=args.processes, compile=args.compile,
                   spacing=args.spacing, resample=args.resample, resample_below=args.resample_below)
    if args.valid_only:
        mols, tried = api.generate_valid(engine, args.n, seed=args.seed, **options)
        bar.close()
        print(f"{len(mols)} valid molecules among seeds {args.seed}-{args.seed + tried - 1}", file=sys.stderr)
        if not mols:
            raise CLIError(f"no valid molecule among {tried} seeds; try more --steps")
    else:
        mols = api.generate(engine, args.n, seed=args.seed, **options)
        bar.close()
    out = Path(args.out)
    text = to_xyz([g.molecule for g in mols]) if out.suffix.lower() == ".xyz" else to_sdf([g.molecule for g in mols])
    out.write_text(text)
    if args.trajectory is not None:
        frames = "".join(trajectory_to_xyz(g.trajectory, g.molecule.symbols) for g in mols)
        Path(args.trajectory).write_text(frames)
    n_valid = sum(g.valid for g in mols)
    n_stable = sum(g.stable for g in mols)
    print(f"wrote {len(mols)} molecules to {out} ({n_valid} valid, {n_stable} stable)", file=sys.stderr)
    return 0


def cmd_evaluate(args) -> int:
    from unigem_core import api

    if args.reference:
        result = api.evaluate_reference(n=args.n, novelty=not args.no_novelty)
    else:
        if args.n < 0 or (args.n == 0 and not (args.loss or args.properties)):
            raise CLIError(f"--n must be at least 1 (or 0 with --loss or --properties), not {args.n}")
        engine = api.load_model(args.checkpoint, args.device)
        result = {}
        if args.n > 0:
            bar = _ProgressBar("sampling")
            result = api.evaluate_generation(engine, n=args.n, seed=args.seed, novelty=not args.no_novelty,
                                             on_progress=bar, processes=args.processes, steps=args.steps,
                                             compile=args.compile, precision=args.precision, spacing=args.spacing,
                                             resample=args.resample, resample_below=args.resample_below)
            bar.close()
        if args.loss:
            result.update(api.evaluate_loss(engine, limit=args.limit, precision=args.precision))
        if args.properties:
            result.update(api.evaluate_properties(engine, split=args.split, limit=args.limit))
        result.update({k: v for k, v in engine.info.items() if v is not None})  # step, epoch of the weights
    result["command"] = args.command_line
    if not args.reference:
        result["checkpoint"] = str(args.checkpoint or api.DEFAULT_CHECKPOINT.relative_to(api.REPO_ROOT))
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


def cmd_card(args) -> int:
    from unigem_core.train.card import add_generation, build_card, write_card

    if args.add:  # one more evaluation of the shipped weights into the existing card
        card = json.loads(args.out.read_text())
        for path in args.eval:
            card = add_generation(card, json.loads(Path(path).read_text()))
        write_card(card, args.out)
        print(f"added {len(args.eval)} evaluation(s) to {args.out}")
        return 0
    evals = [json.loads(Path(p).read_text()) for p in args.eval]
    curve = [json.loads(Path(p).read_text()) for p in args.curve]
    card = build_card(args.checkpoint, args.run_dir, evals, curve, args.name, args.train_command, args.resume_state)
    write_card(card, args.out)
    print(f"wrote {args.out}")
    return 0


def cmd_predict(args) -> int:
    from unigem_core import api
    from unigem_core.io import read_molecules

    records = []
    for path in args.files:
        if not path.exists():
            raise CLIError(f"{path}: no such file")
        records += read_molecules(path.read_bytes(), filename=path.name)
    engine = api.load_model(args.checkpoint, args.device)
    rows = api.predictions_table(api.predict_records(engine, records))
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]) if rows else ["name", "error"])
        writer.writeheader()
        writer.writerows(rows)
    refused = [r for r in rows if r["error"]]
    for r in refused:
        print(f"refused: {r['name']}: {r['error']}", file=sys.stderr)
    print(f"wrote {len(rows)} rows to {args.out} ({len(rows) - len(refused)} predicted, {len(refused)} refused)",
          file=sys.stderr)
    return 0


def cmd_app(args) -> int:
    import subprocess

    root = Path(__file__).resolve().parent.parent
    return subprocess.call([sys.executable, "-m", "streamlit", "run", str(root / "app" / "main.py"), *args.streamlit_args])


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
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="make an inference file from a training checkpoint")
    p.add_argument("source", type=Path)
    p.add_argument("--out", type=Path, default=Path("checkpoints/unigem.pt"))
    p.add_argument("--slow-ema", action="store_true", help="export the slower EMA (trained with --slow-ema-decay)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("sample", help="generate molecules")
    p.add_argument("--n", type=int, default=10)
    _add_steps_args(p)
    p.add_argument("--atoms", type=int, default=None, help="atoms per molecule (default: drawn from QM9's histogram)")
    p.add_argument("--seed", type=int, default=0, help="molecule k gets seed SEED+k")
    p.add_argument("--valid-only", action="store_true", help="keep the valid molecules only, sampling further seeds "
                   "until N are found (at most 4N seeds)")
    _add_precision_arg(p)
    p.add_argument("--out", type=Path, required=True, help="output .sdf (properties as SD tags) or .xyz")
    p.add_argument("--trajectory", type=Path, default=None, help="also write the trajectories as multi-frame XYZ")
    _add_sampling_processes_arg(p)
    _add_model_args(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("evaluate", help="generation metrics (and property MAE) as JSON")
    p.add_argument("--n", type=int, default=1000, help="molecules to generate (0: none, with --loss or --properties)")
    _add_steps_args(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--properties", action="store_true", help="also the MAE of all twelve targets on a split")
    p.add_argument("--split", default="test", choices=["valid", "test"])
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
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("card", help="assemble the model card from evaluation JSON files and the training log")
    p.add_argument("--checkpoint", type=Path, default=Path("checkpoints/unigem.pt"))
    p.add_argument("--run-dir", type=Path, default=None)
    p.add_argument("--eval", nargs="*", default=[], help="outputs of `unigem evaluate --json`")
    p.add_argument("--curve", nargs="*", default=[], help="evaluations of epoch snapshots (with an 'epoch' key)")
    p.add_argument("--name", default="UniGEM")
    p.add_argument("--train-command", default="")
    p.add_argument("--resume-state", type=Path, default=None,
                   help="the training checkpoint the campaign resumes from, if not the shipped weights' own state")
    p.add_argument("--add", action="store_true", help="add the --eval generation results (of the card's own "
                   "weights) to the existing card at --out, leaving the rest as it is")
    p.add_argument("--out", type=Path, default=Path("checkpoints/model_card.json"))
    p.set_defaults(func=cmd_card)

    p = sub.add_parser("predict", help="predict the twelve properties of molecules in XYZ/SDF/SMILES files")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True, help="output CSV, one row per input record")
    _add_model_args(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("app", help="start the Streamlit app")
    p.add_argument("streamlit_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_app)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.command_line = "unigem " + " ".join(argv)
    args.argv = argv
    from unigem_core.train.checkpoint import CheckpointError

    try:
        return args.func(args)
    except (CLIError, MoleculeInputError, CheckpointError, ValueError, RuntimeError, OSError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"unigem {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unigem {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
