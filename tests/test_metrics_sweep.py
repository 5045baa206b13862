"""The one-pass threshold sweep against the slow BasicIRSTD-style loop, curves and HSE."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

import irlib.metrics.sweep as sweep_mod
from irlib.errors import IrlibInputError
from irlib.metrics import (HSEConfig, SirstMetrics, ThresholdSweep, default_thresholds, hse,
                           integrate, evaluate_sweep)
from irlib.metrics.reference import reference_image
from irlib.metrics.thresholds import LevelCounter


def random_case(rng: np.random.Generator, h: int | None = None, w: int | None = None):
    h = h or int(rng.integers(6, 36))
    w = w or int(rng.integers(6, 36))
    mask = np.zeros((h, w), dtype=bool)
    for _ in range(int(rng.integers(0, 4))):
        r, c = rng.integers(0, h), rng.integers(0, w)
        mask[r:r + rng.integers(1, 4), c:c + rng.integers(1, 4)] = True
    blur = ndi.gaussian_filter(mask.astype(float), rng.uniform(0.3, 1.5)) * rng.uniform(0.5, 3)
    prob = np.clip(blur + rng.random((h, w)) * rng.uniform(0, 0.9), 0, 1).astype(np.float32)
    return prob, mask


@pytest.mark.parametrize("budget", [0, 10 ** 9])      # all 2-D levels / straight to 3-D
@pytest.mark.parametrize("bug", [False, True])
def test_sweep_equals_reference_loop(budget, bug, monkeypatch):
    monkeypatch.setattr(sweep_mod, "VOXEL_BUDGET", budget)
    rng = np.random.default_rng(7)
    grid = np.linspace(0.02, 0.98, 25)
    for _ in range(25):
        prob, mask = random_case(rng)
        c = evaluate_sweep([prob], [mask], thresholds=grid, dnanet_area_bug=bug)
        ref = reference_image(prob, mask, grid, dnanet_area_bug=bug)
        for key in ("tp", "fp", "hits", "fa"):
            np.testing.assert_array_equal(getattr(c, key)[0], ref[key], err_msg=key)


def test_sweep_on_a_larger_map_with_many_components():
    rng = np.random.default_rng(3)
    prob, mask = random_case(rng, 96, 120)
    prob = np.clip(prob + rng.beta(0.5, 6, prob.shape).astype(np.float32), 0, 1)
    grid = default_thresholds(30)
    c = evaluate_sweep([prob], [mask], thresholds=grid)
    ref = reference_image(prob, mask, grid)
    for key in ("tp", "fp", "hits", "fa"):
        np.testing.assert_array_equal(getattr(c, key)[0], ref[key], err_msg=key)


def test_level_counter_is_exact_at_ties_and_negative_zero():
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        for grid in (default_thresholds(100), np.array([0.0, 0.2, 0.5, 1.0]),
                     np.sort(rng.random(9))):
            lc = LevelCounter(grid)
            p = rng.random((20, 30)).astype(dtype)
            p.ravel()[:40] = rng.choice(np.r_[grid, 0.0, 1.0, -0.0], 40).astype(dtype)
            expected = [(p.astype(np.float64) > t).sum() for t in grid]
            assert lc.above(p).tolist() == expected


def test_sweep_point_equals_single_threshold_evaluator_on_grid():
    rng = np.random.default_rng(11)
    cases = [random_case(rng) for _ in range(12)]
    grid = np.r_[0.1, 0.25, 0.5, 0.8]
    c = evaluate_sweep(*zip(*cases), thresholds=grid)
    for t in grid:
        m = SirstMetrics(threshold=t)
        for p, k in cases:
            m.update(p, k)
        assert c.at(t) == pytest.approx(m.compute(), nan_ok=True)


def test_curves_and_areas_of_a_perfect_and_an_empty_detector():
    mask = np.zeros((16, 16), bool)
    mask[4:7, 4:7] = True
    c = evaluate_sweep([mask.astype(np.float32)], [mask])
    cv = c.curves()
    assert np.all(cv.IoU == 1) and np.all(cv.nIoU == 1)
    assert np.all(cv.Pd == 1) and np.all(cv.Fa == 0)
    assert cv.roc_auc() == pytest.approx(1.0) and cv.average_precision() == pytest.approx(1.0)
    assert cv.pd_fa_auc() == pytest.approx(1.0)
    assert hse(c).score == pytest.approx(1.0)
    z = evaluate_sweep([np.zeros((16, 16), np.float32)], [mask])
    assert hse(z).score == 0.0 and z.curves().roc_auc() == pytest.approx(0.5)
    df = cv.to_frame()
    assert len(df) == 100 and {"IoU", "Pd", "Fa", "TPR", "FPR", "precision"} <= set(df.columns)


def test_take_resamples_without_recomputation():
    rng = np.random.default_rng(5)
    cases = [random_case(rng) for _ in range(6)]
    c = evaluate_sweep(*zip(*cases), thresholds=[0.3, 0.6])
    sub = c.take([4, 1, 1])
    picked = [cases[4], cases[1], cases[1]]
    direct = evaluate_sweep([p for p, _ in picked], [m for _, m in picked], thresholds=[0.3, 0.6])
    for key in ("tp", "fp", "hits", "fa", "n_targets", "n_pixels"):
        np.testing.assert_array_equal(getattr(sub, key), getattr(direct, key))


def test_hse_config_and_rules():
    t = np.array([0.1, 0.2, 0.4])
    y = np.array([1.0, 0.0, 1.0])
    assert integrate(y, t, "mean") == pytest.approx(2 / 3)
    assert integrate(y, t, "trapezoid") == pytest.approx((0.1 * 0.5 + 0.2 * 0.5) / 0.3)
    mask = np.zeros((10, 10), bool)
    mask[2:5, 2:5] = True
    prob = np.where(mask, 0.7, 0.0).astype(np.float32)
    prob[8, 8] = 0.9                                     # one false pixel up to t = 0.9
    s = ThresholdSweep()
    s.update(prob, mask)
    h = s.hse()
    assert 0 < h.score < 1
    assert h.score == pytest.approx(0.5 * h.pixel + 0.5 * h.target)
    assert s.hse(pixel_weight=1.0).score == pytest.approx(h.pixel)
    assert s.hse(fa_penalty="linear", fa_ref=0.005).target <= h.target + 1e-12
    assert s.hse(t_range=(0.0, 0.69)).pixel > h.pixel   # the target vanishes above 0.7
    assert hse(s.counts(), HSEConfig(rule="mean")).config.rule == "mean"
    for bad in ({"rule": "simpson"}, {"iou_weight": 2.0}, {"fa_ref": 0.0}, {"fa_penalty": "log"},
                {"t_range": (0.991, 0.992)}):
        with pytest.raises(IrlibInputError):
            s.hse(**bad)


def test_logit_scores_sweep_and_sub_grid():
    rng = np.random.default_rng(2)
    cases = [random_case(rng) for _ in range(5)]
    clipped = [np.clip(p, 1e-4, 1 - 1e-4) for p, _ in cases]
    logits = [np.log(q / (1 - q)).astype(np.float32) for q in clipped]
    masks = [m for _, m in cases]
    grid = [-2.0, 0.0, 1.5]
    c = evaluate_sweep(logits, masks, thresholds=grid, scores="logit")
    for t in grid:
        m = SirstMetrics(threshold=t, scores="logit")
        for p, k in zip(logits, masks):
            m.update(p, k)
        assert c.at(t) == pytest.approx(m.compute(), nan_ok=True)
    sub = c.take_thresholds([0, 2])
    assert sub.thresholds.tolist() == [-2.0, 1.5] and sub.at(1.5) == c.at(1.5)
    with pytest.raises(IrlibInputError, match="not on the grid"):
        c.at(0.7)
