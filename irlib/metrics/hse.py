"""HSE, the Holistic SIRST Evaluation: one number in [0, 1] from a whole threshold sweep.

FDEP describes HSE only as "multi-threshold integral evaluation at both pixel-level confidence
and target-level robustness, providing a stable and comprehensive basis for fair model
comparison"; its formula is not public. This is irlib's construction from that sentence
(``docs/hse.md`` says which parts follow the text and which are our choices):

- pixel-level score ``S_pix = w_iou * mean_t IoU(t) + (1 - w_iou) * mean_t nIoU(t)``;
- target-level score ``S_tgt = mean_t Pd(t) * phi(Fa(t))`` with the false-alarm penalty
  ``phi(Fa) = exp(-Fa / fa_ref)`` (default) or ``max(0, 1 - Fa / fa_ref)`` (``"linear"``);
- ``HSE = w_pix * S_pix + (1 - w_pix) * S_tgt``.

``mean_t`` is the normalised integral over the threshold grid (trapezoid rule over the grid's
span by default, or the plain grid mean). Every ingredient is a field of :class:`HSEConfig`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from irlib.errors import IrlibInputError
from irlib.metrics.sweep import SweepCounts, SweepCurves

RULES = ("trapezoid", "mean")
PENALTIES = ("exp", "linear")


@dataclass(frozen=True)
class HSEConfig:
    """Every HSE choice, with the defaults documented in ``docs/hse.md``.

    ``rule``: ``"trapezoid"`` (integral over [t_min, t_max] divided by its length) or ``"mean"``;
    ``iou_weight``: share of pooled IoU vs nIoU in the pixel score (0.5);
    ``fa_penalty``: ``"exp"`` or ``"linear"``; ``fa_ref``: Fa scale of the penalty (1e-4, i.e.
    100 x 1e-6: ``exp`` halves Pd at Fa = 69 x 1e-6); ``pixel_weight``: share of the pixel score
    in HSE (0.5); ``t_range``: optional (lo, hi) sub-range of the grid to integrate over.
    """

    rule: str = "trapezoid"
    iou_weight: float = 0.5
    fa_penalty: str = "exp"
    fa_ref: float = 1e-4
    pixel_weight: float = 0.5
    t_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise IrlibInputError(f"rule={self.rule!r}: choose one of {RULES}")
        if self.fa_penalty not in PENALTIES:
            raise IrlibInputError(f"fa_penalty={self.fa_penalty!r}: choose one of {PENALTIES}")
        for name in ("iou_weight", "pixel_weight"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise IrlibInputError(f"{name}={v!r} must lie in [0, 1]")
        if not self.fa_ref > 0:
            raise IrlibInputError(f"fa_ref={self.fa_ref!r} must be positive")


@dataclass(frozen=True)
class HSEResult:
    """HSE with its parts: ``score = pixel_weight * pixel + (1 - pixel_weight) * target``."""

    score: float
    pixel: float
    target: float
    iou_int: float
    niou_int: float
    pd_int: float
    config: HSEConfig

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["config"] = asdict(self.config)
        return d


def fa_penalty(fa: np.ndarray, kind: str = "exp", fa_ref: float = 1e-4) -> np.ndarray:
    """The false-alarm factor in [0, 1] that multiplies Pd at each threshold."""
    fa = np.asarray(fa, dtype=np.float64)
    if kind == "exp":
        return np.exp(-fa / fa_ref)
    return np.clip(1.0 - fa / fa_ref, 0.0, 1.0)


def integrate(y: np.ndarray, t: np.ndarray, rule: str = "trapezoid") -> float:
    """Normalised integral of ``y(t)`` over the grid (a weighted mean of ``y``)."""
    y = np.asarray(y, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if rule == "mean" or t.size == 1:
        return float(y.mean())
    span = t[-1] - t[0]
    return float(np.sum((t[1:] - t[:-1]) * (y[1:] + y[:-1]) / 2.0) / span)


def hse(data: SweepCounts | SweepCurves, config: HSEConfig | None = None,
        **overrides: Any) -> HSEResult:
    """HSE of a sweep (per-image counts or curves); keyword arguments override ``config``."""
    if config is None:
        config = HSEConfig(**overrides)
    elif overrides:
        config = HSEConfig(**{**asdict(config), **overrides})
    curves = data.curves() if isinstance(data, SweepCounts) else data
    t = curves.thresholds
    keep = np.ones(t.size, dtype=bool)
    if config.t_range is not None:
        lo, hi = config.t_range
        keep = (t >= lo) & (t <= hi)
        if not keep.any():
            raise IrlibInputError(f"t_range={config.t_range} holds no threshold of the grid")
    t = t[keep]
    iou = integrate(curves.IoU[keep], t, config.rule)
    niou = integrate(curves.nIoU[keep], t, config.rule)
    pd = np.nan_to_num(curves.Pd[keep], nan=0.0)
    pd_pen = integrate(pd * fa_penalty(curves.Fa[keep], config.fa_penalty, config.fa_ref), t,
                       config.rule)
    pixel = config.iou_weight * iou + (1.0 - config.iou_weight) * niou
    score = config.pixel_weight * pixel + (1.0 - config.pixel_weight) * pd_pen
    return HSEResult(score=float(score), pixel=float(pixel), target=float(pd_pen),
                     iou_int=iou, niou_int=niou, pd_int=integrate(pd, t, config.rule),
                     config=config)
