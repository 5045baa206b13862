"""The dataset reader: the three layouts, split-file formats, PIL modes and one test per bad input.

Every dataset here is a few 12x16 images written into tmp_path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from irlib.data import (MaskResizedWarning, Sample, SirstDataset, list_splits, open_dataset,
                        read_image, read_mask)
from irlib.errors import IrlibInputError

SIZE = (12, 16)  # (H, W)


# ---------------------------------------------------------------- helpers
def write_split(path: Path, lines: list[str], newline: str = "\n", final: bool = True) -> Path:
    """Write a split file with the given line ending and optional final newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((newline.join(lines) + (newline if final else "")).encode())
    return path


def write_pair(folder: Path, name: str, seed: int, mask_suffix: str = ""
               ) -> tuple[np.ndarray, np.ndarray]:
    """An 8-bit L image and its {0,255} mask holding one 2x2 target: (image u8, mask bool)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, size=SIZE, dtype=np.uint8)
    mask = np.zeros(SIZE, dtype=bool)
    r, c = 2 + seed % 5, 3 + seed % 7
    mask[r:r + 2, c:c + 2] = True
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(folder / "images" / f"{name}.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "masks" / f"{name}{mask_suffix}.png")
    return img, mask


def make_dataset(folder: Path, layout: str, n: int = 4) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``n`` images in ``layout`` under ``folder``: first half train, second half test."""
    suffix = "_pixels0" if layout == "nuaa" else ""
    names = [f"img_{i}" for i in range(n)]
    data = {name: write_pair(folder, name, i, suffix) for i, name in enumerate(names)}
    train, test = names[: n // 2], names[n // 2:]
    if layout == "nuaa":  # LF, no final newline, like the official repository
        write_split(folder / "idx_427" / "train.txt", train, final=False)
        write_split(folder / "idx_427" / "test.txt", test, final=False)
    elif layout == "dnanet":
        write_split(folder / "50_50" / "train.txt", train)
        write_split(folder / "50_50" / "test.txt", test)
    else:  # CRLF, like BasicIRSTD's img_idx
        write_split(folder / "img_idx" / f"train_{folder.name}.txt", train, "\r\n")
        write_split(folder / "img_idx" / f"test_{folder.name}.txt", test, "\r\n")
    return data


def check_samples(ds: SirstDataset, data: dict) -> None:
    for i, name in enumerate(ds.names):
        s = ds[i]
        img, mask = data[name]
        assert isinstance(s, Sample) and s.name == name
        assert s.image.dtype == np.float32 and s.image.shape == SIZE
        np.testing.assert_array_equal(s.image, img.astype(np.float32) / 255)
        assert s.mask.dtype == bool
        np.testing.assert_array_equal(s.mask, mask)


# ---------------------------------------------------------------- layouts and splits
@pytest.mark.parametrize("layout", ["nuaa", "dnanet", "basicirstd"])
def test_each_layout_is_detected_and_read(tmp_path: Path, layout: str) -> None:
    folder = tmp_path / "Tiny"
    data = make_dataset(folder, layout)
    for split, names in (("train", ["img_0", "img_1"]), ("test", ["img_2", "img_3"])):
        ds = SirstDataset(folder, split)
        assert ds.layout == layout and ds.name == "Tiny" and ds.names == names
        assert len(ds) == 2
        check_samples(ds, data)
    assert len(SirstDataset(folder, "all")) == 4


def test_basicirstd_parent_folder_is_accepted(tmp_path: Path) -> None:
    make_dataset(tmp_path / "Tiny", "basicirstd")
    ds = SirstDataset(tmp_path, "test")
    assert ds.name == "Tiny" and ds.names == ["img_2", "img_3"]


def test_explicit_split_folder_and_forced_layout(tmp_path: Path) -> None:
    """A NUAA-like folder with idx_427 and img_idx: "test" is the 50:50 one, the rest explicit."""
    folder = tmp_path / "Both"
    make_dataset(folder, "nuaa", n=6)
    write_split(folder / "img_idx" / "test_Both.txt", ["img_0", "img_1", "img_2"], "\r\n")
    write_split(folder / "img_idx" / "train_Both.txt", ["img_3", "img_4", "img_5"], "\r\n")
    assert SirstDataset(folder, "test").names == ["img_0", "img_1", "img_2"]
    assert SirstDataset(folder, "test").layout == "basicirstd"
    assert SirstDataset(folder, "idx_427/test").names == ["img_3", "img_4", "img_5"]
    assert SirstDataset(folder, "test", layout="nuaa").names == ["img_3", "img_4", "img_5"]
    txt = write_split(tmp_path / "mine.txt", ["img_5"])
    assert SirstDataset(folder, str(txt)).names == ["img_5"]
    splits = list_splits(folder)
    assert splits == {"all": 6, "idx_427/test": 3, "idx_427/train": 3, "img_idx/test": 3,
                      "img_idx/train": 3}


def test_split_file_formats(tmp_path: Path) -> None:
    """CRLF, blank lines, surrounding spaces, names with extension, no final newline."""
    folder = tmp_path / "Fmt"
    data = make_dataset(folder, "dnanet")
    path = folder / "50_50" / "test.txt"
    path.write_bytes(b"\r\n  img_1.png \r\n\r\n\nimg_3\r\n\r\nimg_0")
    ds = SirstDataset(folder, "test")
    assert ds.names == ["img_1", "img_3", "img_0"]
    check_samples(ds, data)


def test_dataset_api(tmp_path: Path) -> None:
    folder = tmp_path / "Api"
    make_dataset(folder, "dnanet")
    ds = SirstDataset(folder, "all", cache=True)
    assert ds.names == ["img_0", "img_1", "img_2", "img_3"]
    assert ds[-1].name == "img_3" and ds[3] is ds[3]  # cached
    assert ds.index_of("img_2.png") == 2
    assert ds.image_path(0).name == "img_0.png" and ds.mask_path(0).name == "img_0.png"
    with pytest.raises(IndexError):
        ds[4]
    assert [s.name for s in ds] == ds.names
    ds.validate()
    assert "Api" in repr(ds)


def test_open_dataset_by_path_and_name(tmp_path: Path) -> None:
    make_dataset(tmp_path / "Tiny", "basicirstd")
    assert open_dataset(str(tmp_path / "Tiny"), "train").names == ["img_0", "img_1"]
    assert open_dataset("tiny", "test", root=tmp_path).names == ["img_2", "img_3"]
    with pytest.raises(IrlibInputError, match="not found"):
        open_dataset("NoSuchSet", "test", root=tmp_path)


# ---------------------------------------------------------------- image modes
def _gray_ramp() -> np.ndarray:
    return (np.arange(SIZE[0] * SIZE[1]) % 256).astype(np.uint8).reshape(SIZE)


def test_mode_l_rgb_rgba_la(tmp_path: Path) -> None:
    g = _gray_ramp()
    expected = g.astype(np.float32) / 255
    Image.fromarray(g).save(tmp_path / "l.png")
    Image.fromarray(np.stack([g] * 3, -1)).save(tmp_path / "rgb.png")
    alpha = np.full(SIZE, 7, np.uint8)
    Image.fromarray(np.stack([g, g, g, alpha], -1)).save(tmp_path / "rgba.png")
    Image.merge("LA", [Image.fromarray(g), Image.fromarray(alpha)]).save(tmp_path / "la.png")
    for name in ("l", "rgb", "rgba", "la"):
        out = read_image(tmp_path / f"{name}.png")
        assert out.dtype == np.float32 and out.shape == SIZE
        np.testing.assert_array_equal(out, expected, err_msg=name)


def test_mode_rgb_colour_uses_bt601_luma(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=SIZE + (3,), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    luma = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255
    np.testing.assert_allclose(read_image(tmp_path / "c.png"), luma, atol=1e-6)


def test_mode_p_uses_palette(tmp_path: Path) -> None:
    idx = (np.arange(SIZE[0] * SIZE[1]) % 4).astype(np.uint8).reshape(SIZE)
    palette = [0, 0, 0, 255, 0, 0, 0, 255, 0, 10, 20, 30] + [0] * (256 * 3 - 12)
    img = Image.new("P", (SIZE[1], SIZE[0]))
    img.putdata(idx.ravel().tolist())
    img.putpalette(palette)
    img.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    colours = np.array(palette[:12], dtype=np.float64).reshape(4, 3)
    luma = (colours @ np.array([0.299, 0.587, 0.114])) / 255
    np.testing.assert_allclose(read_image(tmp_path / "p.png"), luma[idx], atol=1e-6)


def test_mode_16bit_png_and_int_tiff(tmp_path: Path) -> None:
    v = (np.arange(SIZE[0] * SIZE[1]) * 331 % 65536).astype(np.uint16).reshape(SIZE)
    Image.fromarray(v).save(tmp_path / "16.png")
    assert Image.open(tmp_path / "16.png").mode in ("I;16", "I")
    np.testing.assert_allclose(read_image(tmp_path / "16.png"), v / 65535, atol=1e-7)
    Image.fromarray(v.astype(np.int32)).save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    np.testing.assert_allclose(read_image(tmp_path / "i.tif"), v / 65535, atol=1e-7)
    Image.fromarray(np.full(SIZE, 70000, np.int32)).save(tmp_path / "big.tif")
    with pytest.raises(IrlibInputError, match="big.tif"):
        read_image(tmp_path / "big.tif")


def test_mode_1_and_float(tmp_path: Path) -> None:
    b = _gray_ramp() > 100
    Image.fromarray(b).save(tmp_path / "b.png")
    np.testing.assert_array_equal(read_image(tmp_path / "b.png"), b.astype(np.float32))
    f = (_gray_ramp() / 255).astype(np.float32)
    Image.fromarray(f).save(tmp_path / "f.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif"), f)
    Image.fromarray(f * 3).save(tmp_path / "f3.tif")
    with pytest.raises(IrlibInputError, match="f3.tif"):
        read_image(tmp_path / "f3.tif")


@pytest.mark.parametrize("mode", ["L", "1", "RGB", "P", "LA", "I;16"])
def test_mask_modes_binarise_to_the_same_mask(tmp_path: Path, mode: str) -> None:
    m = np.zeros(SIZE, bool)
    m[3:6, 4:9] = True
    base = Image.fromarray(m.astype(np.uint8) * 255)
    img = {"L": base, "1": base.convert("1"), "RGB": base.convert("RGB"),
           "P": base.convert("P"), "LA": base.convert("LA"),
           "I;16": Image.fromarray(m.astype(np.uint16) * 65535)}[mode]
    img.save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), m)


