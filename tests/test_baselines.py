"""Classical detectors: maps in [0, 1] that peak at a bright small blob on a flat background."""

from __future__ import annotations

import numpy as np
import pytest

from irlib import baselines
from irlib.errors import IrlibInputError


def blob_image(seed: int = 0) -> tuple[np.ndarray, tuple[int, int]]:
    rng = np.random.default_rng(seed)
    img = np.full((64, 80), 0.3, dtype=np.float32)
    img += rng.normal(0, 0.005, (64, 80)).astype(np.float32)
    r, c = np.mgrid[:64, :80]
    centre = (40, 23)
    img += 0.5 * np.exp(-((r - centre[0]) ** 2 + (c - centre[1]) ** 2) / (2 * 1.2 ** 2))
    return np.clip(img, 0, 1).astype(np.float32), centre


@pytest.mark.parametrize("name", baselines.list_baselines())
def test_bright_blob_scores_highest_at_the_blob(name):
    img, (r, c) = blob_image()
    p = baselines.run_baseline(name, img)
    assert p.shape == img.shape and p.dtype == np.float32
    assert 0.0 <= p.min() and p.max() <= 1.0
    pr, pc = np.unravel_index(np.argmax(p), p.shape)
    assert abs(pr - r) <= 1 and abs(pc - c) <= 1
    assert p[r, c] > 0.5 and np.median(p) < 0.05


@pytest.mark.parametrize("name", baselines.list_baselines())
def test_minmax_mapping_and_flat_image(name):
    img, _ = blob_image(1)
    p = baselines.run_baseline(name, img, method="minmax")
    assert p.min() == 0.0 and p.max() == pytest.approx(1.0)
    flat = baselines.run_baseline(name, np.full((20, 20), 0.4, np.float32))
    assert np.all(flat < 0.5)                        # nothing stands out: nothing detected


def test_bad_inputs():
    with pytest.raises(IrlibInputError):
        baselines.top_hat(np.zeros((2, 8, 8)))
    with pytest.raises(IrlibInputError):
        baselines.max_median(np.zeros((8, 8)), size=4)
    with pytest.raises(IrlibInputError):
        baselines.run_baseline("LCM", np.zeros((8, 8)))
    with pytest.raises(IrlibInputError):
        baselines.to_probability(np.zeros((8, 8)), method="rank")
