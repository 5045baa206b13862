"""The ablation-study runner (irlib.engine.study) and the study definitions (irlib.ablations)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pandas as pd
import pytest
import torch

from irlib.ablations import DEFAULT_STUDIES, build_study, list_studies
from irlib.engine.experiment import DataSettings, RunResult, load_data, run_training
from irlib.engine.recipes import get_recipe
from irlib.engine.study import COLUMNS, Study, effect_sizes, plot_study, run_study, sweep
from irlib.errors import IrlibInputError
from irlib.models import create_model

BASE = {"host": "acm", "lr": 1e-3, "epochs": 1}


def tiny_train(config: dict[str, Any], seed: int) -> RunResult:
    """ACM for one epoch on 8 synthetic 64-pixel images (4 test images)."""
    recipe = get_recipe("cpu_demo", epochs=config["epochs"], lr=config["lr"], batch_size=4, crop_size=32)
    data = load_data(DataSettings(synthetic_train=8, synthetic_test=4, synthetic_size=64), recipe, seed)
    torch.manual_seed(seed)
    return run_training(create_model(config["host"]), data, recipe, seed=seed, progress=False, keep=())


def tiny_study(variants: dict[str, dict[str, Any]], seeds: list[int], **kw: Any) -> Study:
    return Study("tiny", BASE, variants, seeds, tiny_train, profile="smoke", **kw)


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Any]:
    out = tmp_path_factory.mktemp("study")
    study = tiny_study({"lr 1e-3": {}, "lr 1e-2": {"lr": 1e-2}, "lr 1e-3 again": {"lr": 1e-3}}, [0, 1])
    return run_study(study, out), out


def test_one_row_per_variant_and_seed(grid: tuple[pd.DataFrame, Any]) -> None:
    table, _ = grid
    assert list(table.columns) == list(COLUMNS)
    assert list(zip(table["variant"], table["seed"])) == [
        ("lr 1e-3", 0), ("lr 1e-3", 1), ("lr 1e-2", 0), ("lr 1e-2", 1), ("lr 1e-3 again", 0), ("lr 1e-3 again", 1)]
    assert set(table["study"]) == {"tiny"} and set(table["profile"]) == {"smoke"}
    assert list(table["overrides"][::2]) == ["base", "lr=0.01", "lr=0.001"]
    assert (table["params"] == sum(p.numel() for p in create_model("acm").parameters())).all()
    assert table[["IoU", "nIoU", "Pd", "Fa_1e-6", "HSE", "train_time_s"]].notna().all().all()


def test_files_carry_rows_and_provenance(grid: tuple[pd.DataFrame, Any]) -> None:
    table, out = grid
    csv = pd.read_csv(out / "tiny.csv")
    assert len(csv) == len(table) and list(csv["variant"]) == list(table["variant"])
    meta = json.loads((out / "tiny.json").read_text())["metadata"]
    assert meta["profile"] == "smoke" and meta["seed"] == [0, 1]
    assert meta["params"]["base"] == BASE and meta["params"]["variants"]["lr 1e-2"] == {"lr": 0.01}
    assert meta["git_commit"] and meta["versions"]["torch"] == torch.__version__.split("+")[0]


def test_same_seed_same_metrics_other_seed_other_run(grid: tuple[pd.DataFrame, Any]) -> None:
    _, out = grid
    csv = pd.read_csv(out / "tiny.csv")
    cols = ["IoU", "nIoU", "Pd", "Fa_1e-6", "HSE", "final_loss"]
    same = csv[csv["variant"] == "lr 1e-3"][cols].to_numpy()
    again = csv[csv["variant"] == "lr 1e-3 again"][cols].to_numpy()   # trained anew, same config
    assert (same == again).all()
    assert same[0, -1] != same[1, -1], "seeds 0 and 1 should not train identically"


def test_bad_overrides_raise_before_training() -> None:
    with pytest.raises(IrlibInputError, match="unknown settings"):
        tiny_study({"bad": {"lr_typo": 1.0}}, [0])
    with pytest.raises(IrlibInputError, match="must be a dict"):
        tiny_study({"bad": [("lr", 1.0)]}, [0])
    with pytest.raises(IrlibInputError, match="no variants"):
        tiny_study({}, [0])
    calls: list[int] = []

    def check(cfg: dict[str, Any]) -> None:
        if cfg["lr"] <= 0:
            raise ValueError("lr must be > 0")

    study = Study("tiny", BASE, {"ok": {}, "bad": {"lr": -1.0}}, [0], lambda c, s: calls.append(s), check=check)
    with pytest.raises(IrlibInputError, match="variant 'bad': lr must be > 0"):
        run_study(study)
    assert calls == []


def test_sweep_makes_the_base_value_the_reference() -> None:
    base = {"lr": 1e-3, "options": {"depth": 2}}
    assert sweep(base, "lr", [1e-2, 1e-3]) == {"0.01": {"lr": 1e-2}, "0.001": {}}
    assert sweep(base, "options.depth", [1], lambda d: f"d{d}") == {"d2": {}, "d1": {"options": {"depth": 1}}}
    assert sweep(base, "options.gate", ["tanh"], default="none") == {"none": {}, "tanh": {"options": {"gate": "tanh"}}}
    with pytest.raises(IrlibInputError, match="unknown setting"):
        sweep(base, "lrr", [1])
    study = tiny_study({**sweep(BASE, "lr", [1e-2])}, [0])
    assert study.config("0.01") == {**BASE, "lr": 1e-2}


def test_cache_reuses_a_run_shared_by_two_studies() -> None:
    calls: list[int] = []

    def counted(cfg: dict[str, Any], seed: int) -> RunResult:
        calls.append(seed)
        return tiny_train(cfg, seed)

    cache: dict[str, RunResult] = {}
    a = run_study(Study("a", BASE, {"ref": {}}, [0], counted), cache=cache)
    b = run_study(Study("b", BASE, {"ref": {}, "other": {"lr": 1e-2}}, [0], counted), cache=cache)
    assert calls == [0, 0]
    assert a["IoU"][0] == b["IoU"][0] and list(b["study"]) == ["b", "b"]


def test_weights_of_registered_hosts_are_saved_with_their_meta(tmp_path, capsys: pytest.CaptureFixture) -> None:
    from irlib.models import load_host, read_host_meta

    def train(cfg: dict[str, Any], seed: int) -> RunResult:
        result = tiny_train(cfg, seed)
        result.extra["weights_meta"] = {"dataset": "synthetic", "normalize": {"mean": [0.4], "std": [0.1]}}
        if cfg["lr"] > 5e-3:  # a model no checkpoint can rebuild (like FDEP's main branch)
            result = replace(result, deployed=torch.nn.Sequential(result.deployed))
        return result

    run_study(Study("w", BASE, {"ref": {}, "lr 1e-2": {"lr": 1e-2}}, [3], train), tmp_path, weights=True)
    saved = sorted(p.name for p in (tmp_path / "weights").iterdir())
    assert saved == ["w_ref_seed3.pt"] and "w_lr_1e-2_seed3: weights not saved" in capsys.readouterr().out
    meta = read_host_meta(tmp_path / "weights" / saved[0])
    assert meta["dataset"] == "synthetic" and meta["variant"] == "ref" and meta["normalize"]["std"] == [0.1]
    assert meta["git_commit"] and sum(p.numel() for p in load_host(tmp_path / "weights" / saved[0]).parameters()) > 0


def test_combining_seeds_run_apart_matches_one_run(grid: tuple[pd.DataFrame, Any], tmp_path) -> None:
    from irlib.engine.study import combine_study_tables

    table, out = grid
    csv = pd.read_csv(out / "tiny.csv")
    csv[csv["seed"] == 1].to_csv(tmp_path / "s1.csv", index=False)
    csv[csv["seed"] == 0].to_csv(tmp_path / "s0.csv", index=False)
    both = combine_study_tables([tmp_path / "s1.csv", tmp_path / "s0.csv"])
    assert list(zip(both["variant"], both["seed"])) == list(zip(csv["variant"], csv["seed"]))
    assert effect_sizes(both)["IoU Δ"].tolist() == pytest.approx(effect_sizes(csv)["IoU Δ"].tolist())
    with pytest.raises(IrlibInputError, match="appear in more than one file"):
        combine_study_tables([out / "tiny.csv", tmp_path / "s0.csv"])
    csv.assign(profile="demo").to_csv(tmp_path / "demo.csv", index=False)
    with pytest.raises(IrlibInputError, match="mix profiles"):
        combine_study_tables([tmp_path / "demo.csv", tmp_path / "s0.csv"])


def test_plot_has_a_panel_per_metric_and_a_point_per_seed() -> None:
    from matplotlib.collections import PathCollection

    table = pd.DataFrame({"study": "s", "variant": ["a", "a", "b", "b"], "seed": [0, 1, 0, 1],
                          "IoU": [1.0, 3.0, 2.0, 2.0], "Pd": [5.0, 5.0, 6.0, 7.0]})
    fig = plot_study(table, "title")
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    assert [round(b.get_height(), 6) for b in ax.patches] == [2.0, 2.0]
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert sorted(y for c in points for _, y in c.get_offsets()) == [1.0, 2.0, 2.0, 3.0]
    assert "title" in fig._suptitle.get_text() and "seeds [0, 1]" in fig._suptitle.get_text()


def test_every_definition_builds_for_every_profile() -> None:
    for profile in ("smoke", "demo", "paper"):
        for name in list_studies():
            study = build_study(name, profile)
            assert study.name == name and study.profile == profile and len(study.variants) >= 2
            assert sum(not v for v in study.variants.values()) == 1, "one reference variant"
            configs = [json.dumps(study.config(v), sort_keys=True, default=str) for v in study.variants]
            assert len(set(configs)) == len(configs), f"{name}: two variants train the same thing"
    assert set(DEFAULT_STUDIES["smoke"]) <= set(list_studies())
    with pytest.raises(IrlibInputError, match="unknown study"):
        build_study("fdep_nothing", "smoke")


def test_every_smoke_definition_passes_its_checks() -> None:
    for name in list_studies():
        study = build_study(name, "smoke")
        assert len(study.checked_configs()) == len(study.variants) >= 2


def test_fdep_main_branch_keeps_the_vfm_at_inference() -> None:
    from irlib.engine.normalize import Normalize
    from irlib.fdep import experiment as fx
    from irlib.fdep.coisd import MainBranch

    cfg = fx.make_config("smoke", encoder="tiny_cnn_random")
    model = fx.build_model(cfg, "fdep", 0).eval()
    norm = Normalize(0.3, 0.2)
    raw = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        main = MainBranch(model, norm).eval()(norm(raw))
        expected, light = model.forward_branches(raw, norm(raw), shared_once=False)
    assert torch.allclose(main, expected, atol=1e-6)
    assert (main - light).abs().max() > 1e-4, "the main branch must go through SAMF and the VFM"
    with pytest.raises(ValueError, match="deploy_branch"):
        fx.make_config("smoke", deploy_branch="teacher")


def test_effect_sizes_pair_each_variant_with_the_base_by_seed(grid: tuple[pd.DataFrame, Any]) -> None:
    table, _ = grid
    effects = effect_sizes(table).set_index("variant")
    assert list(effects.index) == ["lr 1e-2", "lr 1e-3 again"] and (effects["reference"] == "lr 1e-3").all()
    assert (effects["seeds"] == 2).all()
    # the same config as the base with the same seeds trains the same networks: no effect
    assert effects.loc["lr 1e-3 again", "IoU Δ"] == 0.0 and effects.loc["lr 1e-3 again", "IoU Δ std"] == 0.0
    ref, other = (table[table["variant"] == v].set_index("seed")["IoU"] for v in ("lr 1e-3", "lr 1e-2"))
    assert effects.loc["lr 1e-2", "IoU Δ"] == pytest.approx(float((other - ref).mean()))
    with pytest.raises(IrlibInputError, match="no variant"):
        effect_sizes(table, reference="missing")
    # the base (no overrides) is the reference wherever it stands in the table
    reordered = pd.concat([table[table["variant"] == "lr 1e-2"], table[table["variant"] != "lr 1e-2"]])
    assert set(effect_sizes(reordered)["reference"]) == {"lr 1e-3"}
