"""The experiment layer every method shares: data under a recipe, one training run, its
evaluation, results files with provenance, summaries over seeds.

A method package (FDEP, SimIR, point supervision) supplies only its model and its objective;
:func:`run_training` trains it with :func:`irlib.engine.fit` under a :class:`Recipe` and scores
the deployed model on the test split at native resolution, last epoch (and, separately labelled,
the best-on-validation epoch when a validation split was held out of the training images).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from irlib.data import open_dataset, reference_normalization
from irlib.data.stats import dataset_stats
from irlib.data.torchdata import SirstTorchDataset
from irlib.data.transforms import JointAugment
from irlib.engine.distributed import is_main_process
from irlib.engine.evaluate import Evaluation, evaluate_model
from irlib.engine.history import History
from irlib.engine.normalize import Normalize
from irlib.engine.objective import Objective
from irlib.engine.recipes import Recipe
from irlib.engine.trainer import Hook, fit
from irlib.errors import IrlibInputError
from irlib.repro import atomic_write_bytes, run_metadata, write_json


@dataclass
class DataSource:
    """Where the data come from (the recipe decides how they are cropped and normalised).

    ``max_*_images`` take the first N images (smoke runs); ``synthetic_*`` size the synthetic
    dataset. ``on_size_mismatch`` is passed to the reader: a mask whose size differs from its
    image (NUAA-SIRST ``Misc_111``) is resized to it with nearest neighbour and a warning
    (``"resize_mask"``), or stops the run (``"raise"``).
    """

    dataset: str = "synthetic"
    root: str | None = None
    train_split: str = "train"
    test_split: str = "test"
    max_train_images: int | None = None
    max_test_images: int | None = None
    synthetic_train: int = 512
    synthetic_test: int = 128
    synthetic_size: int = 256
    on_size_mismatch: str = "resize_mask"


@dataclass
class DataSettings(DataSource):
    """A :class:`DataSource` and its validation split.

    ``val_fraction`` > 0 holds that share of the training images out as a validation split
    (a fixed permutation drawn from ``val_seed``, the same for every run seed); it is used only to
    choose the best epoch, never the test split.
    """

    val_fraction: float = 0.0
    val_seed: int = 0


@dataclass
class ExperimentData:
    """Training set (random crops), optional validation and the test set (native images) and
    the host normalisation."""

    train: SirstTorchDataset
    test: Sequence
    normalize: Normalize
    label: str
    val: Sequence | None = None
    normalization: str = ""


def first_items(ds: Sequence, n: int | None) -> Sequence:
    """The first ``n`` items of ``ds`` (all of them when ``n`` is None or not smaller)."""
    if n is None or n >= len(ds):
        return ds
    return torch.utils.data.Subset(ds, range(n))


def open_splits(settings: DataSettings) -> tuple[Sequence, Sequence]:
    """The (train, test) image sequences of ``settings``."""
    if settings.dataset.lower() == "synthetic":
        size = settings.synthetic_size
        train = open_dataset("synthetic", "train", num_images=settings.synthetic_train, size=size)
        test = open_dataset("synthetic", "test", num_images=settings.synthetic_test, size=size)
        return train, test
    kw = {"root": settings.root, "on_size_mismatch": settings.on_size_mismatch}
    train = first_items(open_dataset(settings.dataset, settings.train_split, **kw), settings.max_train_images)
    test = first_items(open_dataset(settings.dataset, settings.test_split, **kw), settings.max_test_images)
    return train, test


def recipe_normalize(recipe: Recipe, dataset: str, train: Sequence) -> tuple[Normalize, str]:
    """The host normalisation a recipe asks for, and a sentence saying which it is."""
    if recipe.normalization == "reference":
        mean, std = reference_normalization(dataset)
        return Normalize(mean, std), f"BasicIRSTD constants for {dataset} ({255 * mean:.5g} / {255 * std:.5g} of 255)"
    stats = dataset_stats(train)
    return Normalize.from_stats(stats), (f"measured on the {len(train)} training images "
                                         f"({255 * stats.image_mean_avg:.5g} / {255 * stats.image_std_avg:.5g} of 255)")


def train_augment(recipe: Recipe, normalize: Normalize) -> JointAugment:
    """The recipe's crop and flips; ``pad="mean"`` pads raw images with the normalisation mean."""
    pad = float(normalize.mean.flatten()[0]) if recipe.pad == "mean" else 0.0
    return JointAugment(recipe.crop_size, hflip=recipe.hflip, vflip=recipe.vflip, transpose=recipe.transpose,
                        image_pad=pad, pos_prob=recipe.pos_prob, scale_range=recipe.scale_range)


