"""Result tables in the units papers report: IoU, nIoU, Pd in percent, Fa in 1e-6, rounded.

Every function returns a rounded pandas DataFrame (one row per method or per setting), so the
table a notebook shows and the CSV it writes hold the same numbers. HSE and its pixel and
target scores stay in [0, 1], as ``docs/hse.md`` defines them.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from irlib.metrics.hse import HSEResult
from irlib.metrics.sweep import SweepCurves

PERCENT = ("IoU", "nIoU", "Pd")


def metric_row(m: Mapping[str, float]) -> dict[str, float]:
    """``IoU (%)``, ``nIoU (%)``, ``Pd (%)``, ``Fa (1e-6)`` of a ``SirstMetrics.compute()`` dict."""
    row = {f"{k} (%)": 100.0 * float(m[k]) for k in PERCENT}
    row["Fa (1e-6)"] = 1e6 * float(m["Fa"])
    return row


def metrics_table(results: Mapping[str, Mapping[str, float]], decimals: int = 2) -> Any:
    """One :func:`metric_row` per key (a method or a convention), rounded."""
    import pandas as pd

    df = pd.DataFrame({k: metric_row(m) for k, m in results.items()}).T
    return df.astype(float).round(decimals)


def curves_table(curves: Mapping[str, SweepCurves], decimals: int = 4,
                 fraction_decimals: int = 10) -> Any:
    """Every method's curves in long form (one row per method and threshold), in table units.

    IoU, nIoU, Pd (%) and Fa (1e-6) get ``decimals``; TPR, FPR, precision, recall and F1 stay
    fractions with ``fraction_decimals`` (a pixel FPR can be 1e-7).
    """
    import pandas as pd

    frames = []
    for name, cv in curves.items():
        df = cv.to_frame()
        for k in PERCENT:
            df[k] = 100.0 * df[k]
        df["Fa"] = 1e6 * df["Fa"]
        df = df.rename(columns={**{k: f"{k} (%)" for k in PERCENT}, "Fa": "Fa (1e-6)"})
        frames.append(df.assign(method=name))
    df = pd.concat(frames, ignore_index=True)
    scaled = [f"{k} (%)" for k in PERCENT] + ["Fa (1e-6)"]
    return df.round({c: decimals if c in scaled else fraction_decimals for c in df.columns
                     if c != "method"})


def areas_table(curves: Mapping[str, SweepCurves], fa_max: float = 1e-4, decimals: int = 4) -> Any:
    """ROC AUC, average precision and the normalised Pd-Fa area up to ``fa_max``, per method."""
    import pandas as pd

    col = f"Pd-Fa AUC (Fa<={np.format_float_scientific(fa_max, trim='-', exp_digits=1)})"
    return pd.DataFrame({name: {"ROC AUC": cv.roc_auc(), "AP": cv.average_precision(),
                                col: cv.pd_fa_auc(fa_max)}
                         for name, cv in curves.items()}).T.round(decimals)


def hse_table(results: Mapping[str, HSEResult], at_05: Mapping[str, Mapping[str, float]],
              decimals: int = 4, percent_decimals: int = 2) -> Any:
    """HSE, its pixel and target scores ([0, 1]), the integrals of IoU, nIoU, Pd (%) and IoU at
    0.5 (%) per method, best HSE first."""
    import pandas as pd

    rows = {name: {"HSE": r.score, "pixel": r.pixel, "target": r.target,
                   "∫IoU (%)": 100.0 * r.iou_int, "∫nIoU (%)": 100.0 * r.niou_int,
                   "∫Pd (%)": 100.0 * r.pd_int, "IoU@0.5 (%)": 100.0 * float(at_05[name]["IoU"])}
            for name, r in results.items()}
    df = pd.DataFrame(rows).T.astype(float).sort_values("HSE", ascending=False, kind="stable")
    places = {c: (percent_decimals if c.endswith("(%)") else decimals) for c in df.columns}
    return df.round(places)

