"""Cost of one FDEP (CO-ISD) training step relative to the host's plain step, measured in one run.

For each host, on the same batch: a plain supervised step (forward, SoftIoU loss, backward,
AdamW), the CO-ISD step with the frozen encoder run on the crops (host encoder once, frozen
encoder under no_grad, 4 SAMF, two decoder passes, summed loss, one backward, AdamW), and the
CO-ISD step with cached frozen features (:mod:`irlib.fdep.cache`: whole-image maps computed
once per image and flip variant, warmed before timing, cut to the crop). ``--full`` adds the
uncached step with the cached step's semantics (whole-image maps computed every step). The arms
are interleaved step by step so load from other jobs hits all alike; the ratios of the medians to
the baseline's and the medians of the per-step ratios (each step against the baseline step just
before it) are printed. ``--breakdown`` then times the parts of the baseline and cached steps
(forward pieces, backward, optimiser) to show where the extra time goes. Inference cost needs no
timing: the deployed FDEP model is the host itself (the export test checks parameters and
FLOPs). Writes a CSV (default results/benchmarks/fdep_step.csv) and a JSON with run metadata.

    python benchmarks/bench_fdep.py                         # acm and alcnet, batch 16, 256x256
    python benchmarks/bench_fdep.py --hosts acm --batch 4 --size 128 --steps 5 --breakdown
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from irlib.data.sample import Sample  # noqa: E402
from irlib.data.torchdata import SirstTorchDataset  # noqa: E402
from irlib.data.transforms import JointAugment  # noqa: E402
from irlib.engine import Normalize, build_loss  # noqa: E402
from irlib.fdep import CoISD, CoISDObjective  # noqa: E402
from irlib.fdep.cache import FrozenFeatures, required_align  # noqa: E402
from irlib.fdep.coisd import frozen_batchnorm_stats  # noqa: E402
from irlib.fdep.store import MemoryStore  # noqa: E402
from irlib.models import create_model  # noqa: E402
from irlib.paths import results_root  # noqa: E402
from irlib.repro import run_metadata, write_json  # noqa: E402
from irlib.vfm import create_encoder  # noqa: E402


def aligned_batch(batch: int, size: int, align: int) -> tuple[SirstTorchDataset, dict]:
    """``batch`` random images of ``size``², cropped whole with random flips, as one batch."""
    rng = np.random.default_rng(0)
    samples = [Sample(f"bench{i}", rng.random((size, size)).astype(np.float32), rng.random((size, size)) > 0.995)
               for i in range(batch)]
    ds = SirstTorchDataset(samples, True, seed=0, augment=JointAugment(size, align=align))
    return ds, default_collate([ds[i] for i in range(batch)])


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def breakdown(host: torch.nn.Module, coisd: CoISD, features: FrozenFeatures, batch: dict,
              normalize: Normalize, loss_fn: Callable, steps: int) -> dict[str, float]:
    """Median seconds of each part of a baseline step and of a cached CO-ISD step."""
    x, mask = batch["image"], batch["mask"]
    xn = normalize(x)
    parts: dict[str, list[float]] = {}
    opt_b = torch.optim.AdamW(host.parameters(), 1e-3)
    opt_c = torch.optim.AdamW([q for q in coisd.parameters() if q.requires_grad], 1e-3)
    h = coisd.host
    for i in range(steps + 1):
        rec: dict[str, float] = {}
        opt_b.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        feats_b = host.encode(xn)
        rec["base: encode"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        loss_b = loss_fn(host.decode(feats_b, x.shape[-2:]), mask)
        rec["base: decode+loss"] = time.perf_counter() - t0
        rec["base: backward"] = timed(loss_b.backward)
        rec["base: AdamW"] = timed(opt_b.step)
        # one decoder's backward alone (encoder outputs detached): what the second decode adds
        cut = replace(feats_b, stages=[t.detach().requires_grad_() for t in feats_b.stages],
                      bottleneck=feats_b.bottleneck.detach().requires_grad_())
        loss_d = loss_fn(host.decode(cut, x.shape[-2:]), mask)
        rec["base: decode backward alone"] = timed(loss_d.backward)
        host.zero_grad(set_to_none=True)

        opt_c.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        feats = h.encode(xn)
        rec["cached: host encode"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        vfm = features(batch)
        rec["cached: feature cut"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        fused = coisd.samf(feats.bottleneck, vfm)
        rec["cached: SAMF x4"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with frozen_batchnorm_stats(h):
            loss_main = loss_fn(h.decode(replace(feats, bottleneck=fused), x.shape[-2:]), mask)
        rec["cached: main decode+loss"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        loss = loss_main + loss_fn(h.decode(feats, x.shape[-2:]), mask)
        rec["cached: light decode+loss"] = time.perf_counter() - t0
        rec["cached: backward"] = timed(loss.backward)
        rec["cached: AdamW"] = timed(opt_c.step)
        b = feats.bottleneck.detach().requires_grad_()
        out = coisd.samf(b, vfm)
        rec["cached: SAMF backward alone"] = timed(lambda: out.backward(torch.ones_like(out)))
        opt_c.zero_grad(set_to_none=True)
        if i:
            for k, v in rec.items():
                parts.setdefault(k, []).append(v)
    return {k: statistics.median(v) for k, v in parts.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hosts", nargs="+", default=["acm", "alcnet"])
    p.add_argument("--encoder", default="efficientnet_lite0")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=8, help="timed steps per arm (after 2 warm-up steps)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--full", action="store_true", help="also time the uncached whole-image step")
    p.add_argument("--breakdown", action="store_true", help="also time the parts of the cached step")
    p.add_argument("--out", default=None, help="CSV path (default results/benchmarks/fdep_step.csv)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    normalize, loss_fn = Normalize(0.43, 0.12), build_loss("softiou")
    rows = []
    for name in args.hosts:
        host = create_model(name).train()
        models = {arm: CoISD(create_model(name), create_encoder(args.encoder)).train()
                  for arm in ("fdep", "cached", "full")}
        align = required_align(models["fdep"].encoder, models["fdep"].vfm_layers)
        ds, batch = aligned_batch(args.batch, args.size, align)
        x, mask = batch["image"], batch["mask"]
        crop_objective = CoISDObjective(loss_fn, 1.0, normalize)
        cached = FrozenFeatures.for_model(models["cached"], ds, MemoryStore(2**34))
        cached(batch)  # warm the cache: every (image, variant) of the batch is stored
        objectives = {"fdep": crop_objective, "cached": CoISDObjective(loss_fn, 1.0, normalize, cached),
                      "full": CoISDObjective(loss_fn, 1.0, normalize, FrozenFeatures.for_model(models["full"], ds))}

        def arm_step(arm: str) -> Callable[[], torch.Tensor]:
            return lambda: objectives[arm](models[arm], batch)[0]

        def optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
            return torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], 1e-3)

        steps = {"baseline": (optimizer(host), lambda: loss_fn(host(normalize(x)), mask)),
                 "fdep": (optimizer(models["fdep"]), arm_step("fdep")),
                 "cached": (optimizer(models["cached"]), arm_step("cached"))}
        if args.full:
            steps["full"] = (optimizer(models["full"]), arm_step("full"))
        times: dict[str, list[float]] = {k: [] for k in steps}
        for i in range(args.steps + 2):
            for arm, (opt, step) in steps.items():
                t0 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                step().backward()
                opt.step()
                if i >= 2:
                    times[arm].append(time.perf_counter() - t0)
        med = {arm: statistics.median(t) for arm, t in times.items()}
        base = med["baseline"]
        row = {"host": name, "encoder": args.encoder, "batch": args.batch, "size": args.size,
               "threads": args.threads, "baseline_step_s": round(base, 4)}
        # each step against the baseline step just before it (same load), then the median
        paired = {arm: statistics.median(a / b for a, b in zip(times[arm], times["baseline"])) for arm in steps}
        for arm in steps:
            if arm != "baseline":
                row.update({f"{arm}_step_s": round(med[arm], 4), f"{arm}_ratio": round(med[arm] / base, 3),
                            f"{arm}_paired_ratio": round(paired[arm], 3)})
        row["ratio"] = row["fdep_ratio"]  # the column earlier runs wrote (per-crop CO-ISD)
        row.update(cache_hits=cached.stats["hits"], cache_misses=cached.stats["misses"],
                   encoder_description=models["fdep"].encoder.description)
        print(f"{name:8s} baseline {base:.3f} s/step   " + "   ".join(
            f"{arm} {med[arm]:.3f} s ({med[arm] / base:.2f}x)" for arm in steps if arm != "baseline"))
        print("         median of per-step ratios: " + "   ".join(
            f"{arm} {paired[arm]:.2f}x" for arm in steps if arm != "baseline"))
        if args.breakdown:
            parts = breakdown(host, models["cached"], cached, batch, normalize, loss_fn, args.steps)
            for k, v in parts.items():
                print(f"    {k:30s} {v:.4f} s  ({v / base:.2f} of the baseline step)")
            floor = (parts["base: decode+loss"] + parts["base: decode backward alone"] + parts["cached: SAMF x4"]
                     + parts["cached: SAMF backward alone"]) / base
            print(f"    inherent extra of a cached step (decode + SAMF, forward and backward): {floor:.2f} "
                  f"of the baseline step, i.e. a floor of {1 + floor:.2f}x")
            row["floor_ratio"] = round(1 + floor, 3)
            row.update({f"part {k}": round(v, 4) for k, v in parts.items()})
        rows.append(row)

    out = Path(args.out) if args.out else results_root() / "benchmarks" / "fdep_step.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    import pandas as pd

    pd.DataFrame(rows).to_csv(out, index=False)
    write_json(out.with_suffix(".json"), {"rows": rows, "metadata": run_metadata(vars(args))})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
