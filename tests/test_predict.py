"""``irlib predict``: host meta in save_host files, input modes, outputs, errors, tiling, the CLI."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from irlib.data.io import read_image
from irlib.engine import Normalize, iter_predictions
from irlib.engine.checkpoint import save_checkpoint, trainable_state
from irlib.errors import IrlibInputError
from irlib.metrics.components import components
from irlib.metrics.io import load_predictions
from irlib.models import create_model, load_host, save_host
from irlib.models.registry import read_host_meta
from irlib.paths import REPO_ROOT
from irlib.predict import (CSV_COLUMNS, collect_inputs, detect_targets, predict_images, predict_map,
                           resolve_normalize, tile_windows)

NORM = Normalize(0.4, 0.15)
MODES = {"l": "L", "rgb": "RGB", "rgba": "RGBA", "pal": "P", "i16": "I;16"}


def _tiny_host() -> torch.nn.Module:
    """UNet (base width 4) whose 1x1 head is shifted and scaled so that its map on noise spans
    (0, 1) around a median of 0.5: noise images then give many components."""
    torch.manual_seed(0)
    host = create_model("unet", base_width=4).eval()
    with torch.no_grad():
        logits = host(NORM(torch.from_numpy(np.random.default_rng(0).random((1, 1, 64, 64), np.float32))))
        scale = 2.0 / float(logits.std())
        host.head.bias.copy_(scale * (host.head.bias - logits.median()))
        host.head.weight.mul_(scale)
    return host


@pytest.fixture(scope="module")
def host_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("hosts")
    host = _tiny_host()
    return {"meta": save_host(host, d / "meta.pt", meta={"normalize": NORM, "dataset": "synthetic"}),
            "plain": save_host(host, d / "plain.pt"),
            "last": _fit_checkpoint(host, d / "last.pt")}


def _fit_checkpoint(host: torch.nn.Module, path: Path) -> Path:
    save_checkpoint(path, {"model": trainable_state(host), "epoch": 1})  # irlib.engine.fit's format
    return path


def _write(path: Path, mode: str, shape: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        Image.fromarray(rng.integers(0, 65536, shape, dtype=np.uint16)).save(path)
    else:
        rgb = Image.fromarray(rng.integers(0, 256, shape + (3,), dtype=np.uint8))
        img = rgb.quantize(16) if mode == "P" else rgb.convert(mode)
        img.save(path)
    return read_image(path)


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, (stem, mode) in enumerate(MODES.items()):
        _write(folder / f"{stem}.png", mode, (33 + 7 * i, 45 + 5 * i), i)
    (folder / "notes.txt").write_text("not an image")  # ignored in a folder
    return folder


def test_save_host_meta_roundtrip(tmp_path, host_files):
    assert read_host_meta(host_files["meta"]) == {"normalize": NORM.to_dict(), "dataset": "synthetic"}
    assert read_host_meta(host_files["plain"]) == {}  # older files, no meta: still load
    assert isinstance(load_host(host_files["plain"]), torch.nn.Module)
    assert isinstance(load_host(host_files["meta"]), torch.nn.Module)
    with pytest.raises(IrlibInputError, match="plain values"):
        save_host(create_model("unet", base_width=4), tmp_path / "x.pt", meta={"bad": object()})
    assert not (tmp_path / "x.pt").exists()


def test_predict_odd_modes(tmp_path, images, host_files):
    out = tmp_path / "out"
    summary = predict_images(images, host_files["meta"], out, progress=False)
    assert summary.names == sorted(MODES)  # natural order, notes.txt skipped
    assert summary.normalize["source"] == "weights file meta"
    probs = load_predictions(out / "prob")
    host = load_host(host_files["meta"])
    for name in summary.names:
        image = read_image(images / f"{name}.png")
        ref = next(iter_predictions(host, [{"image": image, "name": name}], NORM, "cpu"))[1]
        assert probs[name].shape == image.shape
        assert np.abs(probs[name] - ref).max() <= 0.5 / 255 + 1e-6  # 8-bit PNG levels
        mask = np.asarray(Image.open(out / "mask" / f"{name}.png"))
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        assert np.array_equal(mask > 0, ref > 0.5)
        overlay = Image.open(out / "overlay" / f"{name}.png")
        assert overlay.mode == "RGB" and overlay.size == image.shape[::-1]
    assert not list(out.rglob("*.tmp"))


def test_csv_one_row_per_component(tmp_path, images, host_files):
    out = tmp_path / "out"
    predict_images(images, host_files["meta"], out, fmt="npy", threshold=0.6, progress=False)
    with open(out / "targets.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        rows = list(reader)
    probs = load_predictions(out / "prob")
    assert all(p.dtype == np.float32 for p in probs.values())
    for name, prob in probs.items():
        mine = [r for r in rows if r["image"] == name]
        _, comps = components(prob > 0.6, connectivity=8)
        assert len(mine) == comps.n and comps.n > 1
        assert [int(r["target_id"]) for r in mine] == list(range(1, comps.n + 1))
        assert [int(r["area_px"]) for r in mine] == comps.area.tolist()
        assert all(0.6 < float(r["peak_score"]) <= 1 for r in mine)


def test_detect_targets_known_map():
    prob = np.zeros((8, 9), np.float32)
    prob[1, 1], prob[2, 2] = 0.9, 0.7  # diagonal neighbours: one 8-connected target
    prob[5:7, 5:7] = 0.8
    prob[6, 6] = 0.95
    prob[0, 8] = 0.5  # equal to the threshold: not detected (strict >)
    mask, rows = detect_targets(prob, 0.5)
    assert mask.sum() == 6 and len(rows) == 2
    assert rows[0] == {"target_id": 1, "centroid_row": 1.5, "centroid_col": 1.5, "area_px": 2,
                       "peak_score": pytest.approx(0.9)}
    assert rows[1]["area_px"] == 4 and rows[1]["centroid_row"] == 5.5
    assert rows[1]["peak_score"] == pytest.approx(0.95)


def test_corrupt_file_is_named_and_nothing_written(tmp_path, images, host_files):
    good = (images / "l.png").read_bytes()
    (images / "broken.png").write_bytes(good[: len(good) // 2])
    out = tmp_path / "out"
    with pytest.raises(IrlibInputError, match="broken.png"):
        predict_images(images, host_files["meta"], out, progress=False)
    assert not out.exists() or not any(out.iterdir())


def test_output_folder_guard_and_inputs(tmp_path, images, host_files):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(IrlibInputError, match="not empty.*--overwrite"):
        predict_images(images, host_files["meta"], out, progress=False)
    s = predict_images([images / "rgb.png", str(images / "pal.*")], host_files["meta"], out,
                       overwrite=True, progress=False)
    assert s.names == ["rgb", "pal"] and (out / "keep.txt").exists()
    (images / "l.bmp").write_bytes((images / "l.png").read_bytes())
    with pytest.raises(IrlibInputError, match="share the name 'l'"):
        collect_inputs(images)
    with pytest.raises(IrlibInputError, match="matches no image"):
        collect_inputs(str(images / "*.jpg"))
    with pytest.raises(IrlibInputError, match="neither a file"):
        collect_inputs(images / "missing.png")


def test_normalisation_rules(tmp_path, images, host_files):
    with pytest.raises(IrlibInputError, match="does not state the input normalisation.*--normalize"):
        predict_images(images, host_files["plain"], tmp_path / "a", progress=False)
    s = predict_images(images, host_files["plain"], tmp_path / "b", normalize="nuaa-sirst", progress=False)
    assert s.normalize["mean"][0] == pytest.approx(101.06385040283203 / 255)
    norm, source = resolve_normalize("0.4,0.15", {})
    assert norm.to_dict() == NORM.to_dict() and source == "argument"
    for bad, msg in [("101,34", "divide 0-255"), ("MyData", "no published constants"), ("0.4", "mean,std"),
                     ("0.1,0.2,0.3", "dataset name")]:
        with pytest.raises(IrlibInputError, match=msg):
            resolve_normalize(bad, {})
    with pytest.warns(UserWarning, match="overrides"):
        predict_images(images / "l.png", host_files["meta"], tmp_path / "c", normalize="0.5,0.2", progress=False)
    for t in (0, 1, 1.5):
        with pytest.raises(IrlibInputError, match="strictly inside"):
            predict_images(images, host_files["meta"], tmp_path / "d", threshold=t, progress=False)


def test_fit_checkpoint_needs_host(tmp_path, images, host_files):
    with pytest.raises(IrlibInputError, match="--host"):
        predict_images(images, host_files["last"], tmp_path / "a", normalize="0.4,0.15", progress=False)
    a = predict_images(images, host_files["last"], tmp_path / "b", host="unet", host_kwargs={"base_width": 4},
                       normalize="0.4,0.15", fmt="npy", progress=False)
    b = predict_images(images, host_files["meta"], tmp_path / "c", fmt="npy", progress=False)
    pa, pb = load_predictions(tmp_path / "b" / "prob"), load_predictions(tmp_path / "c" / "prob")
    assert all(np.array_equal(pa[n], pb[n]) for n in a.names) and a.targets == b.targets


def test_tile_windows_cover_the_image():
    for size in (1, 31, 200, 330, 1000):
        padded = -(-size // 32) * 32
        wins = tile_windows(padded, size, 320, 128)
        cores = [c for w in wins for c in range(w[2], w[3])]
        assert cores == list(range(size))
        assert all(w0 % 32 == 0 and w1 % 32 == 0 and w1 - w0 <= 320 and w0 <= c0 and c1 <= w1
                   for w0, w1, c0, c1 in wins)


def test_tiling_matches_one_pass():
    """UNet is fully convolutional with a receptive-field radius < 128 px (measured ~107): tiles
    with 128 px of context on each side reproduce the one-pass map up to float rounding."""
    host = _tiny_host()
    image = np.random.default_rng(3).random((330, 420), dtype=np.float32)
    ref = next(iter_predictions(host, [{"image": image, "name": "x"}], NORM, "cpu"))[1]
    assert len(tile_windows(352, 330, 320, 128)) > 1 and len(tile_windows(448, 420, 320, 128)) > 1
    tiled = predict_map(host, image, NORM, "cpu", tile_size=320, tile_overlap=128)
    assert tiled.shape == ref.shape
    assert np.abs(tiled - ref).max() < 1e-5
    assert np.array_equal(predict_map(host, image, NORM, "cpu", tile_size=None), ref)


def test_cli_help_and_pyproject():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["irlib"] == "irlib.cli:main"
    res = subprocess.run([sys.executable, "-m", "irlib.cli", "predict", "--help"], capture_output=True,
                         text=True, cwd=REPO_ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    for flag in ("--weights", "--normalize", "--threshold", "--format", "--tile-size", "--overwrite", "--device"):
        assert flag in res.stdout


def test_cli_run_and_error(tmp_path, images, host_files, capsys):
    from irlib.cli import main

    out = tmp_path / "out"
    assert main(["predict", str(images), "-w", str(host_files["meta"]), "-o", str(out), "--no-progress",
                 "--format", "npy", "--device", "cpu"]) == 0
    assert "5 images" in capsys.readouterr().out and (out / "targets.csv").is_file()
    assert main(["predict", str(images), "-w", str(host_files["plain"]), "-o", str(tmp_path / "x"),
                 "--no-progress"]) == 2
    assert "irlib predict: error:" in capsys.readouterr().err


@pytest.mark.realdata
def test_real_nuaa_images(tmp_path, nuaa_root, host_files):
    files = sorted((nuaa_root / "images").glob("*.png"))[:3]
    s = predict_images(files, host_files["plain"], tmp_path / "out", normalize="NUAA-SIRST", progress=False)
    probs = load_predictions(tmp_path / "out" / "prob")
    assert s.names == [f.stem for f in files]
    assert all(probs[f.stem].shape == read_image(f).shape for f in files)
