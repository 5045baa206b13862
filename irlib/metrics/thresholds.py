"""Threshold grids and exact, fast ``map > threshold`` counting.

A pixel is foreground at threshold ``t`` when ``p > t`` in exact arithmetic (the stored float32
or float64 value against the float64 threshold). For float32 maps this equals ``p > t32`` with
``t32`` the largest float32 not above ``t``, so comparisons run in float32 without rounding
surprises. :func:`level_histogram` counts, for a whole threshold grid at once, how many pixels
lie above each threshold, with a radix pass over the float bit patterns instead of a sort.

Maps stored as integer levels (8-bit PNG: ``v / 255``; 16-bit: ``v / 65535``) follow an integer
rule instead: level ``v`` is above ``t`` iff ``v > floor(scale * t)``, with ``t`` read as the
decimal it prints as (``0.2`` is exactly 1/5, so level 51 is *not* above 0.2).
:func:`quantized_map` turns levels into float64 values for which the ordinary float comparison
gives exactly that rule, so every evaluator applies it without knowing where the map came from.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import numpy as np

from irlib.errors import IrlibInputError
from irlib.metrics.validate import check_threshold


def default_thresholds(n: int = 100) -> np.ndarray:
    """The default grid: the ``n`` bin midpoints ``(k + 0.5) / n`` (0.005, 0.015, ..., 0.995).

    Equal spacing and equal distance to 0 and 1 make the grid mean a midpoint-rule estimate of
    the integral over (0, 1); no grid point sits on 0 or 1, where every map is all-on/all-off.
    """
    if n < 1:
        raise IrlibInputError(f"n={n}: a threshold grid needs at least one value")
    return (np.arange(n, dtype=np.float64) + 0.5) / n


def compare_thresholds(thresholds: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Thresholds in the map's dtype with ``p > out[k]`` iff ``p > thresholds[k]`` (exactly)."""
    t = np.asarray(thresholds, dtype=np.float64)
    if np.dtype(dtype) == np.float64:
        return t.copy()
    t32 = t.astype(np.float32)
    above = t32.astype(np.float64) > t
    t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
    return t32


def binarize(prob: np.ndarray, threshold: float, scores: str = "probability") -> np.ndarray:
    """``prob > threshold`` in exact arithmetic (strict; float32 maps compared in float32).

    A probability threshold must lie strictly inside (0, 1); ``scores="logit"`` takes any finite one.
    """
    t = check_threshold(threshold, scores=scores)
    return prob > compare_thresholds(np.array([t], dtype=np.float64), prob.dtype)[0]


def threshold_as_written(t: float) -> Fraction:
    """A float threshold as the decimal it prints as (``repr``): 0.2 -> 1/5, 0.6 -> 3/5."""
    return Fraction(repr(float(t)))


@lru_cache(maxsize=None)
def level_value(level: int, scale: int) -> float:
    """The float64 standing for ``level / scale``: the smallest float ``f`` whose decimal form is
    not below ``level / scale``. Then ``f > t`` iff ``level > floor(scale * t)`` for every float
    threshold ``t`` read as written (the decimal form is strictly increasing over floats)."""
    x = Fraction(level, scale)
    f = float(x)
    if Fraction(f) > x:
        f = math.nextafter(f, -math.inf)
    while threshold_as_written(f) < x:
        f = math.nextafter(f, math.inf)
    return f


def quantized_map(levels: np.ndarray, scale: int) -> np.ndarray:
    """Integer ``levels`` out of ``scale`` (255 for 8-bit PNG, 65535 for 16-bit) as a float64 map
    that every evaluator thresholds at the integer level: ``v`` is above ``t`` iff
    ``v > floor(scale * t)``, ``t`` read as written (see :func:`level_value`)."""
    arr = np.asarray(levels)
    if arr.dtype.kind not in "biu" and not (arr.dtype.kind == "f" and np.all(arr == np.round(arr))):
        raise IrlibInputError(f"quantized_map: levels must be integers, got {arr.dtype}")
    if int(scale) != scale or scale < 1:
        raise IrlibInputError(f"quantized_map: scale={scale!r} must be a positive integer")
    if arr.size and (arr.min() < 0 or arr.max() > scale):
        raise IrlibInputError(f"quantized_map: levels must lie in [0, {int(scale)}], got "
                              f"[{arr.min()}, {arr.max()}]")
    values, inverse = np.unique(arr.astype(np.int64), return_inverse=True)
    lut = np.array([level_value(int(v), int(scale)) for v in values], dtype=np.float64)
    return lut[inverse.reshape(-1)].reshape(arr.shape)


