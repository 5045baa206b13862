"""LESPS label evolution (Ying et al., CVPR 2023): one update of one image's soft label.

The rule of the released code (``net.py: update_gt``, HEAD 9292bba), on numpy arrays:

* regions = the 8-connected components of the **current** label ``M > 0.5`` (not the points);
* per region ``R``: ``c = int(centroid(R))``; ``Nb`` = the ``window`` (33) box around ``c``,
  ``Tg`` = the ``seed_window`` (3) box around ``c`` (both clipped to the image);
  ``mx = max(P in Nb)``; ``thr = mx * (Tb + k (1 - Tb) |R| / (area_fraction H W))``
  (``Tb = k = 0.5``, ``area_fraction = 0.0015``, ``H, W`` the image size);
  candidates ``C = P > thr`` inside ``Nb``; when ``C`` has more than one 8-connected component,
  those not touching ``Tg`` are dropped (a **single** component is kept even when it does not
  touch ``Tg``: the code's behaviour, ``filter_single=False``);
* ``M <- C (M + P) / 2 + (1 - C) M``, applied **sequentially** region after region (a pixel in
  the candidates of two regions is averaged twice);
* protection: ``M <- max(M, M_in == 1)`` (code: every pixel that was exactly 1 stays 1;
  ``keep_ones``) and, our addition, every given point is set to 1 (the code relies on the points
  being exactly 1 in ``M_in``; here they are protected even if the caller's label lost them).

The label stays soft (float in [0, 1]). Storage: the released code's default writes PNGs with
``ToPILImage`` (floor to 1/255, ``quantize="floor"``); its ``--cache`` option keeps floats in
memory, which is our default (``quantize=None``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, ClassVar, Sequence

import numpy as np
from scipy import ndimage

from irlib.data.components import label_targets
from irlib.data.points import points_to_mask
from irlib.errors import IrlibInputError

QUANTIZERS = (None, "floor", "round")


def check_inputs(prob: np.ndarray, label: np.ndarray, points: np.ndarray | Sequence[Sequence[int]]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated float64 ``prob``, ``label`` and int64 ``(N, 2)`` points of one image."""
    prob = np.asarray(prob, dtype=np.float64)
    label = np.asarray(label, dtype=np.float64)
    if prob.ndim != 2 or label.shape != prob.shape:
        raise IrlibInputError(f"label evolution needs a 2-D probability map and a label of the same "
                              f"shape, got {prob.shape} and {label.shape}; pass one (H, W) image at a time")
    for name, a in (("probability map", prob), ("label", label)):
        if not np.isfinite(a).all() or a.min(initial=0.0) < 0.0 or a.max(initial=0.0) > 1.0:
            raise IrlibInputError(f"the {name} must hold finite values in [0, 1]; apply a sigmoid to "
                                  "logits and scale uint8 labels by 1/255")
    pts = np.asarray(points, dtype=np.int64).reshape(-1, 2)
    h, w = prob.shape
    if len(pts) and ((pts < 0).any() or (pts[:, 0] >= h).any() or (pts[:, 1] >= w).any()):
        raise IrlibInputError(f"points must be (row, col) inside the {h}x{w} image, got {pts.tolist()}")
    return prob, label, pts


def check_window(window: int, seed_window: int) -> None:
    """Both windows must be odd positive sizes (they are centred on a pixel)."""
    for name, v in (("window", window), ("seed_window", seed_window)):
        if int(v) != v or v < 1 or v % 2 == 0:
            raise IrlibInputError(f"{name} must be an odd positive integer (box centred on a pixel), got {v}")


