"""Speed and size of every registered host at 256x256: parameters, MACs/FLOPs, training
throughput (forward + backward + AdamW step) and inference latency, on this machine.

    python benchmarks/bench_hosts.py [--out results/benchmarks/hosts.csv] [--batch-size 8]

Prints a markdown table and writes it as CSV (one row per host, machine columns included) plus a
JSON sidecar (``<out>.json``) with ``irlib.repro.run_metadata``. Timings are wall-clock medians
and bests (the best is the better estimate of uncontended speed); on a shared machine they are
indicative only, and the 1-minute load average before each host is recorded. The default is one
torch thread: with two threads on two cores shared with other processes, every parallel op
waits for a descheduled thread and timings vary tenfold between runs; one thread is stable. Each host's training measurement stops after
``--budget-s`` seconds of timed steps (at least one), so the whole run stays a few minutes.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from irlib.models import count_flops, count_params, create_model, list_models
from irlib.paths import results_root
from irlib.repro import atomic_write_bytes, run_metadata, seed_everything, write_json

COLUMNS = ["model", "params", "gmacs", "gflops", "train_img_per_s", "train_img_per_s_best", "train_step_s",
           "train_runs", "infer_ms", "infer_ms_best", "infer_runs", "batch_size", "size", "load_avg", "threads", "device", "processor", "torch"]


def cpu_name() -> str:
    """CPU model name (from /proc/cpuinfo on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> float | None:
    """1-minute load average (other processes competing for the CPU), None where unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _loss(out, target: torch.Tensor) -> torch.Tensor:
    outs = out if isinstance(out, list) else [out]
    return sum(F.binary_cross_entropy_with_logits(o, target) for o in outs)


def time_training(model: torch.nn.Module, batch: int, size: int, warmup: int, runs: int,
                  budget_s: float) -> list[float]:
    """Seconds of each timed AdamW training step on random data (at least one)."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, model.in_chans, size, size)
    y = (torch.rand(batch, 1, size, size) > 0.99).float()

    def step() -> float:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        _loss(model(x), y).backward()
        opt.step()
        return time.perf_counter() - t0

    for _ in range(warmup):
        step()
    times: list[float] = []
    while len(times) < runs and (not times or sum(times) < budget_s):
        times.append(step())
    return times


@torch.no_grad()
def time_inference(model: torch.nn.Module, size: int, warmup: int, runs: int, budget_s: float) -> list[float]:
    """Seconds of each timed batch-1 forward in eval mode (at least one)."""
    model.eval()
    x = torch.randn(1, model.in_chans, size, size)
    for _ in range(warmup):
        model(x)
    times: list[float] = []
    while len(times) < runs and (not times or sum(times) < budget_s):
        t0 = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t0)
    return times


def markdown(rows: list[dict]) -> str:
    head = ("| host | params (M) | GMACs (papers' \"FLOPs\") | GFLOPs (2xMACs) | train img/s median (best) | "
            "timed steps | inference ms median (best) | timed runs |")
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        lines.append(f"| {r['model']} | {r['params'] / 1e6:.3f} | {r['gmacs']:.3f} | {r['gflops']:.3f} | "
                     f"{r['train_img_per_s']:.2f} ({r['train_img_per_s_best']:.2f}) | {r['train_runs']} | "
                     f"{r['infer_ms']:.1f} ({r['infer_ms_best']:.1f}) | {r['infer_runs']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="CSV path (default: <results>/benchmarks/hosts.csv)")
    parser.add_argument("--models", nargs="+", default=None, help=f"subset of {list_models()}")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=1, help="untimed training steps")
    parser.add_argument("--runs", type=int, default=5, help="timed training steps (at most)")
    parser.add_argument("--infer-runs", type=int, default=10)
    parser.add_argument("--budget-s", type=float, default=20.0,
                        help="stop timing a host's training after this many seconds (>= 1 step)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 1 (default) gives reproducible numbers on a shared machine, "
                             "0 keeps torch's default (all cores)")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(0)
    out = args.out or results_root() / "benchmarks" / "hosts.csv"
    meta = run_metadata({k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, seed=0)
    machine = {"threads": torch.get_num_threads(), "device": "cpu",
               "processor": cpu_name(), "torch": torch.__version__}
    rows = []
    for name in args.models or list_models():
        model = create_model(name)
        load = load_average()
        flops = count_flops(model, (1, model.in_chans, args.size, args.size))
        train = time_training(model, args.batch_size, args.size, args.warmup, args.runs, args.budget_s)
        infer = time_inference(model, args.size, 3, args.infer_runs, args.budget_s / 3)
        step_s = statistics.median(train)
        rows.append({"model": name, "params": count_params(model), "gmacs": flops / 2e9, "gflops": flops / 1e9,
                     "train_img_per_s": args.batch_size / step_s, "train_img_per_s_best": args.batch_size / min(train),
                     "train_step_s": step_s, "train_runs": len(train),
                     "infer_ms": statistics.median(infer) * 1e3, "infer_ms_best": min(infer) * 1e3,
                     "infer_runs": len(infer), "batch_size": args.batch_size, "size": args.size, "load_avg": load,
                     **machine})
        print(f"{name}: {rows[-1]['train_img_per_s']:.2f} img/s, {rows[-1]['infer_ms']:.1f} ms", file=sys.stderr)

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_bytes(out, buf.getvalue().encode())
    write_json(Path(out).with_suffix(".json"), {**meta, "rows": rows})
    print(markdown(rows))
    loads = [r["load_avg"] for r in rows if r["load_avg"] is not None]
    print(f"\n{meta['machine']['platform']}, {machine['processor']}, {meta['machine']['cpu_count']} CPUs, "
          f"{machine['threads']} torch threads, torch {machine['torch']}, 1-min load average "
          f"{min(loads, default=float('nan')):.1f}-{max(loads, default=float('nan')):.1f} before each host; "
          f"written to {out}")
    return rows


if __name__ == "__main__":
    main()
