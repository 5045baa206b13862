"""Decoding image and mask files into irlib's arrays, with one documented conversion rule.

Conversion of any PIL mode to one float32 channel in [0, 1] (``read_image``):

==================  ==========================================================================
PIL mode            rule
==================  ==========================================================================
``1``               bilevel: set pixels 1.0, others 0.0
``L``               value / 255
``LA``, ``La``      the L channel / 255 (alpha ignored)
``RGB``, ``RGBA``,  ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` computed in float, / 255;
``RGBX``, ``RGBa``  alpha ignored; when R == G == B everywhere the common channel is used exactly
``P``, ``PA``       palette expanded to RGB (``Image.convert("RGB")``), then the RGB rule;
                    palette transparency ignored
``I;16`` (L/B/N)    16-bit: value / 65535
``I``               32-bit integer container (how older Pillow opens 16-bit PNGs): value / 65535;
                    values outside [0, 65535] raise
``F``               float: used as is; values outside [0, 1] raise
anything else       ``Image.convert("RGB")`` (CMYK, YCbCr, LAB, HSV), then the RGB rule
==================  ==========================================================================

The float luma differs from PIL's integer ``convert("L")`` by less than 0.5/255. 48-bit RGB PNGs
are opened by Pillow as 8-bit RGB and follow the RGB rule.

Masks (``read_mask``) are converted to one channel by the same rule *before scaling* and
binarised as ``value > 0``. A mask must be two-valued, ``{0, v}`` for a single v > 0 (e.g.
{0, 255} or {0, 1}); any other mask (anti-aliased edges, JPEG artefacts, label maps with several
ids) raises :class:`~irlib.errors.IrlibInputError` instead of being re-binarised silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from irlib.errors import IrlibInputError

IMAGE_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
_LUMA = (0.299, 0.587, 0.114)


def _open(path: Path, what: str) -> Image.Image:
    """Open and fully decode ``path`` or raise one IrlibInputError naming it."""
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise IrlibInputError(f"{what} file {path} is missing; restore it, or remove its name "
                              f"from the split file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise IrlibInputError(f"{what} file {path} cannot be decoded ({type(exc).__name__}: "
                              f"{exc}); it is truncated or not an image: re-download or "
                              f"re-export it") from None
    return img


def _rgb_luma(arr: np.ndarray) -> np.ndarray:
    r, g, b = arr[..., 0], arr[..., 1], arr[..., 2]
    if np.array_equal(r, g) and np.array_equal(g, b):
        return r.astype(np.float64)
    return _LUMA[0] * r.astype(np.float64) + _LUMA[1] * g + _LUMA[2] * b


def gray_levels(img: Image.Image, path: str | os.PathLike = "<image>") -> tuple[np.ndarray, float]:
    """One-channel array in the file's own units and the full-scale value that maps it to 1.

    Follows the module's conversion table; ``path`` only names the file in errors.
    """
    mode = img.mode
    if mode == "1":
        return np.asarray(img, dtype=np.uint8), 1.0
    if mode == "L":
        return np.asarray(img), 255.0
    if mode in ("LA", "La"):
        return np.asarray(img)[..., 0], 255.0
    if mode in ("RGB", "RGBA", "RGBX", "RGBa"):
        return _rgb_luma(np.asarray(img)), 255.0
    if mode.startswith("I;16"):
        return np.asarray(img).astype(np.uint16), 65535.0
    if mode == "I":
        arr = np.asarray(img)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise IrlibInputError(f"{path}: 32-bit integer image with values outside [0, 65535]; "
                                  f"irlib reads integer images as 16-bit: convert it to 8- or "
                                  f"16-bit PNG")
        return arr, 65535.0
    if mode == "F":
        arr = np.asarray(img)
        if arr.size and (not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1):
            raise IrlibInputError(f"{path}: float image with values outside [0, 1]; rescale it "
                                  f"to [0, 1] or save it as 8- or 16-bit PNG")
        return arr, 1.0
    return _rgb_luma(np.asarray(img.convert("RGB"))), 255.0


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file into float32 ``(H, W)`` in [0, 1] (rule in the module docstring)."""
    path = Path(path)
    levels, scale = gray_levels(_open(path, "image"), path)
    return (levels / scale).astype(np.float32)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Decode a mask file into bool ``(H, W)``: one channel, then ``> 0``; must be ``{0, v}``."""
    path = Path(path)
    levels, _ = gray_levels(_open(path, "mask"), path)
    mask = levels > 0
    values = levels[mask]
    if values.size and values.min() != values.max():
        n = len(np.unique(levels))
        raise IrlibInputError(f"mask file {path} is not binary: it has {n} gray levels "
                              f"(expected 0 and one foreground value such as 255); irlib does "
                              f"not re-binarise masks: threshold it yourself and save it as a "
                              f"{{0, 255}} PNG")
    return mask
