"""Input checks for the metrics: one place that turns maps and masks into clean numpy arrays.

Every evaluator calls :func:`check_pair` before it counts anything, so a bad map fails loudly
with the image index or name in the message instead of silently skewing a table.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from irlib.errors import IrlibInputError

SCORES = ("probability", "logit")


def _where(index: int | None, name: str | None) -> str:
    parts = []
    if name is not None:
        parts.append(f"image {name!r}")
    if index is not None:
        parts.append(f"index {index}")
    return " (" + ", ".join(parts) + ")" if parts else ""


def _to_numpy(x: Any, what: str, where: str) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic objects
        raise IrlibInputError(f"{what}{where} is not array-like: {exc}") from exc
    # (1, H, W) and (1, 1, H, W) come out of batch-size-1 loaders: drop the leading singleton axes.
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise IrlibInputError(f"{what}{where} must be a 2-D (H, W) map, got shape {arr.shape}; "
                              "pass one image at a time")
    return arr


def check_scores(scores: str) -> str:
    """Validate the ``scores`` option: maps are ``"probability"`` (default) or raw ``"logit"``."""
    if scores not in SCORES:
        raise IrlibInputError(f"scores={scores!r}: choose one of {SCORES}")
    return scores


def check_prob(prob: Any, *, scores: str = "probability", index: int | None = None,
               name: str | None = None) -> np.ndarray:
    """Return ``prob`` as a float32/float64 (H, W) array; raise on NaN/inf or values outside [0, 1].

    Float32 and float64 maps are kept as they are (no rounding); other dtypes become float32.
    With ``scores="logit"`` any finite value is allowed.
    """
    where = _where(index, name)
    arr = _to_numpy(prob, "prediction map", where)
    if arr.dtype not in (np.float32, np.float64):
        if arr.dtype.kind not in "biuf":
            raise IrlibInputError(f"prediction map{where} has dtype {arr.dtype}; expected floats")
        arr = arr.astype(np.float32)
    if arr.size == 0:
        raise IrlibInputError(f"prediction map{where} is empty (shape {arr.shape})")
    lo, hi = float(arr.min()), float(arr.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise IrlibInputError(f"prediction map{where} holds {bad} NaN/inf values; fix the model "
                              "output or replace them (np.nan_to_num) before evaluating")
    if scores == "probability" and (lo < 0.0 or hi > 1.0):
        raise IrlibInputError(
            f"prediction map{where} has values in [{lo:.4g}, {hi:.4g}], outside [0, 1]; metrics "
            "take probabilities: apply a sigmoid to logits, or pass scores='logit' to threshold "
            "raw logits on purpose (DNANet convention)")
    return np.ascontiguousarray(arr)


def check_mask(mask: Any, *, index: int | None = None, name: str | None = None) -> np.ndarray:
    """Return ``mask`` as a bool (H, W) array; raise unless its values are exactly {0, 1}."""
    where = _where(index, name)
    arr = _to_numpy(mask, "mask", where)
    if arr.dtype == bool:
        return np.ascontiguousarray(arr)
    if arr.dtype.kind not in "biuf":
        raise IrlibInputError(f"mask{where} has dtype {arr.dtype}; expected bool or {{0, 1}}")
    binary = arr == 1
    if not np.all(binary | (arr == 0)):
        vals = np.unique(arr)
        shown = ", ".join(f"{v:g}" for v in vals[:6]) + (" ..." if vals.size > 6 else "")
        raise IrlibInputError(f"mask{where} is not binary: values {{{shown}}}; pass a bool mask "
                              "(e.g. mask > 0 for {0, 255} PNG masks)")
    return np.ascontiguousarray(binary)


def check_pair(prob: Any, mask: Any, *, scores: str = "probability", index: int | None = None,
               name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Check one (map, mask) pair: both 2-D, same shape, finite map in range, binary mask."""
    p = check_prob(prob, scores=scores, index=index, name=name)
    m = check_mask(mask, index=index, name=name)
    if p.shape != m.shape:
        raise IrlibInputError(f"prediction map{_where(index, name)} has shape {p.shape} but its "
                              f"mask has shape {m.shape}; evaluate at native resolution (crop "
                              "padding away, do not resize the mask)")
    return p, m


def check_threshold(threshold: Any, *, scores: str = "probability") -> float:
    """Return one threshold as a float: finite, and strictly inside (0, 1) for probability maps.

    At 0 every non-zero pixel of a probability map is foreground and at 1 none is, so a single
    threshold there is almost always a logit threshold passed without ``scores="logit"``.
    """
    check_scores(scores)
    if isinstance(threshold, (bool, np.bool_)):
        raise IrlibInputError(f"threshold={threshold!r} must be a number")
    try:
        t = float(threshold)
    except (TypeError, ValueError) as exc:
        raise IrlibInputError(f"threshold={threshold!r} must be a number") from exc
    if not np.isfinite(t):
        raise IrlibInputError(f"threshold={threshold!r} must be a finite number")
    if scores == "probability" and not 0.0 < t < 1.0:
        raise IrlibInputError(f"threshold={threshold!r}: a probability threshold must lie strictly "
                              "between 0 and 1 (at 0 every non-zero pixel is foreground, at 1 none "
                              "is); pass scores='logit' to threshold raw logits")
    return t


def check_thresholds(thresholds: Any, *, scores: str = "probability") -> np.ndarray:
    """Return a strictly increasing float64 threshold grid; probability grids lie in [0, 1]."""
    t = np.asarray(thresholds, dtype=np.float64).ravel()
    if t.size == 0:
        raise IrlibInputError("thresholds is empty; pass at least one value")
    if not np.all(np.isfinite(t)):
        raise IrlibInputError("thresholds must be finite numbers")
    if t.size > 1 and not np.all(np.diff(t) > 0):
        raise IrlibInputError("thresholds must be strictly increasing (sort them, drop repeats)")
    if scores == "probability" and (t[0] < 0.0 or t[-1] > 1.0):
        raise IrlibInputError(f"probability thresholds must lie in [0, 1], got "
                              f"[{t[0]:g}, {t[-1]:g}]")
    return t