def test_mask_with_values_0_1_is_accepted(tmp_path: Path) -> None:
    m = np.zeros(SIZE, np.uint8)
    m[1, 1] = 1
    Image.fromarray(m).save(tmp_path / "m01.png")
    assert read_mask(tmp_path / "m01.png").sum() == 1


# ---------------------------------------------------------------- bad input: one test each
def test_error_missing_image(tmp_path: Path) -> None:
    folder = tmp_path / "D"
    make_dataset(folder, "dnanet")
    ds = SirstDataset(folder, "test")
    (folder / "images" / "img_3.png").unlink()
    with pytest.raises(IrlibInputError, match=r"img_3\.png.*missing"):
        ds[1]


def test_error_missing_mask(tmp_path: Path) -> None:
    folder = tmp_path / "D"
    make_dataset(folder, "nuaa")
    (folder / "masks" / "img_2_pixels0.png").unlink()
    with pytest.raises(IrlibInputError, match=r"img_2_pixels0\.png.*missing"):
        SirstDataset(folder, "test")


def test_error_mask_size_differs(tmp_path: Path) -> None:
    folder = tmp_path / "D"
    make_dataset(folder, "dnanet")
    big = np.zeros((SIZE[0] * 2, SIZE[1] * 2), np.uint8)
    big[4:8, 6:10] = 255
    Image.fromarray(big).save(folder / "masks" / "img_2.png")
    with pytest.raises(IrlibInputError, match=r"masks.img_2\.png is 32x24"):
        SirstDataset(folder, "test")[0]
    ds = SirstDataset(folder, "test", on_size_mismatch="resize_mask")
    with pytest.warns(MaskResizedWarning, match="img_2.png") as caught:
        s = ds[0]
    message = str(caught[0].message)  # relative to the dataset's parent: no machine-specific path
    assert f"{folder.name}/masks/img_2.png is 32x24" in message and str(folder.parent) not in message
    expected = np.zeros(SIZE, bool)
    expected[2:4, 3:5] = True
    np.testing.assert_array_equal(s.mask, expected)


