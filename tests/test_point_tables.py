"""The point-supervision comparison table and the combination of separately run studies."""

from __future__ import annotations

import pandas as pd
import pytest

from irlib.errors import IrlibInputError
from irlib.engine.tables import mean_std, paired_differences
from irlib.point.tables import combine_runs, comparison_table


def _row(host: str, arm: str, seed: int, iou: float, **extra) -> dict:
    return {"host": host, "arm": arm, "seed": seed, "labels": "centroid points", "encoder": "efficientnet_lite0",
            "encoder_is_stand_in": True, "IoU": iou, "nIoU": iou - 1, "Pd": 90.0, "Fa_1e-6": 10.0,
            "pseudo_iou": 0.4 if arm != "full_mask" else None, "params": 397823, "train_time_s": 100.0,
            "dataset": "NUAA-SIRST", "profile": "demo", "recipe": "basicirstd", "epochs": 40, **extra}


def test_mean_std_formats_one_two_and_no_values():
    assert mean_std([40.0, 50.0]) == "45.0 ± 7.1"
    assert mean_std([47.77]) == "47.8"
    assert mean_std([None, float("nan")]) == "–"


def test_comparison_table_groups_seeds_and_names_the_stand_in():
    runs = pd.DataFrame([_row("acm", "lesps", 0, 40.0), _row("acm", "lesps", 1, 50.0),
                         _row("acm", "ours_teacher", 0, 30.0), _row("alcnet", "lesps", 0, 45.0)])
    table = comparison_table(runs)
    assert list(table["host"]) == ["ACM", "ACM", "ALCNET"]
    first = table.iloc[0]
    assert first["seeds"] == "0, 1" and first["IoU"] == "45.0 ± 7.1" and first["pseudo-label IoU"] == "40.0 ± 0.0"
    assert "[STAND-IN]" in table.iloc[1]["arm"] and "efficientnet_lite0" in table.iloc[1]["arm"]
    assert table.iloc[2]["IoU"] == "45.0"


def test_paired_differences_match_hosts_and_seeds():
    runs = pd.DataFrame([_row("acm", "lesps", 0, 40.0), _row("acm", "lesps", 1, 50.0),
                         _row("acm", "full_mask", 0, 47.0), _row("acm", "full_mask", 1, 45.0),
                         _row("alcnet", "lesps", 0, 30.0)])
    diff = paired_differences(runs, "arm", "lesps", "full_mask", metrics=("IoU", "nIoU"))
    assert diff[["host", "seed"]].values.tolist() == [["acm", 0], ["acm", 1]]
    assert diff["IoU lesps − full_mask"].tolist() == pytest.approx([-7.0, 5.0])
    assert diff["nIoU lesps − full_mask"].tolist() == pytest.approx([-7.0, 5.0])
    with pytest.raises(IrlibInputError, match="several rows"):
        paired_differences(pd.concat([runs, runs]), "arm", "lesps", "full_mask")


def test_combine_runs_reads_several_files_and_refuses_mixed_protocols(tmp_path):
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    pd.DataFrame([_row("acm", "lesps", 0, 40.0), _row("acm", "ours_student", 0, 41.0, hypergradient="first_order")]
                 ).to_csv(a, index=False)
    pd.DataFrame([_row("alcnet", "lesps", 0, 45.0)]).to_csv(b, index=False)
    runs = combine_runs([a, b])
    assert len(runs) == 3 and set(runs["source"]) == {"a.csv", "b.csv"}
    pd.DataFrame([_row("acm", "lesps", 1, 40.0, epochs=400)]).to_csv(c, index=False)
    with pytest.raises(IrlibInputError, match="epochs"):
        combine_runs([a, c])
    with pytest.raises(IrlibInputError, match="seed 0 appears"):
        combine_runs([a, a])
    with pytest.raises(IrlibInputError, match="no such results file"):
        combine_runs([tmp_path / "missing.csv"])
