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
    ui = ex.widget(threshold=0.3)
    assert "IoU 100.00" in ex._widgets["html"].value
    ex._widgets["threshold"].value = 0.9        # moving the slider redraws
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
