"""``irlib predict``: run a trained host on image files and write maps, masks, overlays and a CSV.

:func:`predict_images` is the whole tool (``irlib.cli`` only parses arguments). Rules, stated
once here and in ``docs/predict.md``:

* **inputs**: folders (their ``.png .bmp .jpg .jpeg .tif .tiff`` files, any case, not
  recursive, natural order), glob patterns (same extension filter) or files (taken as given).
  Images are decoded by :func:`irlib.data.io.read_image`, the rule of irlib's dataset reader.
  Every input is decoded once before anything is written, so an unreadable file stops the run
  with its name and an untouched output folder. Two inputs with the same stem are refused.
* **weights**: a :func:`irlib.models.save_host` file, a bare state_dict, or an
  ``irlib.engine.fit`` checkpoint (``last.pt`` / ``best.pt``); the latter two need ``host``.
* **normalisation**: ``normalize`` when given (a dataset name with published constants, see
  :func:`irlib.data.reference_normalization`, ``"mean,std"`` in [0, 1] units, a pair or a
  :class:`~irlib.engine.Normalize`), else the weights file's ``meta["normalize"]``, else an error.
* **inference**: at native resolution, padded bottom/right to a multiple of 32 with zeros after
  normalisation (= the mean), as :func:`irlib.engine.iter_predictions`, which runs every image
  whose sides are all ``<= tile_size``. Larger images are tiled, see :func:`tile_windows`.
* **outputs** in ``out_dir``: ``prob/`` (:func:`irlib.metrics.io.save_predictions` format, 8-bit
  PNG or NPY, with ``predictions.json``), ``mask/<name>.png`` ({0, 255}, ``prob > threshold``),
  ``overlay/<name>.png`` (contrast-stretched image, detected components ringed in red) and
  ``targets.csv`` (one row per 8-connected component of the mask, all images). All files are
  written atomically; a non-empty ``out_dir`` is refused unless ``overwrite``.
"""

from __future__ import annotations

import csv
import glob
import io
import math
import numbers
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from torch import nn

from irlib.data.io import IMAGE_EXTENSIONS, read_image
from irlib.data.layouts import natural_key
from irlib.engine.normalize import Normalize
from irlib.errors import IrlibInputError
from irlib.repro import atomic_write_bytes

CSV_COLUMNS = ("image", "target_id", "centroid_row", "centroid_col", "area_px", "peak_score")
FORMATS = ("png", "npy")
PAD_MULTIPLE = 32
Inputs = str | os.PathLike | Sequence[str | os.PathLike]


# ------------------------------------------------------------------------------------- inputs
def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def collect_inputs(inputs: Inputs) -> list[Path]:
    """Image files named by ``inputs`` (folders, glob patterns, files), in the module's order."""
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    found: list[Path] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            files = sorted((f for f in p.iterdir() if _is_image(f)), key=lambda f: natural_key(f.name))
            if not files:
                raise IrlibInputError(f"input folder {p} holds no image ({' '.join(IMAGE_EXTENSIONS)})")
        elif p.is_file():
            files = [p]
        elif glob.has_magic(str(item)):
            files = sorted((Path(f) for f in glob.glob(str(p), recursive=True) if _is_image(Path(f))),
                           key=lambda f: natural_key(str(f)))
            if not files:
                raise IrlibInputError(f"input pattern {str(item)!r} matches no image file")
        else:
            raise IrlibInputError(f"input {str(item)!r} is neither a file, a folder nor a glob pattern "
                                  "that matches something")
        found.extend(files)
    unique = list(dict.fromkeys(f.resolve() for f in found))
    if not unique:
        raise IrlibInputError("no input image given: pass folders, glob patterns or image files")
    by_stem: dict[str, Path] = {}
    for f in unique:
        if f.stem in by_stem:
            raise IrlibInputError(f"inputs {by_stem[f.stem]} and {f} share the name {f.stem!r}, and "
                                  "outputs are named after it; predict them in separate runs")
        by_stem[f.stem] = f
    return unique


