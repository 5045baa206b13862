"""Targets as 8-connected components of a mask: the one definition of "a target" in irlib.data."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

EIGHT = np.ones((3, 3), dtype=bool)


def label_targets(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label the 8-connected components of a 2-D mask: ``(labels int32 (H, W), count)``.

    Labels run 1..count in raster order of each component's first pixel; 0 is background.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    labels, n = ndimage.label(mask.astype(bool), structure=EIGHT)
    return labels.astype(np.int32, copy=False), int(n)


def count_targets(mask: np.ndarray) -> int:
    """Number of 8-connected components of a mask."""
    return label_targets(mask)[1]


def component_slices(labels: np.ndarray, n: int) -> list[tuple[slice, slice]]:
    """Bounding-box slices of components 1..n."""
    return list(ndimage.find_objects(labels, max_label=n))
