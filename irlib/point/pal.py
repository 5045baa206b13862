"""PAL label evolution (Yu et al., ICCV 2025; reused by semantic-prior): Canny initial
pseudo-masks, the decayed evolution rule, and the easy-to-hard sample pool.

Sources: PAL ``train_model.py`` / ``utilts.py`` and semantic-prior ``utils/mask_update.py``,
``train.py`` (fact sheet ``scam.md``, section 1.3).

* :func:`initial_mask`: per point a ROI ``[r - roi, r + roi) x [c - roi, c + roi)`` (clipped);
  residual ``max(I - blur3x3(I), 0)`` (cv2 ``GaussianBlur((3, 3), 0)`` = ``[1, 2, 1] / 4``,
  reflect-101 border; ``cv2.subtract`` saturates at 0); **scikit-image** ``canny`` with
  ``sigma=0`` (cv2.Canny does not smooth) and thresholds 20/255, 40/255 (the code's 20, 40 on
  uint8); a 3x3 closing; the 8-connected edge component whose hole-filled area contains the
  point is accepted when its area is at most ``max_area`` (50). Differences to the code that
  remain: skimage's gradient magnitude is L2 (cv2's default is L1) and skimage never marks the
  outermost ROI pixels as edges. The area is cv2's ``contourArea`` (polygon through the boundary
  pixel centres) estimated by Pick's theorem, ``N - B/2 - 1`` (exact when the outer boundary
  visits each boundary pixel once; larger than cv2's value for 1-px-wide parts), our choice;
  ``area="pixels"`` compares the pixel count instead.
* :func:`pal_update`: LESPS's thresholds and windows, but the per-region candidates are OR-ed and
  applied once, the false-alarm removal also applies to a single component, and pixels outside
  the candidates decay: ``M <- C (M + P) / 2 + (1 - C) M decay`` (0.97), then
  ``max(M, M_in == 1)`` and a uint8 round trip (``round``). The training target is the label
  binarised at 0.5 (:class:`irlib.point.labels.EvolvingLabels` with ``target="binary"``).
* Pool: images whose points got a contour for at least 80 % of them start in the pool; the others
  are mined by :func:`mine` on the update epochs of :class:`PalSchedule` until ``0.8 E``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage
from skimage.feature import canny

from irlib.data.components import EIGHT, label_targets
from irlib.data.points import points_to_mask
from irlib.errors import IrlibInputError
from irlib.point.lesps import (UpdateRule, check_inputs, check_window, label_regions, protect, quantize,
                               region_candidates)

AREA_MODES = ("contour", "pixels")


# ----------------------------------------------------------------------------- initial masks
@dataclass(frozen=True)
class InitialMask:
    """PAL's initial pseudo-mask of one image: ``mask`` bool (H, W) (accepted contours and the
    points) and ``covered`` bool (N,) (which points got a contour)."""

    mask: np.ndarray
    covered: np.ndarray

    @property
    def selected(self) -> bool:
        """Whether the image starts in the training pool (PAL: >= 80 % covered, or no point)."""
        return pool_selected(self.covered)


def pool_selected(covered: np.ndarray, min_fraction: float = 0.8) -> bool:
    """PAL's easy-sample rule: at least ``min_fraction`` of the points covered (no point: True)."""
    covered = np.asarray(covered, dtype=bool)
    return covered.size == 0 or covered.mean() >= min_fraction


def blur3(a: np.ndarray) -> np.ndarray:
    """cv2 ``GaussianBlur(a, (3, 3), 0)``: separable ``[1, 2, 1] / 4``, reflect-101 border."""
    kernel = np.array([0.25, 0.5, 0.25])
    return ndimage.correlate1d(ndimage.correlate1d(a, kernel, axis=0, mode="mirror"), kernel, axis=1,
                               mode="mirror")


def contour_area(region: np.ndarray, mode: str = "contour") -> float:
    """Area of a filled 8-connected region: cv2-``contourArea``-like (Pick) or the pixel count."""
    n = int(region.sum())
    if mode == "pixels":
        return float(n)
    if mode != "contour":
        raise IrlibInputError(f"area={mode!r}: choose one of {AREA_MODES}")
    interior = ndimage.binary_erosion(region, structure=ndimage.generate_binary_structure(2, 1),
                                      border_value=0)
    boundary = n - int(interior.sum())
    return max(n - boundary / 2.0 - 1.0, 0.0)


