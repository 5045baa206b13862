"""The FDEP experiment's configuration and summaries (the training itself runs in notebook 02)."""

from __future__ import annotations

import pandas as pd
import pytest

from irlib.fdep import experiment as fx


def test_profile_defaults_and_overrides() -> None:
    smoke = fx.make_config("smoke")
    assert (smoke.profile, smoke.epochs, smoke.crop_size) == ("smoke", 2, 64)
    cfg = fx.make_config("paper", epochs=None, batch_size=4, seeds=3)
    recipe = cfg.training_recipe()
    assert cfg.recipe == "fdep_authors" and cfg.seeds == [3]
    assert (recipe.epochs, recipe.batch_size, recipe.lr, recipe.crop_size) == (400, 4, 1e-3, 256)
    demo = fx.make_config("demo").training_recipe()
    assert (demo.name, demo.batch_size, demo.crop_size, demo.pad) == ("cpu_demo", 4, 128, "zero")


def test_unknown_setting_and_profile_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown FDEP settings"):
        fx.make_config("smoke", epoch=3)
    with pytest.raises(ValueError, match="unknown profile"):
        fx.make_config("fast")


def test_build_model_starts_both_arms_from_the_same_host() -> None:
    cfg = fx.make_config("smoke", encoder="tiny_cnn_random")
    base, fdep = fx.build_model(cfg, "baseline", 7), fx.build_model(cfg, "fdep", 7)
    for (name, a), b in zip(base.state_dict().items(), fdep.host.state_dict().values()):
        assert a.equal(b), name
    with pytest.raises(ValueError, match="variant"):
        fx.build_model(cfg, "teacher", 0)


def test_summary_is_mean_and_sample_std_per_variant() -> None:
    table = pd.DataFrame({"variant": ["baseline", "fdep", "baseline", "fdep"],
                          "IoU": [0.2, 0.4, 0.4, 0.4], "nIoU": 0.0, "Pd": 1.0, "Fa_1e-6": 0.0, "HSE": 0.5})
    rows = {r["variant"]: r for r in fx.summarize(table)}
    assert rows["baseline"]["IoU"] == pytest.approx(0.3)
    assert rows["baseline"]["IoU_std"] == pytest.approx(0.1414213, rel=1e-5)
    assert rows["fdep"]["IoU_std"] == 0.0 and rows["fdep"]["seeds"] == 2


def test_results_stem_names_dataset_host_encoder() -> None:
    assert fx.results_stem(fx.make_config("smoke", dataset="NUAA-SIRST", host="alcnet")) == \
        "NUAA-SIRST_alcnet_efficientnet_lite0"