def test_error_unreadable_file(tmp_path: Path) -> None:
    folder = tmp_path / "D"
    make_dataset(folder, "dnanet")
    (folder / "images" / "img_2.png").write_bytes(b"this is not a png")
    with pytest.raises(IrlibInputError, match=r"img_2\.png cannot be decoded"):
        SirstDataset(folder, "test")[0]


def test_error_truncated_file(tmp_path: Path) -> None:
    folder = tmp_path / "D"
    make_dataset(folder, "dnanet")
    path = folder / "images" / "img_3.png"  # noisy, so the pixel data fill most of the file
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(IrlibInputError, match=r"img_3\.png cannot be decoded.*truncated"):
        SirstDataset(folder, "test")[1]


def test_error_split_names_unknown_image(tmp_path: Path) -> None:
    folder = tmp_path / "D"
    make_dataset(folder, "dnanet")
    write_split(folder / "50_50" / "test.txt", ["img_2", "", "img_9"])
    with pytest.raises(IrlibInputError, match=r"test\.txt line 3 names the unknown image 'img_9'"):
        SirstDataset(folder, "test")


def test_error_empty_split(tmp_path: Path) -> None:
    folder = tmp_path / "D"
    make_dataset(folder, "basicirstd")
    (folder / "img_idx" / "test_D.txt").write_bytes(b"\r\n \r\n")
    with pytest.raises(IrlibInputError, match=r"test_D\.txt is empty"):
        SirstDataset(folder, "test")


