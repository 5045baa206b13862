"""Cross-dataset evaluation: score trained hosts on every test split irlib can open.

>>> from irlib.engine.cross_dataset import cross_dataset_table
>>> table = cross_dataset_table({"acm": ("results/baselines/NUAA-SIRST_acm_basicirstd_seed42.pt", "NUAA-SIRST")},
...                             normalization=("train", "test"))

One row per (model, test set, normalisation rule), tidy (long) format; :func:`cross_dataset_matrix`
pivots a metric into a train-set x test-set matrix. The normalisation rule is explicit and
stated in every row (``docs/engine.md``, "Cross-dataset evaluation"):

* ``"train"`` (default): the model's own training normalisation on every test set, what a
  deployed detector does (it does not know where an image comes from);
* ``"test"``: each test set's BasicIRSTD constants (``irlib.data.reference_normalization``), or,
  for a set without constants, the average per-image mean and std measured on the scored test
  images (BasicIRSTD's ``img_norm_cfg`` convention; this uses test pixels, never test labels).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import torch
from torch import nn

from irlib.data import KNOWN_DATASETS, available_datasets, open_dataset, reference_normalization
from irlib.data.layouts import list_splits
from irlib.data.stats import dataset_stats
from irlib.engine.evaluate import evaluate_model
from irlib.engine.experiment import first_items
from irlib.engine.normalize import Normalize
from irlib.errors import IrlibInputError
from irlib.paths import data_root

RULES = ("train", "test")
#: Columns of :func:`cross_dataset_table`, in order (metrics as :meth:`Evaluation.row`).
COLUMNS = ("model", "trained_on", "tested_on", "in_domain", "normalization", "norm_mean", "norm_std",
           "norm_source", "split", "n_images", "IoU", "nIoU", "Pd", "Fa_1e-6", "HSE", "HSE_pixel", "HSE_target",
           "skipped")


@dataclass
class TrainedModel:
    """A host with the dataset it was trained on and, optionally, its training normalisation.

    ``model`` is a module or a :func:`irlib.models.save_host` file (read with ``load_host``).
    ``normalize`` ``None`` means BasicIRSTD's constants of ``trained_on`` (the ``basicirstd`` and
    ``dnanet`` recipes); pass the :class:`Normalize` (or ``(mean, std)`` on the [0, 1] scale)
    that training used for recipes with measured normalisation (``fdep_authors``, ``cpu_demo``).
    """

    model: nn.Module | str | os.PathLike
    trained_on: str
    normalize: Normalize | tuple[float, float] | None = None


ModelSpec = Union[TrainedModel, tuple]


def _as_trained(name: str, spec: ModelSpec) -> TrainedModel:
    if isinstance(spec, TrainedModel):
        return spec
    if isinstance(spec, tuple) and len(spec) in (2, 3):
        return TrainedModel(*spec)
    raise IrlibInputError(f"model {name!r}: give (module or .pt path, trained_on[, normalize]) or a TrainedModel, "
                          f"got {type(spec).__name__}")


def _normalize(value: Normalize | tuple[float, float]) -> Normalize:
    return value if isinstance(value, Normalize) else Normalize(*value)


def _scalar(norm: Normalize) -> tuple[float, float]:
    return float(norm.mean.flatten()[0]), float(norm.std.flatten()[0])


def _train_normalize(tm: TrainedModel) -> tuple[Normalize, str]:
    if tm.normalize is not None:
        return _normalize(tm.normalize), f"given with the model (trained on {tm.trained_on})"
    try:
        mean, std = reference_normalization(Path(tm.trained_on).name)
    except IrlibInputError:
        raise IrlibInputError(f"no BasicIRSTD constants for training set {tm.trained_on!r}: pass the model's "
                              f"training normalisation as TrainedModel(..., normalize=(mean, std))") from None
    return Normalize(mean, std), f"BasicIRSTD constants of {Path(tm.trained_on).name} (training set)"


def _test_normalize(name: str, test_set: Sequence) -> tuple[Normalize, str]:
    try:
        mean, std = reference_normalization(name)
        return Normalize(mean, std), f"BasicIRSTD constants of {name} (test set)"
    except IrlibInputError:
        pass
    return Normalize.from_stats(dataset_stats(test_set)), \
        f"measured on the {len(test_set)} scored test images of {name} (mean of per-image mean/std)"


def available_test_sets(root: str | os.PathLike | None = None, split: str = "test") -> list[str]:
    """Test sets under the data root: the known real datasets found (``NUAA-SIRST``,
    ``NUDT-SIRST``), then every other sub-folder in a supported layout that has a ``split``
    split, as a path. Empty when there is no data root. ``"synthetic"`` is never listed."""
    base = data_root(root)
    found: list[str] = list(available_datasets(root))
    if base is None or not base.is_dir():
        return found
    known = {n.lower() for n in KNOWN_DATASETS}
    for child in sorted(base.iterdir()):
        if not child.is_dir() or child.name.lower() in known or not (child / "images").is_dir():
            continue
        try:
            splits = list_splits(child)
        except IrlibInputError:
            continue
        if any(k.rsplit("/", 1)[-1] == split for k in splits):
            found.append(str(child))
    return found


def _open_test(name: str, root: str | os.PathLike | None, split: str, max_images: int | None) -> tuple[str, Sequence]:
    """(display name, first ``max_images`` images of the split); raises IrlibInputError when absent."""
    if str(name).lower() == "synthetic":
        ds: Any = open_dataset("synthetic", split)
    else:
        ds = open_dataset(name, split, root=root, on_size_mismatch="resize_mask")
    label = "synthetic" if str(name).lower() == "synthetic" else str(getattr(ds, "name", Path(str(name)).name))
    return label, first_items(ds, max_images)


def cross_dataset_table(models: Mapping[str, ModelSpec], test_sets: Sequence[str | os.PathLike] | None = None, *,
                        root: str | os.PathLike | None = None, normalization: str | Sequence[str] = "train",
                        device: str | torch.device = "auto", max_images: int | None = None, split: str = "test",
                        sweep: bool = True) -> Any:
    """Score every model on every test set: a tidy ``pandas.DataFrame`` with the :data:`COLUMNS`.

    ``models`` maps a label to ``(module or .pt path, trained_on[, normalize])`` or a
    :class:`TrainedModel`. ``test_sets`` are dataset names (``"NUAA-SIRST"``, ``"NUDT-SIRST"``,
    ``"synthetic"``, folders under ``root``) or dataset folder paths; ``None`` takes
    :func:`available_test_sets`. ``normalization`` is a rule of :data:`RULES` or several (one
    row each). Each set is scored on its ``split`` at native resolution with
    :func:`evaluate_model` (threshold 0.5; HSE with ``sweep``); real sets are opened with
    ``on_size_mismatch="resize_mask"`` (NUAA-SIRST ``Misc_111``). ``max_images`` keeps the first
    N images of each set. A test set that cannot be opened gives rows with NaN metrics and the
    reason in ``skipped``, and a warning.
    """
    import pandas as pd

    rules = (normalization,) if isinstance(normalization, str) else tuple(normalization)
    bad = [r for r in rules if r not in RULES]
    if bad or not rules:
        raise IrlibInputError(f"normalization must be one of {RULES} (or several), got {normalization!r}")
    if max_images is not None and max_images < 1:
        raise IrlibInputError(f"max_images must be >= 1 or None, got {max_images}")
    if test_sets is None:
        test_sets = available_test_sets(root, split)
        if not test_sets:
            warnings.warn(f"cross_dataset_table: no test set found under {data_root(root)}; "
                          f"pass test_sets= or root= (or set IRLIB_DATA)", stacklevel=2)
    trained = {name: _as_trained(name, spec) for name, spec in models.items()}
    opened: dict[str, tuple[str, Sequence | None, str | None]] = {}
    for t in test_sets:
        try:
            opened[str(t)] = (*_open_test(str(t), root, split, max_images), None)
        except IrlibInputError as exc:
            opened[str(t)] = (Path(str(t)).name, None, str(exc))
            warnings.warn(f"cross_dataset_table: skipping test set {str(t)!r}: {exc}", stacklevel=2)
    test_norms: dict[str, tuple[Normalize, str]] = {}
    scored: dict[tuple[str, str, float, float], dict[str, float]] = {}  # both rules agree in-domain
    rows: list[dict[str, Any]] = []
    for label, tm in trained.items():
        model = tm.model
        if isinstance(model, (str, os.PathLike)):
            from irlib.models import load_host

            model = load_host(model)
        train_norm = _train_normalize(tm) if "train" in rules else None
        for key, (tested_on, ds, reason) in opened.items():
            for rule in rules:
                base = {"model": label, "trained_on": Path(tm.trained_on).name, "tested_on": tested_on,
                        "in_domain": Path(tm.trained_on).name.lower() == tested_on.lower(), "normalization": rule,
                        "split": split, "skipped": reason}
                if ds is None:
                    rows.append({**base, "n_images": 0})
                    continue
                if rule == "train":
                    norm, source = train_norm
                else:
                    if key not in test_norms:
                        test_norms[key] = _test_normalize(tested_on, ds)
                    norm, source = test_norms[key]
                mean, std = _scalar(norm)
                if (label, key, mean, std) not in scored:
                    scored[label, key, mean, std] = evaluate_model(model, ds, norm, device, sweep=sweep).row()
                rows.append({**base, "norm_mean": mean, "norm_std": std,
                             "norm_source": f"{source}: {255 * mean:.5g} / {255 * std:.5g} of 255",
                             "n_images": len(ds), **scored[label, key, mean, std]})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def cross_dataset_matrix(table: Any, metric: str = "IoU") -> Any:
    """``metric`` of a :func:`cross_dataset_table` as a matrix: rows (model, trained_on,
    normalization), one column per test set."""
    import pandas as pd

    index = ["model", "trained_on", "normalization"]
    matrix = table.pivot_table(index=index, columns="tested_on", values=metric, sort=False, dropna=False)
    # dropna=False keeps a test set whose scores are all NaN (skipped) but also makes every combination of
    # the index levels (a NUAA-trained model "trained on" NUDT too): keep the rows the table has
    return matrix.loc[pd.MultiIndex.from_frame(table[index].drop_duplicates())]
