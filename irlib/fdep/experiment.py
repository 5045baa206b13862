"""The FDEP experiment of notebooks/02_fdep_train.ipynb: baseline vs host + FDEP, one protocol.

Both arms share the data, crops, sample order, optimiser, schedule, epochs and seed; they differ
only in the training step (plain supervised loss vs CO-ISD with SAMF and the frozen encoder).
Both are evaluated the same way: the deployed host at native resolution, last epoch (no model
selection on the test set), IoU / nIoU / Pd / Fa at 0.5 and HSE over the threshold grid.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from irlib.data import open_dataset
from irlib.data.stats import dataset_stats
from irlib.data.torchdata import SirstTorchDataset
from irlib.engine import History, Normalize, fit, iter_predictions
from irlib.fdep.coisd import CoISD
from irlib.fdep.objective import CoISDObjective
from irlib.metrics import SirstMetrics, SweepCurves, ThresholdSweep, hse
from irlib.models import count_params, create_model
from irlib.paths import resolve_profile
from irlib.repro import atomic_write_bytes, run_metadata, write_json
from irlib.vfm import create_encoder

VARIANTS = ("baseline", "fdep")


@dataclass
class FdepConfig:
    """Every setting of one FDEP experiment (a profile fills the ones left as ``None``)."""

    dataset: str = "synthetic"
    root: str | None = None
    train_split: str = "train"
    test_split: str = "test"
    host: str = "acm"
    encoder: str = "efficientnet_lite0"
    encoder_weights: str | None = None
    num_samf: int = 4
    samf_gate: str = "none"
    lam: float = 1.0
    loss: str = "softiou"
    epochs: int = 0
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    scheduler: str | None = None
    crop_size: int = 256
    seeds: list[int] = field(default_factory=lambda: [0])
    device: str = "auto"
    eval_every: int = 0
    # synthetic data only: images per split and their size
    synthetic_train: int = 512
    synthetic_test: int = 128
    synthetic_size: int = 256
    # real data only: use the first N images of each split (smoke runs); None = all
    max_train_images: int | None = None
    max_test_images: int | None = None
    # real data: a mask whose size differs from its image (NUAA-SIRST Misc_111) is resized to the
    # image with nearest neighbour and a warning ("resize_mask"), or stops the run ("raise")
    on_size_mismatch: str = "resize_mask"
    profile: str = "demo"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Profile defaults. ``paper`` is the FDEP authors' framework protocol (AdamW, lr 1e-3, batch
#: 16, random 256 crops, 400 epochs); ``demo`` fits in 10 minutes on a 2-core CPU and uses
#: batch 4 so that its short budget still gives enough optimiser steps (1280); ``smoke`` is for CI.
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": dict(epochs=2, batch_size=8, crop_size=64, eval_every=1, synthetic_train=16,
                  synthetic_test=6, synthetic_size=96, max_train_images=16, max_test_images=6),
    "demo": dict(epochs=20, batch_size=4, crop_size=128, eval_every=5, synthetic_train=256,
                 synthetic_test=48, synthetic_size=256),
    "paper": dict(epochs=400, batch_size=16, crop_size=256, lr=1e-3, eval_every=10),
}


def make_config(profile: str | None = None, **overrides: Any) -> FdepConfig:
    """Config of ``profile`` (see :data:`PROFILES`) with every non-``None`` override applied."""
    profile = resolve_profile(profile)
    known = {f.name for f in fields(FdepConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown FDEP settings {sorted(unknown)}; known: {sorted(known)}")
    values = {**PROFILES[profile], **{k: v for k, v in overrides.items() if v is not None}}
    if "seeds" in values:
        values["seeds"] = [int(s) for s in np.atleast_1d(values["seeds"])]
    return FdepConfig(profile=profile, **values)


@dataclass
class ExperimentData:
    """Training set (random crops), test set (native images) and the host normalisation."""

    train: SirstTorchDataset
    test: Sequence
    normalize: Normalize
    label: str


def _subset(ds: Sequence, n: int | None) -> Sequence:
    if n is None or n >= len(ds):
        return ds
    return torch.utils.data.Subset(ds, range(n))


def load_data(cfg: FdepConfig) -> ExperimentData:
    """Open the train/test splits of ``cfg.dataset`` and measure the train split's gray statistics."""
    if cfg.dataset.lower() == "synthetic":
        size = cfg.synthetic_size
        train = open_dataset("synthetic", "train", num_images=cfg.synthetic_train, size=size)
        test = open_dataset("synthetic", "test", num_images=cfg.synthetic_test, size=size)
    else:
        kw = {"root": cfg.root, "on_size_mismatch": cfg.on_size_mismatch}
        train = _subset(open_dataset(cfg.dataset, cfg.train_split, **kw), cfg.max_train_images)
        test = _subset(open_dataset(cfg.dataset, cfg.test_split, **kw), cfg.max_test_images)
    normalize = Normalize.from_stats(dataset_stats(train))  # BasicIRSTD's per-image convention
    label = f"{cfg.dataset} ({len(train)} train / {len(test)} test images)"
    return ExperimentData(SirstTorchDataset(train, train=True, crop_size=cfg.crop_size), test, normalize, label)


