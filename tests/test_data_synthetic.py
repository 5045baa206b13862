"""The synthetic generator: determinism, exact masks, target counts and areas, disk roundtrip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from irlib.data import (SYNTHETIC_SPLITS, SirstDataset, SyntheticSirst, count_targets,
                        label_targets, open_dataset)
from irlib.errors import IrlibInputError


@pytest.fixture(scope="module")
def syn() -> SyntheticSirst:
    return SyntheticSirst(24, size=96, seed=3, cache=True)


def test_api_and_types(syn: SyntheticSirst) -> None:
    assert len(syn) == 24 and syn.name == "Synthetic" and len(set(syn.names)) == 24
    s = syn[0]
    assert s.name == syn.names[0]
    assert s.image.dtype == np.float32 and s.image.shape == (96, 96)
    assert s.mask.dtype == bool and s.mask.shape == (96, 96)
    assert 0.0 <= s.image.min() and s.image.max() <= 1.0
    assert syn[-1].name == syn.names[-1]
    with pytest.raises(IndexError):
        syn[24]
    assert SyntheticSirst(2, size=(64, 80))[1].image.shape == (64, 80)


def test_image_depends_only_on_seed_and_index(syn: SyntheticSirst) -> None:
    other = SyntheticSirst(30, size=96, seed=3)
    for i in (0, 7, 23):
        np.testing.assert_array_equal(other[i].image, syn[i].image)
        np.testing.assert_array_equal(other[i].mask, syn[i].mask)
    shifted = SyntheticSirst(4, size=96, seed=3, offset=7)
    np.testing.assert_array_equal(shifted[0].image, syn[7].image)
    assert shifted.names[0] == syn.names[7]
    assert not np.array_equal(SyntheticSirst(1, size=96, seed=4)[0].image, syn[0].image)


def test_masks_are_exact_and_targets_separate(syn: SyntheticSirst) -> None:
    """Each recorded target is one 8-connected component of 1..80 px, at its recorded centre."""
    seen_empty = seen_many = False
    for i in range(len(syn)):
        s, targets = syn[i], syn.targets(i)
        labels, n = label_targets(s.mask)
        assert n == len(targets) <= 5
        assert sorted(np.bincount(labels.ravel())[1:].tolist()) == sorted(t.area for t in targets)
        for t in targets:
            assert 1 <= t.area <= 80
            r, c = (int(round(v)) for v in t.center)
            assert s.mask[r, c], "the target's peak pixel is in its mask"
            assert t.amplitude > 0 and t.profile in ("gaussian", "elliptic")
        seen_empty |= n == 0
        seen_many |= n >= 3
    assert seen_empty and seen_many


def test_mask_is_the_documented_fraction_of_each_targets_peak(syn: SyntheticSirst) -> None:
    """mask == (signal >= mask_fraction * peak of the nearest target), from the image's layers."""
    from scipy import ndimage

    f = syn.config.mask_fraction
    for i in range(8):
        layers, s = syn.layers(i), syn[i]
        np.testing.assert_array_equal(
            np.clip(layers["scene"] + layers["signal"] + layers["noise"], 0, 1), s.image)
        labels, n = label_targets(s.mask)
        if n == 0:
            assert not layers["signal"].any()
            continue
        peaks = ndimage.maximum(layers["signal"], labels, np.arange(1, n + 1))
        nearest = ndimage.distance_transform_edt(labels == 0, return_distances=False,
                                                 return_indices=True)
        peak_map = np.asarray(peaks)[labels[tuple(nearest)] - 1]
        np.testing.assert_array_equal(layers["signal"] >= f * peak_map * (1 - 1e-6), s.mask)


def test_target_statistics_spread() -> None:
    syn = SyntheticSirst(60, size=64, seed=0)
    areas = [t.area for i in range(len(syn)) for t in syn.targets(i)]
    scrs = [t.scr for i in range(len(syn)) for t in syn.targets(i)]
    profiles = {t.profile for i in range(len(syn)) for t in syn.targets(i)}
    counts = [count_targets(syn[i].mask) for i in range(len(syn))]
    assert min(areas) <= 5 and max(areas) >= 40
    assert min(scrs) < 5 and max(scrs) > 15
    assert profiles == {"gaussian", "elliptic"}
    assert 0 < counts.count(0) < 20


def test_generation_is_fast() -> None:
    import time

    syn = SyntheticSirst(8, size=256, seed=0)
    syn[0]
    t0 = time.perf_counter()
    for i in range(1, 8):
        syn[i]
    assert (time.perf_counter() - t0) / 7 < 0.1  # a few ms on one core; generous for shared CI


def test_write_read_roundtrip(tmp_path: Path, syn: SyntheticSirst) -> None:
    folder = syn.write(tmp_path)
    assert folder == tmp_path / "Synthetic"
    train = SirstDataset(folder, "train")
    test = SirstDataset(folder, "test")
    assert train.layout == "basicirstd"
    assert train.names + test.names == syn.names
    for ds in (train, test):
        for i in (0, len(ds) - 1):
            s = ds[i]
            ref = syn[syn.names.index(s.name)]
            np.testing.assert_array_equal(s.mask, ref.mask)
            np.testing.assert_allclose(s.image, np.round(ref.image * 255) / 255, atol=1e-6)


def test_write_train_and_test_generators_into_one_folder(tmp_path: Path) -> None:
    train = open_dataset("synthetic", "train", num_images=3, size=64)
    test = open_dataset("synthetic", "test", num_images=2, size=64)
    train.write(tmp_path, name="Syn", split="train")
    test.write(tmp_path, name="Syn", split="test")
    assert SirstDataset(tmp_path / "Syn", "train").names == train.names
    assert SirstDataset(tmp_path / "Syn", "test").names == test.names
    assert not set(train.names) & set(test.names)


def test_open_dataset_synthetic_defaults() -> None:
    tr, te = open_dataset("synthetic", "train"), open_dataset("Synthetic", "test")
    assert len(tr) == SYNTHETIC_SPLITS["train"] and len(te) == SYNTHETIC_SPLITS["test"]
    assert tr.size == (256, 256) and not set(tr.names) & set(te.names)
    with pytest.raises(IrlibInputError, match="splits"):
        open_dataset("synthetic", "val")
    with pytest.raises(IrlibInputError, match="unknown SyntheticSirst parameter"):
        SyntheticSirst(2, colour=True)
