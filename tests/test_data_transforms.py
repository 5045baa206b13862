"""Joint transforms keep aligned maps aligned; eval padding round-trips; torch items; points."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irlib.data import (JointAugment, SyntheticSirst, centroid_points, coarse_points, crop_to,
                        pad_to_multiple, points_to_mask)
from irlib.data import transforms as T
from irlib.data.torchdata import SirstTorchDataset
from irlib.errors import IrlibInputError


def _coords(h: int, w: int) -> np.ndarray:
    """A map whose value encodes its own (row, col), to track where each pixel went."""
    return (np.arange(h)[:, None] * 1000 + np.arange(w)[None, :] + 1).astype(np.int64)


@pytest.mark.parametrize("hw", [(40, 50), (20, 30), (24, 24)])
def test_augment_moves_all_maps_identically(hw: tuple[int, int]) -> None:
    h, w = hw
    base = _coords(h, w)
    image = base.astype(np.float64)
    mask = base % 7 == 0
    extra_chw = np.stack([base, -base, base * 2])
    aug = JointAugment(crop_size=32)
    for k in range(12):
        img_o, mask_o, ex_o = aug(np.random.default_rng(k), image, mask, extra_chw)
        assert img_o.shape == (32, 32) and ex_o.shape == (3, 32, 32) and mask_o.dtype == bool
        np.testing.assert_array_equal(mask_o, (img_o % 7 == 0) & (img_o > 0))
        np.testing.assert_array_equal(ex_o[0], img_o)
        np.testing.assert_array_equal(ex_o[1], -img_o)
        assert img_o.flags.c_contiguous
        if h < 32 or w < 32:
            assert (img_o == 0).any()  # zero padding
        kept = img_o[img_o > 0].astype(np.int64)
        assert len(np.unique(kept)) == kept.size  # no pixel duplicated


def test_extra_maps_do_not_change_the_image_augmentation() -> None:
    image = np.random.default_rng(0).random((50, 60))
    mask = image > 0.9
    aug = JointAugment(crop_size=(20, 30))
    a = aug(np.random.default_rng(5), image, mask)
    b = aug(np.random.default_rng(5), image, mask, image, image[None])
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_dihedral_ops_and_shape_errors() -> None:
    x = _coords(3, 4)
    np.testing.assert_array_equal(T.flip([x], horizontal=True)[0], x[:, ::-1])
    np.testing.assert_array_equal(T.flip([x], vertical=True)[0], x[::-1])
    np.testing.assert_array_equal(T.transpose([x])[0], x.T)
    np.testing.assert_array_equal(T.rot90([x], 1)[0], np.rot90(x))
    seen = {T.random_dihedral([x], np.random.default_rng(k))[0].tobytes() for k in range(64)}
    assert len(seen) == 8
    with pytest.raises(IrlibInputError, match="share"):
        T.random_crop([x, x[:2]], 2, np.random.default_rng(0))


def test_pad_to_multiple_numpy_and_torch() -> None:
    x = np.random.default_rng(0).random((2, 45, 70)).astype(np.float32)
    padded, hw = pad_to_multiple(x, 32)
    assert padded.shape == (2, 64, 96) and hw == (45, 70)
    assert not padded[:, 45:].any() and not padded[:, :, 70:].any()
    np.testing.assert_array_equal(crop_to(padded, hw), x)
    t = torch.from_numpy(x)[None]
    tp, thw = pad_to_multiple(t, 32)
    assert tuple(tp.shape) == (1, 2, 64, 96) and thw == (45, 70)
    assert torch.equal(crop_to(tp, thw), t)
    same, _ = pad_to_multiple(np.zeros((64, 32)), 32)
    assert same.shape == (64, 32)


def test_torch_dataset_train_and_eval() -> None:
    base = SyntheticSirst(4, size=(48, 64), seed=0)
    train = SirstTorchDataset(base, train=True, crop_size=32, seed=1)
    item = train[0]
    assert set(item) == {"image", "mask", "name"} and item["name"] == base.names[0]
    assert item["image"].shape == (1, 32, 32) and item["image"].dtype == torch.float32
    assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
    again = SirstTorchDataset(base, train=True, crop_size=32, seed=1)[0]
    assert torch.equal(item["image"], again["image"])
    train.set_epoch(1)
    assert not torch.equal(train[0]["image"], item["image"])
    batch = torch.utils.data.default_collate([train[i] for i in range(4)])
    assert batch["image"].shape == (4, 1, 32, 32) and len(batch["name"]) == 4
    ev = SirstTorchDataset(base, train=False)[2]
    assert ev["image"].shape == (1, 48, 64)
    assert torch.equal(ev["image"][0], torch.from_numpy(base[2].image))
    assert torch.equal(ev["mask"][0].bool(), torch.from_numpy(base[2].mask))


def test_torch_dataset_is_independent_of_worker_count() -> None:
    base = SyntheticSirst(6, size=48, seed=2)
    ds = SirstTorchDataset(base, train=True, crop_size=32, seed=3)
    ds.set_epoch(4)
    ref = torch.stack([ds[i]["image"] for i in range(6)])
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2)
    got = torch.cat([b["image"] for b in loader])
    assert torch.equal(ref, got)


def test_torch_dataset_extra_maps_stay_aligned() -> None:
    base = SyntheticSirst(3, size=48, seed=0, empty_fraction=0.0)
    ds = SirstTorchDataset(base, train=True, crop_size=40, seed=0,
                           extra_maps=lambda s: {"copy": s.image, "mask2": s.mask})
    for i in range(3):
        item = ds[i]
        assert torch.equal(item["copy"], item["image"])
        assert torch.equal(item["mask2"], item["mask"])


def test_centroid_and_coarse_points() -> None:
    mask = np.zeros((10, 12), bool)
    mask[1:3, 1:4] = True  # centroid (1.5, 2.0) -> (1, 2)
    mask[6, 8] = mask[7, 9] = True  # diagonal pair: one 8-connected target, centroid (6.5, 8.5)
    mask[9, 0] = True
    np.testing.assert_array_equal(centroid_points(mask), [[1, 2], [6, 8], [9, 0]])
    pts = coarse_points(mask, np.random.default_rng(0))
    assert pts.shape == (3, 2) and pts.dtype == np.int64
    assert mask[pts[:, 0], pts[:, 1]].all()
    np.testing.assert_array_equal(pts, coarse_points(mask, 0))
    many = {tuple(coarse_points(mask, k)[0]) for k in range(40)}
    assert len(many) == 6  # every pixel of the 2x3 target can be drawn
    pm = points_to_mask(pts, mask.shape)
    assert pm.sum() == 3 and pm[pts[:, 0], pts[:, 1]].all()
    assert centroid_points(np.zeros((4, 4), bool)).shape == (0, 2)
    assert coarse_points(np.zeros((4, 4), bool), 0).shape == (0, 2)


def test_points_on_synthetic_targets() -> None:
    syn = SyntheticSirst(6, size=64, seed=0, empty_fraction=0.0)
    for i in range(len(syn)):
        s = syn[i]
        c = centroid_points(s.mask)
        assert len(c) == len(syn.targets(i))
        for t in syn.targets(i):
            assert np.abs(c - np.asarray(t.center)).max(axis=1).min() <= 1.5


def test_joint_augment_keeps_non_square_crop_shape() -> None:
    from irlib.data.transforms import JointAugment

    image = np.random.default_rng(0).random((40, 60)).astype(np.float32)
    aug = JointAugment((32, 48))
    shapes = {aug(np.random.default_rng(k), image, image > 0.5)[0].shape for k in range(16)}
    assert shapes == {(32, 48)}
