"""The baseline runner: files it writes, shipped weights that load back, the report tables."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest
import torch

from irlib.engine import baseline as bl
from irlib.engine.experiment import DataSettings
from irlib.engine.recipes import get_recipe
from irlib.models import load_host, read_host_meta

TINY = DataSettings(dataset="synthetic", synthetic_train=8, synthetic_test=3, synthetic_size=64)


def test_baseline_run_writes_results_weights_and_report(tmp_path) -> None:
    torch.set_num_threads(1)
    recipe = get_recipe("cpu_demo", epochs=2, crop_size=32)
    result = bl.train_baseline("acm", TINY, recipe, seed=3, out_dir=tmp_path, progress=False, save_weights=True)
    stem = bl.baseline_stem("synthetic", "acm", recipe, 3)
    assert stem == "synthetic_acm_cpu_demo_ep2_seed3"
    for suffix in (".csv", ".json", "_history.csv", ".pt"):
        assert (tmp_path / f"{stem}{suffix}").is_file(), suffix

    shipped = load_host(tmp_path / f"{stem}.pt").eval()
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(shipped(x), result.deployed.cpu().eval()(x))
    meta = read_host_meta(tmp_path / f"{stem}.pt")  # what irlib predict and the cross-dataset table read
    assert meta["dataset"] == "synthetic" and len(meta["normalize"]["mean"]) == 1 and meta["seed"] == 3

    runs = bl.load_runs(tmp_path)
    assert len(runs) == 1 and runs[0]["seed"] == 3 and runs[0]["epochs_run"] == 2
    assert runs[0]["losses"] == result.history.losses
    paths = bl.write_report(tmp_path)
    final = pd.read_csv(paths["final"])
    assert final.loc[0, "IoU"] == runs[0]["IoU"] and pd.isna(final.loc[0, "published_IoU"])  # no log for synthetic


def test_report_compares_ten_epoch_means_with_the_published_log() -> None:
    run = {"dataset": "NUAA-SIRST", "host": "acm", "recipe": "basicirstd", "deviations": "none", "seed": 0,
           "epochs": 100, "IoU": 50.0, "losses": [1.0] * 50 + [0.8] * 45 + [0.6] * 5}
    table = bl.loss_table([run])
    assert list(table["epoch"]) == [50, 100]
    assert table["loss_irlib"].tolist() == pytest.approx([1.0, 0.7])
    assert table["loss_published"].tolist() == [0.993371, 0.783567]
    fig = bl.plot_runs([run], "NUAA-SIRST", "acm")
    assert "IoU 50.0 after 100 ep" in " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())


def test_metrics_at_epoch_reads_monitoring_rows_or_the_last_epoch() -> None:
    base = {"dataset": "NUAA-SIRST", "host": "acm", "recipe": "basicirstd", "deviations": "none"}
    monitored = [{"loss": 0.9}] * 99 + [{"loss": 0.6, "eval_IoU": 40.0, "eval_nIoU": 41.0, "eval_Pd": 90.0,
                                          "eval_Fa_1e-6": 10.0}] + [{"loss": 0.5}] * 300
    long_run = {**base, "seed": 0, "history": monitored, "IoU": 70.0, "nIoU": 71.0, "Pd": 95.0, "Fa_1e-6": 5.0}
    short_run = {**base, "seed": 1, "history": [{"loss": 0.8}] * 100, "IoU": 30.0, "nIoU": 31.0, "Pd": 80.0,
                 "Fa_1e-6": 50.0}
    unscored = {**base, "seed": 2, "history": [{"loss": 0.8}] * 150, "IoU": 1.0, "nIoU": 1.0, "Pd": 1.0,
                "Fa_1e-6": 1.0}
    table = bl.metrics_at_epoch([long_run, short_run, unscored], 100)
    assert table["seed"].tolist() == [0, 1]          # seed 2 was not scored at epoch 100
    assert table["IoU"].tolist() == [40.0, 30.0] and table["loss"].tolist() == [0.6, 0.8]


def test_shipped_weights_write_predictions_that_score_alike(tmp_path) -> None:
    from irlib.metrics import SirstMetrics, load_predictions
    from irlib.engine.experiment import open_splits

    torch.set_num_threads(1)
    recipe = get_recipe("cpu_demo", epochs=1, crop_size=32)
    bl.train_baseline("acm", TINY, recipe, seed=0, out_dir=tmp_path, progress=False, save_weights=True)
    weights = tmp_path / f"{bl.baseline_stem('synthetic', 'acm', recipe, 0)}.pt"
    ev = bl.write_predictions(weights, TINY, recipe, tmp_path / "pred")
    _, test = open_splits(TINY)
    maps = load_predictions(tmp_path / "pred")
    assert sorted(maps) == sorted(s.name for s in test)
    m = SirstMetrics()
    for s in test:
        m.update(maps[s.name], s.mask)
    assert abs(m.compute()["Pd"] - ev.metrics["Pd"]) <= 1 / 3 + 1e-9   # 8-bit levels: at most a target apart


def test_escape_epoch_skips_warmup_epochs_on_another_scale() -> None:
    from irlib.engine.experiment import escape_epoch, warmup_epochs

    losses = [0.05, 0.04, 0.99, 0.98, 0.9]                # two BCE epochs, then SoftIoU
    assert escape_epoch(losses) == 1
    assert escape_epoch(losses, skip=2) == 5
    assert warmup_epochs(get_recipe("basicirstd", warmup_loss="bce", warmup_loss_epochs=2)) == 2
    assert warmup_epochs(get_recipe("basicirstd")) == 0
