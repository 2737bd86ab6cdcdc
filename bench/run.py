"""Speed of the `paper` architecture: our dense EGNN beside a published-style fp32 reference.

    python bench/run.py                 # CPU, and CUDA when present
    python bench/run.py --quick         # fewer rounds and smaller workloads (about 2 minutes on 2 cores)
    python bench/run.py --device cuda --threads 1 --omp-wait default
    python bench/run.py --quick --threads 1 --only sampling-1   # one row (the others are left out)

Prints one table per device and writes bench/results/<date>-<device>.json. Columns:
  ours bf16 / ours fp32: unigem_core's Denoiser (dense [B, N, N, H], per-node first layer), under
      bf16 autocast or in fp32, through the project's own train_step / sample / predict_properties;
      "ours" below is the precision `--precision auto` picks on the device (bf16 where the hardware
      has it: AVX512-BF16, AMX, a recent GPU; else fp32, where bf16 is emulated and slow), and
      --quick times that one only;
  compiled: "ours" compiled as the project's commands compile it. Training: every EGNN block under
      torch.compile(dynamic=True), i.e. `unigem train --compile`, which the campaign uses. Sampling:
      SamplerOptions(compile=True), i.e. `unigem sample --compile` (torch.compile, frozen weights, C++
      wrapper on CPU). A fresh copy of the model per row, so each row compiles from scratch, and the
      first run's time (compiling, then the workload once) is printed beside the table;
  reference fp32: bench/reference_egnn.py, the same network and weights in the published edge-list
      style (gather with index tensors, [E, 2H+2] concatenation, index_add_ aggregation), fp32;
  ours/ref: throughput ratio ours / reference (median of the per-round ratios, wall clock;
      the CPU-time ratio beside it is less sensitive to other jobs on the machine);
  GFLOP/s: analytic matmul FLOPs of each formulation (bench/workloads.py) per second, and its share
      of the measured peak of a 2048^3 matmul in the same precision.
Implementations are timed interleaved (A/B/A/B in rotating order), so a busy machine slows all of
them alike; absolute numbers on a shared machine are lower bounds, the ratios are the result.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOADS = ("training", "sampling-1", "sampling-8", "sampling-64", "prediction")
SHARED = "shared machine: absolute numbers are contended, ratios are interleaved A/B"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and smaller workloads")
    ap.add_argument("--device", default="all", choices=["all", "cpu", "cuda"], help="all = CPU, plus CUDA if present")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: all cores)")
    ap.add_argument("--omp-wait", default="passive", choices=["passive", "active", "default"],
                    help="OMP_WAIT_POLICY; passive keeps idle OpenMP threads from spinning on a shared machine")
    ap.add_argument("--return-memory", action="store_true",
                    help="let glibc hand freed tensors back to the kernel (as before unigem_core.device.keep_freed_memory)")
    ap.add_argument("--only", nargs="+", choices=WORKLOADS, default=list(WORKLOADS),
                    help="run these rows only (the results file is then named after them)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    return ap.parse_args()


def _median_ratio(num: list[float], den: list[float]) -> float:
    """Median over rounds of den/num: a throughput ratio of the implementation timed `num`."""
    return statistics.median(d / n for n, d in zip(num, den))


def bench_device(device_name: str, args: argparse.Namespace) -> dict:
    import torch

    import workloads as W
    from reference_egnn import ReferenceDenoiser
    from unigem_core.engine import Engine, predict_properties  # not api: the GPU machine has no RDKit
    from unigem_core.config import preset
    from unigem_core.data.collate import collate, epoch_batches
    from unigem_core.data.normalizer import PropertyNormalizer
    from unigem_core.data.qm9 import load_split
    from unigem_core.diffusion.schedule import NoiseSchedule
    from unigem_core.model.denoiser import Denoiser
    from unigem_core.precision import resolve_precision
    from unigem_core.train.loop import compile_blocks

    device = torch.device(device_name)
    quick = args.quick
    cfg = preset("paper")
    mc = cfg.model
    schedule = NoiseSchedule(cfg.diffusion.num_steps, cfg.diffusion.power, cfg.diffusion.precision)
    train = load_split("train", progress=False)
    normalizer = PropertyNormalizer.fit(train.targets)
    torch.manual_seed(0)
    ours = Denoiser(cfg).to(device)
    reference = ReferenceDenoiser.from_denoiser(ours, cfg).to(device)
    native = resolve_precision("auto", device)  # what `unigem` uses here by default
    impls = {"ours bf16": (ours, "bf16", "dense"), "ours fp32": (ours, "fp32", "dense"),
             "reference fp32": (reference, "fp32", "reference")}
    if quick:  # the other precision of our model only separates formulation from precision
        del impls[f"ours {'fp32' if native == 'bf16' else 'bf16'}"]
    # the matmul peak of each precision timed (emulated bf16, timed only where asked, is slow to measure)
    dtypes = {k: dtype for k, dtype in {"bf16": torch.bfloat16, "fp32": torch.float32}.items()
              if k in {precision for _, precision, _ in impls.values()}}
    peak = {k: W.matmul_peak(device, dtype) for k, dtype in dtypes.items()}
    rows = []

    def record(workload: str, unit: str, count: float, timings: dict, flops: dict) -> None:
        row = {"workload": workload, "unit": unit, "count_per_round": count, "impls": {}}
        for name, t in timings.items():
            _, precision, formulation = impls.get(name, impls[f"ours {native}"])  # "compiled": ours, native
            wall = statistics.median(t.wall)
            row["impls"][name] = {"throughput": count / wall, "wall_s": t.wall, "cpu_s": t.cpu,
                                  "gflops": flops[formulation] / wall / 1e9, "precision": precision}
        ref = timings["reference fp32"]
        for name in ("ours bf16", "ours fp32", "compiled"):
            if name in timings:
                row["impls"][name]["ratio_vs_reference"] = _median_ratio(timings[name].wall, ref.wall)
                row["impls"][name]["cpu_ratio_vs_reference"] = _median_ratio(timings[name].cpu, ref.cpu)
        rows.append(row)
        print(f"  {workload}: " + ", ".join(f"{n} {v['throughput']:.3g}" for n, v in row["impls"].items()), flush=True)

    rounds = 2 if quick else 4
    compile_s: dict[str, float] = {}  # first compiled run of a row (compiling + the workload once), wall seconds
    if "training" in args.only:
        print(f"[{device_name}] training ...", flush=True)
        n_batches = 1 if quick else 3
        batches = [collate(train, molecule_rows).to(device)
                   for molecule_rows in epoch_batches(train.n_atoms, 64, 0, 0, 50)[:n_batches]]
        runs = {}
        for name, (model, precision, _) in impls.items():
            model_copy = Denoiser(cfg).to(device) if model is ours else ReferenceDenoiser(cfg).to(device)
            model_copy.load_state_dict(model.state_dict())
            state = W.training_state(model_copy, cfg.with_train(precision=precision), normalizer)
            runs[name] = W.training_run(state, batches, schedule)
        fresh = copy.deepcopy(ours)  # as `unigem train --compile` trains: every block compiled, dynamic shapes
        if compile_blocks(fresh):
            runs["compiled"] = W.training_run(W.training_state(fresh, cfg.with_train(precision=native), normalizer),
                                              batches, schedule)
            start = time.perf_counter()
            runs["compiled"]()  # the first run compiles the blocks once for every (batch, atoms) shape
            compile_s["training, batches of 64"] = time.perf_counter() - start
        flops = {f: W.training_flops(mc, batches, f) for f in ("dense", "reference")}
        record("training, batches of 64", "molecules/s", 64 * n_batches, W.interleaved(runs, rounds, device), flops)

    # From here on inference only, with weights that need no gradient, as in a loaded engine (api.load_model):
    # autocast then casts them on every call instead of keeping a cache of casts behind a process-wide lock.
    for model, _, _ in impls.values():
        model.eval().requires_grad_(False)
    sampling = [(1, 20 if quick else 50), (8, 5 if quick else 20), (64, 2 if quick else 8)]
    for b, steps in sampling:
        if f"sampling-{b}" not in args.only:
            continue
        print(f"[{device_name}] sampling batch {b} ...", flush=True)
        n_atoms = W.atom_counts(train, b, seed=b)
        runs = {name: W.sampling_run(model.eval(), schedule, n_atoms, steps, precision)
                for name, (model, precision, _) in impls.items()}
        warmups = {name: W.denoiser_call(model, n_atoms, precision, device)
                   for name, (model, precision, _) in impls.items()}
        fresh = copy.deepcopy(ours).eval()  # compiles this row's shape from scratch, as a new process would
        runs["compiled"] = W.sampling_run(fresh, schedule, n_atoms, steps, native, compile=True)
        start = time.perf_counter()
        runs["compiled"]()  # the first run compiles (one graph per branch); the warm-up below is then cheap
        compile_s[f"sampling, batch {b}"] = time.perf_counter() - start
        calls = W.sampling_calls(schedule, cfg.diffusion.t_n, steps)
        flops = {f: W.sampling_flops(mc, schedule, cfg.diffusion.t_n, n_atoms, steps, f)
                 for f in ("dense", "reference")}
        timings = W.interleaved(runs, rounds, device, warmups)
        record(f"sampling, batch {b}", "molecule-steps/s", b * calls, timings, flops)

    if "prediction" in args.only:
        print(f"[{device_name}] prediction ...", flush=True)
        test = load_split("test", progress=False)
        molecules = W.qm9_molecules(test, 64 if quick else 512)
        runs = {}
        for name, (model, precision, _) in impls.items():
            engine = Engine(model=model.eval(), config=cfg, schedule=schedule, normalizer=normalizer,
                            atom_count_probs=None, device=device, checkpoint=Path("-"))
            runs[name] = (lambda e=engine, p=precision: predict_properties(e, molecules, batch_size=128, precision=p))
        flops = {f: W.prediction_flops(mc, molecules, 128, f) for f in ("dense", "reference")}
        record("prediction, batches of 128", "molecules/s", len(molecules), W.interleaved(runs, rounds, device), flops)
    # the peak again at the end, keeping the better: on a busy machine one reading can be unlucky
    peak = {k: max(peak[k], W.matmul_peak(device, dtype)) for k, dtype in dtypes.items()}
    for row in rows:
        for impl in row["impls"].values():
            impl["peak_fraction"] = impl["gflops"] / peak[impl["precision"]]
    return {"device": device_name, "device_name": _device_name(device), "native_precision": native,
            "peak_gflops": peak, "rows": rows, "compile_first_run_s": compile_s}


def _device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from unigem_core.device import cpu_features, cpu_name

    return f"{cpu_name()}, {os.cpu_count()} cores, {cpu_features()}"


def print_table(result: dict, meta: dict) -> None:
    peak = result["peak_gflops"]
    print()
    print(f"UniGEM `paper` architecture (256 features, 1 shared + 8 + 8 blocks) on {result['device']}: "
          f"{result['device_name']}")
    if result["device"] == "cpu":
        print(f"threads {meta['threads']}, OMP_WAIT_POLICY={meta['omp_wait_policy']}, load average before/after "
              f"{meta['load_before']:.1f}/{meta['load_after']:.1f} on {os.cpu_count()} cores "
              f"({SHARED if meta['load_before'] > 0.5 else 'idle'})")
    print("matmul peak 2048^3: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak.items()))
    native = result.get("native_precision", "bf16")  # results written before the key: bf16 machines
    print(f"ours = our model in {native}, the precision `unigem` picks on this device; compiled = ours, compiled")
    head = f"{'workload':28s} {'unit':17s} {'ours bf16':>10s} {'ours fp32':>10s} {'ref fp32':>10s} " \
           f"{'bf16/ref':>9s} {'fp32/ref':>9s} {'ours/ref':>9s} {'(cpu)':>6s} {'compiled/ref':>12s} {'(cpu)':>6s} " \
           f"{'ours GFLOP/s':>14s} {'ref GFLOP/s':>14s}"
    print(head)
    print("-" * len(head))
    for row in result["rows"]:
        i = row["impls"]
        ours, rf = i[f"ours {native}"], i["reference fp32"]
        cells = [i[name] if name in i else None for name in ("ours bf16", "ours fp32")]
        speeds = " ".join(f"{c['throughput']:10.3g}" if c else f"{'-':>10s}" for c in cells)
        ratios = " ".join(f"{c['ratio_vs_reference']:8.1f}x" if c else f"{'-':>9s}" for c in cells)
        oc = i.get("compiled")
        comp = (f"{oc['ratio_vs_reference']:11.1f}x {oc['cpu_ratio_vs_reference']:5.1f}x" if oc
                else f"{'-':>12s} {'-':>6s}")
        print(f"{row['workload']:28s} {row['unit']:17s} {speeds} {rf['throughput']:10.3g} {ratios} "
              f"{ours['ratio_vs_reference']:8.1f}x {ours['cpu_ratio_vs_reference']:5.1f}x {comp} "
              f"{ours['gflops']:7.0f} ({100 * ours['peak_fraction']:3.0f}%) "
              f"{rf['gflops']:7.0f} ({100 * rf['peak_fraction']:3.0f}%)")
    for workload, seconds in result.get("compile_first_run_s", {}).items():
        print(f"compiled, {workload}: first run (compiling, then the workload once) {seconds:.0f} s wall")
    print()


def main() -> None:
    args = parse_args()
    if args.omp_wait != "default":  # read by OpenMP when torch loads, so set before the import
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait.upper()
    sys.path.insert(0, str(HERE))
    import torch

    torch.set_num_threads(args.threads)
    if not args.return_memory:
        from unigem_core.device import keep_freed_memory

        keep_freed_memory()  # as unigem's commands do, for both columns
    devices = ["cpu"] if args.device in ("all", "cpu") else []
    if args.device in ("all", "cuda") and torch.cuda.is_available():
        devices.append("cuda")
    elif args.device == "cuda":
        sys.exit("--device cuda: no CUDA device here")
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 columns are plain fp32
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                            text=True).stdout.strip()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in devices:
        load_before = os.getloadavg()[0]
        result = bench_device(name, args)
        meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "quick": args.quick, "only": args.only,
                "threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
                "freed_memory": "returned" if args.return_memory else "kept",
                "load_before": load_before, "load_after": os.getloadavg()[0], "torch": torch.__version__,
                "python": platform.python_version(),
                "git_commit": commit + (" (+ uncommitted changes)" if _dirty() else "")}
        print_table(result, meta)
        suffix = "-quick" if args.quick else ""
        if name == "cpu" and args.threads != os.cpu_count():
            suffix += f"-t{args.threads}"
        if set(args.only) != set(WORKLOADS):
            suffix += "-" + "+".join(w for w in WORKLOADS if w in args.only)
        path = args.out / f"{datetime.date.today().isoformat()}-{name}{suffix}.json"
        path.write_text(json.dumps({**meta, **result}, indent=1))
        print(f"wrote {path}")


def _dirty() -> bool:
    return bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=HERE,
                               capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
