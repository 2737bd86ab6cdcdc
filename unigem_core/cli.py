"""`unigem train | sample | evaluate | predict | export | card | app`: the engine from the command line.

Every command defaults to the checkpoint shipped in checkpoints/, and on bad input exits non-zero
with one readable line (no traceback).
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from unigem_core.cli_args import build_parser
from unigem_core.molecule import MoleculeInputError


class CLIError(Exception):
    """An error the user can act on; printed as one line."""


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
    state = fit(config, run_dir, device, resume=resume, overrides=overrides if resume else None, command=command,
                compile=args.compile)
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
    from unigem_core.targets import describe as describe_targets

    targets = [api.parse_range(text) for text in args.where]  # a bad target fails before the model loads
    if args.max_seeds is not None and args.max_seeds < 1:
        raise CLIError("--max-seeds must be at least 1")
    engine = api.load_model(args.checkpoint, args.device)
    bar = _ProgressBar("sampling")
    options = dict(steps=args.steps, n_atoms=args.atoms, record_trajectory=args.trajectory is not None,
                   on_progress=bar, precision=args.precision, processes=args.processes, compile=args.compile,
                   spacing=args.spacing, resample=args.resample, resample_below=args.resample_below)
    if args.valid_only or args.novel_only or targets:
        exclude = None
        if args.novel_only:
            from unigem_core.metrics import training_smiles

            exclude = training_smiles()  # read from the cache file; built there first if missing (a minute)
        mols, tried = api.generate_valid(engine, args.n, seed=args.seed, exclude=exclude, targets=targets,
                                         max_seeds=args.max_seeds, **options)
        bar.close()
        kind = "novel" if args.novel_only else "valid"
        within = f" with {describe_targets(targets)}" if targets else ""
        print(f"{len(mols)} {kind} molecules{within} among seeds {args.seed}-{args.seed + tried - 1}", file=sys.stderr)
        if not mols:
            hint = "widen the targets or raise --max-seeds" if targets else "try more --steps"
            raise CLIError(f"no {kind} molecule{within} among {tried} seeds; {hint}")
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
            result.update(api.evaluate_properties(engine, split=args.split, limit=args.limit, geometry=args.geometry,
                                                  conformers=args.conformers, relax=args.relax,
                                                  processes=args.processes))
        result.update({k: v for k, v in engine.info.items() if v is not None})  # step, epoch of the weights
    result["command"] = args.command_line
    if not args.reference:
        from unigem_core.train.checkpoint import sha256_of

        result["checkpoint"] = str(args.checkpoint or api.DEFAULT_CHECKPOINT.relative_to(api.REPO_ROOT))
        result["checkpoint_sha256"] = sha256_of(args.checkpoint or api.DEFAULT_CHECKPOINT)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


def cmd_card(args) -> int:
    from unigem_core.train.card import add_evaluation, build_card, write_card

    if args.markdown or args.readme:  # read the card, write nothing of it
        from unigem_core import card_tables

        text = card_tables.markdown(json.loads(args.out.read_text()))
        if args.readme is None:
            print(text, end="")
            return 0
        args.readme.write_text(card_tables.replace_block(args.readme.read_text(), text))
        print(f"wrote the model card of {args.out} into {args.readme}")
        return 0
    if args.add:  # one more evaluation of the shipped weights into the existing card
        card = json.loads(args.out.read_text())
        for path in args.eval:
            card = add_evaluation(card, json.loads(Path(path).read_text()))
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
    from tqdm import tqdm

    from unigem_core import api
    from unigem_core.io import read_molecules

    records = []
    for path in args.files:
        if not path.exists():
            raise CLIError(f"{path}: no such file")
        # a count on a terminal (not in a pipe or a log): a SMILES takes seconds to build with GFN2-xTB
        with tqdm(desc=f"reading {path.name}", unit=" records", file=sys.stderr, disable=None) as bar:
            records += read_molecules(path.read_bytes(), filename=path.name, conformers=args.conformers,
                                      relax=args.relax, on_record=lambda _: bar.update())
    engine = api.load_model(args.checkpoint, args.device)
    lookup = api.qm9_lookup() if args.qm9 else None
    predictions = api.predict_records(engine, records, refine_built=not args.no_refine, lookup=lookup)
    rows = api.predictions_table(predictions, qm9=args.qm9, ranges=args.ranges)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]) if rows else ["name", "error"])
        writer.writeheader()
        writer.writerows(rows)
    refused = [r for r in rows if r["error"]]
    for r in rows:
        if r["error"]:
            print(f"refused: {r['name']}: {r['error']}", file=sys.stderr)
        elif r["warnings"]:
            print(f"warning: {r['name']}: {r['warnings']}", file=sys.stderr)
    found = f", {sum(bool(p.qm9) for p in predictions)} found in QM9" if args.qm9 else ""
    print(f"wrote {len(rows)} rows to {args.out} ({len(rows) - len(refused)} predicted, {len(refused)} refused{found})",
          file=sys.stderr)
    return 0


def cmd_app(args) -> int:
    import subprocess

    root = Path(__file__).resolve().parent.parent
    return subprocess.call([sys.executable, "-m", "streamlit", "run", str(root / "app" / "main.py"), *args.streamlit_args])


COMMANDS = {"train": cmd_train, "export": cmd_export, "sample": cmd_sample, "evaluate": cmd_evaluate,
            "card": cmd_card, "predict": cmd_predict, "app": cmd_app}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.command_line = "unigem " + " ".join(argv)
    args.argv = argv
    from unigem_core.train.checkpoint import CheckpointError

    try:
        return COMMANDS[args.command](args)
    except (CLIError, MoleculeInputError, CheckpointError, ValueError, RuntimeError, OSError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"unigem {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unigem {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
