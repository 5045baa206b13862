"""Forward time of the frozen encoders (irlib.vfm) on this machine.

One gray image (batch 1, 256 x 256 by default) per call, one torch thread by default, under
``no_grad``, after one warm-up call (skipped when a single call already takes more than
``--slow`` seconds). Encoders with real weights here (EfficientNet-Lite0, MobileNetV2) load
them; DINOv2-S/B and SAM-B have no checkpoint on these machines, so they are timed with random
weights (same architecture, same cost). Writes a CSV (default
``results/benchmarks/encoders.csv``) and a JSON twin carrying :func:`irlib.repro.run_metadata`.

    python benchmarks/bench_encoders.py                # the default set, ~1-2 min on 2 cores
    python benchmarks/bench_encoders.py --encoders tiny_cnn_random mobilenet_v2 --size 128
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from irlib.errors import IrlibInputError  # noqa: E402
from irlib.paths import results_root  # noqa: E402
from irlib.repro import atomic_write_bytes, run_metadata, write_json  # noqa: E402
from irlib.vfm import create_encoder  # noqa: E402

# (label, encoder name, create_encoder kwargs)
DEFAULT_SET: list[tuple[str, str, dict[str, Any]]] = [
    ("tiny_cnn_random", "tiny_cnn_random", {}),
    ("tiny_vit_random", "tiny_vit_random", {}),
    ("mobilenet_v2", "mobilenet_v2", {}),
    ("efficientnet_lite0", "efficientnet_lite0", {}),
    ("dinov2_vits14 (random)", "dinov2_vits14", {"weights": "random"}),
    ("dinov2_vitb14 (random)", "dinov2_vitb14", {"weights": "random"}),
    ("sam_vit_b@256 (random)", "sam_vit_b", {"weights": "random", "resize": 256}),
    ("sam_vit_b@1024 (random)", "sam_vit_b", {"weights": "random"}),
]


def time_forward(encoder: torch.nn.Module, x: torch.Tensor, min_time: float, max_reps: int,
                 slow: float) -> list[float]:
    """Seconds per forward call: warm-up unless slow, then repeat until ``min_time`` or ``max_reps``."""
    t0 = time.perf_counter()
    encoder(x)
    first = time.perf_counter() - t0
    if first > slow:
        return [first]
    times: list[float] = []
    while len(times) < max_reps and (sum(times) < min_time or len(times) < 3):
        t0 = time.perf_counter()
        encoder(x)
        times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a shared CPU more threads stall each other)")
    ap.add_argument("--encoders", nargs="*", default=None, help="labels or names from the default set")
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds of timed calls per encoder")
    ap.add_argument("--max-reps", type=int, default=20)
    ap.add_argument("--slow", type=float, default=2.0, help="single timed call above this (s)")
    ap.add_argument("--out", type=Path, default=None,
                    help="CSV path (default results/benchmarks/encoders.csv)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    wanted = args.encoders
    chosen = [e for e in DEFAULT_SET if wanted is None or e[0] in wanted or e[1] in wanted]
    out = args.out or results_root() / "benchmarks" / "encoders.csv"
    x = torch.rand(args.batch, 1, args.size, args.size, generator=torch.Generator().manual_seed(0))
    rows = []
    for label, name, kwargs in chosen:
        try:
            enc = create_encoder(name, **kwargs)
        except IrlibInputError as exc:
            print(f"skip {label}: {exc}".splitlines()[0])
            continue
        enc_in, _ = enc.preprocess(x)
        times = time_forward(enc, x, args.min_time, args.max_reps, args.slow)
        grid = enc(x).features[-1].shape[-2:]
        rows.append({
            "encoder": label, "name": name,
            "weights": "random" if kwargs.get("weights") == "random" or name.endswith("_random") else "real",
            "is_stand_in": enc.is_stand_in, "description": enc.description,
            "input": f"{args.batch}x1x{args.size}x{args.size}",
            "encoder_input": f"{enc_in.shape[-2]}x{enc_in.shape[-1]}", "last_grid": f"{grid[0]}x{grid[1]}",
            "feature_channels": "/".join(map(str, enc.feature_channels)),
            "params_M": round(sum(p.numel() for p in enc.parameters()) / 1e6, 2),
            "forward_ms_median": round(1e3 * statistics.median(times), 1),
            "forward_ms_min": round(1e3 * min(times), 1), "reps": len(times),
            "threads": torch.get_num_threads(),
        })
        r = rows[-1]
        print(f"{label:26s} {r['encoder_input']:>10s} {r['params_M']:8.2f} M "
              f"{r['forward_ms_median']:10.1f} ms  (min {r['forward_ms_min']:.1f}, {r['reps']} reps)",
              flush=True)
        del enc
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(out, buf.getvalue().encode())
    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    write_json(out.with_suffix(".json"), {"metadata": run_metadata(params), "rows": rows})
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
