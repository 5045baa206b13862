"""Golden tests: hand-made masks and maps with known IoU / nIoU / Pd / Fa for every rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from irlib.errors import IrlibInputError
from irlib.metrics import SirstMetrics, ThresholdSweep, evaluate
from irlib.metrics.reference import reference_image


def canvas(h: int = 12, w: int = 12) -> np.ndarray:
    return np.zeros((h, w), dtype=bool)


def prob_of(pred: np.ndarray, on: float = 0.9, off: float = 0.1) -> np.ndarray:
    return np.where(pred, on, off).astype(np.float32)


def one(prob, mask, **kw):
    m = SirstMetrics(**kw)
    m.update(prob, mask)
    return m.compute()


def test_perfect_prediction():
    mask = canvas()
    mask[3:5, 3:6] = True
    r = one(prob_of(mask), mask)
    assert (r["IoU"], r["nIoU"], r["Pd"], r["Fa"]) == (1.0, 1.0, 1.0, 0.0)


def test_empty_mask_and_empty_prediction_policies():
    empty = canvas(10, 10)
    r = one(np.zeros((10, 10), np.float32), empty)
    assert r["IoU"] == 0.0 and r["nIoU"] == 0.0 and r["Fa"] == 0.0
    assert math.isnan(r["Pd"])  # no target in the set: Pd undefined
    assert one(np.zeros((10, 10), np.float32), empty, empty="one")["nIoU"] == 1.0
    # with a perfect second image: zero -> (0 + 1) / 2, one -> 1, skip -> 1 over one image
    mask = canvas(10, 10)
    mask[2, 2] = True
    probs, masks = [np.zeros((10, 10), np.float32), prob_of(mask)], [empty, mask]
    assert evaluate(probs, masks)["nIoU"] == 0.5
    assert evaluate(probs, masks, empty="one")["nIoU"] == 1.0
    assert evaluate(probs, masks, empty="skip")["nIoU"] == 1.0
    assert evaluate(probs, masks)["IoU"] == 1.0  # pooled IoU ignores the empty image


def test_one_prediction_touching_two_targets():
    mask = canvas()
    mask[5, 5] = mask[5, 7] = True          # two 1-px targets (not 8-connected)
    pred = canvas()
    pred[5, 5:8] = True                      # one bar over both, centroid (5, 6)
    r = one(prob_of(pred), mask)
    assert r["n_targets"] == 2 and r["hits"] == 1 and r["Pd"] == 0.5
    assert r["Fa"] == 0.0                    # the bar is matched, so it is no false alarm
    assert r["IoU"] == pytest.approx(2 / 3)


def test_centroid_at_distance_exactly_three_is_not_matched():
    mask = canvas()
    mask[5, 5] = True
    pred = canvas()
    pred[8, 5] = True                        # distance exactly 3
    r = one(prob_of(pred), mask)
    assert r["hits"] == 0 and r["fa_pixels"] == 1 and r["Fa"] == 1 / 144
    pred = canvas()
    pred[7, 7] = True                        # distance sqrt(8) < 3
    r = one(prob_of(pred), mask)
    assert r["hits"] == 1 and r["fa_pixels"] == 0
    pred = canvas()
    pred[8, 5] = True
    assert one(prob_of(pred), mask, distance=3.5)["hits"] == 1  # a wider radius matches it


def test_fractional_centroid_exactly_on_the_boundary():
    """Centroid offset (1.8, 2.4): distance exactly 3 in exact arithmetic -> no match."""
    mask = canvas()
    mask[5, 5] = True
    pred = canvas()
    for dr, dc in [(1, 2), (1, 3), (2, 2), (2, 3), (3, 2)]:
        pred[5 + dr, 5 + dc] = True
    r = one(prob_of(pred), mask)
    assert r["hits"] == 0 and r["fa_pixels"] == 5
    pred[5 + 3, 5 + 2] = False               # drop one pixel: centroid (1.5, 2.5), d = 2.92
    assert one(prob_of(pred), mask)["hits"] == 1


def test_many_one_pixel_false_alarms():
    mask = canvas(20, 20)
    mask[9:12, 9:12] = True
    pred = mask.copy()
    spots = [(r, c) for r in range(0, 20, 3) for c in (0, 3, 17)]
    for r, c in spots:
        pred[r, c] = True
    r = one(prob_of(pred), mask)
    assert r["Pd"] == 1.0 and r["fa_pixels"] == len(spots) and r["Fa"] == len(spots) / 400


def test_greedy_label_order_not_optimal_assignment():
    """Target A could take either prediction; it takes the first in label order, so B misses."""
    mask = canvas()
    mask[5, 5] = mask[5, 9] = True           # A, B
    pred = canvas()
    pred[5, 7] = True                        # P1 (label 1): 2 px from A and from B
    pred[6, 3] = True                        # P2 (label 2): 2.24 px from A only
    r = one(prob_of(pred), mask)
    assert r["hits"] == 1 and r["fa_pixels"] == 1
    pred = canvas()
    pred[5, 3] = True                        # now P2 comes first in raster order
    pred[5, 7] = True
    assert one(prob_of(pred), mask)["hits"] == 2


def test_images_of_different_sizes_pool_correctly():
    m1 = canvas(10, 12)
    m1[2:4, 2:4] = True
    p1 = m1.copy()
    p1[8, 10] = True                         # 1 false pixel
    m2 = canvas(20, 8)
    m2[10, 4] = True
    p2 = canvas(20, 8)                       # missed
    r = evaluate([prob_of(p1), prob_of(p2)], [m1, m2], names=["a", "b"])
    assert r["n_pixels"] == 120 + 160 and r["Fa"] == 1 / 280
    assert r["Pd"] == 1 / 2
    assert r["IoU"] == pytest.approx(4 / (5 + 1))     # pooled: (4 + 0) / (5 + 1)
    assert r["nIoU"] == pytest.approx((4 / 5 + 0) / 2)


def test_dnanet_area_bug_drops_false_regions_with_a_matched_area():
    mask = canvas(16, 16)
    mask[2:4, 2:4] = True                    # target, area 4
    pred = mask.copy()
    pred[10:12, 10:12] = True                # false region, area 4 (same value as the match)
    pred[6, 10:13] = True                    # false region, area 3
    prob = prob_of(pred)
    assert one(prob, mask)["fa_pixels"] == 7
    assert one(prob, mask, dnanet_area_bug=True)["fa_pixels"] == 3
    ref = reference_image(prob, mask, [0.5], dnanet_area_bug=True)
    assert ref["fa"][0] == 3 and reference_image(prob, mask, [0.5])["fa"][0] == 7
    sw = ThresholdSweep([0.3, 0.5, 0.95], dnanet_area_bug=True)
    sw.update(prob, mask)
    assert sw.counts().fa[0].tolist() == [3, 3, 0]


def test_strict_threshold_and_logit_scores():
    mask = canvas()
    mask[4, 4] = True
    prob = np.zeros((12, 12), np.float32)
    prob[4, 4] = 0.5
    assert one(prob, mask)["hits"] == 0      # 0.5 is not > 0.5
    logits = np.where(mask, 3.0, -3.0).astype(np.float32)
    with pytest.raises(IrlibInputError, match="outside"):
        one(logits, mask)
    r = one(logits, mask, scores="logit", threshold=0.0)
    assert r["IoU"] == 1.0 and r["Pd"] == 1.0


def test_connectivity_option():
    mask = canvas()
    mask[3, 3] = mask[4, 4] = True           # diagonal neighbours
    assert one(prob_of(mask), mask)["n_targets"] == 1
    r = one(prob_of(mask), mask, connectivity=4)
    assert r["n_targets"] == 2 and r["Pd"] == 1.0


def test_streaming_reset_and_per_image():
    mask = canvas()
    mask[1, 1] = True
    m = SirstMetrics()
    m.update(prob_of(mask), mask, name="x")
    df = m.per_image()
    assert list(df["name"]) == ["x"] and df["IoU"].iloc[0] == 1.0
    m.reset()
    with pytest.raises(IrlibInputError, match="no images"):
        m.compute()


@pytest.mark.parametrize("prob, mask, match", [
    (np.zeros((4, 5), np.float32), np.zeros((4, 4), bool), "shape"),
    (np.full((4, 4), np.nan, np.float32), np.zeros((4, 4), bool), "NaN"),
    (np.full((4, 4), np.inf, np.float32), np.zeros((4, 4), bool), "NaN/inf"),
    (np.full((4, 4), 1.5, np.float32), np.zeros((4, 4), bool), "outside"),
    (np.full((4, 4), -0.1, np.float32), np.zeros((4, 4), bool), "outside"),
    (np.zeros((4, 4), np.float32), np.full((4, 4), 255, np.uint8), "not binary"),
    (np.zeros((4, 4), np.float32), np.full((4, 4), 0.5), "not binary"),
    (np.zeros((2, 4, 4), np.float32), np.zeros((2, 4, 4), bool), "2-D"),
])
def test_bad_inputs_raise_clear_errors(prob, mask, match):
    m = SirstMetrics()
    with pytest.raises(IrlibInputError, match=match):
        m.update(prob, mask, name="img_7")
    with pytest.raises(IrlibInputError, match="img_7"):
        m.update(prob, mask, name="img_7")
    with pytest.raises(IrlibInputError, match=match):
        ThresholdSweep([0.5]).update(prob, mask)


def test_bad_options_raise():
    with pytest.raises(IrlibInputError):
        SirstMetrics(connectivity=6)
    with pytest.raises(IrlibInputError):
        SirstMetrics(empty="nan")
    with pytest.raises(IrlibInputError):
        ThresholdSweep([0.5, 0.4])
    with pytest.raises(IrlibInputError):
        evaluate([np.zeros((2, 2), np.float32)], [])


def test_batch_of_one_tensors_are_squeezed():
    torch = pytest.importorskip("torch")
    mask = canvas()
    mask[2:4, 2:4] = True
    r = one(torch.from_numpy(prob_of(mask))[None, None],
            torch.from_numpy(mask.astype(np.float32))[None])
    assert r["IoU"] == 1.0


def test_evaluate_sweep_refuses_names_of_another_length() -> None:
    from irlib.metrics import evaluate_sweep

    maps = [np.zeros((4, 4), np.float32)] * 3
    masks = [np.zeros((4, 4), bool)] * 3
    with pytest.raises(IrlibInputError, match="1 names for 3 images"):
        evaluate_sweep(maps, masks, names=["a"])


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_single_threshold_outside_the_open_unit_interval_is_refused(bad):
    from irlib.metrics import binarize
    from irlib.metrics.explorer import match_overlay
    from irlib.metrics.standard import count_image

    mask = canvas()
    mask[2, 2] = True
    prob = prob_of(mask)
    calls = [lambda: SirstMetrics(threshold=bad), lambda: evaluate([prob], [mask], threshold=bad),
             lambda: binarize(prob, bad), lambda: count_image(prob, mask, bad),
             lambda: match_overlay(prob, prob, mask, bad)]
    for call in calls:
        with pytest.raises(IrlibInputError, match="strictly between 0 and 1"):
            call()
    # logits have no such range; non-finite thresholds are refused for both kinds of scores
    assert one(np.where(mask, 2.0, -2.0), mask, scores="logit", threshold=bad)["Pd"] == 1.0
    for scores in ("probability", "logit"):
        with pytest.raises(IrlibInputError, match="finite"):
            SirstMetrics(threshold=float("nan"), scores=scores)
