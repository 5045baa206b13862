"""Hypothesis properties of the metrics (small sizes, capped examples: a few seconds in all)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from irlib.metrics import SirstMetrics, evaluate, evaluate_sweep

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def pairs(draw, min_targets: int = 0):
    h = draw(st.integers(3, 14))
    w = draw(st.integers(3, 14))
    mask = draw(arrays(np.bool_, (h, w), elements=st.booleans()))
    if min_targets and not mask.any():
        mask[draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))] = True
    levels = st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5000001, 0.75, 0.9, 1.0])
    prob = draw(arrays(np.float32, (h, w), elements=levels))
    return prob, mask


@SETTINGS
@given(st.lists(pairs(min_targets=1), min_size=1, max_size=4))
def test_perfect_prediction_scores_one(cases):
    masks = [m for _, m in cases]
    r = evaluate([m.astype(np.float32) for m in masks], masks)
    assert (r["IoU"], r["nIoU"], r["Pd"], r["Fa"]) == (1.0, 1.0, 1.0, 0.0)
    cv = evaluate_sweep([m.astype(np.float32) for m in masks], masks).curves()
    assert np.all(cv.IoU == 1) and np.all(cv.Pd == 1) and np.all(cv.Fa == 0)


@SETTINGS
@given(st.lists(pairs(), min_size=2, max_size=5), st.randoms(use_true_random=False))
def test_pooled_metrics_do_not_depend_on_image_order(cases, rnd):
    order = list(range(len(cases)))
    rnd.shuffle(order)
    a = evaluate([p for p, _ in cases], [m for _, m in cases])
    b = evaluate([cases[i][0] for i in order], [cases[i][1] for i in order])
    for key in ("IoU", "nIoU", "Pd", "Fa", "hits", "fa_pixels"):
        assert a[key] == pytest.approx(b[key], nan_ok=True)


@SETTINGS
@given(st.lists(pairs(), min_size=1, max_size=3),
       st.lists(st.sampled_from([0.05, 0.1, 0.3, 0.5, 0.7, 0.95]), min_size=1, max_size=4,
                unique=True),
       st.booleans())
def test_sweep_at_t_equals_single_threshold_evaluator(cases, grid, bug):
    grid = sorted(grid)
    c = evaluate_sweep([p for p, _ in cases], [m for _, m in cases], thresholds=grid,
                       dnanet_area_bug=bug)
    for t in grid:
        m = SirstMetrics(threshold=t, dnanet_area_bug=bug)
        for p, k in cases:
            m.update(p, k)
        assert c.at(t) == pytest.approx(m.compute(), nan_ok=True)
