"""IoU, nIoU, Pd and Fa at one threshold, computed exactly as the BasicIRSTD toolbox does.

- IoU: sum of intersections / sum of unions over the whole set (pooled);
- nIoU: mean of per-image IoU; an image with empty mask and empty prediction scores 0 by
  default (``empty="zero"``, the ACM/ISNet/PAL ``SamplewiseSigmoidMetric`` convention),
  ``"one"`` or ``"skip"`` on request;
- Pd: matched ground-truth components / all ground-truth components (pooled);
- Fa: pixels of unmatched predicted components / all native pixels (pooled; tables show ×1e6).

Foreground is ``map > threshold`` (strict); a probability threshold must lie strictly inside
(0, 1). Maps read from 8/16-bit PNG compare at their integer level
(:func:`irlib.metrics.thresholds.quantized_map`). See ``docs/metrics.md`` for the sources.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import numpy as np

from irlib.errors import IrlibInputError
from irlib.metrics.components import components, false_alarm_pixels, greedy_match
from irlib.metrics.thresholds import binarize
from irlib.metrics.validate import check_pair, check_scores, check_threshold

EMPTY_POLICIES = ("zero", "one", "skip")


@dataclass(frozen=True)
class MetricOptions:
    """Every convention that changes a number; the defaults are BasicIRSTD's.

    ``scores``: ``"probability"`` maps in [0, 1] (default) or raw ``"logit"`` maps (DNANet
    thresholds logits); ``distance``: centroid match radius in px (strict ``<``);
    ``connectivity``: 8 (default) or 4; ``dnanet_area_bug``: reproduce the legacy Fa bug;
    ``empty``: nIoU of an image with empty mask and empty prediction (``zero``/``one``/``skip``).
    """

    scores: str = "probability"
    distance: float = 3.0
    connectivity: int = 8
    dnanet_area_bug: bool = False
    empty: str = "zero"

    def __post_init__(self) -> None:
        check_scores(self.scores)
        if self.connectivity not in (4, 8):
            raise IrlibInputError(f"connectivity={self.connectivity!r}: choose 8 or 4")
        if not (self.distance > 0 and np.isfinite(self.distance)):
            raise IrlibInputError(f"distance={self.distance!r}: must be a positive number of px")
        if self.empty not in EMPTY_POLICIES:
            raise IrlibInputError(f"empty={self.empty!r}: choose one of {EMPTY_POLICIES}")


@dataclass
class ImageCounts:
    """Integer counts of one image at one threshold (everything the set-level metrics need)."""

    name: str
    inter: int
    union: int
    pred_pixels: int
    gt_pixels: int
    n_targets: int
    hits: int
    fa_pixels: int
    n_pixels: int

    @property
    def iou(self) -> float:
        return self.inter / self.union if self.union else 0.0


def count_image(prob: np.ndarray, mask: np.ndarray, threshold: float,
                options: MetricOptions = MetricOptions(), name: str = "") -> ImageCounts:
    """Counts for one checked (map, mask) pair at ``threshold``."""
    pred = binarize(prob, threshold, options.scores)
    inter = int(np.count_nonzero(pred & mask))
    n_pred = int(np.count_nonzero(pred))
    n_gt = int(np.count_nonzero(mask))
    _, gt = components(mask, options.connectivity)
    _, pc = components(pred, options.connectivity)
    match = greedy_match(gt, pc, options.distance)
    return ImageCounts(name=name, inter=inter, union=n_pred + n_gt - inter, pred_pixels=n_pred,
                       gt_pixels=n_gt, n_targets=gt.n, hits=int((match >= 0).sum()),
                       fa_pixels=false_alarm_pixels(pc, match, options.dnanet_area_bug),
                       n_pixels=int(mask.size))


def niou_from(inter: np.ndarray, union: np.ndarray, empty: str = "zero") -> float | np.ndarray:
    """Mean per-image IoU (over axis 0) with the chosen policy for images whose union is empty.

    1-D inputs give a float; (images, thresholds) inputs give one value per threshold.
    """
    inter = np.asarray(inter, dtype=np.float64)
    union = np.asarray(union, dtype=np.float64)
    ious = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    if empty == "one":
        ious = np.where(union > 0, ious, 1.0)
    if empty == "skip":
        n = (union > 0).sum(axis=0)
        total = np.where(union > 0, ious, 0.0).sum(axis=0)
        out = np.divide(total, n, out=np.full(np.shape(total), np.nan), where=n > 0)
    else:
        out = ious.mean(axis=0) if ious.shape[0] else np.full(ious.shape[1:], np.nan)
    return float(out) if np.ndim(out) == 0 else out


def summarize(records: list[ImageCounts], empty: str = "zero") -> dict[str, float]:
    """Set-level metrics from per-image counts (pooled IoU, Pd, Fa; mean nIoU)."""
    if not records:
        raise IrlibInputError("no images were evaluated: call update(prob, mask) first")
    inter = np.array([r.inter for r in records], dtype=np.int64)
    union = np.array([r.union for r in records], dtype=np.int64)
    targets = sum(r.n_targets for r in records)
    hits = sum(r.hits for r in records)
    fa = sum(r.fa_pixels for r in records)
    pixels = sum(r.n_pixels for r in records)
    return {
        "IoU": float(inter.sum() / union.sum()) if union.sum() else 0.0,
        "nIoU": niou_from(inter, union, empty),
        "Pd": hits / targets if targets else float("nan"),
        "Fa": fa / pixels,
        "n_images": len(records),
        "n_targets": int(targets),
        "hits": int(hits),
        "fa_pixels": int(fa),
        "n_pixels": int(pixels),
    }


@dataclass
class SirstMetrics:
    """Streaming IoU / nIoU / Pd / Fa at one threshold (BasicIRSTD rules by default).

    >>> m = SirstMetrics()
    >>> for prob, mask in pairs: m.update(prob, mask)   # doctest: +SKIP
    >>> m.compute()["IoU"]                              # doctest: +SKIP
    """

    threshold: float = 0.5
    scores: str = "probability"
    distance: float = 3.0
    connectivity: int = 8
    dnanet_area_bug: bool = False
    empty: str = "zero"
    records: list[ImageCounts] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self.options = MetricOptions(self.scores, self.distance, self.connectivity,
                                     self.dnanet_area_bug, self.empty)
        self.threshold = check_threshold(self.threshold, scores=self.scores)

    def update(self, prob: Any, mask: Any, name: str | None = None) -> ImageCounts:
        """Add one image: ``prob`` (H, W) map, ``mask`` (H, W) binary; returns its counts."""
        index = len(self.records)
        p, m = check_pair(prob, mask, scores=self.scores, index=index, name=name)
        rec = count_image(p, m, self.threshold, self.options,
                          name=name if name is not None else str(index))
        self.records.append(rec)
        return rec

    def compute(self) -> dict[str, float]:
        """``IoU, nIoU, Pd, Fa`` (Fa as a fraction) plus the pooled counts behind them."""
        return summarize(self.records, self.empty)

    def reset(self) -> None:
        self.records.clear()

    def per_image(self):
        """Per-image counts as a pandas DataFrame (one row per image, with its IoU)."""
        import pandas as pd

        df = pd.DataFrame([asdict(r) for r in self.records])
        if len(df):
            df["IoU"] = [r.iou for r in self.records]
        return df


def evaluate(probs: Iterable[Any], masks: Iterable[Any], names: Iterable[str] | None = None,
             threshold: float = 0.5, **options: Any) -> dict[str, float]:
    """One call: standard metrics of paired maps and masks (options as :class:`SirstMetrics`)."""
    m = SirstMetrics(threshold=threshold, **options)
    probs, masks = list(probs), list(masks)
    if len(probs) != len(masks):
        raise IrlibInputError(f"got {len(probs)} prediction maps but {len(masks)} masks")
    names = list(names) if names is not None else [None] * len(probs)
    if len(names) != len(probs):
        raise IrlibInputError(f"got {len(names)} names for {len(probs)} images")
    for p, k, n in zip(probs, masks, names):
        m.update(p, k, name=n)
    return m.compute()