def test_error_unknown_layout(tmp_path: Path) -> None:
    (tmp_path / "pics").mkdir()
    with pytest.raises(IrlibInputError, match=r"unknown dataset layout in .*pics"):
        SirstDataset(tmp_path / "pics", "test")
    (tmp_path / "pics" / "images").mkdir()
    with pytest.raises(IrlibInputError, match=r"pics: it has images/ but no masks/"):
        SirstDataset(tmp_path / "pics", "test")


def test_error_other_bad_input(tmp_path: Path) -> None:
    """Non-binary mask, duplicate split line, missing split folder, bad layout name, no root."""
    folder = tmp_path / "D"
    make_dataset(folder, "dnanet")
    soft = np.zeros(SIZE, np.uint8)
    soft[2:4, 2:4] = [[255, 128], [128, 255]]
    Image.fromarray(soft).save(folder / "masks" / "img_3.png")
    with pytest.raises(IrlibInputError, match=r"img_3\.png is not binary"):
        SirstDataset(folder, "test")[1]
    write_split(folder / "50_50" / "train.txt", ["img_0", "img_0.png"])
    with pytest.raises(IrlibInputError, match=r"train\.txt line 2 names 'img_0.png' again"):
        SirstDataset(folder, "train")
    with pytest.raises(IrlibInputError, match="needs a idx_427/ split folder"):
        SirstDataset(folder, "test", layout="nuaa")
    with pytest.raises(IrlibInputError, match="unknown layout 'voc'"):
        SirstDataset(folder, "test", layout="voc")
    with pytest.raises(IrlibInputError, match=r"val\.txt does not exist"):
        SirstDataset(folder, "val")
    with pytest.raises(IrlibInputError, match="does not exist"):
        SirstDataset(tmp_path / "nowhere")
