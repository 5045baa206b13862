"""The point-supervision comparison table, from one study or from several runs' results files.

A study trains every arm for its hosts and seeds in one process; on a CPU the hosts and seeds of
one comparison are often run as separate studies (one core each). :func:`combine_runs` reads their
per-run CSVs (``<stem>.csv`` written by :func:`irlib.point.study.write_results`) and refuses files
whose protocol differs; :func:`comparison_table` turns per-run rows into the table notebook 05 and
the README show (mean ± sample std over seeds); per-seed differences between two arms are
:func:`irlib.engine.tables.paired_differences` (``column="arm"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from irlib.engine.tables import mean_std
from irlib.errors import IrlibInputError

METRIC_DECIMALS = {"IoU": 1, "nIoU": 1, "Pd": 1, "Fa_1e-6": 1}
# columns that must agree between the runs of one comparison
PROTOCOL_COLUMNS = ("dataset", "profile", "recipe", "epochs", "epoch_reported", "deviations", "hypergradient")


def arm_label(row: Any) -> str:
    """The arm as a table shows it: the teacher names its VFM (and "STAND-IN" where it is one)."""
    if row["arm"] == "ours_teacher":
        stand_in = str(row.get("encoder_is_stand_in")).lower() in ("true", "1", "1.0")
        return f"ours, teacher (with {row['encoder']}{' [STAND-IN]' if stand_in else ''})"
    if row["arm"] == "ours_student":
        return "ours, student (deployed host)"
    return str(row["arm"])


def comparison_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per host and arm: seeds, IoU / nIoU / Pd (percent) and Fa (1e-6) as mean ± std, the
    final pseudo-label IoU (percent), parameters and mean training time."""
    rows = []
    for (host, _arm), group in runs.groupby(["host", "arm"], sort=False):
        first = group.iloc[0]
        rows.append({"host": str(host).upper(), "arm": arm_label(first), "labels": first["labels"],
                     "seeds": ", ".join(str(int(s)) for s in sorted(group["seed"])),
                     **{col: mean_std(group[col], nd) for col, nd in METRIC_DECIMALS.items()},
                     "pseudo-label IoU": mean_std(pd.to_numeric(group.get("pseudo_iou"), errors="coerce") * 100),
                     "params (M)": round(float(first["params"]) / 1e6, 3),
                     "train s": round(float(pd.to_numeric(group["train_time_s"]).mean()))})
    return pd.DataFrame(rows)


def combine_runs(paths: Sequence[str | Path]) -> pd.DataFrame:
    """The per-run rows of several studies' ``<stem>.csv`` files, checked to share one protocol
    (:data:`PROTOCOL_COLUMNS`) and to hold each host, arm and seed once."""
    if not paths:
        raise IrlibInputError("combine_runs: no results files given")
    frames = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise IrlibInputError(f"{path}: no such results file; pass the <stem>.csv a point study wrote")
        frame = pd.read_csv(path)
        missing = {"host", "arm", "seed", "IoU"} - set(frame.columns)
        if missing:
            raise IrlibInputError(f"{path}: not a point-study results file (no column {sorted(missing)})")
        frames.append(frame.assign(source=path.name))
    runs = pd.concat(frames, ignore_index=True)
    for col in PROTOCOL_COLUMNS:
        if col in runs.columns:
            values = runs[col].dropna().astype(str).unique()
            if len(values) > 1:
                raise IrlibInputError(f"combine_runs: the files differ in {col!r} ({', '.join(values)}); "
                                      "a comparison needs one protocol")
    dup = runs.duplicated(["host", "arm", "seed"], keep=False)
    if dup.any():
        first = runs[dup].iloc[0]
        raise IrlibInputError(f"combine_runs: {first['host']}/{first['arm']} seed {first['seed']} appears in "
                              f"{sorted(set(runs[dup]['source']))}; pass each run once")
    return runs


__all__ = ["METRIC_DECIMALS", "PROTOCOL_COLUMNS", "arm_label", "combine_runs", "comparison_table"]