# ------------------------------------------------------------------------------------ weights
def load_predictor(weights: str | os.PathLike | nn.Module, host: str | None = None,
                   host_kwargs: dict[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """``(host in eval mode, meta)`` from a save_host file, a bare state_dict or a fit checkpoint.

    ``meta`` is the save_host file's ``meta`` (``{}`` for the other kinds and for a module).
    """
    from irlib.engine.checkpoint import FORMAT, load_trainable_state
    from irlib.models import create_model
    from irlib.models.registry import _read_checkpoint

    kw = dict(host_kwargs or {})
    if isinstance(weights, nn.Module):
        return weights.eval(), {}
    obj = _read_checkpoint(weights)
    if obj.get("format") == FORMAT:  # irlib.engine.fit's last.pt / best.pt
        if host is None:
            raise IrlibInputError(f"{weights} is an irlib.engine.fit checkpoint, which does not name "
                                  "its network: pass the host name (--host acm) and any constructor "
                                  "arguments it was built with (--host-kwargs)")
        if not isinstance(obj.get("model"), dict):
            raise IrlibInputError(f"training checkpoint {weights} holds no model weights")
        model = create_model(host, **kw)
        load_trainable_state(model, obj["model"], weights)
        return model.eval(), {}
    if isinstance(obj.get("model"), str) and isinstance(obj.get("state_dict"), dict):
        meta = obj.get("meta")
        return create_model(host or obj["model"], weights=weights, **kw).eval(), \
            dict(meta) if isinstance(meta, dict) else {}
    if host is None:
        raise IrlibInputError(f"{weights} is a bare state_dict that does not name its network: "
                              "pass the host name (--host acm)")
    return create_model(host, weights=weights, **kw).eval(), {}


def resolve_normalize(spec: Any, meta: dict[str, Any], weights: Any = "the weights") -> tuple[Normalize, str]:
    """``(Normalize, where it came from)``: ``spec`` when given, else ``meta["normalize"]``."""
    if spec is None:
        stored = meta.get("normalize")
        if stored is None:
            raise IrlibInputError(
                f"{weights} does not state the input normalisation of its host (saved without "
                "meta={'normalize': ...}, or a training checkpoint): pass --normalize with a dataset "
                "name that has published constants (NUAA-SIRST, NUDT-SIRST, IRSTD-1K) or 'mean,std' "
                "in [0, 1] units, e.g. --normalize 0.396,0.136")
        try:
            return _one_channel(Normalize(stored["mean"], stored["std"])), "weights file meta"
        except (KeyError, TypeError) as exc:
            raise IrlibInputError(f"{weights}: meta['normalize'] = {stored!r} is not "
                                  "{'mean': [...], 'std': [...]}") from exc
    if isinstance(spec, Normalize):
        return _one_channel(spec), "argument"
    if isinstance(spec, str) and "," not in spec:
        from irlib.data import REFERENCE_NORMALIZATION, reference_normalization

        try:
            return Normalize(*reference_normalization(spec.strip())), f"reference constants of {spec.strip()}"
        except IrlibInputError:
            raise IrlibInputError(f"normalize={spec!r}: no published constants for that dataset (known: "
                                  f"{', '.join(REFERENCE_NORMALIZATION)}); give one of them or 'mean,std' "
                                  "in [0, 1] units") from None
    try:
        parts = [float(v) for v in (spec.split(",") if isinstance(spec, str) else spec)]
    except (TypeError, ValueError):
        parts = []
    if len(parts) != 2 or not all(math.isfinite(v) for v in parts):
        raise IrlibInputError(f"normalize={spec!r}: give a dataset name (NUAA-SIRST, NUDT-SIRST, "
                              "IRSTD-1K) or 'mean,std' in [0, 1] units")
    mean, std = parts
    if not (0.0 <= mean <= 1.0 and 0.0 < std <= 1.0):
        raise IrlibInputError(f"normalize={spec!r}: mean and std are on irlib's [0, 1] gray scale "
                              "(mean in [0, 1], std in (0, 1]); divide 0-255 constants by 255")
    return Normalize(mean, std), "argument"


def _warn_if_overridden(norm: Normalize, stored: Any, weights: Any) -> None:
    """Warn when an explicit normalisation differs from the one the weights file states."""
    try:
        same = np.allclose(stored["mean"], norm.to_dict()["mean"]) and np.allclose(stored["std"], norm.to_dict()["std"])
    except (KeyError, TypeError, ValueError):
        same = False
    if not same:
        warnings.warn(f"{norm} (given) overrides the normalisation stated by {weights}: {stored}", stacklevel=3)


def _one_channel(norm: Normalize) -> Normalize:
    if norm.mean.numel() != 1:
        raise IrlibInputError(f"{norm}: irlib predict feeds one gray channel; give one mean and one std")
    return norm


# ---------------------------------------------------------------------------------- inference
def tile_windows(padded: int, size: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """``(window start, window end, core start, core end)`` along one axis of ``padded`` pixels
    (``size`` real ones).

    One window ``(0, padded)`` when ``padded <= tile``. Otherwise cores of ``tile - 2 overlap``
    pixels start at ``0, core, 2 core, ...`` and each window adds ``overlap`` pixels on both sides,
    clipped to ``[0, padded]``: every window starts and ends on a multiple of the pad multiple
    when ``tile`` and ``overlap`` are, so pooling grids line up with a one-pass run, and a core
    pixel's map equals the one-pass map whenever the host's receptive field radius is
    ``<= overlap`` and the host has no global context.
    """
    if padded <= tile:
        return [(0, padded, 0, size)]
    core = tile - 2 * overlap
    return [(max(0, o - overlap), min(padded, o + core + overlap), o, min(o + core, size))
            for o in range(0, size, core)]


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out[0] if isinstance(out, (list, tuple)) else out


@torch.no_grad()
def predict_map(model: nn.Module, image: np.ndarray, normalize: Normalize, device: str | torch.device = "cpu",
                tile_size: int | None = 1024, tile_overlap: int = 128, multiple: int = PAD_MULTIPLE) -> np.ndarray:
    """Probability map float32 ``(H, W)`` of a gray [0, 1] image (one pass, or tiled when a side
    exceeds ``tile_size``; ``None``: never tiled)."""
    from irlib.engine.evaluate import iter_predictions

    h, w = image.shape
    if tile_size is None or max(h, w) <= tile_size:
        return next(iter_predictions(model, [{"image": image, "name": "image"}], normalize, device,
                                     multiple))[1]
    model.to(device).eval()
    x = F.pad(normalize(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]),
              (0, -w % multiple, 0, -h % multiple))
    prob = np.empty((h, w), dtype=np.float32)
    for r0, r1, a0, a1 in tile_windows(x.shape[-2], h, tile_size, tile_overlap):
        for c0, c1, b0, b1 in tile_windows(x.shape[-1], w, tile_size, tile_overlap):
            logits = _logits(model, x[..., r0:r1, c0:c1].to(device))
            core = logits[0, 0, a0 - r0:a1 - r0, b0 - c0:b1 - c0].float()
            prob[a0:a1, b0:b1] = torch.sigmoid(core).cpu().numpy()
    return prob


# ------------------------------------------------------------------------------------ outputs
def detect_targets(prob: np.ndarray, threshold: float) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """``(mask, rows)``: ``prob > threshold`` and one dict per 8-connected component (label order)."""
    from irlib.metrics.components import components
    from irlib.metrics.thresholds import binarize

    mask = binarize(prob, threshold)
    labels, comps = components(mask, connectivity=8)
    peaks = ndi.maximum(prob, labels, index=np.arange(1, comps.n + 1)) if comps.n else []
    rows = [{"target_id": i + 1, "centroid_row": float(c[0]), "centroid_col": float(c[1]),
             "area_px": int(a), "peak_score": float(p)}
            for i, (c, a, p) in enumerate(zip(comps.centroids, comps.area, peaks))]
    return mask, rows


def overlay_rgb(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W, 3)``: the image min-max stretched to gray, each component ringed in red
    (the pixels 8-adjacent to it, so the target pixels themselves stay visible)."""
    from irlib.viz import PRED_COLOR

    g = image.astype(np.float32)
    g = (g - g.min()) / max(float(g.max() - g.min()), 1e-12)
    rgb = np.repeat(np.rint(g * 255).astype(np.uint8)[..., None], 3, axis=2)
    ring = ndi.binary_dilation(mask, structure=np.ones((3, 3), bool)) & ~mask
    rgb[ring] = np.rint(np.asarray(PRED_COLOR) * 255).astype(np.uint8)
    return rgb


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, "centroid_row": f"{r['centroid_row']:.4f}",
                         "centroid_col": f"{r['centroid_col']:.4f}", "peak_score": f"{r['peak_score']:.6f}"})
    atomic_write_bytes(path, text.getvalue().encode())


# ------------------------------------------------------------------------------------ the tool
@dataclass
class PredictSummary:
    """What :func:`predict_images` wrote: the folder, the image names (input order), the input
    file of each name, the CSV rows and the normalisation used (with its source)."""

    out_dir: Path
    names: list[str]
    files: dict[str, Path]
    targets: list[dict[str, Any]] = field(default_factory=list)
    normalize: dict[str, Any] = field(default_factory=dict)

    @property
    def csv(self) -> Path:
        return self.out_dir / "targets.csv"


def _check_options(threshold: float, fmt: str, tile_size: int | None, tile_overlap: int) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0.0 < threshold < 1.0:
        raise IrlibInputError(f"threshold={threshold!r}: a probability threshold must lie strictly inside (0, 1)")
    if fmt not in FORMATS:
        raise IrlibInputError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if tile_size is not None:
        m = PAD_MULTIPLE
        if tile_size % m or tile_overlap % m or tile_overlap < 0 or tile_size - 2 * tile_overlap < m:
            raise IrlibInputError(f"tile size {tile_size} / overlap {tile_overlap}: both must be multiples "
                                  f"of {m}, with tile size - 2 x overlap >= {m}")


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise IrlibInputError(f"output folder {out_dir} is a file")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise IrlibInputError(f"output folder {out_dir} is not empty; choose an empty or new folder, "
                              "or pass --overwrite (overwrite=True) to replace the files this run writes")


def _check_device(device: str | torch.device) -> torch.device:
    from irlib.engine.trainer import resolve_device

    try:
        dev = resolve_device(device)
    except RuntimeError as exc:
        raise IrlibInputError(f"device {device!r}: {exc}; use auto, cpu or cuda") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise IrlibInputError(f"device {device!r}: no CUDA device is visible; use --device cpu or auto")
    return dev


def predict_images(inputs: Inputs, weights: str | os.PathLike | nn.Module, out_dir: str | os.PathLike, *,
                   host: str | None = None, host_kwargs: dict[str, Any] | None = None,
                   normalize: Any = None, threshold: float = 0.5, fmt: str = "png",
                   tile_size: int | None = 1024, tile_overlap: int = 128, device: str | torch.device = "auto",
                   overwrite: bool = False, progress: bool = True) -> PredictSummary:
    """Predict every input image with the host in ``weights``; write into ``out_dir`` (module
    docstring: inputs, normalisation, tiling, outputs). Returns a :class:`PredictSummary`."""
    from tqdm.auto import tqdm

    from irlib.metrics.io import save_predictions

    _check_options(threshold, fmt, tile_size, tile_overlap)
    out_dir = Path(out_dir).expanduser()
    _check_out_dir(out_dir, overwrite)
    dev = _check_device(device)
    files = collect_inputs(inputs)
    model, meta = load_predictor(weights, host, host_kwargs)
    norm, source = resolve_normalize(normalize, meta, weights if not isinstance(weights, nn.Module) else "the model")
    if normalize is not None and meta.get("normalize") is not None:
        _warn_if_overridden(norm, meta["normalize"], weights)
    multiple = math.lcm(PAD_MULTIPLE, int(getattr(model, "pad_multiple", 1)))
    if tile_size is not None and (tile_size % multiple or tile_overlap % multiple):
        raise IrlibInputError(f"this host pads to multiples of {multiple}: tile size and overlap must be too")
    for f in tqdm(files, desc="checking inputs", unit="img", disable=not progress):
        read_image(f)  # raises IrlibInputError naming the file; nothing written yet
    summary = PredictSummary(out_dir, [f.stem for f in files], {f.stem: f for f in files},
                             normalize={**norm.to_dict(), "source": source})

    def stream() -> Iterator[tuple[str, np.ndarray]]:
        for f in tqdm(files, desc="predict", unit="img", disable=not progress):
            image = read_image(f)
            prob = predict_map(model, image, norm, dev, tile_size, tile_overlap, multiple)
            mask, rows = detect_targets(prob, threshold)
            _write_png(out_dir / "mask" / f"{f.stem}.png", mask.astype(np.uint8) * 255)
            _write_png(out_dir / "overlay" / f"{f.stem}.png", overlay_rgb(image, mask))
            summary.targets.extend({"image": f.stem, **r} for r in rows)
            yield f.stem, prob

    params = {"weights": str(weights) if not isinstance(weights, nn.Module) else type(weights).__name__,
              "host": getattr(model, "model_name", type(model).__name__), "host_meta": meta,
              "normalize": summary.normalize, "threshold": threshold, "tile_size": tile_size,
              "tile_overlap": tile_overlap, "pad_multiple": multiple, "device": str(dev),
              "files": {k: str(v) for k, v in summary.files.items()}}
    save_predictions(out_dir / "prob", stream(), fmt=fmt, params=params)
    _write_csv(summary.csv, summary.targets)
    return summary
