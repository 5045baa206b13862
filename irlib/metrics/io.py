"""The on-disk format of saved prediction maps, so any model's output can be evaluated later.

A predictions folder holds one file per test image, named after the image (``Sample.name``):

- ``<name>.npy``: a 2-D float32 (or float64) array at the image's native resolution, values in
  [0, 1] (sigmoid probabilities) -- what :func:`save_predictions` writes;
- ``<name>.npz``: the same array under the key ``prob`` (``compress=True``);
- ``<name>.png``: 8- or 16-bit gray, read as value / 255 or / 65535 (BasicIRSTD's
  ``--save_img`` output, or :func:`save_predictions` with ``fmt="png"``: level
  ``round(255 p)``, a few kB per map, small enough to commit); coarser, but evaluable. Integer levels come back as a float64
  :func:`~irlib.metrics.thresholds.quantized_map`, so every evaluator thresholds them at the
  integer level (8-bit ``v`` is above ``t`` iff ``v > floor(255 t)``: 51 is not above 0.2).

plus an optional ``predictions.json`` (written by :func:`save_predictions`) with the names, the
``scores`` kind (``"probability"`` or ``"logit"``) and the usual provenance record.
Notebook 03 looks for model folders under ``<results>/predictions/<dataset name>/<model>/``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from irlib.errors import IrlibInputError
from irlib.metrics.thresholds import quantized_map

INDEX_FILE = "predictions.json"
SUFFIXES = (".npy", ".npz", ".png")


def save_predictions(folder: str | os.PathLike,
                     maps: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]],
                     *, compress: bool = False, scores: str = "probability",
                     params: dict[str, Any] | None = None, fmt: str | None = None) -> Path:
    """Write one file per image and an index ``predictions.json``.

    ``fmt``: ``"npy"`` (default; exact), ``"npz"`` (``compress=True``; exact) or ``"png"``
    (8-bit, level ``round(255 p)``: probability maps only; thresholds then act on the level,
    see :func:`irlib.metrics.thresholds.quantized_map`).
    """
    from irlib.repro import atomic_write_bytes, run_metadata, write_json

    fmt = fmt or ("npz" if compress else "npy")
    if fmt not in ("npy", "npz", "png"):
        raise IrlibInputError(f"fmt={fmt!r}: use 'npy', 'npz' or 'png'")
    if fmt == "png" and scores != "probability":
        raise IrlibInputError("fmt='png' stores probabilities in [0, 1]; save logit maps as npy or npz")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    items = maps.items() if isinstance(maps, Mapping) else maps
    names = []
    for name, arr in items:
        a = np.asarray(arr)
        if a.ndim != 2 or a.dtype.kind != "f":
            raise IrlibInputError(f"prediction {name!r}: expected a 2-D float map, got "
                                  f"{a.dtype} {a.shape}")
        if "/" in name or os.sep in name:
            raise IrlibInputError(f"prediction name {name!r} must not contain a path separator")
        buf = io.BytesIO()
        if fmt == "png":
            _write_png8(buf, a, name)
            atomic_write_bytes(folder / f"{name}.png", buf.getvalue())
        elif fmt == "npz":
            np.savez_compressed(buf, prob=a)
            atomic_write_bytes(folder / f"{name}.npz", buf.getvalue())
        else:
            np.save(buf, a)
            atomic_write_bytes(folder / f"{name}.npy", buf.getvalue())
        names.append(name)
    write_json(folder / INDEX_FILE, {"format": "irlib-predictions/1", "scores": scores, "file_format": fmt,
                                     "names": names,
                                     "meta": run_metadata(params or {}) if params is not None
                                     else None})
    return folder


def _write_png8(buf: io.BytesIO, prob: np.ndarray, name: str) -> None:
    """``prob`` in [0, 1] as an 8-bit gray PNG of level ``round(255 p)``."""
    from PIL import Image

    if not np.all(np.isfinite(prob)) or prob.min() < 0 or prob.max() > 1:
        raise IrlibInputError(f"prediction {name!r}: fmt='png' needs probabilities in [0, 1]")
    Image.fromarray(np.rint(prob.astype(np.float64) * 255).astype(np.uint8)).save(buf, format="PNG")


def _read(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if "prob" not in z.files:
                raise IrlibInputError(f"{path} has no array named 'prob' (found {z.files})")
            return z["prob"]
    from PIL import Image

    from irlib.data.io import gray_levels

    with Image.open(path) as im:
        levels, scale = gray_levels(im, path)
    if np.all(levels == np.round(levels)):  # integer levels (the luma of coloured RGB is not)
        return quantized_map(levels, int(scale))
    return (levels / scale).astype(np.float32)


def find_prediction(folder: str | os.PathLike, name: str) -> Path | None:
    """The file holding image ``name``'s map in ``folder`` (``.npy`` > ``.npz`` > ``.png``)."""
    folder = Path(folder)
    for suffix in SUFFIXES:
        p = folder / f"{name}{suffix}"
        if p.is_file():
            return p
    return None


def load_prediction(folder: str | os.PathLike, name: str) -> np.ndarray:
    """Image ``name``'s saved map; raises with the folder and name when it is missing."""
    path = find_prediction(folder, name)
    if path is None:
        raise IrlibInputError(f"no prediction for image {name!r} in {folder} (looked for "
                              f"{', '.join(name + s for s in SUFFIXES)})")
    arr = _read(path)
    if arr.ndim != 2:
        raise IrlibInputError(f"{path}: expected a 2-D map, got shape {arr.shape}")
    return arr


def load_predictions(folder: str | os.PathLike,
                     names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Maps of ``names`` (default: every map in the folder), keyed by image name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise IrlibInputError(f"predictions folder {folder} does not exist")
    if names is None:
        names = sorted({p.stem for p in folder.iterdir() if p.suffix in SUFFIXES})
    return {n: load_prediction(folder, n) for n in names}


def has_predictions(folder: str | os.PathLike | None, names: Iterable[str]) -> bool:
    """True when ``folder`` exists and holds a map for every one of ``names``."""
    if folder is None or not Path(folder).is_dir():
        return False
    return all(find_prediction(folder, n) is not None for n in names)
