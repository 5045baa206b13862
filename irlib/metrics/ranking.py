"""How stable a ranking of methods is: under IoU at one threshold versus under HSE.

Two ways to move the ground under a ranking (notebook 03, ``docs/hse.md``): the threshold moves
(IoU(t) against IoU@0.5 for every grid threshold; HSE against itself on other grids), or the
test set moves (bootstrap resamples of the images, scored from the per-image counts without
touching a map). Agreement is Kendall's tau between two orderings of the same methods.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from irlib.metrics.hse import HSEResult, hse
from irlib.metrics.standard import SirstMetrics
from irlib.metrics.sweep import SweepCounts, SweepCurves

#: the plausible operating range of a probability threshold
OPERATING_RANGE = (0.2, 0.8)

#: label -> HSE of a sweep computed another way (sub-range, sub-grid, plain mean)
HSE_VARIANTS: dict[str, Callable[[SweepCounts], HSEResult]] = {
    "t in [0.05, 0.95]": lambda c: hse(c, t_range=(0.05, 0.95)),
    "t in [0.1, 0.9]": lambda c: hse(c, t_range=(0.1, 0.9)),
    "t in [0.2, 0.8]": lambda c: hse(c, t_range=(0.2, 0.8)),
    "every 2nd threshold": lambda c: hse(c.take_thresholds(np.arange(0, c.thresholds.size, 2))),
    "every 4th threshold": lambda c: hse(c.take_thresholds(np.arange(1, c.thresholds.size, 4))),
    "rule = mean": lambda c: hse(c, rule="mean"),
}


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau of two scorings of the same methods; 1.0 when it is undefined (all tied)."""
    from scipy.stats import kendalltau

    t = kendalltau(a, b).statistic
    return 1.0 if np.isnan(t) else float(t)


def threshold_agreement(curves: Mapping[str, SweepCurves], reference: Mapping[str, float],
                        metric: str = "IoU") -> Any:
    """Tau between the ranking by ``metric`` at each grid threshold and by ``reference``
    (e.g. IoU@0.5): a pandas Series indexed by threshold."""
    import pandas as pd

    methods = list(curves)
    ref = [reference[m] for m in methods]
    values = np.array([getattr(curves[m], metric) for m in methods])
    grid = curves[methods[0]].thresholds
    return pd.Series([kendall_tau(ref, values[:, k]) for k in range(grid.size)], index=grid,
                     name=f"tau {metric}(t) vs reference")


def in_range(series: Any, t_range: tuple[float, float] = OPERATING_RANGE) -> Any:
    """The entries of a threshold-indexed Series with ``lo <= t <= hi``."""
    lo, hi = t_range
    return series[(series.index >= lo) & (series.index <= hi)]


def variant_agreement(counts: Mapping[str, SweepCounts],
                      variants: Mapping[str, Callable[[SweepCounts], HSEResult]] = HSE_VARIANTS
                      ) -> Any:
    """Tau between the default HSE ranking and each variant's: a Series indexed by label."""
    import pandas as pd

    methods = list(counts)
    default = [hse(counts[m]).score for m in methods]
    return pd.Series({k: kendall_tau(default, [f(counts[m]).score for m in methods])
                      for k, f in variants.items()}, name="Kendall tau vs default HSE")


def bootstrap_rankings(metrics: Mapping[str, SirstMetrics], counts: Mapping[str, SweepCounts],
                       n_boot: int, seed: int = 0) -> Any:
    """Rankings on ``n_boot`` bootstrap resamples of the images, against the full set's.

    Per resample: tau of IoU@0.5 (pooled from the per-image counts of ``metrics``) and of HSE
    (from ``counts``) against the full-set ranking of the same score, and whether the winner
    is the same (1) or not (0). Returns a DataFrame, one row per resample.
    """
    import pandas as pd

    methods = list(metrics)
    inter = {m: np.array([r.inter for r in metrics[m].records]) for m in methods}
    union = {m: np.array([r.union for r in metrics[m].records]) for m in methods}
    iou_full = [metrics[m].compute()["IoU"] for m in methods]
    hse_full = [hse(counts[m]).score for m in methods]
    n = len(inter[methods[0]])
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        iou_b = [inter[m][idx].sum() / max(union[m][idx].sum(), 1) for m in methods]
        hse_b = [hse(counts[m].take(idx)).score for m in methods]
        rows.append({"tau IoU@0.5": kendall_tau(iou_full, iou_b),
                     "tau HSE": kendall_tau(hse_full, hse_b),
                     "same winner IoU@0.5": int(np.argmax(iou_b) == np.argmax(iou_full)),
                     "same winner HSE": int(np.argmax(hse_b) == np.argmax(hse_full))})
    return pd.DataFrame(rows, columns=["tau IoU@0.5", "tau HSE", "same winner IoU@0.5",
                                       "same winner HSE"])


def stability_summary(boot: Any, threshold_tau: Any, variant_tau: Any, decimals: int = 3) -> Any:
    """IoU@0.5 against HSE: mean bootstrap tau, P(same order), P(same winner), and the mean tau
    when the threshold moves (``threshold_tau``) or the HSE grid does (``variant_tau``)."""
    import pandas as pd

    def column(score: str, moved: Any) -> list[float]:
        tau = boot[f"tau {score}"]
        return [tau.mean(), np.isclose(tau, 1).mean(), boot[f"same winner {score}"].mean(),
                moved.mean()]

    return pd.DataFrame({"IoU@0.5": column("IoU@0.5", threshold_tau),
                         "HSE": column("HSE", variant_tau)},
                        index=["bootstrap: mean tau", "bootstrap: P(same order)",
                               "bootstrap: P(same winner)",
                               "t in [0.2, 0.8] / grid variants: mean tau"]).round(decimals)