def build_model(cfg: FdepConfig, variant: str, seed: int) -> nn.Module:
    """The host (baseline) or CO-ISD(host, frozen encoder) (fdep), initialised from ``seed``.

    The host is created first from the same seed in both arms, so both start from identical
    host weights; SAMF modules are initialised afterwards.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    torch.manual_seed(seed)
    host = create_model(cfg.host)
    if variant == "baseline":
        return host
    encoder = create_encoder(cfg.encoder, weights=cfg.encoder_weights)
    return CoISD(host, encoder, num_samf=cfg.num_samf, gate=cfg.samf_gate)


@dataclass
class RunResult:
    """One trained arm: its metrics row, training history and threshold curves."""

    variant: str
    seed: int
    row: dict[str, Any]
    history: History
    curves: SweepCurves
    deployed: nn.Module
    samples: dict[str, np.ndarray]


def evaluate_deployed(model: nn.Module, data: ExperimentData, device: str,
                      keep: Sequence[int] = ()) -> tuple[dict[str, float], SweepCurves, dict[str, np.ndarray]]:
    """Standard metrics at 0.5, HSE over the default grid, and the probability maps of ``keep``."""
    standard, sweep = SirstMetrics(), ThresholdSweep()
    samples: dict[str, np.ndarray] = {}
    for i, (name, prob, mask) in enumerate(iter_predictions(model, data.test, data.normalize, device)):
        standard.update(prob, mask, name=name)
        sweep.update(prob, mask, name=name)
        if i in keep:
            samples[name] = prob
    metrics = standard.compute()
    curves = sweep.compute()
    score = hse(curves)
    row = {"IoU": metrics["IoU"], "nIoU": metrics["nIoU"], "Pd": metrics["Pd"], "Fa_1e-6": metrics["Fa"] * 1e6,
           "HSE": score.score, "HSE_pixel": score.pixel, "HSE_target": score.target}
    return row, curves, samples


def run_arm(cfg: FdepConfig, variant: str, seed: int, data: ExperimentData, progress: bool = True,
            keep: Sequence[int] = (0, 1, 2, 3)) -> RunResult:
    """Train one arm with ``seed`` and evaluate its deployed host (keeping the maps of ``keep``)."""
    model = build_model(cfg, variant, seed)
    objective = CoISDObjective(cfg.loss, cfg.lam, data.normalize) if variant == "fdep" else None
    eval_fn = None
    if cfg.eval_every:
        def eval_fn(m: nn.Module, ds: Any) -> dict[str, float]:
            return evaluate_deployed(m, data, cfg.device)[0]
    t0 = time.perf_counter()
    history = fit(model, data.train, epochs=cfg.epochs, normalize=data.normalize, batch_size=cfg.batch_size,
                  lr=cfg.lr, weight_decay=cfg.weight_decay, objective=objective, loss=cfg.loss,
                  scheduler=cfg.scheduler, device=cfg.device, seed=seed, progress=progress,
                  eval_set=data.test if cfg.eval_every else None, eval_every=cfg.eval_every or 1,
                  eval_fn=eval_fn)
    train_time = time.perf_counter() - t0
    deployed = model.export_host() if isinstance(model, CoISD) else model.eval()
    metrics, curves, samples = evaluate_deployed(deployed, data, cfg.device, keep)
    encoder_desc = model.encoder.description if isinstance(model, CoISD) else ""
    stand_in = bool(model.encoder.is_stand_in) if isinstance(model, CoISD) else None
    row = {"dataset": cfg.dataset, "host": cfg.host, "variant": variant, "seed": seed, "epochs": cfg.epochs,
           "encoder": cfg.encoder if variant == "fdep" else "none", "encoder_is_stand_in": stand_in,
           "encoder_description": encoder_desc, "lambda": cfg.lam if variant == "fdep" else None,
           **metrics, "deployed_params": count_params(deployed), "train_time_s": round(train_time, 1),
           "profile": cfg.profile}
    return RunResult(variant, seed, row, history, curves, deployed, samples)


def results_stem(cfg: FdepConfig) -> str:
    """``<dataset>_<host>_<encoder>``, the file name of an experiment's results."""
    return f"{cfg.dataset}_{cfg.host}_{cfg.encoder}".replace("/", "-")


def provenance(cfg: FdepConfig) -> dict[str, Any]:
    """Parameters, seeds, versions and commit; take it before training so it names the code run."""
    return run_metadata(cfg.as_dict(), seed=cfg.seeds)


def write_results(cfg: FdepConfig, runs: list[RunResult], out_dir: str | Path,
                  metadata: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write the per-run CSV, the per-epoch histories and the provenance JSON into ``out_dir``.

    ``metadata`` is :func:`provenance` taken when the runs started (default: taken now).
    """
    import pandas as pd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = results_stem(cfg)
    table = pd.DataFrame([r.row for r in runs])
    csv_path = out / f"{stem}.csv"
    atomic_write_bytes(csv_path, table.to_csv(index=False, float_format="%.6g").encode())
    histories = {f"{r.variant}_seed{r.seed}": r.history.rows for r in runs}
    json_path = out / f"{stem}.json"
    write_json(json_path, {"results": table.to_dict(orient="records"), "summary": summarize(table),
                           "histories": histories,
                           "metadata": metadata or provenance(cfg)})
    return {"csv": csv_path, "json": json_path}


def summarize(table) -> list[dict[str, Any]]:
    """Mean and sample standard deviation over seeds of each variant's metrics."""
    cols = ["IoU", "nIoU", "Pd", "Fa_1e-6", "HSE"]
    out = []
    for variant, group in table.groupby("variant", sort=False):
        row: dict[str, Any] = {"variant": variant, "seeds": len(group)}
        for c in cols:
            row[c] = float(group[c].mean())
            row[f"{c}_std"] = float(group[c].std(ddof=1)) if len(group) > 1 else None
        out.append(row)
    return out
