"""The metric study behind notebook 03: methods' maps and scores, report tables, ranking stability.

Small synthetic cases whose numbers can be checked by hand: 8x8 images with one 2x2 target.
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from irlib.data.sample import Sample
from irlib.errors import IrlibInputError
from irlib.metrics import HSEConfig, HSEResult, evaluate_sweep, hse
from irlib.metrics.explorer import ThresholdExplorer
from irlib.metrics.io import save_predictions
from irlib.metrics.ranking import (bootstrap_rankings, in_range, kendall_tau, stability_summary,
                                   threshold_agreement, variant_agreement)
from irlib.metrics.study import (CLASSICAL_DETECTORS, CONVENTIONS, StudySet, detector_maps,
                                 display_path, display_text, model_maps, open_study_set,
                                 pick_example, prediction_folders, score_conventions,
                                 score_maps, score_methods, sweep_methods)
from irlib.metrics.tables import areas_table, curves_table, hse_table, metric_row, metrics_table
from irlib.paths import REPO_ROOT


def target_mask(r: int = 2, c: int = 2) -> np.ndarray:
    """8x8 mask with one 2x2 target at (r, c)."""
    m = np.zeros((8, 8), dtype=bool)
    m[r:r + 2, c:c + 2] = True
    return m


def pred_map(*boxes: tuple[int, int, int, int], p: float = 0.9) -> np.ndarray:
    """8x8 probability map, ``p`` inside the boxes (r0, r1, c0, c1), 0 elsewhere."""
    m = np.zeros((8, 8), dtype=np.float32)
    for r0, r1, c0, c1 in boxes:
        m[r0:r1, c0:c1] = p
    return m


def study_of(n: int = 2) -> StudySet:
    samples = [Sample(f"img{i}", np.zeros((8, 8), np.float32), target_mask()) for i in range(n)]
    return StudySet("toy", "test", samples, total=n)


# --------------------------------------------------------------------------- study


def test_score_methods_pools_iou_and_matches_targets():
    study = study_of(2)
    maps = {"exact": [pred_map((2, 4, 2, 4))] * 2,           # 4/4 px on both images
            "wide": [pred_map((2, 4, 2, 6)), pred_map((2, 4, 2, 4))]}   # 4/8, then 4/4
    scores = score_methods(maps, study)
    exact, wide = scores["exact"].compute(), scores["wide"].compute()
    assert exact["IoU"] == 1.0 and exact["Pd"] == 1.0 and exact["Fa"] == 0.0
    assert wide["IoU"] == pytest.approx(8 / 12)                # pooled: (4 + 4) / (8 + 4)
    assert wide["nIoU"] == pytest.approx((0.5 + 1.0) / 2)      # mean of per-image IoU
    assert wide["Pd"] == 1.0 and wide["Fa"] == 0.0             # centroid 1 px off: a hit
    with pytest.raises(IrlibInputError, match="1 maps for 2 test images"):
        score_maps(maps["exact"][:1], study)


def test_score_conventions_changes_only_the_named_rule():
    study = study_of(1)
    far = [pred_map((2, 4, 6, 8))]        # centroid (2.5, 6.5): 4 px from the target's (2.5, 2.5)
    res = {k: m.compute() for k, m in score_conventions(far, study).items()}
    assert list(res) == list(CONVENTIONS)
    default, wide = res["default (BasicIRSTD, 2024)"], res["distance=5"]
    assert default["Pd"] == 0.0 and default["Fa"] == pytest.approx(4 / 64)   # a false alarm
    assert wide["Pd"] == 1.0 and wide["Fa"] == 0.0                          # within 5 px: a hit


def test_sweep_methods_agrees_with_the_standard_metrics_on_the_grid():
    study = study_of(2)
    maps = {"wide": [pred_map((2, 4, 2, 6)), pred_map((2, 4, 2, 4))]}
    counts = sweep_methods(maps, study)["wide"]
    assert counts.tp.shape == (2, 100) and counts.names == ["img0", "img1"]
    assert counts.at(0.495)["IoU"] == pytest.approx(8 / 12)
    assert counts.at(0.905)["IoU"] == 0.0                      # nothing above 0.9


def test_pick_example_wants_a_hit_and_a_false_alarm():
    study = study_of(3)
    hit_only = pred_map((2, 4, 2, 4))
    hit_and_fa = pred_map((2, 4, 2, 4), (6, 8, 6, 8))
    assert pick_example(score_maps([hit_only, hit_and_fa, hit_and_fa], study)) == 1
    assert pick_example(score_maps([hit_only] * 3, study)) == 0


def test_detector_maps_runs_every_detector_on_every_image():
    images = [np.full((8, 8), 0.1, np.float32), np.full((8, 8), 0.3, np.float32)]
    maps = detector_maps(images, {"double": lambda x: 2 * x})
    assert list(maps) == ["double"]
    assert [float(m[0, 0]) for m in maps["double"]] == pytest.approx([0.2, 0.6])
    rng = np.random.default_rng(0)
    real = detector_maps([rng.random((24, 24)).astype(np.float32)])
    assert len(real) == len(CLASSICAL_DETECTORS) == 8
    assert all(0.0 <= m[0].min() and m[0].max() <= 1.0 for m in real.values())


def test_prediction_folders_and_model_maps(tmp_path):
    names = ["img0", "img1"]
    full = {n: pred_map((2, 4, 2, 4)) for n in names}
    run, committed = tmp_path / "run", tmp_path / "committed"
    save_predictions(run / "acm", full)
    save_predictions(committed / "acm", {"img0": full["img0"], "img1": full["img1"]})
    save_predictions(committed / "dnanet", full)
    save_predictions(committed / "partial", {"img0": full["img0"]})
    folders = prediction_folders(None, names, [run, committed])
    assert sorted(f.relative_to(tmp_path).as_posix() for f in folders) == \
        ["committed/dnanet", "committed/partial", "run/acm"]          # a name: the first base's
    maps, skipped = model_maps(folders, names)
    assert sorted(maps) == ["model acm", "model dnanet"] and skipped == [committed / "partial"]
    np.testing.assert_array_equal(maps["model acm"][1], full["img1"])
    # an explicit folder of maps, a folder of model folders, and one with nothing
    assert prediction_folders(run / "acm", names, []) == [run / "acm"]
    assert prediction_folders([run], names, []) == [run / "acm"]
    with pytest.raises(IrlibInputError, match="holds no maps"):
        prediction_folders(tmp_path / "missing", names, [])


def test_open_study_set_subsamples_evenly_and_falls_back_to_synthetic(tmp_path):
    s = open_study_set("synthetic", max_images=5)
    assert (len(s.samples), s.total, s.note) == (5, 128, None)
    assert [int(n.split("_")[-1]) - 1_000_000 for n in s.names] == [0, 32, 64, 95, 127]
    assert s.n_targets > 0 and s.tag == s.name
    missing = open_study_set("no-such-set", root=tmp_path, max_images=3)
    assert missing.total == 3 and missing.note is not None
    assert "no-such-set" in missing.note and str(tmp_path) not in missing.note
    assert "<data>" in missing.note


def test_display_path_hides_the_machine_directories(tmp_path):
    assert display_path(REPO_ROOT / "results" / "hse") == "results/hse"
    assert display_path(tmp_path / "hse", results=tmp_path) == "<results>/hse"
    assert display_path(tmp_path, results=tmp_path) == "<results>"
    assert display_path(tmp_path / "a" / "b.csv") == ".../b.csv"
    assert display_text(f"not found under {tmp_path}", data=tmp_path) == "not found under <data>"


# --------------------------------------------------------------------------- tables


def test_metric_rows_are_percent_and_1e6():
    row = metric_row({"IoU": 0.5, "nIoU": 0.25, "Pd": 1.0, "Fa": 2e-6})
    assert row == pytest.approx({"IoU (%)": 50.0, "nIoU (%)": 25.0, "Pd (%)": 100.0,
                                 "Fa (1e-6)": 2.0})
    table = metrics_table({"a": {"IoU": 1 / 3, "nIoU": 2 / 3, "Pd": 0.5, "Fa": 1 / 3 * 1e-6}})
    assert table.loc["a"].tolist() == [33.33, 66.67, 50.0, 0.33]


def test_hse_table_sorts_by_hse_and_shows_percent():
    cfg = HSEConfig()
    results = {"low": HSEResult(0.2, 0.3, 0.1, 0.25, 0.35, 0.5, cfg),
               "high": HSEResult(0.61234, 0.7, 0.5, 0.666666, 0.7, 0.9, cfg)}
    table = hse_table(results, {"low": {"IoU": 0.2}, "high": {"IoU": 0.123456}})
    assert table.index.tolist() == ["high", "low"]
    assert table.loc["high"].to_dict() == {"HSE": 0.6123, "pixel": 0.7, "target": 0.5,
                                           "∫IoU (%)": 66.67, "∫nIoU (%)": 70.0, "∫Pd (%)": 90.0,
                                           "IoU@0.5 (%)": 12.35}


def test_curve_tables_of_a_perfect_map():
    mask = target_mask()
    counts = evaluate_sweep([pred_map((2, 4, 2, 4))], [mask])   # 0.9 on the target, 0 elsewhere
    curves = {"perfect": counts.curves()}
    long = curves_table(curves)
    assert list(long.columns[:5]) == ["threshold", "IoU (%)", "nIoU (%)", "Pd (%)", "Fa (1e-6)"]
    assert len(long) == 100 and set(long["method"]) == {"perfect"}
    below = long[long["threshold"] < 0.9]
    assert (below["IoU (%)"] == 100.0).all() and (below["Pd (%)"] == 100.0).all()
    assert (long.loc[long["threshold"] > 0.9, "IoU (%)"] == 0.0).all()
    areas = areas_table(curves)
    assert areas.columns.tolist() == ["ROC AUC", "AP", "Pd-Fa AUC (Fa<=1e-4)"]
    assert areas.loc["perfect"].tolist() == [1.0, 1.0, 1.0]


# --------------------------------------------------------------------------- ranking


def test_kendall_tau_by_hand():
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == 1.0
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)   # (2 - 1) / 3 pairs
    assert kendall_tau([1, 2, 3], [5, 5, 5]) == 1.0                    # undefined: all tied


def test_threshold_agreement_and_operating_range():
    grid = np.array([0.1, 0.5, 0.9])
    curves = {"A": SimpleNamespace(thresholds=grid, IoU=np.array([0.1, 0.5, 0.9])),
              "B": SimpleNamespace(thresholds=grid, IoU=np.array([0.2, 0.4, 0.8])),
              "C": SimpleNamespace(thresholds=grid, IoU=np.array([0.3, 0.3, 0.1]))}
    tau = threshold_agreement(curves, {"A": 0.5, "B": 0.4, "C": 0.3})
    assert tau.index.tolist() == [0.1, 0.5, 0.9] and tau.tolist() == [-1.0, 1.0, 1.0]
    s = pd.Series([1.0, 2.0, 3.0, 4.0, 5.0], index=[0.1, 0.2, 0.5, 0.8, 0.9])
    assert in_range(s).tolist() == [2.0, 3.0, 4.0]


def test_variant_agreement_detects_a_reversed_ranking():
    study = study_of(1)
    counts = sweep_methods({"good": [pred_map((2, 4, 2, 4))],
                            "poor": [pred_map((2, 4, 2, 3), (6, 8, 6, 8))]}, study)
    variants = {"same": hse, "negated": lambda c: replace(hse(c), score=-hse(c).score)}
    assert variant_agreement(counts, variants).to_dict() == {"same": 1.0, "negated": -1.0}
    assert (variant_agreement(counts) == 1.0).all()      # the default variants keep the order


def test_bootstrap_rankings_count_winner_changes():
    study = study_of(2)
    # IoU: A 4/4 then 2/4 (pooled 6/8), B 2/4 then 3/4 (pooled 5/8): A wins the full set, but a
    # resample drawing image 1 twice (probability 1/4) makes B the winner.
    maps = {"A": [pred_map((2, 4, 2, 4)), pred_map((2, 4, 2, 3))],
            "B": [pred_map((2, 4, 2, 3)), pred_map((2, 3, 2, 4), (3, 4, 2, 3))]}
    std, counts = score_methods(maps, study), sweep_methods(maps, study)
    assert std["A"].compute()["IoU"] == 0.75 and std["B"].compute()["IoU"] == 0.625
    boot = bootstrap_rankings(std, counts, n_boot=400, seed=1)
    assert boot.shape == (400, 4)
    assert 0.65 < boot["same winner IoU@0.5"].mean() < 0.85
    assert set(boot["tau IoU@0.5"]) <= {-1.0, 1.0}          # two methods: same order or not
    pd.testing.assert_frame_equal(boot, bootstrap_rankings(std, counts, n_boot=400, seed=1))
    one = {"A": maps["A"], "B": [pred_map((2, 4, 2, 3))] * 2}   # A never worse: never changes
    b1 = bootstrap_rankings(score_methods(one, study), sweep_methods(one, study), 50)
    assert (b1["same winner IoU@0.5"] == 1).all() and (b1["tau HSE"] == 1.0).all()


def test_stability_summary_by_hand():
    boot = pd.DataFrame({"tau IoU@0.5": [1.0, 0.5], "tau HSE": [1.0, 1.0],
                         "same winner IoU@0.5": [1, 0], "same winner HSE": [1, 1]})
    s = stability_summary(boot, pd.Series([0.5, 1.0]), pd.Series([1.0]))
    assert s["IoU@0.5"].tolist() == [0.75, 0.5, 0.5, 0.75]
    assert s["HSE"].tolist() == [1.0, 1.0, 1.0, 1.0]


# --------------------------------------------------------------------------- figure legend


def test_explorer_figure_has_a_colour_legend():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    mask, prob = target_mask(), pred_map((2, 4, 2, 4))
    fig = ThresholdExplorer([prob], [mask], ["x"], {"m": [prob]}).render("m", 0, 0.5)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"hit (matched prediction)", "false alarm", "missed target"} <= set(labels)
    assert len(fig.axes) == 3