def _int(dtype: np.dtype) -> tuple[type, int]:
    """Signed integer view of the float bits and the shift that keeps 11 mantissa bits."""
    if np.dtype(dtype) == np.float32:
        return np.int32, 23 - 11
    return np.int64, 52 - 11


class LevelCounter:
    """Counts, per image, the pixels above every threshold of one grid (built once per grid).

    ``level(p) = #{k : t_k < p}``; pixel ``p`` is foreground at threshold ``k`` iff
    ``level(p) > k``. For maps in [0, 1] the float bit pattern, read as an integer, is monotone
    in the value (``-0.0`` reads negative and is clamped to the bottom bin). A histogram of those
    integers in coarse bins (11 mantissa bits, bins starting just below the lowest threshold)
    gives exact counts for every bin that holds no threshold; only the few pixels in the <= K
    bins that hold one are resolved with a binary search. Other inputs (logits) fall back to
    ``np.searchsorted`` over all pixels.
    """

    def __init__(self, thresholds: np.ndarray):
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.K = self.thresholds.size
        self._cache: dict[np.dtype, tuple] = {}

    def _tables(self, dtype: np.dtype):
        dtype = np.dtype(dtype)
        if dtype not in self._cache:
            tc = compare_thresholds(self.thresholds, dtype)
            if dtype not in (np.float32, np.float64) or np.any(tc < 0) or np.any(np.signbit(tc)):
                self._cache[dtype] = (tc, None)
            else:
                itype, shift = _int(dtype)
                keys = tc.view(itype).astype(np.int64)
                base = max(int(keys[0]) - (1 << shift), 0)
                bins = (keys - base) >> shift
                top = int((max(int(np.array(1.0, dtype).view(itype)), int(keys[-1])) - base)
                          >> shift) + 1
                lut_level = np.searchsorted(bins, np.arange(top), side="left")
                lut_thr = np.zeros(top, dtype=bool)
                lut_thr[bins] = True
                self._cache[dtype] = (tc, (itype, shift, itype(base), keys.astype(itype),
                                           lut_level, lut_thr, top))
        return self._cache[dtype]

    def levels(self, values: np.ndarray) -> np.ndarray:
        """Exact level of each value (for small selections such as mask pixels)."""
        tc, _ = self._tables(values.dtype)
        return np.searchsorted(tc, values, side="left")

    def histogram(self, prob: np.ndarray) -> np.ndarray:
        """``G[j]`` = number of pixels with level ``j`` (length ``K + 1``)."""
        flat = prob.ravel()
        tc, radix = self._tables(flat.dtype)
        if radix is None or not (flat.min() >= 0 and flat.max() <= 1):
            return np.bincount(np.searchsorted(tc, flat, side="left"), minlength=self.K + 1)
        itype, shift, base, keys, lut_level, lut_thr, top = radix
        k = flat.view(itype)
        coarse = np.maximum(k, base)
        coarse -= base
        coarse >>= shift
        hist = np.bincount(coarse, minlength=top)
        weights = np.where(lut_thr, 0, hist)
        out = np.bincount(lut_level, weights=weights, minlength=self.K + 1)
        out = np.rint(out).astype(np.int64)
        sel = k[lut_thr[coarse]]
        out += np.bincount(np.searchsorted(keys, sel, side="left"), minlength=self.K + 1)
        return out[: self.K + 1]

    def above(self, prob: np.ndarray) -> np.ndarray:
        """Number of pixels with ``p > t_k`` for every ``k`` (length ``K``)."""
        return above_from_histogram(self.histogram(prob))


def above_from_histogram(hist: np.ndarray) -> np.ndarray:
    """Turn a level histogram (length K + 1) into counts above each threshold (length K)."""
    tail = np.cumsum(hist[::-1])[::-1]
    return tail[1:].astype(np.int64)