def _point_contour(roi: np.ndarray, point: tuple[int, int], low: float, high: float, sigma: float
                   ) -> np.ndarray | None:
    """The hole-filled edge component of ``roi`` that contains ``point`` (ROI coordinates)."""
    resid = np.maximum(roi - blur3(roi), 0.0)
    edges = canny(resid, sigma=sigma, low_threshold=low, high_threshold=high)
    closed = ndimage.binary_erosion(ndimage.binary_dilation(edges, structure=EIGHT), structure=EIGHT,
                                    border_value=1)
    comps, n = label_targets(closed)
    for i in range(1, n + 1):
        filled = ndimage.binary_fill_holes(comps == i)
        if filled[point]:
            return filled
    return None


def initial_mask(image: np.ndarray, points: np.ndarray | Sequence[Sequence[int]], *, roi: int = 10,
                 low: float = 20 / 255, high: float = 40 / 255, sigma: float = 0.0,
                 max_area: float = 50.0, area: str = "contour") -> InitialMask:
    """PAL's Canny-based initial pseudo-mask of a gray [0, 1] image (see the module docstring)."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2 or not np.isfinite(image).all():
        raise IrlibInputError(f"initial_mask needs a finite gray (H, W) image, got shape {image.shape}")
    if area not in AREA_MODES:
        raise IrlibInputError(f"area={area!r}: choose one of {AREA_MODES}")
    if roi < 1:
        raise IrlibInputError(f"roi must be >= 1 px, got {roi}")
    _, _, pts = check_inputs(np.zeros(image.shape), np.zeros(image.shape), points)
    h, w = image.shape
    mask = points_to_mask(pts, image.shape)
    covered = np.zeros(len(pts), dtype=bool)
    for j, (r, c) in enumerate(pts):
        r0, r1, c0, c1 = max(r - roi, 0), min(r + roi, h), max(c - roi, 0), min(c + roi, w)
        filled = _point_contour(image[r0:r1, c0:c1], (r - r0, c - c0), low, high, sigma)
        if filled is not None and contour_area(filled, area) <= max_area:
            mask[r0:r1, c0:c1] |= filled
            covered[j] = True
    return InitialMask(mask, covered)


# ----------------------------------------------------------------------------- evolution
def pal_update(prob: np.ndarray, label: np.ndarray, points: np.ndarray | Sequence[Sequence[int]], *,
               tb: float = 0.5, k: float = 0.5, window: int = 33, seed_window: int = 3,
               area_fraction: float = 0.0015, decay: float = 0.97, image_shape: tuple[int, int] | None = None,
               keep_ones: bool = True, quantize_to: str | None = "round") -> np.ndarray:
    """One PAL update (``update_gt_update_degen_corr``): the new float32 label.

    ``keep_ones`` (code) keeps every pixel that was exactly 1, so the initial pseudo-mask never
    decays; the points are always kept at 1 (our addition). ``quantize_to="round"`` is PAL's
    uint8 PNG round trip; ``None`` keeps floats.
    """
    check_window(window, seed_window)
    if not 0.0 <= decay <= 1.0:
        raise IrlibInputError(f"decay must be in [0, 1], got {decay}")
    prob, label_in, pts = check_inputs(prob, label, points)
    cand = np.zeros(prob.shape, dtype=bool)
    for rows, cols in label_regions(label_in):
        cand |= region_candidates(prob, rows, cols, tb=tb, k=k, window=window, seed_window=seed_window,
                                  area_fraction=area_fraction, image_shape=image_shape, filter_single=True)
    new = np.where(cand, (label_in + prob) / 2.0, label_in * decay)
    new = protect(new, label_in, pts, keep_ones)
    return np.clip(quantize(new, quantize_to), 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class PalRule(UpdateRule):
    """:func:`pal_update` with fixed parameters: ``rule(prob, label, points) -> new label``."""

    update = staticmethod(pal_update)
    decay: float = 0.97
    keep_ones: bool = True
    quantize_to: str | None = "round"


# ----------------------------------------------------------------------------- sample pool
@dataclass(frozen=True)
class PalSchedule:
    """When labels evolve and hard samples are mined (``e`` = the number of epochs trained).

    PAL (``train_model.py``): ``start = 0.2 E``, updates when ``e > int(start)`` and
    ``e % every == 0`` (5); mining on those epochs while ``e <= int(end_fraction E)`` (0.8 E) with
    ``lose(e) = lose0 + (e - start + 1) / (end_fraction E - start) (1 - lose0)`` (``lose0`` 0.2,
    growing to about 1: easy to hard) and the alarm ratio 5. semantic-prior is the same with
    ``start = 60`` for ``E = 300`` (:meth:`semantic_prior`).
    """

    epochs: int
    start: float | None = None
    every: int = 5
    end_fraction: float = 0.8
    lose0: float = 0.2
    alarm_ratio: float = 5.0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.every < 1:
            raise IrlibInputError(f"PalSchedule needs epochs >= 1 and every >= 1, got {self.epochs}, {self.every}")
        if not 0.0 < self.end_fraction <= 1.0 or self.end_fraction * self.epochs <= self.begin:
            raise IrlibInputError(f"PalSchedule: end_fraction * epochs ({self.end_fraction * self.epochs}) must "
                                  f"exceed start ({self.begin}); lower start or raise end_fraction")

    @classmethod
    def semantic_prior(cls, epochs: int = 300) -> "PalSchedule":
        """semantic-prior's schedule: updates after epoch 60 (E = 300 in the paper)."""
        return cls(epochs, start=60)

    @property
    def begin(self) -> float:
        """The start epoch (default ``0.2 E``)."""
        return 0.2 * self.epochs if self.start is None else float(self.start)

    @property
    def end(self) -> float:
        return self.end_fraction * self.epochs

    def updates(self, e: int) -> bool:
        """Whether the labels evolve after ``e`` epochs of training."""
        return e > int(self.begin) and e % self.every == 0

    def mines(self, e: int) -> bool:
        """Whether hard samples are mined after ``e`` epochs (update epochs up to ``0.8 E``)."""
        return self.updates(e) and e <= int(self.end)

    def lose_ratio(self, e: int) -> float:
        """The largest admitted fraction of uncovered points after ``e`` epochs."""
        return self.lose0 + (e - self.begin + 1) / (self.end - self.begin) * (1.0 - self.lose0)


