"""All thresholds in one pass: per-image pixel and target counts for a whole threshold grid.

For every image and every grid threshold ``t_k`` the sweep stores true positives, false
positives, target hits and false-alarm pixels (integers), so IoU(t), nIoU(t), Pd(t), Fa(t),
ROC, precision-recall, the Pd-Fa curve, their areas, HSE and bootstrap resamples of the test set
all follow without touching a map again. Memory: O(thresholds x images) integers.

How it stays fast and exact:

- pixel counts: one radix histogram of the map's float bit patterns gives the number of pixels
  above every threshold (:class:`~irlib.metrics.thresholds.LevelCounter`);
- target counts: components of ``{p > t}`` are nested as ``t`` grows. After labelling the lowest
  level, only components whose row and column ranges come within ``distance + 1`` px of a
  ground-truth centroid can hold a component that ever matches (a centroid lies inside its
  component's bounding box, and every sub-component's box lies inside its parent's), so higher
  levels are labelled only inside those components. Once that region is small, all remaining
  levels are stacked into one 3-D volume and labelled in a single call with a structuring
  element that does not connect levels. Fa(t) is then "pixels above t minus matched pixels".
- with ``dnanet_area_bug=True`` Fa needs the area of every component at every level, so that
  legacy option labels the whole image at every threshold (exact, slower).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import ndimage as ndi

from irlib.errors import IrlibInputError
from irlib.metrics.components import (Components, component_stats, components, false_alarm_pixels,
                                      greedy_match, near_candidates, structure, _close)
from irlib.metrics.standard import MetricOptions, niou_from
from irlib.metrics.thresholds import LevelCounter, above_from_histogram, compare_thresholds, \
    default_thresholds
from irlib.metrics.validate import check_pair, check_thresholds

#: switch from per-level 2-D labelling to one 3-D labelling when crop area x levels is below this
VOXEL_BUDGET = 250_000


# --------------------------------------------------------------------------- per-image engine

def _relevant(lab: np.ndarray, n: int, gt: Components, r0: int, c0: int,
              reach: float) -> np.ndarray:
    """Labels whose row range and column range both come within ``reach`` of one target centroid."""
    h, w = lab.shape
    rel = np.zeros(n + 1, dtype=bool)
    for gr, gc in gt.centroids:
        a = max(int(np.floor(gr - reach)) + 1 - r0, 0)
        b = min(int(np.ceil(gr + reach)) - r0, h)
        c = max(int(np.floor(gc - reach)) + 1 - c0, 0)
        d = min(int(np.ceil(gc + reach)) - c0, w)
        if a >= b or c >= d:
            continue
        in_rows = np.zeros(n + 1, dtype=bool)
        in_rows[lab[a:b]] = True
        in_cols = np.zeros(n + 1, dtype=bool)
        in_cols[lab[:, c:d]] = True
        rel |= in_rows & in_cols
    rel[0] = False
    return rel


def _levels_3d(sub: np.ndarray, active: np.ndarray | None, tc: np.ndarray, r0: int, c0: int,
               gt: Components, opt: MetricOptions) -> tuple[np.ndarray, np.ndarray]:
    """Hits and matched pixels for the thresholds ``tc`` on a crop, with one 3-D labelling."""
    L = tc.size
    hits = np.zeros(L, dtype=np.int64)
    matched = np.zeros(L, dtype=np.int64)
    vol = sub[None, :, :] > tc[:, None, None]
    if active is not None:
        vol &= active[None]
    s3 = np.zeros((3, 3, 3), dtype=bool)
    s3[1] = structure(opt.connectivity)
    lab, n = ndi.label(vol, structure=s3)
    if n == 0:
        return hits, matched
    comps = component_stats(lab, n, r0, c0)
    cand = near_candidates(gt, comps, opt.distance)
    if cand.size == 0:
        return hits, matched
    # labels are numbered in raster order over (level, row, col): the largest label of each
    # level bounds the labels of that level
    last = np.maximum.accumulate(lab.reshape(L, -1).max(axis=1))
    level = np.searchsorted(last, cand + 1, side="left")
    close = _close(gt, comps, cand, opt.distance)
    if gt.n == 1:
        ok = close[0]
        lv, idx = level[ok], cand[ok]
        if lv.size:
            u, first_i = np.unique(lv, return_index=True)
            hits[u] = 1
            matched[u] = comps.area[idx[first_i]]
        return hits, matched
    for lvl in np.unique(level):
        sel = np.flatnonzero(level == lvl)
        cl = close[:, sel]
        used = np.zeros(sel.size, dtype=bool)
        for i in range(gt.n):
            free = np.flatnonzero(cl[i] & ~used)
            if free.size:
                used[free[0]] = True
                hits[lvl] += 1
                matched[lvl] += comps.area[cand[sel[free[0]]]]
    return hits, matched


def target_sweep(prob: np.ndarray, gt: Components, tc: np.ndarray,
                 opt: MetricOptions) -> tuple[np.ndarray, np.ndarray]:
    """Per-threshold target hits and matched predicted pixels of one image (pruned search)."""
    K = tc.size
    hits = np.zeros(K, dtype=np.int64)
    matched = np.zeros(K, dtype=np.int64)
    if gt.n == 0:
        return hits, matched
    s2 = structure(opt.connectivity)
    reach = opt.distance + 1.0
    r0, c0 = 0, 0
    r1, c1 = prob.shape
    active: np.ndarray | None = None
    n_active = -1
    k = 0
    while k < K:
        h, w = r1 - r0, c1 - c0
        sub = prob[r0:r1, c0:c1]
        if h * w * (K - k) <= VOXEL_BUDGET:
            hh, mm = _levels_3d(sub, active, tc[k:], r0, c0, gt, opt)
            hits[k:], matched[k:] = hh, mm
            break
        binary = sub > tc[k]
        if active is not None:
            binary &= active
        n_on = int(np.count_nonzero(binary))
        if n_on == 0:
            break
        if n_on == n_active:  # nothing left the active region: same components as level k - 1
            hits[k], matched[k] = hits[k - 1], matched[k - 1]
            k += 1
            continue
        lab, n = ndi.label(binary, structure=s2)
        comps = component_stats(lab, n, r0, c0)
        match = greedy_match(gt, comps, opt.distance)
        ok = match[match >= 0]
        hits[k], matched[k] = ok.size, comps.area[ok].sum()
        rel = _relevant(lab, n, gt, r0, c0, reach)
        if not rel.any():
            break
        active = rel[lab]
        n_active = int(comps.area[rel[1:]].sum())
        rows = np.flatnonzero(active.any(axis=1))
        cols = np.flatnonzero(active.any(axis=0))
        active = active[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        r0, r1 = r0 + rows[0], r0 + rows[-1] + 1
        c0, c1 = c0 + cols[0], c0 + cols[-1] + 1
        k += 1
    return hits, matched


def target_sweep_legacy(prob: np.ndarray, gt: Components, tc: np.ndarray,
                        opt: MetricOptions) -> tuple[np.ndarray, np.ndarray]:
    """Hits and false-alarm pixels with the DNANet area-value bug: full labelling per level."""
    K = tc.size
    hits = np.zeros(K, dtype=np.int64)
    fa = np.zeros(K, dtype=np.int64)
    for k in range(K):
        _, pc = components(prob > tc[k], opt.connectivity)
        match = greedy_match(gt, pc, opt.distance)
        hits[k] = int((match >= 0).sum())
        fa[k] = false_alarm_pixels(pc, match, dnanet_area_bug=True)
    return hits, fa


def sweep_image(prob: np.ndarray, mask: np.ndarray, counter: LevelCounter,
                opt: MetricOptions) -> dict[str, Any]:
    """All per-threshold counts of one checked (map, mask) pair."""
    tc = compare_thresholds(counter.thresholds, prob.dtype)
    K = counter.K
    above = counter.above(prob)
    tp = above_from_histogram(np.bincount(counter.levels(prob[mask]), minlength=K + 1))
    _, gt = components(mask, opt.connectivity)
    if opt.dnanet_area_bug:
        hits, fa = target_sweep_legacy(prob, gt, tc, opt)
    else:
        hits, matched = target_sweep(prob, gt, tc, opt)
        fa = above - matched
    return {"tp": tp, "fp": above - tp, "hits": hits, "fa": fa,
            "gt_pixels": int(mask.sum()), "n_targets": gt.n, "n_pixels": int(mask.size)}


# --------------------------------------------------------------------------- set-level results

@dataclass
class SweepCounts:
    """Per-image, per-threshold integer counts of a test set (rows images, columns thresholds)."""

    thresholds: np.ndarray
    names: list[str]
    tp: np.ndarray
    fp: np.ndarray
    hits: np.ndarray
    fa: np.ndarray
    gt_pixels: np.ndarray
    n_targets: np.ndarray
    n_pixels: np.ndarray
    options: MetricOptions = field(default_factory=MetricOptions)

    @property
    def fn(self) -> np.ndarray:
        return self.gt_pixels[:, None] - self.tp

    @property
    def n_images(self) -> int:
        return len(self.names)

    def take(self, index: Sequence[int] | np.ndarray) -> "SweepCounts":
        """A subset or resample of the images (e.g. a bootstrap draw), without recomputation."""
        i = np.asarray(index, dtype=np.int64)
        return SweepCounts(self.thresholds, [self.names[j] for j in i], self.tp[i], self.fp[i],
                           self.hits[i], self.fa[i], self.gt_pixels[i], self.n_targets[i],
                           self.n_pixels[i], self.options)

    def take_thresholds(self, index: Sequence[int] | np.ndarray) -> "SweepCounts":
        """The same images on a sub-grid (e.g. every second threshold), without recomputation."""
        k = np.asarray(index, dtype=np.int64)
        return SweepCounts(self.thresholds[k], list(self.names), self.tp[:, k], self.fp[:, k],
                           self.hits[:, k], self.fa[:, k], self.gt_pixels, self.n_targets,
                           self.n_pixels, self.options)

    def index_of(self, threshold: float) -> int:
        k = int(np.argmin(np.abs(self.thresholds - threshold)))
        if not np.isclose(self.thresholds[k], threshold, rtol=0, atol=1e-12):
            raise IrlibInputError(f"threshold {threshold} is not on the grid; nearest is "
                                  f"{self.thresholds[k]}")
        return k

    def at(self, threshold: float) -> dict[str, float]:
        """Standard metrics at one grid threshold (same keys as ``SirstMetrics.compute``)."""
        k = self.index_of(threshold)
        inter, union = self.tp[:, k], self.tp[:, k] + self.fp[:, k] + self.fn[:, k]
        targets = int(self.n_targets.sum())
        return {"IoU": float(inter.sum() / union.sum()) if union.sum() else 0.0,
                "nIoU": niou_from(inter, union, self.options.empty),
                "Pd": float(self.hits[:, k].sum() / targets) if targets else float("nan"),
                "Fa": float(self.fa[:, k].sum() / self.n_pixels.sum()),
                "n_images": self.n_images, "n_targets": targets,
                "hits": int(self.hits[:, k].sum()), "fa_pixels": int(self.fa[:, k].sum()),
                "n_pixels": int(self.n_pixels.sum())}

    def curves(self, empty: str | None = None) -> "SweepCurves":
        return SweepCurves.from_counts(self, empty)


def _trapz(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


@dataclass
class SweepCurves:
    """Set-level curves over the grid (arrays of length K) and the areas under them."""

    thresholds: np.ndarray
    IoU: np.ndarray
    nIoU: np.ndarray
    Pd: np.ndarray
    Fa: np.ndarray
    TPR: np.ndarray
    FPR: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    F1: np.ndarray

    @classmethod
    def from_counts(cls, c: SweepCounts, empty: str | None = None) -> "SweepCurves":
        empty = empty or c.options.empty
        TP, FP, FN = c.tp.sum(0), c.fp.sum(0), c.fn.sum(0)
        P = int(c.gt_pixels.sum())
        N = int(c.n_pixels.sum()) - P
        union = TP + FP + FN
        iou = np.divide(TP, union, out=np.zeros(TP.shape), where=union > 0)
        union_i = c.tp + c.fp + c.fn
        niou = niou_from(c.tp, union_i, empty)
        targets = int(c.n_targets.sum())
        pd = c.hits.sum(0) / targets if targets else np.full(TP.shape, np.nan)
        fa = c.fa.sum(0) / c.n_pixels.sum()
        tpr = TP / P if P else np.full(TP.shape, np.nan)
        fpr = FP / N if N else np.zeros(TP.shape)
        # precision of an empty prediction is taken as 1 (sklearn's convention at the end point)
        prec = np.divide(TP, TP + FP, out=np.ones(TP.shape), where=(TP + FP) > 0)
        denom = 2 * TP + FP + FN
        f1 = np.divide(2 * TP, denom, out=np.zeros(TP.shape), where=denom > 0)
        return cls(c.thresholds, iou, niou, pd, fa, tpr, fpr, prec, tpr, f1)

    def roc_auc(self) -> float:
        """Area under (FPR, TPR) over the grid, closed with the points (0, 0) and (1, 1)."""
        x = np.r_[0.0, self.FPR[::-1], 1.0]
        y = np.r_[0.0, self.TPR[::-1], 1.0]
        return _trapz(y, x)

    def average_precision(self) -> float:
        """Step-wise AP over the grid: sum of (R_k - R_{k+1}) P_k with R_K = 0 (no interpolation)."""
        r = np.r_[self.recall, 0.0]
        return float(np.sum((r[:-1] - r[1:]) * self.precision))

    def pd_fa_auc(self, fa_max: float = 1e-4) -> float:
        """Normalised area under Pd(Fa) for Fa in [0, fa_max], starting from (0, 0).

        Points are taken in order of decreasing threshold; beyond the largest Fa on the grid
        the curve is held flat; the area is divided by ``fa_max`` so it lies in [0, 1].
        """
        x = np.r_[0.0, self.Fa[::-1]]
        y = np.r_[0.0, self.Pd[::-1]]
        x = np.maximum.accumulate(x)
        if x[-1] < fa_max:
            x, y = np.r_[x, fa_max], np.r_[y, y[-1]]
        cut = int(np.searchsorted(x, fa_max, side="left"))
        xs, ys = x[: cut + 1].copy(), y[: cut + 1].copy()
        if xs[-1] > fa_max:  # interpolate the last segment at fa_max
            x0, x1, y0, y1 = xs[-2], xs[-1], ys[-2], ys[-1]
            ys[-1] = y0 + (y1 - y0) * (fa_max - x0) / (x1 - x0)
            xs[-1] = fa_max
        return _trapz(ys, xs) / fa_max

    def to_frame(self):
        """The curves as a pandas DataFrame, one row per threshold."""
        import pandas as pd

        return pd.DataFrame({"threshold": self.thresholds, "IoU": self.IoU, "nIoU": self.nIoU,
                             "Pd": self.Pd, "Fa": self.Fa, "TPR": self.TPR, "FPR": self.FPR,
                             "precision": self.precision, "recall": self.recall, "F1": self.F1})


# --------------------------------------------------------------------------- streaming API

class ThresholdSweep:
    """Streaming evaluation over a threshold grid (default: 100 midpoints 0.005 ... 0.995).

    ``update(prob, mask)`` per image, then ``counts()`` (per-image integers), ``compute()``
    (curves) or ``hse()``. Options are those of :class:`~irlib.metrics.SirstMetrics`.
    """

    def __init__(self, thresholds: Iterable[float] | None = None, *, scores: str = "probability",
                 distance: float = 3.0, connectivity: int = 8, dnanet_area_bug: bool = False,
                 empty: str = "zero"):
        self.options = MetricOptions(scores, distance, connectivity, dnanet_area_bug, empty)
        t = default_thresholds() if thresholds is None else thresholds
        self.thresholds = check_thresholds(t, scores=scores)
        self._counter = LevelCounter(self.thresholds)
        self.reset()

    def reset(self) -> None:
        self._rows: list[dict[str, Any]] = []
        self._names: list[str] = []

    def __len__(self) -> int:
        return len(self._rows)

    def update(self, prob: Any, mask: Any, name: str | None = None) -> None:
        """Add one image at native resolution."""
        index = len(self._rows)
        p, m = check_pair(prob, mask, scores=self.options.scores, index=index, name=name)
        self._rows.append(sweep_image(p, m, self._counter, self.options))
        self._names.append(name if name is not None else str(index))

    def counts(self) -> SweepCounts:
        if not self._rows:
            raise IrlibInputError("no images were evaluated: call update(prob, mask) first")
        stack = {k: np.stack([r[k] for r in self._rows]) for k in ("tp", "fp", "hits", "fa")}
        vec = {k: np.array([r[k] for r in self._rows], dtype=np.int64)
               for k in ("gt_pixels", "n_targets", "n_pixels")}
        return SweepCounts(self.thresholds, list(self._names), **stack, **vec, options=self.options)

    def compute(self) -> SweepCurves:
        return self.counts().curves()

    def hse(self, **config: Any):
        """The HSE score of everything seen so far (see :func:`irlib.metrics.hse`)."""
        from irlib.metrics.hse import hse

        return hse(self.counts(), **config)


def evaluate_sweep(probs: Iterable[Any], masks: Iterable[Any], names: Iterable[str] | None = None,
          thresholds: Iterable[float] | None = None, **options: Any) -> SweepCounts:
    """One call: per-image counts over a threshold grid."""
    s = ThresholdSweep(thresholds, **options)
    probs, masks = list(probs), list(masks)
    if len(probs) != len(masks):
        raise IrlibInputError(f"got {len(probs)} prediction maps but {len(masks)} masks")
    names = list(names) if names is not None else [None] * len(probs)
    if len(names) != len(probs):
        raise IrlibInputError(f"got {len(names)} names for {len(probs)} images")
    for p, m, n in zip(probs, masks, names):
        s.update(p, m, name=n)
    return s.counts()
