"""The committed point-supervision comparison over every host and seed that was run.

On the 2-core CPU each host and seed ran as its own demo study (notebook 05, one core each); this
joins their per-run CSVs (``irlib.point.tables.combine_runs`` refuses files of different protocols)
and writes ``point_NUAA-SIRST_demo_all_comparison.csv`` (mean ± std per host and arm),
``..._all_runs.csv`` (every run) and ``..._all_differences.csv`` (per host and seed: each point arm
minus full masks, and the deployed student minus LESPS and PAL).

    python results/point/combine.py
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from irlib.engine.experiment import write_csv
from irlib.engine.tables import paired_differences
from irlib.point.tables import combine_runs, comparison_table

HERE = Path(__file__).resolve().parent
STUDIES = [HERE / "point_NUAA-SIRST_demo.csv",                        # ACM, seed 0 (notebook next to it)
           *sorted((HERE / "runs").glob("*/point_NUAA-SIRST_demo.csv"))]  # the other hosts and seeds
METRICS = ("IoU", "nIoU", "Pd", "Fa_1e-6")


def main() -> None:
    runs = combine_runs(STUDIES)
    runs = runs.sort_values(["host", "seed"], kind="stable")
    stem = "point_NUAA-SIRST_demo_all"
    write_csv(HERE / f"{stem}_runs.csv", runs)
    table = comparison_table(runs)
    write_csv(HERE / f"{stem}_comparison.csv", table)
    pairs = [("lesps", "full_mask"), ("pal", "full_mask"), ("ours_student", "full_mask"),
             ("ours_student", "lesps"), ("ours_student", "pal"), ("ours_teacher", "ours_student")]
    diffs = [paired_differences(runs, "arm", a, b, metrics=METRICS).melt(["host", "seed"], var_name="difference")
             for a, b in pairs]
    diff = pd.concat(diffs, ignore_index=True)
    write_csv(HERE / f"{stem}_differences.csv", diff)
    print(table.to_string(index=False))
    iou = diff[diff["difference"].str.startswith("IoU ")]
    print(iou.pivot_table(index=["host", "seed"], columns="difference", values="value").round(1).to_string())


if __name__ == "__main__":
    main()
