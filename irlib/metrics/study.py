"""The methods of a metric study on one test set: their maps and their scores.

Notebook 03 compares methods (the classical detectors of :mod:`irlib.baselines` and trained
models' saved maps, format :mod:`irlib.metrics.io`) on one test set. This module opens and
subsamples the set (falling back to synthetic data when the real set is absent), collects each
method's maps and scores them at one threshold (:class:`SirstMetrics`, also under legacy
conventions) and over the threshold grid (:class:`ThresholdSweep`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from irlib import baselines
from irlib.data.viz import evenly_spaced
from irlib.errors import IrlibInputError
from irlib.metrics.components import label
from irlib.metrics.io import has_predictions, load_predictions
from irlib.metrics.standard import SirstMetrics
from irlib.metrics.sweep import SweepCounts, ThresholdSweep
from irlib.paths import REPO_ROOT, data_root

Maps = dict[str, list[np.ndarray]]

#: name -> detector (image -> probability map); the last two change only the calibration
CLASSICAL_DETECTORS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Top-Hat r4": lambda x: baselines.top_hat(x, radius=4),
    "Top-Hat r2": lambda x: baselines.top_hat(x, radius=2),
    "Max-Median 9": lambda x: baselines.max_median(x, size=9),
    "Max-Median 5": lambda x: baselines.max_median(x, size=5),
    "MPCM 3-9": lambda x: baselines.mpcm(x, scales=(3, 5, 7, 9)),
    "MPCM 3-5": lambda x: baselines.mpcm(x, scales=(3, 5)),
    "Top-Hat r4 min-max": lambda x: baselines.top_hat(x, radius=4, method="minmax"),
    "MPCM 3-9 min-max": lambda x: baselines.mpcm(x, scales=(3, 5, 7, 9), method="minmax"),
}

#: row label -> SirstMetrics options: the default and the conventions other repositories use
CONVENTIONS: dict[str, dict[str, Any]] = {
    "default (BasicIRSTD, 2024)": {},
    "dnanet_area_bug=True": {"dnanet_area_bug": True},
    "distance=5": {"distance": 5.0},
    "connectivity=4": {"connectivity": 4},
    "empty='one' (nIoU)": {"empty": "one"},
}


@dataclass
class StudySet:
    """The test images of a study: ``samples`` of ``name``/``split`` (``total`` images in all).

    ``note`` says why the synthetic set stands in for the requested one (``None`` when it does not).
    """

    name: str
    split: str
    samples: list[Any]
    total: int
    note: str | None = None

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.samples]

    @property
    def images(self) -> list[np.ndarray]:
        return [s.image for s in self.samples]

    @property
    def masks(self) -> list[np.ndarray]:
        return [s.mask for s in self.samples]

    @property
    def tag(self) -> str:
        """The name as it goes into file names."""
        return self.name.replace("/", "_")

    @property
    def n_targets(self) -> int:
        return sum(label(m)[1] for m in self.masks)

    def describe(self) -> str:
        """One line for a notebook: images kept, targets and image sizes."""
        shapes = sorted({m.shape for m in self.masks})
        return (f"{self.name} / {self.split}: {len(self.samples)} of {self.total} images, "
                f"{self.n_targets} targets, {len(shapes)} different sizes "
                f"({shapes[0]} ... {shapes[-1]})")


def open_study_set(dataset: str, split: str = "test", root: str | os.PathLike | None = None,
                   max_images: int | None = None) -> StudySet:
    """Up to ``max_images`` evenly spaced images of a split; synthetic data when it is absent.

    Real masks whose size differs from their image's are resized (nearest neighbour) silently:
    ``docs/data.md`` documents the one NUAA-SIRST case.
    """
    from irlib.data import MaskResizedWarning, open_dataset

    note = None
    try:
        kw = {} if str(dataset).lower() == "synthetic" else {"on_size_mismatch": "resize_mask"}
        ds = open_dataset(dataset, split, root=root, **kw)
    except IrlibInputError as exc:
        why = display_text(str(exc), data_root(root))
        note = (f"{dataset!r} / {split} is not available here ({why}); the synthetic test set "
                f"stands in: the numbers below are not {dataset}'s.")
        ds = open_dataset("synthetic", "test", num_images=max_images or 128)
        split = "test"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MaskResizedWarning)
        samples = [ds[i] for i in evenly_spaced(len(ds), max_images)]
    return StudySet(ds.name, split, samples, len(ds), note)


def detector_maps(images: Sequence[np.ndarray],
                  detectors: Mapping[str, Callable[[np.ndarray], np.ndarray]] = CLASSICAL_DETECTORS
                  ) -> Maps:
    """Each detector's probability map of every image (method name -> maps in image order)."""
    return {name: [f(x) for x in images] for name, f in detectors.items()}