def _filled_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components with their holes filled, a component inside another's hole merged
    into it (cv2 external contours, filled): ``(labels, count)``."""
    comps, n = label_targets(mask)
    out = np.zeros(mask.shape, dtype=np.int32)
    for i in range(1, n + 1):
        out[ndimage.binary_fill_holes(comps == i) & (out == 0)] = i
    present = np.unique(out)
    return out, int((present > 0).sum())


def point_coverage(pred_mask: np.ndarray, points: np.ndarray) -> tuple[int, int, int, np.ndarray]:
    """``(#point components, #covered, #predicted components, ids of predicted components touching
    a point)``; a point component is covered when it meets a hole-filled predicted component."""
    pts_map = points_to_mask(points, pred_mask.shape)
    pcomps, n_pts = label_targets(pts_map)
    fcomps, n_pred = _filled_components(np.asarray(pred_mask, dtype=bool))
    covered = 0
    for i in range(1, n_pts + 1):
        covered += bool((fcomps[pcomps == i] > 0).any())
    touching = np.unique(fcomps[pts_map])
    return n_pts, covered, n_pred, touching[touching > 0]


def admit(pred_mask: np.ndarray, points: np.ndarray, lose_ratio: float, alarm_ratio: float = 5.0) -> bool:
    """PAL's admission test of an unselected image: ``uncovered / #points <= lose_ratio`` and
    ``(#predicted components - #covered) / #points <= alarm_ratio``; no point: admitted."""
    pts = np.asarray(points, dtype=np.int64).reshape(-1, 2)
    if len(pts) == 0:
        return True
    n_pts, covered, n_pred, _ = point_coverage(pred_mask, pts)
    return (n_pts - covered) / n_pts <= lose_ratio and (n_pred - covered) / n_pts <= alarm_ratio


def refine(pred_mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    """An admitted image's label: the hole-filled predicted components touching a point, and the points."""
    pts = np.asarray(points, dtype=np.int64).reshape(-1, 2)
    fcomps, _ = _filled_components(np.asarray(pred_mask, dtype=bool))
    _, _, _, touching = point_coverage(pred_mask, pts)
    return np.isin(fcomps, touching) | points_to_mask(pts, fcomps.shape)


def mine(prob: np.ndarray, points: np.ndarray, lose_ratio: float, alarm_ratio: float = 5.0,
         threshold: float = 0.5) -> np.ndarray | None:
    """The bool label of an unselected image when its prediction ``prob > threshold`` is admitted,
    else None."""
    prob, _, pts = check_inputs(prob, np.zeros(np.shape(prob)), points)
    pred = prob > threshold
    return refine(pred, pts) if admit(pred, pts, lose_ratio, alarm_ratio) else None


__all__ = ["InitialMask", "PalRule", "PalSchedule", "admit", "initial_mask", "mine", "pal_update",
           "pool_selected", "refine"]
