"""SimIR student against SAM ViT-B's image encoder: parameters, FLOPs and CPU latency, one run.

    python benchmarks/bench_simir.py                       # 256 and 512, every model
    python benchmarks/bench_simir.py --released-max-size 256   # the stride-1 `simir` at 256 only
    python benchmarks/bench_simir.py --quick               # smoke check: 64 x 64, one timed call each

Models: ``simir`` (released configuration, stride-1 stem), ``simir_s4`` (stock stride-4 RepViT
stem), ``simir_tiny`` (irlib's CPU configuration) as whole segmenters, and SAM ViT-B's image
encoder alone (segment-anything's ``ImageEncoderViT`` with random weights, built by
``irlib.vfm.create_encoder("sam_vit_b", weights="random", resize=size)``: the same architecture
and cost as the release; nothing is downloaded). SAM's decoder is left out, so every "SAM / student"
ratio is a lower bound of SAM's cost. Batch 1, one gray ``size x size`` image, eval mode,
``no_grad``, one torch thread by default (see ``bench_hosts.py`` for why).

FLOPs (= 2 x MACs) come from ``torch.utils.flop_counter.FlopCounterMode`` with one addition: the
CPU kernel of ``scaled_dot_product_attention`` (``nn.MultiheadAttention`` of the student's query
blocks), which PyTorch's table lacks, is counted with PyTorch's own SDPA formula (column
``sdpa_gflops``). ``irlib.models.count_flops`` is not used: it misses that attention and, under
``no_grad``, fails on the student (module tracker vs. query embeddings expanded from parameters).
Not counted: norms, activations, softmax, interpolation and ``grid_sample`` (the 8-channel
deformable sampling), as in ``irlib.models.complexity``.

Latency: one untimed warm-up call, then ``--repeats`` timed calls (``--slow-repeats`` when the
warm-up took more than ``--slow`` seconds); median and best. The ratios are printed per size and
written with the rows to ``<results>/benchmarks/simir_vs_sam.csv`` and its JSON twin (provenance
from ``irlib.repro.run_metadata``); ``--quick`` writes under ``<results>/_smoke/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_hosts import cpu_name, load_average  # noqa: E402
from irlib.models import count_params, create_model  # noqa: E402
from irlib.models.complexity import flop_counter, parameters_frozen  # noqa: E402
from irlib.paths import results_root  # noqa: E402
from irlib.repro import atomic_write_bytes, run_metadata, seed_everything, write_json  # noqa: E402
from irlib.vfm import create_encoder  # noqa: E402

STUDENTS = ("simir", "simir_s4", "simir_tiny")
SAM = "sam_vit_b"
RELEASED = "simir"
BASELINE_STEM = "simir_s4"
GOAL = 20.0  # issue 10: the stock-stem student at least 20x faster than SAM ViT-B at equal input
def count_forward_flops(model: nn.Module, x: torch.Tensor) -> tuple[int, int, dict[str, int]]:
    """(total FLOPs, of which CPU SDPA, FLOPs per direct child module) of one eval forward."""
    model.eval()
    counter = flop_counter()
    with parameters_frozen(model), torch.no_grad(), counter:
        model(x)
    counts = counter.get_flop_counts()
    root = type(model).__name__
    parts = {name: sum(counts.get(f"{root}.{name}", {}).values()) for name, _ in model.named_children()}
    sdpa = sum(v for op, v in counts.get("Global", {}).items() if "scaled_dot_product" in str(op))
    return int(counter.get_total_flops()), int(sdpa), {k: int(v) for k, v in parts.items() if v}


@torch.no_grad()
def time_forward(model: nn.Module, x: torch.Tensor, repeats: int, slow: float,
                 slow_repeats: int) -> tuple[float, list[float]]:
    """(warm-up seconds, timed seconds): fewer timed calls when the warm-up exceeds ``slow``."""
    model.eval()
    t0 = time.perf_counter()
    model(x)
    warm = time.perf_counter() - t0
    times = []
    for _ in range(max(1, slow_repeats if warm > slow else repeats)):
        t0 = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t0)
    return warm, times


def build(name: str, size: int, fuse: bool) -> tuple[nn.Module, str]:
    """The model and a description; SAM ViT-B's encoder is built for ``size``."""
    if name == SAM:
        enc = create_encoder(SAM, weights="random", resize=size)
        return enc, "SAM ViT-B image encoder (segment-anything ImageEncoderViT, random weights)"
    torch.manual_seed(0)
    model = create_model(name)
    if fuse:
        model.encoder.body.fuse()
    enc = model.encoder
    desc = (f"SimIR student {name}: {enc.body.pretrained_cfg['architecture']}, stride-{enc.stem_stride} stem, "
            f"{enc.dim}-d, whole segmenter{' (RepViT body fused)' if fuse else ''}")
    return model, desc


