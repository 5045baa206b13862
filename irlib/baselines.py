"""Classical single-frame detectors (numpy/scipy) as reference points for the metrics.

Each detector turns a gray image (H, W) in [0, 1] into a target-likeness score and maps it to a
probability-like map in [0, 1] with :func:`to_probability`, so the metrics, the threshold sweep
and HSE treat them exactly like a network's sigmoid output.

- :func:`top_hat`: white top-hat (image minus its grey opening by a disk), Rivest & Fortin 1996.
- :func:`max_median`: image minus the maximum of the medians along the horizontal, vertical and
  two diagonal lines through each pixel, Deshpande et al. 1999.
- :func:`mpcm`: multiscale patch-based contrast measure, Wei, You & Li, Pattern Recognition 2016.

Score-to-probability mapping (default ``"zscore"``): ``z = (s - mean(s)) / std(s)`` over the
image, then ``p = sigmoid((z - center) / scale)`` with ``center = 6`` and ``scale = 1``. So
``p > 0.5`` is the classical adaptive rule ``s > mean + 6 std``, and the default threshold grid
(0.005 ... 0.995) sweeps ``k`` in ``mean + k std`` from 0.7 to 11.3: no grid threshold flags the
bulk of the background, and the strongest peaks still separate. ``"minmax"`` maps ``s`` linearly
to [0, 1] per image (``p > 0.5`` is then ``s > (min + max) / 2``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import ndimage as ndi
from scipy.special import expit

from irlib.errors import IrlibInputError


def _image(image: np.ndarray) -> np.ndarray:
    x = np.asarray(image, dtype=np.float32)
    if x.ndim != 2:
        raise IrlibInputError(f"baselines take one gray (H, W) image, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise IrlibInputError("image holds NaN/inf values")
    return x


def to_probability(score: np.ndarray, method: str = "zscore", center: float = 6.0,
                   scale: float = 1.0) -> np.ndarray:
    """Map a detector score to [0, 1] (float32); see the module docstring for the rules."""
    s = np.asarray(score, dtype=np.float64)
    if method == "zscore":
        sd = s.std()
        if sd <= 1e-12:
            return np.full(s.shape, expit(-center / scale), dtype=np.float32)
        z = (s - s.mean()) / sd
        return expit((z - center) / scale).astype(np.float32)
    if method == "minmax":
        lo, hi = s.min(), s.max()
        if hi - lo <= 1e-12:
            return np.zeros(s.shape, dtype=np.float32)
        return ((s - lo) / (hi - lo)).astype(np.float32)
    raise IrlibInputError(f"method={method!r}: choose 'zscore' or 'minmax'")


def _disk(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius * radius


def top_hat_score(image: np.ndarray, radius: int = 4) -> np.ndarray:
    """White top-hat: what a disk of ``radius`` px cannot fit into (bright structures smaller)."""
    x = _image(image)
    return x - ndi.grey_opening(x, footprint=_disk(radius), mode="reflect")


def max_median_score(image: np.ndarray, size: int = 9) -> np.ndarray:
    """Image minus the max of the 4 directional medians over lines of ``size`` px (clipped at 0)."""
    x = _image(image)
    if size < 3 or size % 2 == 0:
        raise IrlibInputError(f"size={size}: use an odd line length >= 3")
    eye = np.eye(size, dtype=bool)
    lines = [np.ones((1, size), bool), np.ones((size, 1), bool), eye, eye[::-1]]
    background = np.max([ndi.median_filter(x, footprint=f, mode="reflect") for f in lines], axis=0)
    return np.maximum(x - background, 0.0)


def mpcm_score(image: np.ndarray, scales: tuple[int, ...] = (3, 5, 7, 9)) -> np.ndarray:
    """Multiscale patch contrast: max over scales of the min over 4 opposite-patch products.

    For patch size ``l`` the mean of the centre patch is compared with the means of the 8
    neighbouring patches at offset ``l``; ``d_i * d_(i+4)`` is kept when both differences are
    positive (a bright target stands out on both sides), the minimum over the 4 directions is the
    patch contrast, and the maximum over scales the MPCM (bright-target form).
    """
    x = _image(image)
    h, w = x.shape
    out = np.zeros_like(x)
    dirs = [(-1, -1), (-1, 0), (-1, 1), (0, 1)]
    for l in scales:
        m = ndi.uniform_filter(x, size=l, mode="reflect")
        pad = np.pad(m, l, mode="reflect")

        def shifted(dr: int, dc: int) -> np.ndarray:
            return pad[l + dr * l: l + dr * l + h, l + dc * l: l + dc * l + w]

        pcm = None
        for dr, dc in dirs:
            a = m - shifted(dr, dc)
            b = m - shifted(-dr, -dc)
            prod = np.where((a > 0) & (b > 0), a * b, 0.0)
            pcm = prod if pcm is None else np.minimum(pcm, prod)
        out = np.maximum(out, pcm)
    return out


def top_hat(image: np.ndarray, radius: int = 4, **mapping) -> np.ndarray:
    """Top-Hat detector map in [0, 1]."""
    return to_probability(top_hat_score(image, radius), **mapping)


def max_median(image: np.ndarray, size: int = 9, **mapping) -> np.ndarray:
    """Max-Median detector map in [0, 1]."""
    return to_probability(max_median_score(image, size), **mapping)


def mpcm(image: np.ndarray, scales: tuple[int, ...] = (3, 5, 7, 9), **mapping) -> np.ndarray:
    """MPCM detector map in [0, 1]."""
    return to_probability(mpcm_score(image, scales), **mapping)


BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "Top-Hat": top_hat, "Max-Median": max_median, "MPCM": mpcm}


def list_baselines() -> list[str]:
    return list(BASELINES)


def run_baseline(name: str, image: np.ndarray, **kwargs) -> np.ndarray:
    """Run a classical detector by name (``Top-Hat``, ``Max-Median``, ``MPCM``)."""
    if name not in BASELINES:
        raise IrlibInputError(f"unknown baseline {name!r}; choose one of {list(BASELINES)}")
    return BASELINES[name](image, **kwargs)
