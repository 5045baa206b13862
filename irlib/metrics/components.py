"""Connected components, centroids and the greedy centroid matching behind Pd and Fa.

The matching rule is BasicIRSTD's ``PD_FA``: ground-truth components are visited in label order
(raster order of their first pixel, as ``skimage.measure.label`` numbers them); each takes the
first still-unmatched predicted component, also in label order, whose centroid lies at
Euclidean distance ``< distance`` pixels; a matched prediction is removed from the pool.
Centroids are compared exactly (rational arithmetic decides ties at the distance boundary), so a
centroid at distance exactly 3 never matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy import ndimage as ndi

from irlib.errors import IrlibInputError


def structure(connectivity: int) -> np.ndarray:
    """3x3 structuring element: 8-connectivity (BasicIRSTD, ``connectivity=2``) or 4."""
    if connectivity == 8:
        return np.ones((3, 3), dtype=bool)
    if connectivity == 4:
        return ndi.generate_binary_structure(2, 1)
    raise IrlibInputError(f"connectivity={connectivity!r}: choose 8 (BasicIRSTD) or 4")


@dataclass
class Components:
    """Components of one binary map, in label order: integer areas and coordinate sums."""

    area: np.ndarray  # (n,) int64
    sum_r: np.ndarray  # (n,) int64, sum of row indices
    sum_c: np.ndarray  # (n,) int64, sum of column indices

    @property
    def n(self) -> int:
        return int(self.area.size)

    @property
    def centroids(self) -> np.ndarray:
        """(n, 2) float64 (row, col) centroids, as ``regionprops(...).centroid``."""
        if self.n == 0:
            return np.zeros((0, 2))
        return np.stack([self.sum_r / self.area, self.sum_c / self.area], axis=1)


@lru_cache(maxsize=8)
def _coords(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat float64 row and column indices of an (h, w) grid (cached: shapes repeat)."""
    rows = np.repeat(np.arange(h, dtype=np.float64), w)
    cols = np.tile(np.arange(w, dtype=np.float64), h)
    return rows, cols


def component_stats(labels: np.ndarray, n: int, row0: int = 0, col0: int = 0) -> Components:
    """Areas and coordinate sums of labels ``1..n`` of a 2-D or stacked 3-D (cropped) label image.

    Sparse maps are summed over their foreground pixels only; dense 2-D maps over cached
    coordinate grids. Sums of integer coordinates stay far below 2**53, so they are exact.
    """
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        return Components(z, z, z)
    h, w = labels.shape[-2:]
    flat = labels.ravel()
    area = np.bincount(flat, minlength=n + 1)[1:]
    if labels.ndim == 2 and area.sum() * 4 > flat.size:
        rows, cols = _coords(h, w)
        sr = np.bincount(flat, weights=rows, minlength=n + 1)[1:]
        sc = np.bincount(flat, weights=cols, minlength=n + 1)[1:]
    else:
        idx = np.flatnonzero(flat)
        lab = flat[idx]
        pix = idx % (h * w) if labels.ndim == 3 else idx
        sr = np.bincount(lab, weights=pix // w, minlength=n + 1)[1:]
        sc = np.bincount(lab, weights=pix % w, minlength=n + 1)[1:]
    sr = np.rint(sr).astype(np.int64) + row0 * area
    sc = np.rint(sc).astype(np.int64) + col0 * area
    return Components(area.astype(np.int64), sr, sc)


def label(binary: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, int]:
    """Label a 2-D binary map (numbering = raster order of first pixel, like skimage)."""
    lab, n = ndi.label(binary, structure=structure(connectivity))
    return lab, int(n)


def components(binary: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, Components]:
    """Label a binary map and return the label image with the stats of its components."""
    lab, n = label(binary, connectivity)
    return lab, component_stats(lab, n)


def _close(gt: Components, pred: Components, cand: np.ndarray, distance: float) -> np.ndarray:
    """Boolean (m, n) matrix: centroid distance < ``distance``, exact at the boundary."""
    g = gt.centroids
    p = pred.centroids[cand]
    d2 = ((g[:, None, :] - p[None, :, :]) ** 2).sum(-1)
    lim = distance * distance
    close = d2 < lim
    unsure = np.abs(d2 - lim) <= 1e-9 * max(1.0, lim)
    if unsure.any():
        dd = Fraction(distance) ** 2
        for i, j in zip(*np.nonzero(unsure)):
            jj = cand[j]
            a, b = int(pred.area[jj]), int(gt.area[i])
            dr = int(pred.sum_r[jj]) * b - int(gt.sum_r[i]) * a
            dc = int(pred.sum_c[jj]) * b - int(gt.sum_c[i]) * a
            close[i, j] = Fraction(dr * dr + dc * dc, (a * b) ** 2) < dd
    return close


def near_candidates(gt: Components, pred: Components, distance: float) -> np.ndarray:
    """Indices of predicted components within ``distance`` (+ a small margin) of any target."""
    if gt.n == 0 or pred.n == 0:
        return np.zeros(0, dtype=np.int64)
    margin = distance + 1e-6
    pc = pred.centroids
    keep = np.zeros(pred.n, dtype=bool)
    for g in gt.centroids:  # few targets per image: a loop over them is cheap
        keep |= ((pc - g) ** 2).sum(1) <= margin * margin
    return np.flatnonzero(keep)


def greedy_match(gt: Components, pred: Components, distance: float = 3.0,
                 cand: np.ndarray | None = None) -> np.ndarray:
    """For each target (label order) the index of its matched prediction, or -1.

    ``cand`` restricts the search to those predictions (any that can match must be in it);
    predictions are tried in increasing index, i.e. label order.
    """
    match = np.full(gt.n, -1, dtype=np.int64)
    if cand is None:
        cand = near_candidates(gt, pred, distance)
    if gt.n == 0 or cand.size == 0:
        return match
    close = _close(gt, pred, cand, distance)
    used = np.zeros(cand.size, dtype=bool)
    for i in range(gt.n):
        free = np.flatnonzero(close[i] & ~used)
        if free.size:
            used[free[0]] = True
            match[i] = cand[free[0]]
    return match


def false_alarm_pixels(pred: Components, match: np.ndarray, dnanet_area_bug: bool = False) -> int:
    """Pixels of predicted components that matched no target.

    With ``dnanet_area_bug`` the legacy rule is reproduced: every predicted component whose
    *area value* equals the area of some matched component is dropped from the false alarms
    (``[x for x in areas if x not in matched_areas]``), so an unmatched region with the same
    pixel count as a matched one is never counted.
    """
    matched = match[match >= 0]
    if not dnanet_area_bug:
        return int(pred.area.sum() - pred.area[matched].sum())
    keep = ~np.isin(pred.area, pred.area[matched])
    return int(pred.area[keep].sum())
