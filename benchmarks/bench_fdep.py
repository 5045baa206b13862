"""Cost of one FDEP (CO-ISD) training step relative to the host's plain step, measured in one run.

For each host: a plain supervised step (forward, SoftIoU loss, backward, AdamW) and a CO-ISD
step (host encoder once, frozen encoder under no_grad, 4 SAMF, two decoder passes, summed loss,
one backward, AdamW) on the same random batch. The two are interleaved step by step so load
from other jobs hits both alike; the medians and their ratio are printed. Inference cost needs
no timing: the deployed FDEP model is the host itself (the export test checks parameters and
FLOPs). Writes a CSV (default results/benchmarks/fdep_step.csv) and a JSON with run metadata.

    python benchmarks/bench_fdep.py                         # acm and alcnet, batch 16, 256x256
    python benchmarks/bench_fdep.py --hosts acm --batch 4 --size 128 --steps 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from irlib.engine import Normalize, build_loss  # noqa: E402
from irlib.fdep import CoISD, CoISDObjective  # noqa: E402
from irlib.models import create_model  # noqa: E402
from irlib.paths import results_root  # noqa: E402
from irlib.repro import run_metadata, write_json  # noqa: E402
from irlib.vfm import create_encoder  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hosts", nargs="+", default=["acm", "alcnet"])
    p.add_argument("--encoder", default="efficientnet_lite0")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=8, help="timed steps per arm (after 2 warm-up steps)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", default=None, help="CSV path (default results/benchmarks/fdep_step.csv)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    x = torch.rand(args.batch, 1, args.size, args.size)
    mask = (torch.rand_like(x) > 0.995).float()
    normalize, loss_fn = Normalize(0.43, 0.12), build_loss("softiou")
    batch = {"image": x, "mask": mask}
    rows = []
    for name in args.hosts:
        host = create_model(name).train()
        coisd = CoISD(create_model(name), create_encoder(args.encoder)).train()
        objective = CoISDObjective(loss_fn, 1.0, normalize)
        steps = {
            "baseline": (torch.optim.AdamW(host.parameters(), 1e-3),
                         lambda: loss_fn(host(normalize(x)), mask)),
            "fdep": (torch.optim.AdamW([q for q in coisd.parameters() if q.requires_grad], 1e-3),
                     lambda: objective(coisd, batch)[0]),
        }
        times: dict[str, list[float]] = {k: [] for k in steps}
        for i in range(args.steps + 2):
            for arm, (opt, step) in steps.items():
                t0 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                step().backward()
                opt.step()
                if i >= 2:
                    times[arm].append(time.perf_counter() - t0)
        base, fdep = statistics.median(times["baseline"]), statistics.median(times["fdep"])
        rows.append({"host": name, "encoder": args.encoder, "batch": args.batch, "size": args.size,
                     "baseline_step_s": round(base, 4), "fdep_step_s": round(fdep, 4),
                     "ratio": round(fdep / base, 3), "encoder_description": coisd.encoder.description})
        print(f"{name:8s} baseline {base:.3f} s/step   FDEP {fdep:.3f} s/step   ratio {fdep / base:.2f}x")

    out = Path(args.out) if args.out else results_root() / "benchmarks" / "fdep_step.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    import pandas as pd

    pd.DataFrame(rows).to_csv(out, index=False)
    write_json(out.with_suffix(".json"), {"rows": rows, "metadata": run_metadata(vars(args))})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