def measure(name: str, model: nn.Module, desc: str, size: int, args: argparse.Namespace) -> dict[str, Any]:
    """One row: parameters, FLOPs (per part for the student), latency, load average."""
    x = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(0))
    load = load_average()
    flops, sdpa, parts = count_forward_flops(model, x)
    warm, times = time_forward(model, x, args.repeats, args.slow, args.slow_repeats)
    print(f"{name}@{size}: {flops / 1e9:.2f} GFLOPs, {1e3 * statistics.median(times):.1f} ms "
          f"(best {1e3 * min(times):.1f}, {len(times)} timed)", file=sys.stderr, flush=True)
    return {"model": name, "size": size, "params": count_params(model),
            "gflops": flops / 1e9, "gmacs": flops / 2e9, "sdpa_gflops": sdpa / 1e9,
            "part_gflops": ";".join(f"{k}={v / 1e9:.4g}" for k, v in parts.items()),
            "ms_median": 1e3 * statistics.median(times), "ms_best": 1e3 * min(times), "timed": len(times),
            "warmup_ms": 1e3 * warm, "load_avg": load, "description": desc}


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per size: SAM / student for every student, and the stride-1 stem's cost (simir / simir_s4)."""
    out = []
    by = {(r["model"], r["size"]): r for r in rows}
    pairs: list[tuple[str, str, str]] = [(SAM, s, f"{SAM} / {s}") for s in STUDENTS]
    pairs.append((RELEASED, BASELINE_STEM, f"{RELEASED} / {BASELINE_STEM} (stride-1 stem cost)"))
    for size in sorted({r["size"] for r in rows}):
        for num, den, label in pairs:
            a, b = by.get((num, size)), by.get((den, size))
            if a is None or b is None:
                continue
            out.append({"size": size, "ratio": label, "params": a["params"] / b["params"],
                        "gflops": a["gflops"] / b["gflops"], "latency_median": a["ms_median"] / b["ms_median"],
                        "latency_best": a["ms_best"] / b["ms_best"]})
    return out


def report(rows: list[dict[str, Any]], rat: list[dict[str, Any]]) -> str:
    """Markdown tables: the measurements, the ratios, the issue's 20x goal."""
    lines = ["| model | size | params (M) | GFLOPs | of which SDPA | ms median (best) | timed |", "|" + "---|" * 7]
    for r in rows:
        lines.append(f"| {r['model']} | {r['size']} | {r['params'] / 1e6:.2f} | {r['gflops']:.2f} | "
                     f"{r['sdpa_gflops']:.3f} | {r['ms_median']:.1f} ({r['ms_best']:.1f}) | {r['timed']} |")
    lines += ["", "| size | ratio | params | FLOPs | latency median | latency best |", "|" + "---|" * 6]
    for r in rat:
        lines.append(f"| {r['size']} | {r['ratio']} | {r['params']:.2f}x | {r['gflops']:.2f}x | "
                     f"{r['latency_median']:.2f}x | {r['latency_best']:.2f}x |")
    for r in rat:
        if r["ratio"] == f"{SAM} / {BASELINE_STEM}":
            verdict = "met" if r["latency_median"] >= GOAL else "NOT met"
            lines.append(f"\nat {r['size']}: {BASELINE_STEM} is {r['latency_median']:.1f}x faster than SAM ViT-B's "
                         f"encoder (median); goal >= {GOAL:.0f}x {verdict}")
    return "\n".join(lines)


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """CSV, floats to 6 significant digits."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_bytes(path, buf.getvalue().encode())


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--models", nargs="+", default=[*STUDENTS, SAM], choices=[*STUDENTS, SAM])
    ap.add_argument("--repeats", type=int, default=5, help="timed calls after the warm-up")
    ap.add_argument("--slow", type=float, default=10.0, help="warm-up seconds above which --slow-repeats apply")
    ap.add_argument("--slow-repeats", type=int, default=2, help="timed calls of a slow model")
    ap.add_argument("--released-max-size", type=int, default=0,
                    help=f"measure the stride-1 `{RELEASED}` only at sizes <= this (0: every size); "
                         "it takes minutes per call at 512 on one thread")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--fuse", action="store_true", help="fuse the students' RepViT bodies (Conv-BN, RepVGGDW)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke check: size 64, 1 timed call, written under <results>/_smoke/")
    ap.add_argument("--out", type=Path, default=None, help="CSV path (default <results>/benchmarks/simir_vs_sam.csv)")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats, args.slow_repeats = [64], 1, 1
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(0)
    out = args.out or results_root() / ("_smoke" if args.quick else "") / "benchmarks" / "simir_vs_sam.csv"
    meta = run_metadata({k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, seed=0)
    rows = []
    for size in args.sizes:
        for model_name in args.models:
            if model_name == RELEASED and 0 < args.released_max_size < size:
                print(f"skip {RELEASED}@{size} (--released-max-size {args.released_max_size})", file=sys.stderr)
                continue
            model, desc = build(model_name, size, args.fuse)
            rows.append(measure(model_name, model, desc, size, args))
            del model
    machine = {"threads": torch.get_num_threads(), "processor": cpu_name(), "torch": torch.__version__}
    rat = ratios(rows)
    write_rows(out, [{**r, **machine} for r in rows])
    write_json(out.with_suffix(".json"), {"metadata": meta, "machine": machine, "rows": rows, "ratios": rat})
    print(report(rows, rat))
    loads = [r["load_avg"] for r in rows if r["load_avg"] is not None]
    print(f"\n{machine['processor']}, {machine['threads']} torch thread(s), torch {machine['torch']}, 1-min load "
          f"average {min(loads, default=float('nan')):.1f}-{max(loads, default=float('nan')):.1f}; "
          f"written to {out} and {out.with_suffix('.json')}")
    return rows


if __name__ == "__main__":
    main()
