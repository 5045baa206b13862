"""SimIR FPN heatmaps: the re-run loop equals QueryFPN.forward, the query bypass is the plain FPN
of the same weights (and differs from the normal path), heatmap shapes and values, figures."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

from irlib.errors import IrlibInputError
from irlib.models import create_model
from irlib.simir.fpn import QueryFPN
from irlib.simir.heatmaps import encoder_label, fpn_heatmaps, fpn_level_features, heatmap, heatmap_figure
from irlib.simir.student import SimIRStudent

matplotlib.use("Agg")

SMALL = dict(arch="repvit_m0_9", dim=32, ffn_dim=64, decoder_mlp_dim=64, dense_ffn_dim=32)


def small(**kw) -> SimIRStudent:
    torch.manual_seed(0)
    return SimIRStudent(**{**SMALL, **kw}).eval()


def _levels(model: SimIRStudent, x: torch.Tensor):
    feats = model.encode(x)
    return [*feats.stages, feats.bottleneck], feats.queries


@pytest.mark.parametrize("stem_stride", [1, 4])
@torch.no_grad()
def test_normal_path_is_queryfpn_forward(stem_stride: int) -> None:
    model = small(stem_stride=stem_stride)
    stack, queries = _levels(model, torch.randn(1, 1, 32, 64))
    out = fpn_level_features(model.fpn, stack, queries, use_queries=True)
    assert list(out) == ["P5", "P4", "P3", "P2"]
    for k, f in out.items():
        s = stem_stride * 2 ** (int(k[1]) - 2)
        assert f.shape == (1, 32, 32 // s, 64 // s)
    m, _, _ = model.fpn(stack, queries)
    torch.testing.assert_close(model.fpn.mask_features(out["P2"]), m)


@torch.no_grad()
def test_bypass_is_plain_fpn_of_same_weights_and_differs() -> None:
    model = small(stem_stride=4)
    stack, queries = _levels(model, torch.randn(1, 1, 64, 64))
    normal = fpn_level_features(model.fpn, stack, queries, use_queries=True)
    plain = fpn_level_features(model.fpn, stack, queries, use_queries=False)
    # a QueryFPN built without queries, given the shared weights, computes the bypass
    ref = QueryFPN(32, 4, 4, 4, 8, 64, use_queries=False).eval()
    missing, _ = ref.load_state_dict(model.fpn.state_dict(), strict=False)
    assert not missing
    m, _, _ = ref(stack, None)
    torch.testing.assert_close(model.fpn.mask_features(plain["P2"]), m)
    for k in ("P3", "P2"):
        assert plain[k].shape == normal[k].shape
        assert (plain[k] - normal[k]).abs().max() > 1e-3 * normal[k].abs().max()


@pytest.mark.parametrize("stem_stride", [1, 4])
def test_fpn_heatmaps_shapes_values_and_state(stem_stride: int) -> None:
    model = small(stem_stride=stem_stride).train()
    image = np.random.default_rng(0).random((40, 56), dtype=np.float32)
    maps = fpn_heatmaps(model, image, levels=("P3", "P2"))
    assert model.training  # restored
    for lv, s in (("P3", 2 * stem_stride), ("P2", stem_stride)):
        assert maps.strides[lv] == s
        want = (-(-40 // s), -(-56 // s))
        for row in (maps.with_queries, maps.without_queries):
            assert row[lv].shape == want
            assert row[lv].min() >= 0.0 and row[lv].max() <= 1.0
    assert not np.allclose(maps.with_queries["P2"], maps.without_queries["P2"])
    again = fpn_heatmaps(model, image, levels=("P3", "P2"))   # eval mode: no dropout
    np.testing.assert_array_equal(again.with_queries["P2"], maps.with_queries["P2"])


def test_heatmap_reductions() -> None:
    f = torch.zeros(1, 2, 1, 3)
    f[0, :, 0, 1] = torch.tensor([3.0, 4.0])     # L2 5, mean |f| 3.5
    f[0, :, 0, 2] = torch.tensor([0.0, -4.0])    # L2 4, mean |f| 2
    torch.testing.assert_close(heatmap(f, "l2"), torch.tensor([[[0.0, 1.0, 0.8]]]))
    torch.testing.assert_close(heatmap(f, "mean_abs"), torch.tensor([[[0.0, 1.0, 2 / 3.5]]]))
    assert torch.equal(heatmap(torch.ones(1, 3, 2, 2)), torch.zeros(1, 2, 2))   # flat map: zeros, no NaN
    with pytest.raises(IrlibInputError):
        heatmap(f, "max")


def test_model_without_queries() -> None:
    model = small(stem_stride=4, queries="none")
    maps = fpn_heatmaps(model, np.zeros((32, 32), np.float32))
    np.testing.assert_array_equal(maps.with_queries["P2"], maps.without_queries["P2"])
    stack, _ = _levels(model, torch.zeros(1, 1, 32, 32))
    with pytest.raises(IrlibInputError):
        fpn_level_features(model.fpn, stack, None, use_queries=True)
    with pytest.raises(IrlibInputError):
        fpn_heatmaps(model, np.zeros((32, 32), np.float32), levels=("P1",))


def test_figure_is_written(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("simir_tiny")
    image = np.random.default_rng(1).random((64, 64), dtype=np.float32) * 0.3
    mask = np.zeros((64, 64), bool)
    mask[30:33, 40:43] = True
    image[mask] = 1.0
    path = tmp_path / "heat.png"
    fig = heatmap_figure(model, image, mask, "Misc_1", path=path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    title = fig._suptitle.get_text()
    assert "simir_tiny" in title and "no pretrained weights" in title and "Misc_1" in title
    assert len(fig.axes) == 6
    assert "weights: repvit.pth" in encoder_label(model, "repvit.pth")


def test_figure_on_a_real_image(nuaa_root: Path, tmp_path: Path) -> None:
    from irlib.data import open_dataset

    sample = open_dataset(nuaa_root, split="test")[0]
    torch.manual_seed(0)
    model = create_model("simir_tiny")
    path = tmp_path / f"{sample.name}.png"
    heatmap_figure(model, sample.image, sample.mask, sample.name, path=path)
    assert path.stat().st_size > 5000
