"""Point labels derived from masks, for point-supervised training.

Both functions return an int64 array of shape ``(N, 2)`` holding ``(row, col)``, one row per
8-connected target, in the order of :func:`irlib.data.components.label_targets` (raster order
of each target's first pixel). A mask without targets gives shape ``(0, 2)``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from irlib.data.components import label_targets


def centroid_points(mask: np.ndarray) -> np.ndarray:
    """Floor of each target's centroid (mean row, mean col of its pixels).

    For a non-convex target the floored centroid can fall outside the target; this is the
    usual "centroid point" label of the point-supervision literature and is kept as is.
    """
    labels, n = label_targets(mask)
    if n == 0:
        return np.zeros((0, 2), dtype=np.int64)
    centres = ndimage.center_of_mass(np.ones_like(labels, dtype=np.float64), labels,
                                     np.arange(1, n + 1))
    return np.floor(np.asarray(centres, dtype=np.float64)).astype(np.int64)


def coarse_points(mask: np.ndarray, rng: np.random.Generator | int | None) -> np.ndarray:
    """One pixel drawn uniformly inside each target ("coarse" point labels), seeded by ``rng``."""
    rng = np.random.default_rng(rng)
    labels, n = label_targets(mask)
    if n == 0:
        return np.zeros((0, 2), dtype=np.int64)
    flat = labels.ravel()
    order = np.argsort(flat, kind="stable")
    counts = np.bincount(flat, minlength=n + 1)
    starts = np.cumsum(counts)[:-1]  # first sorted position of labels 1..n
    picks = starts + np.minimum((rng.random(n) * counts[1:]).astype(np.int64), counts[1:] - 1)
    rows, cols = np.unravel_index(order[picks], labels.shape)
    return np.stack([rows, cols], axis=1).astype(np.int64)


def points_to_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bool ``(H, W)`` map that is True at each ``(row, col)`` point (points must lie inside)."""
    points = np.asarray(points, dtype=np.int64).reshape(-1, 2)
    out = np.zeros(shape, dtype=bool)
    if len(points):
        h, w = shape
        if (points < 0).any() or (points[:, 0] >= h).any() or (points[:, 1] >= w).any():
            raise ValueError(f"points outside an image of shape {shape}")
        out[points[:, 0], points[:, 1]] = True
    return out
