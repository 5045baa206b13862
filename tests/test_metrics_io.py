"""Saved-prediction format, the threshold explorer (headless) and a real-data cross-check."""

from __future__ import annotations

import json

import numpy as np
import pytest

from irlib.errors import IrlibInputError
from irlib.metrics import evaluate_sweep, load_predictions, save_predictions
from irlib.metrics.explorer import FALSE_ALARM, HIT, MISS, ThresholdExplorer, match_overlay
from irlib.metrics.io import has_predictions, load_prediction


def test_roundtrip_npy_npz_png(tmp_path):
    rng = np.random.default_rng(0)
    maps = {"a": rng.random((5, 7)).astype(np.float32), "b": rng.random((3, 4))}
    save_predictions(tmp_path / "npy", maps)
    got = load_predictions(tmp_path / "npy")
    assert set(got) == {"a", "b"} and got["a"].dtype == np.float32
    np.testing.assert_array_equal(got["b"], maps["b"])
    assert json.loads((tmp_path / "npy" / "predictions.json").read_text())["names"] == ["a", "b"]
    save_predictions(tmp_path / "npz", maps.items(), compress=True)
    np.testing.assert_array_equal(load_prediction(tmp_path / "npz", "a"), maps["a"])
    from PIL import Image

    Image.fromarray(np.array([[0, 255], [128, 64]], np.uint8)).save(tmp_path / "c.png")
    np.testing.assert_allclose(load_prediction(tmp_path, "c"), [[0, 1], [128 / 255, 64 / 255]])
    assert has_predictions(tmp_path / "npy", ["a", "b"]) and not has_predictions(tmp_path, ["a"])
    with pytest.raises(IrlibInputError, match="no prediction for image 'zz'"):
        load_predictions(tmp_path / "npy", ["zz"])
    with pytest.raises(IrlibInputError):
        save_predictions(tmp_path / "bad", {"x": np.zeros((2, 2, 2), np.float32)})


def test_overlay_colours_hits_misses_and_false_alarms():
    img = np.zeros((12, 12), np.float32)
    mask = np.zeros((12, 12), bool)
    mask[2, 2] = mask[9, 9] = True              # first target hit, second missed
    prob = np.zeros((12, 12), np.float32)
    prob[2, 2] = prob[5, 10] = 0.9              # a hit and a false alarm
    ov = match_overlay(img, prob, mask, 0.5, alpha=1.0)
    assert (ov.n_targets, ov.hits, ov.fa_pixels, ov.fa_regions) == (2, 1, 1, 1)
    np.testing.assert_allclose(ov.rgb[2, 2], HIT)
    np.testing.assert_allclose(ov.rgb[5, 10], FALSE_ALARM)
    np.testing.assert_allclose(ov.rgb[9, 9], MISS)


def test_explorer_builds_and_updates_headless():
    pytest.importorskip("ipywidgets")
    import matplotlib

    matplotlib.use("Agg")
    mask = np.zeros((16, 16), bool)
    mask[5:7, 5:7] = True
    prob = np.where(mask, 0.8, 0.02).astype(np.float32)
    counts = evaluate_sweep([prob], [mask])
    ex = ThresholdExplorer([prob], [mask], ["x"], {"m": [prob]}, {"m": counts})
    ui = ex.widget(threshold=0.5)
    slider = ex._widgets["threshold"]
    assert slider.value == ex.nearest_threshold(0.5) == 0.495      # a point of the sweep's grid
    assert f"t={slider.value:.3f}" in ex._widgets["html"].value     # slider and metrics line agree
    assert ex._widgets["image"].label == "x"                          # the image slider shows the name
    slider.value = ex.nearest_threshold(0.3)
    assert "IoU 100.00" in ex._widgets["html"].value
    slider.value = ex.nearest_threshold(0.9)   # moving the slider redraws
    assert "IoU 0.00" in ex._widgets["html"].value and ui is not None
    fig = ex.render("m", 0, 0.5)
    assert len(fig.axes) == 3


@pytest.mark.realdata
def test_real_nuaa_maps_agree_with_reference(nuaa_root):
    import warnings

    from irlib import baselines
    from irlib.data import open_dataset
    from irlib.metrics.reference import reference_image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = open_dataset(nuaa_root, split="test", on_size_mismatch="resize_mask")
        samples = [ds[i] for i in range(3)]
    grid = np.linspace(0.05, 0.95, 10)
    maps = [baselines.top_hat(s.image) for s in samples]
    c = evaluate_sweep(maps, [s.mask for s in samples], thresholds=grid)
    for i, s in enumerate(samples):
        ref = reference_image(maps[i], s.mask, grid)
        for key in ("tp", "fp", "hits", "fa"):
            np.testing.assert_array_equal(getattr(c, key)[i], ref[key])