def box(center: tuple[int, int], size: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    """Slices of the ``size x size`` box centred on ``center``, clipped to ``shape``."""
    r, c = center
    half = size // 2
    return (slice(max(r - half, 0), min(r + half + 1, shape[0])),
            slice(max(c - half, 0), min(c + half + 1, shape[1])))


def region_candidates(prob: np.ndarray, rows: np.ndarray, cols: np.ndarray, *, tb: float = 0.5,
                      k: float = 0.5, window: int = 33, seed_window: int = 3,
                      area_fraction: float = 0.0015, image_shape: tuple[int, int] | None = None,
                      filter_single: bool = False) -> np.ndarray:
    """Bool (H, W) candidate pixels of one label region (pixel coordinates ``rows``, ``cols``).

    Shared by LESPS and PAL; ``filter_single`` also drops a lone component that misses the seed
    box (PAL: True; LESPS code: False).
    """
    h, w = image_shape if image_shape is not None else prob.shape
    center = (int(rows.mean()), int(cols.mean()))  # int() of a non-negative mean = floor, as the code
    nb = box(center, window, prob.shape)
    local = prob[nb]
    mx = float(local.max())
    thr = mx * (tb + k * (1.0 - tb) * rows.size / (area_fraction * h * w))
    cand_local = local > thr
    comps, n = label_targets(cand_local)
    if n > 1 or (filter_single and n == 1):
        tg = box(center, seed_window, prob.shape)
        seed_local = (slice(tg[0].start - nb[0].start, tg[0].stop - nb[0].start),
                      slice(tg[1].start - nb[1].start, tg[1].stop - nb[1].start))
        touching = np.unique(comps[seed_local])
        cand_local = np.isin(comps, touching[touching > 0])
    out = np.zeros(prob.shape, dtype=bool)
    out[nb] = cand_local
    return out


def label_regions(label: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(rows, cols)`` of each 8-connected region of ``label > 0.5``, in raster label order."""
    comps, n = label_targets(label > 0.5)
    out = []
    for i, sl in enumerate(ndimage.find_objects(comps, max_label=n), start=1):
        rr, cc = np.nonzero(comps[sl] == i)
        out.append((rr + sl[0].start, cc + sl[1].start))
    return out


def protect(new: np.ndarray, label_in: np.ndarray, points: np.ndarray, keep_ones: bool) -> np.ndarray:
    """Pixels exactly 1 in the input label (``keep_ones``) and the points are set back to 1."""
    if keep_ones:
        new = np.maximum(new, (label_in == 1.0).astype(new.dtype))
    if len(points):
        new[points_to_mask(points, new.shape)] = 1.0
    return new


def quantize(label: np.ndarray, mode: str | None) -> np.ndarray:
    """The label after a uint8 round trip: ``None`` (kept), ``"floor"`` (PIL ``ToPILImage``,
    LESPS's disk path) or ``"round"`` (``cv2.imwrite`` of a float, PAL)."""
    if mode is None:
        return label
    if mode == "floor":
        return np.floor(label * 255.0 + 1e-9) / 255.0
    if mode == "round":
        return np.round(label * 255.0) / 255.0
    raise IrlibInputError(f"quantize={mode!r}: choose one of {QUANTIZERS}")


def lesps_update(prob: np.ndarray, label: np.ndarray, points: np.ndarray | Sequence[Sequence[int]], *,
                 tb: float = 0.5, k: float = 0.5, window: int = 33, seed_window: int = 3,
                 area_fraction: float = 0.0015, image_shape: tuple[int, int] | None = None,
                 keep_ones: bool = True, filter_single: bool = False,
                 quantize_to: str | None = None) -> np.ndarray:
    """One LESPS update of one image: the new float32 soft label (see the module docstring).

    Args:
        prob: the model's probability map ``(H, W)`` at native resolution (after the sigmoid).
        label: the current label ``(H, W)`` in [0, 1] (initially the point map).
        points: ``(N, 2)`` ``(row, col)`` point labels, always kept at 1.
        image_shape: ``(H, W)`` used in the size term; default ``prob.shape`` (the code passes the
            original size, which is ``prob.shape`` at native resolution).
        keep_ones: keep every pixel that was exactly 1 (code); False protects the points only.
        filter_single: also drop a lone candidate component away from the seed box (PAL's
            choice; LESPS code: False).
        quantize_to: ``None`` (default, in memory), ``"floor"`` (LESPS PNG files) or ``"round"``.
    """
    check_window(window, seed_window)
    prob, label_in, pts = check_inputs(prob, label, points)
    new = label_in.copy()
    for rows, cols in label_regions(label_in):
        cand = region_candidates(prob, rows, cols, tb=tb, k=k, window=window, seed_window=seed_window,
                                 area_fraction=area_fraction, image_shape=image_shape,
                                 filter_single=filter_single)
        new[cand] = (new[cand] + prob[cand]) / 2.0
    new = protect(new, label_in, pts, keep_ones)
    return np.clip(quantize(new, quantize_to), 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class UpdateRule:
    """A label update with fixed keywords: ``rule(prob, label, points) = update(prob, label, points,
    **fields)``. Holds the keywords LESPS and PAL share; a rule adds its update's others as fields."""

    update: ClassVar[Callable[..., np.ndarray]]
    tb: float = 0.5
    k: float = 0.5
    window: int = 33
    seed_window: int = 3
    area_fraction: float = 0.0015

    def __post_init__(self) -> None:
        check_window(self.window, self.seed_window)
        quantize_to = getattr(self, "quantize_to", None)
        if quantize_to not in QUANTIZERS:
            raise IrlibInputError(f"quantize_to={quantize_to!r}: choose one of {QUANTIZERS}")

    def __call__(self, prob: np.ndarray, label: np.ndarray, points: np.ndarray) -> np.ndarray:
        return type(self).update(prob, label, points, **asdict(self))


@dataclass(frozen=True)
class LespsRule(UpdateRule):
    """:func:`lesps_update` with fixed parameters: ``rule(prob, label, points) -> new label``."""

    update = staticmethod(lesps_update)
    keep_ones: bool = True
    filter_single: bool = False
    quantize_to: str | None = None


__all__ = ["LespsRule", "UpdateRule", "lesps_update", "region_candidates"]