def load_data(settings: DataSettings, recipe: Recipe, seed: int = 0) -> ExperimentData:
    """Open the splits, hold out the validation images, normalise and crop as ``recipe`` says.

    The training crops and flips are drawn from ``seed`` (the run's seed), so runs with
    different seeds see different augmentations.
    """
    train, test = open_splits(settings)
    val = None
    if settings.val_fraction > 0:
        if not 0 < settings.val_fraction < 1:
            raise IrlibInputError(f"val_fraction must be in [0, 1), got {settings.val_fraction}")
        order = np.random.default_rng(settings.val_seed).permutation(len(train))
        n_val = max(1, int(round(settings.val_fraction * len(train))))
        val = torch.utils.data.Subset(train, sorted(order[:n_val].tolist()))
        train = torch.utils.data.Subset(train, sorted(order[n_val:].tolist()))
    normalize, how = recipe_normalize(recipe, settings.dataset, train)
    label = f"{settings.dataset} ({len(train)} train / {len(val) if val is not None else 0} val / {len(test)} test images)"
    crops = SirstTorchDataset(train, train=True, crop_size=recipe.crop_size, seed=seed,
                              augment=train_augment(recipe, normalize))
    return ExperimentData(crops, test, normalize, label, val, how)


@dataclass
class RunResult:
    """One trained model: its results row, history, evaluation (last epoch) and, when a
    validation split was used, the evaluation of the best-on-validation epoch."""

    variant: str
    seed: int
    row: dict[str, Any]
    history: History
    evaluation: Evaluation | None  # None on ranks other than 0 under torchrun
    deployed: nn.Module
    best: Evaluation | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def curves(self) -> Any:
        """Threshold-sweep curves of the reported (last-epoch) model."""
        return self.evaluation.curves

    @property
    def samples(self) -> dict[str, np.ndarray]:
        """Probability maps kept for figures, by image name."""
        return self.evaluation.samples


def run_training(model: nn.Module, data: ExperimentData, recipe: Recipe, *, seed: int, variant: str = "baseline",
                 objective: Objective | None = None, deploy: Callable[[nn.Module], nn.Module] | None = None,
                 eval_every: int = 0, device: str = "auto", keep: Sequence[int] = (0, 1, 2, 3),
                 checkpoint_dir: str | Path | None = None, resume: bool = False, hooks: Sequence[Hook] = (),
                 progress: bool = True, row: dict[str, Any] | None = None,
                 channels_last: bool = False, predictions_dir: str | Path | None = None) -> RunResult:
    """Train ``model`` with ``recipe`` and score ``deploy(model)`` on the test split.

    ``eval_every`` > 0 also scores the test split every that many epochs into the history as
    ``eval_*`` columns: a monitoring curve, never used to choose anything. The reported result
    is the last epoch; with a validation split the best-on-validation epoch is scored too and
    reported under ``best_val_*`` columns. ``predictions_dir`` keeps the last epoch's test
    probability maps there (8-bit PNG, irlib's predictions format: notebook 03 reads them).
    """
    deploy = deploy or (lambda m: m)

    def eval_fn(m: nn.Module, ds: Any) -> dict[str, float]:
        return evaluate_model(deploy(m), ds, data.normalize, device, sweep=True).row()

    t0 = time.perf_counter()
    history = fit(model, data.train, recipe, normalize=data.normalize, objective=objective, device=device,
                  seed=seed, progress=progress, eval_set=data.test if eval_every else None,
                  eval_every=eval_every or 1, eval_fn=eval_fn, val_set=data.val, val_metric="IoU",
                  checkpoint_dir=checkpoint_dir, resume=resume, hooks=hooks, channels_last=channels_last)
    train_time = time.perf_counter() - t0
    deployed = deploy(model).eval()
    if not is_main_process():  # torchrun: rank 0 scores the test split; the others only train
        return RunResult(variant, seed, {**(row or {}), "variant": variant, "seed": seed}, history, None, deployed)
    evaluation = evaluate_model(deployed, data.test, data.normalize, device, sweep=True, keep=keep,
                                out_dir=predictions_dir, save_format="png")
    out = {**(row or {}), "variant": variant, "seed": seed, "recipe": recipe.name, "epochs": recipe.epochs,
           "epoch_reported": "last", **evaluation.row(), "final_loss": history.rows[-1].get("loss"),
           "train_time_s": round(train_time, 1), "deviations": ", ".join(f"{k}={v}" for k, v in
                                                                          recipe.deviations.items()) or "none"}
    best = None
    if history.best_state is not None:
        last_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(history.best_state, strict=False)
        best = evaluate_model(deploy(model).eval(), data.test, data.normalize, device, sweep=True)
        model.load_state_dict(last_state)
        out.update({"best_val_epoch": history.best_epoch,
                    **{f"best_val_{k}": v for k, v in best.row().items()}})
    return RunResult(variant, seed, out, history, evaluation, deployed, best)