def model_folders(path: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """``path`` itself when it holds a map for every image, else its sub-folders (sorted)."""
    path = Path(path)
    if has_predictions(path, names):
        return [path]
    return sorted(q for q in path.iterdir() if q.is_dir()) if path.is_dir() else []


def prediction_folders(predictions: str | os.PathLike | Sequence[str | os.PathLike] | None,
                       names: Sequence[str], bases: Sequence[Path]) -> list[Path]:
    """Model folders to compare: those under ``predictions`` (a folder, a folder of model
    folders, or a list of either), else those under ``bases`` (a name found in several bases
    comes from the first)."""
    if predictions is not None:
        given = predictions if isinstance(predictions, (list, tuple)) else [predictions]
        folders = [f for p in given for f in model_folders(p, names)]
        if not folders:
            raise IrlibInputError(f"predictions={predictions!r} holds no maps for the test images "
                                  f"(format: irlib.metrics.io; names like {names[0]!r}.png)")
        return folders
    return list({f.name: f for b in reversed(bases) for f in model_folders(b, names)}.values())


def model_maps(folders: Iterable[Path], names: Sequence[str]) -> tuple[Maps, list[Path]]:
    """Maps of the folders holding every image (keyed ``"model <folder name>"``) and the
    folders skipped because some image has no map there."""
    maps: Maps = {}
    skipped: list[Path] = []
    for folder in folders:
        if has_predictions(folder, names):
            loaded = load_predictions(folder, names)
            maps[f"model {folder.name}"] = [loaded[n] for n in names]
        else:
            skipped.append(folder)
    return maps, skipped


def _check(maps: Sequence[np.ndarray], study: StudySet) -> None:
    if len(maps) != len(study.samples):
        raise IrlibInputError(f"got {len(maps)} maps for {len(study.samples)} test images")


def score_maps(maps: Sequence[np.ndarray], study: StudySet, **options: Any) -> SirstMetrics:
    """One method's maps scored at one threshold (``options`` as :class:`SirstMetrics`)."""
    _check(maps, study)
    m = SirstMetrics(**options)
    for p, s in zip(maps, study.samples):
        m.update(p, s.mask, name=s.name)
    return m


def score_methods(maps: Mapping[str, Sequence[np.ndarray]], study: StudySet,
                  **options: Any) -> dict[str, SirstMetrics]:
    """:func:`score_maps` of every method."""
    return {name: score_maps(v, study, **options) for name, v in maps.items()}


def score_conventions(maps: Sequence[np.ndarray], study: StudySet,
                      conventions: Mapping[str, Mapping[str, Any]] = CONVENTIONS
                      ) -> dict[str, SirstMetrics]:
    """One method's maps scored under each convention (row label -> options)."""
    return {k: score_maps(maps, study, **opts) for k, opts in conventions.items()}


def sweep_methods(maps: Mapping[str, Sequence[np.ndarray]], study: StudySet,
                  **options: Any) -> dict[str, SweepCounts]:
    """Per-image counts over the threshold grid for every method (options as ThresholdSweep)."""
    out = {}
    for name, v in maps.items():
        _check(v, study)
        sw = ThresholdSweep(**options)
        for p, s in zip(v, study.samples):
            sw.update(p, s.mask, name=s.name)
        out[name] = sw.counts()
    return out


def pick_example(metrics: SirstMetrics) -> int:
    """Index of the first image with both a hit and a false alarm (0 when none has both)."""
    df = metrics.per_image()
    if not len(df):
        return 0
    both = df[(df["hits"] > 0) & (df["fa_pixels"] > 0)]
    return int(both.index[0]) if len(both) else 0


def display_path(path: str | os.PathLike, results: str | os.PathLike | None = None) -> str:
    """``path`` for printing, without the machine's directories: relative to the repository,
    else ``<results>/...`` (under ``results``), ``<data>/...`` (under the data root), else
    ``.../<name>``."""
    p = Path(path).expanduser().resolve()
    data = data_root()
    for base, prefix in ((REPO_ROOT, ""), (results, "<results>"), (data, "<data>")):
        if base is None:
            continue
        base = Path(base).expanduser().resolve()
        if p == base or base in p.parents:
            rel = p.relative_to(base).as_posix()
            if not prefix:
                return rel
            return prefix if rel == "." else f"{prefix}/{rel}"
    return f".../{p.name}"


def display_text(text: str, data: str | os.PathLike | None = None) -> str:
    """``text`` (e.g. an error message) with the data root (``data``, default
    :func:`irlib.paths.data_root`) and the repository directory shown as ``<data>``, ``<repo>``."""
    data = data if data is not None else data_root()
    for base, prefix in ((data, "<data>"), (REPO_ROOT, "<repo>")):
        if base is not None:
            text = text.replace(str(Path(base).expanduser().resolve()), prefix)
    return text