def _above_as_written(levels: np.ndarray, scale: int, t: float) -> int:
    """Pixels above ``t`` by the integer rule: ``v > floor(scale * t)``, ``t`` as the decimal written."""
    from fractions import Fraction
    from math import floor

    return int(np.count_nonzero(levels > floor(Fraction(repr(t)) * scale)))


@pytest.mark.parametrize("bits", [8, 16])
def test_png_maps_compare_at_their_integer_level(tmp_path, bits):
    """8-bit 51 is 51/255 = 0.2 exactly, so it is not above 0.2 (float32(51/255) > 0.2 was)."""
    from PIL import Image

    from irlib.metrics import SirstMetrics, binarize
    from irlib.metrics.reference import reference_image

    if bits == 8:
        scale, levels = 255, np.arange(256, dtype=np.uint8).reshape(16, 16)
    else:  # the levels around 0.2, 0.3, 0.5 and 0.6 of the 16-bit scale
        scale = 65535
        near = [13106, 13107, 13108, 19660, 19661, 19662, 32767, 32768, 39320, 39321, 39322, 0, 65535]
        levels = np.array(near + [0] * (16 - len(near)), dtype=np.uint16).reshape(4, 4)
    Image.fromarray(levels).save(tmp_path / "m.png")
    prob = load_prediction(tmp_path, "m")
    mask = np.zeros(levels.shape, bool)
    mask.flat[::3] = True
    grid = [0.1, 0.2, 0.3, 0.5, 0.6, 0.7]
    sweep = evaluate_sweep([prob], [mask], thresholds=grid)
    ref = reference_image(prob, mask, grid)
    for k, t in enumerate(grid):
        want = _above_as_written(levels.astype(np.int64), scale, t)
        assert int(np.count_nonzero(binarize(prob, t))) == want, t
        m = SirstMetrics(threshold=t)
        assert m.update(prob, mask).pred_pixels == want, t
        assert sweep.tp[0, k] + sweep.fp[0, k] == want, t
        assert ref["tp"][k] + ref["fp"][k] == want, t
    if bits == 8:
        assert not binarize(prob, 0.2)[3, 3] and binarize(prob, 0.2)[3, 4]   # levels 51 and 52
        assert not binarize(prob, 0.6)[9, 9] and binarize(prob, 0.6)[9, 10]  # levels 153 and 154


def test_quantized_map_checks_its_levels():
    from irlib.metrics.thresholds import quantized_map

    assert quantized_map(np.array([[0, 255]]), 255).tolist() == [[0.0, 1.0]]
    with pytest.raises(IrlibInputError, match=r"\[0, 255\]"):
        quantized_map(np.array([[0, 256]]), 255)
    with pytest.raises(IrlibInputError, match="integers"):
        quantized_map(np.array([[0.5]]), 255)


def test_png_predictions_store_rounded_levels_and_threshold_at_them(tmp_path):
    prob = np.array([[0.0, 0.2, 0.5009], [0.7, 1.0, 0.49]], np.float32)
    save_predictions(tmp_path, {"m": prob}, fmt="png")
    from PIL import Image

    with Image.open(tmp_path / "m.png") as im:
        assert im.mode == "L"
        levels = np.asarray(im)
    np.testing.assert_array_equal(levels, [[0, 51, 128], [178, 255, 125]])
    back = load_prediction(tmp_path, "m")
    assert (back > 0.5).tolist() == [[False, False, True], [True, True, False]]
    assert not (back > 0.2)[0, 1]                      # level 51 is 0.2 exactly: not above it
    assert json.loads((tmp_path / "predictions.json").read_text())["file_format"] == "png"
    with pytest.raises(IrlibInputError, match="probabilities in"):
        save_predictions(tmp_path / "bad", {"x": np.full((2, 2), 1.5, np.float32)}, fmt="png")
    with pytest.raises(IrlibInputError, match="logit"):
        save_predictions(tmp_path / "bad", {"x": np.zeros((2, 2), np.float32)}, fmt="png", scores="logit")
