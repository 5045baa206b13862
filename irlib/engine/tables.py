"""Small result-table helpers every method shares: ``mean ± std`` cells and per-seed paired differences.

A method claim is a difference between two arms trained on the same seeds (same initialisation,
same batches); :func:`paired_differences` gives it per seed, so a table can show the spread of the
difference next to the spread of each arm.
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

from irlib.errors import IrlibInputError


def mean_std(values: Any, decimals: int = 1) -> str:
    """``"m ± s"`` (sample std) over the finite values, ``"m"`` for one, ``"–"`` for none."""
    values = pd.to_numeric(pd.Series(values), errors="coerce").dropna()
    if values.empty:
        return "–"
    m = values.mean()
    return f"{m:.{decimals}f} ± {values.std(ddof=1):.{decimals}f}" if len(values) > 1 else f"{m:.{decimals}f}"


def paired_differences(runs: pd.DataFrame, column: str, arm: str, reference: str,
                       metrics: Sequence[str] = ("IoU",), keys: Sequence[str] = ("host", "seed")) -> pd.DataFrame:
    """``metric(arm) − metric(reference)`` for every ``keys`` (e.g. host and seed) present in both arms,
    where ``column`` names the arm of a row (``"arm"``, ``"variant"``); one column per metric."""
    keys = [k for k in keys if k in runs.columns]
    missing = {column, *metrics} - set(runs.columns)
    if missing or not keys:
        raise IrlibInputError(f"paired_differences: the table lacks {sorted(missing) or list(keys)}")
    a = runs[runs[column] == arm].set_index(keys)[list(metrics)]
    b = runs[runs[column] == reference].set_index(keys)[list(metrics)]
    for name, part in ((arm, a), (reference, b)):
        if part.index.has_duplicates:
            raise IrlibInputError(f"paired_differences: {name!r} has several rows for one of {keys}")
    both = a.index.intersection(b.index)
    out = (a.loc[both] - b.loc[both]).add_suffix(f" {arm} − {reference}").reset_index()
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


__all__ = ["mean_std", "paired_differences"]
