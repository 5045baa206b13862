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


def test_encoder_and_samf_options_reach_the_fdep_model() -> None:
    import torch

    cfg = fx.make_config("smoke", encoder="tiny_cnn_random", samf_gate="sigmoid",
                         encoder_options={"resize": 96, "layer_indices": [0, 1, 2, 3], "seed": 3},
                         samf_options={"kernel_size": 1, "proj_kernel": 3, "out_act": False,
                                       "main_bn_stats": "both"})
    model = fx.build_model(cfg, "fdep", 0)
    enc = model.encoder
    assert (enc.resize, enc.layer_indices, enc.strides) == (96, [0, 1, 2, 3], [2, 4, 8, 16])
    assert "seed 3" in enc.description and model.vfm_layers == [0, 1, 2, 3]
    assert model.main_bn_stats == "both"
    for block in model.samf.blocks:
        assert block.gate == "sigmoid"
        assert block.to_g[0].kernel_size == (3, 3) and block.out[0].kernel_size == (1, 1)
        assert not isinstance(block.out[-1], torch.nn.ReLU)
    raw = torch.rand(2, 1, 64, 64)
    main, light = model.forward_branches(raw, raw)
    assert main.shape == light.shape == raw.shape
    assert cfg.as_dict()["encoder_options"]["resize"] == 96  # recorded in the results' provenance
    with pytest.raises(TypeError, match="no_such_option"):  # unknown options are passed, not dropped
        fx.build_model(fx.make_config("smoke", encoder="tiny_cnn_random",
                                      samf_options={"no_such_option": 1}), "fdep", 0)
    with pytest.raises(ValueError, match="samf_gate"):
        fx.make_config("smoke", samf_options={"gate": "tanh"})
    with pytest.raises(ValueError, match="encoder_weights"):
        fx.make_config("smoke", encoder_options={"weights": "random"})


TINY_SAM = dict(embed_dim=32, depth=4, num_heads=2, resize=64)


def test_sam_feature_maps_feed_samf_exactly_or_the_build_refuses() -> None:
    """Tiny SAM gives blocks 0-3 plus the neck: five maps for four SAMF modules. An evenly spaced
    pick would take maps [0, 1, 3, 4] and skip block 2 without a word."""
    from irlib.errors import IrlibInputError

    sam = dict(encoder="sam_vit_b", encoder_weights="random")
    with pytest.raises(IrlibInputError, match=r"5 feature maps .*'block 2'.*'neck'"):
        fx.build_model(fx.make_config("smoke", encoder_options=TINY_SAM, **sam), "fdep", 0)
    blocks = fx.build_model(fx.make_config("smoke", encoder_options={**TINY_SAM, "include_neck": False},
                                           **sam), "fdep", 0)
    assert blocks.vfm_layers == [0, 1, 2, 3]
    assert [blocks.encoder.feature_names[i] for i in blocks.vfm_layers] == [f"block {i}" for i in range(4)]
    chosen = fx.build_model(fx.make_config("smoke", encoder_options=TINY_SAM, vfm_layers=[1, 2, 3, 4], **sam),
                            "fdep", 0)
    assert [chosen.encoder.feature_names[i] for i in chosen.vfm_layers] == ["block 1", "block 2", "block 3",
                                                                            "neck"]
    assert [b.to_g[0].in_channels for b in chosen.samf.blocks] == [32, 32, 32, 256]
    with pytest.raises(IrlibInputError, match="vfm_layers"):
        fx.build_model(fx.make_config("smoke", encoder_options=TINY_SAM, vfm_layers=[0, 1, 5, 6], **sam),
                       "fdep", 0)


def test_paper_profile_refuses_a_stand_in_encoder_unless_allowed() -> None:
    from irlib.errors import IrlibInputError
    from irlib.fdep import experiment as fx

    assert fx.make_config("paper").encoder == "dinov2_vitb14"
    cfg = fx.make_config("paper", encoder="tiny_cnn_random")
    with pytest.raises(IrlibInputError, match="stand-in"):
        fx.build_model(cfg, "fdep", 0)
    allowed = fx.make_config("paper", encoder="tiny_cnn_random", allow_stand_in=True)
    assert fx.build_model(allowed, "fdep", 0).encoder.is_stand_in
    fx.build_model(fx.make_config("demo", encoder="tiny_cnn_random"), "fdep", 0)   # other profiles: no check


def test_figure_titles_name_the_encoder_stand_in_and_protocol() -> None:
    from types import SimpleNamespace

    from irlib.fdep import experiment as fx

    cfg = fx.make_config("demo", dataset="NUAA-SIRST")
    title = fx.protocol_title(cfg, [SimpleNamespace(row={"encoder_is_stand_in": True})])
    assert "efficientnet_lite0 (STAND-IN for DINO)" in title and "recipe cpu_demo" in title
    assert "STAND-IN" not in fx.protocol_title(cfg, [SimpleNamespace(row={"encoder_is_stand_in": False})])


def test_fdep_runs_keep_their_test_maps_for_notebook_03(tmp_path) -> None:
    from irlib.metrics.io import has_predictions

    cfg = fx.make_config("smoke", encoder="tiny_cnn_random", epochs=1)
    data = fx.load_data(cfg)
    fx.run_arm(cfg, "fdep", 0, data, progress=False, predictions_root=tmp_path)
    folder = fx.predictions_folder(cfg, "fdep", 0, tmp_path)
    assert folder == tmp_path / "synthetic" / f"{fx.results_stem(cfg)}_fdep_seed0"
    names = [data.test[i].name for i in range(len(data.test))]
    assert has_predictions(folder, names) and all((folder / f"{n}.png").is_file() for n in names)
