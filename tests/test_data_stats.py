"""Dataset statistics on hand-made images whose answers are known."""

from __future__ import annotations

import numpy as np

from irlib.data import Sample, SyntheticSirst, dataset_stats
from irlib.data.stats import target_contrast


class _Listing:
    """A minimal dataset: a list of Samples with a name."""

    name = "hand"

    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]


def test_contrast_definition() -> None:
    rng = np.random.default_rng(0)
    img = (0.3 + 0.01 * rng.standard_normal((40, 40))).astype(np.float32)
    mask = np.zeros((40, 40), bool)
    mask[18:21, 18:21] = True
    img[mask] = 0.6
    area, con, delta = target_contrast(img, mask)
    ring_sel = np.zeros_like(mask)
    ring_sel[10:29, 10:29] = True  # chessboard distance <= 8 from the 3x3 target
    ring_sel[16:23, 16:23] = False  # minus distance <= 2
    ring = img[ring_sel].astype(np.float64)
    assert area.tolist() == [9]
    np.testing.assert_allclose(delta[0], 0.6 - ring.mean(), rtol=1e-6)
    np.testing.assert_allclose(con[0], (0.6 - ring.mean()) / ring.std(), rtol=1e-6)


def test_dataset_stats_numbers() -> None:
    a = np.zeros((10, 20), np.float32)
    b = np.full((30, 20), 0.5, np.float32)
    ma = np.zeros((10, 20), bool)
    ma[1, 1] = ma[1, 2] = True  # one target, area 2
    ma[5, 10] = ma[6, 11] = True  # 8-connected diagonal: one target, area 2
    mb = np.zeros((30, 20), bool)
    st = dataset_stats(_Listing([Sample("a", a, ma), Sample("b", b, mb)]))
    assert st.num_images == 2 and st.num_targets == 2
    assert st.targets_per_image.tolist() == [2, 0]
    assert st.target_area.tolist() == [2, 2]
    np.testing.assert_allclose(st.gray_mean, 0.5 * 600 / 800)
    allpix = np.concatenate([a.ravel(), b.ravel()])
    np.testing.assert_allclose(st.gray_std, allpix.astype(np.float64).std(), rtol=1e-9)
    assert st.gray_hist.sum() == 800 and st.gray_hist[0] == 200 and st.gray_hist[128] == 600
    s = st.summary()
    assert s["images"] == 2 and s["targets"] == 2 and s["images_without_targets"] == 1
    assert s["distinct_sizes"] == 2 and s["area_median"] == 2.0
    frame = st.targets_frame()
    assert list(frame["image"]) == ["a", "a"]


def test_stats_on_synthetic_match_generator_truth() -> None:
    syn = SyntheticSirst(10, size=64, seed=5)
    st = dataset_stats(syn)
    truth = sorted(t.area for i in range(10) for t in syn.targets(i))
    assert sorted(st.target_area.tolist()) == truth
    assert st.targets_per_image.tolist() == [len(syn.targets(i)) for i in range(10)]
    assert np.isfinite(st.target_contrast).all()
    assert 0 < st.gray_mean < 1 and 0 < st.gray_std < 0.5
