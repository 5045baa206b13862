"""The reader on the real NUAA-SIRST and NUDT-SIRST folders (skipped when they are absent).

Target counts read the masks only (fast); the statistics test decodes every NUAA-SIRST image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from irlib.data import SirstDataset, count_targets, dataset_stats, open_dataset, read_mask

pytestmark = pytest.mark.realdata


def _targets(ds: SirstDataset) -> int:
    return sum(count_targets(read_mask(ds.mask_path(i))) for i in range(len(ds)))


def test_nuaa_counts(nuaa_root: Path) -> None:
    everything = SirstDataset(nuaa_root, "all")
    assert len(everything) == 427 and _targets(everything) == 533
    test = SirstDataset(nuaa_root, "test")
    assert test.layout == "basicirstd" and test.split_file.name == "test_NUAA-SIRST.txt"
    assert len(test) == 214 and _targets(test) == 263
    assert len(SirstDataset(nuaa_root, "train")) == 213
    sizes = [len(SirstDataset(nuaa_root, f"idx_427/{s}")) for s in ("train", "val", "test")]
    assert sizes == [256, 85, 86]
    assert len(SirstDataset(nuaa_root, "test", layout="nuaa")) == 86
    assert len(SirstDataset(nuaa_root, "idx_320/test")) == 96


def test_nuaa_misc_111_mask_size(nuaa_root: Path) -> None:
    """The one NUAA-SIRST mask whose size differs from its image raises unless resizing is asked."""
    from irlib.data import MaskResizedWarning
    from irlib.errors import IrlibInputError

    ds = SirstDataset(nuaa_root, "idx_427/test")
    i = ds.index_of("Misc_111")
    with pytest.raises(IrlibInputError, match="Misc_111_pixels0.png is 592x400"):
        ds[i]
    fixed = SirstDataset(nuaa_root, "idx_427/test", on_size_mismatch="resize_mask")
    with pytest.warns(MaskResizedWarning):
        s = fixed[i]
    assert s.mask.shape == s.image.shape == (220, 325) and count_targets(s.mask) == 1


def test_nuaa_statistics(nuaa_root: Path) -> None:
    with pytest.warns(Warning):
        st = dataset_stats(SirstDataset(nuaa_root, "all", on_size_mismatch="resize_mask"))
    s = st.summary()
    print("\nNUAA-SIRST", {k: s[k] for k in ("images", "targets", "gray_mean", "gray_std",
                                             "distinct_sizes", "area_median",
                                             "contrast_median")})
    assert s["images"] == 427 and s["targets"] == 533 and s["area_median"] == 20.0
    assert s["distinct_sizes"] > 300 and s["most_common_size_hw"] == "240x320"
    assert 0.35 < s["gray_mean"] < 0.55 and 0.15 < s["gray_std"] < 0.3


def test_nudt_counts(nudt_root: Path) -> None:
    everything = SirstDataset(nudt_root, "all")
    assert len(everything) == 1327
    sizes = {read_mask(everything.mask_path(i)).shape for i in range(0, 1327, 13)}
    assert sizes == {(256, 256)}
    train, test = SirstDataset(nudt_root, "train"), SirstDataset(nudt_root, "test")
    assert (len(train), len(test)) == (663, 664)
    dn_train = SirstDataset(nudt_root, "50_50/train")
    dn_test = SirstDataset(nudt_root, "50_50/test")
    assert sorted(dn_train.names) == sorted(train.names) and len(dn_test) == 664
    s = dn_test[0]
    assert s.image.shape == (256, 256) and s.image.dtype == np.float32


def test_nudt_all_images_are_256(nudt_root: Path) -> None:
    from PIL import Image

    ds = SirstDataset(nudt_root, "all")
    assert {Image.open(ds.image_path(i)).size for i in range(len(ds))} == {(256, 256)}


def test_open_dataset_finds_real_data(real_data: Path) -> None:
    if not (real_data / "NUAA-SIRST").is_dir():
        pytest.skip("NUAA-SIRST not under the data root")
    assert len(open_dataset("NUAA-SIRST", "test", root=real_data)) == 214
    assert len(open_dataset("nuaa-sirst", "idx_427/val", root=real_data)) == 85


def test_nudt_gray_statistics_match_basicirstd(nudt_root: Path) -> None:
    """Per-image mean/std averaged over all 1327 images, x255, equal BasicIRSTD's img_norm_cfg
    for NUDT-SIRST (107.809, 33.023): a check of the gray conversion rule on real files."""
    from irlib.data import read_image

    ds = SirstDataset(nudt_root, "all")
    imgs = [read_image(ds.image_path(i)).astype(np.float64) for i in range(len(ds))]
    mean = np.mean([im.mean() for im in imgs]) * 255
    std = np.mean([im.std() for im in imgs]) * 255
    print(f"\nNUDT-SIRST per-image mean/std x255: {mean:.4f} / {std:.4f}")
    assert abs(mean - 107.80905) < 0.01 and abs(std - 33.02275) < 0.01