def escape_epoch(losses: Sequence[float], level: float = 0.95, skip: int = 0) -> int | None:
    """First epoch (1-based) whose mean training loss is below ``level``: when a SoftIoU run
    leaves its initial plateau near 1. ``None`` if it never does. ``skip`` leaves out the first
    epochs (a warm-up loss such as BCE is on another scale)."""
    for i, v in enumerate(losses):
        if i >= skip and v is not None and v < level:
            return i + 1
    return None


def warmup_epochs(recipe: Recipe) -> int:
    """Epochs trained with the recipe's warm-up loss (0 without one)."""
    return int(recipe.warmup_loss_epochs or 0) if recipe.warmup_loss else 0


def provenance(params: dict[str, Any], recipe: Recipe | None = None, seeds: Any = None) -> dict[str, Any]:
    """Parameters, recipe (name and content), seeds, versions and commit. Take it before training
    so it names the code that ran."""
    meta = run_metadata(params, seed=seeds)
    if recipe is not None:
        meta["recipe"] = recipe.to_dict()
    return meta


def summarize(table: Any, by: str = "variant",
              cols: Sequence[str] = ("IoU", "nIoU", "Pd", "Fa_1e-6", "HSE")) -> list[dict[str, Any]]:
    """Mean and sample standard deviation over seeds of each group's metrics."""
    out = []
    for key, group in table.groupby(by, sort=False):
        row: dict[str, Any] = {by: key, "seeds": len(group)}
        for c in cols:
            if c in group:
                row[c] = float(group[c].mean())
                row[f"{c}_std"] = float(group[c].std(ddof=1)) if len(group) > 1 else None
        out.append(row)
    return out


def scores_text(row: dict[str, Any]) -> str:
    """A run's scores for progress lines: ``IoU 71.23  nIoU 70.10  Pd 95.41  Fa 12.34e-6``."""
    return f"IoU {row['IoU']:.2f}  nIoU {row['nIoU']:.2f}  Pd {row['Pd']:.2f}  Fa {row['Fa_1e-6']:.2f}e-6"


def weights_meta(normalize: Normalize | None, dataset: str, seed: int, provenance: dict[str, Any] | None = None,
                 **extra: Any) -> dict[str, Any]:
    """The ``meta`` a trained host is saved with (:func:`irlib.models.save_host`): its input
    normalisation, training set, seed and the commit of the code that trained it, plus ``extra``
    (recipe, epochs, arm...), so ``irlib predict`` and the cross-dataset table need no flags."""
    meta: dict[str, Any] = {"dataset": dataset, "seed": seed, **extra,
                            "git_commit": (provenance or {}).get("git_commit")}
    if normalize is not None:
        meta["normalize"] = normalize.to_dict()
    return meta


def write_csv(path: str | Path, table: Any) -> Path:
    """``table`` (a DataFrame) as CSV at ``path`` (no index, 6 significant digits), atomically."""
    path = Path(path)
    atomic_write_bytes(path, table.to_csv(index=False, float_format="%.6g").encode())
    return path


def write_results(stem: str, runs: Sequence[RunResult], out_dir: str | Path,
                  metadata: dict[str, Any]) -> dict[str, Path]:
    """``<stem>.csv`` (one row per run) and ``<stem>.json`` (rows, summary over seeds, per-epoch
    histories, provenance) in ``out_dir``, written atomically."""
    import pandas as pd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame([r.row for r in runs])
    csv_path = write_csv(out / f"{stem}.csv", table)
    json_path = out / f"{stem}.json"
    write_json(json_path, {"results": table.to_dict(orient="records"), "summary": summarize(table),
                           "histories": {f"{r.variant}_seed{r.seed}": r.history.rows for r in runs},
                           "metadata": metadata})
    return {"csv": csv_path, "json": json_path}
