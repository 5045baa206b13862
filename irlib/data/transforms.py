"""Joint geometric transforms of an image, its mask and any extra aligned maps, plus the
native-resolution evaluation helpers (pad to a multiple of the network stride, crop back).

Every array is numpy ``(H, W)`` or ``(C, H, W)``; all arrays of one call share ``(H, W)`` and get
the same geometric operation. Random choices come from a ``numpy.random.Generator`` and are drawn
in a fixed order that does not depend on how many arrays are passed, so adding an extra map never
changes how the image is augmented.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from irlib.errors import IrlibInputError


def _hw(arrays: Sequence[np.ndarray]) -> tuple[int, int]:
    if not arrays:
        raise IrlibInputError("transforms need at least one array")
    shapes = {a.shape[-2:] for a in arrays}
    for a in arrays:
        if a.ndim not in (2, 3):
            raise IrlibInputError(f"arrays must be (H, W) or (C, H, W), got shape {a.shape}")
    if len(shapes) != 1:
        raise IrlibInputError(f"aligned maps must share (H, W), got {sorted(shapes)}")
    return tuple(arrays[0].shape[-2:])  # type: ignore[return-value]


def _size2(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def pad_bottom_right(a: np.ndarray, h: int, w: int, value: float = 0.0) -> np.ndarray:
    """Pad the last two axes of ``a`` at the bottom/right with ``value`` up to at least ``(h, w)``."""
    ph, pw = max(h - a.shape[-2], 0), max(w - a.shape[-1], 0)
    if ph == 0 and pw == 0:
        return a
    pad = [(0, 0)] * (a.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(a, pad, mode="constant", constant_values=value)


#: Draws after which the target-biased crop accepts whatever it drew (BasicIRSTD loops forever).
MAX_CROP_DRAWS = 1000


def random_crop(arrays: Sequence[np.ndarray], size: int | Sequence[int], rng: np.random.Generator,
                pad_values: Sequence[float] | None = None, pos_prob: float | None = None,
                target_index: int = 1) -> list[np.ndarray]:
    """Crop the same random ``size`` window from every array.

    Arrays smaller than ``size`` are first padded at the bottom/right, array ``i`` with
    ``pad_values[i]`` (default 0 for all). The window is drawn uniformly over the valid offsets.

    ``pos_prob`` is BasicIRSTD's target-biased rule (``utils.random_crop`` at commit b75ecc8): after
    each draw a uniform ``u`` is drawn; the crop is accepted when ``u > pos_prob`` or when
    ``arrays[target_index]`` (the mask) has a positive pixel inside it, otherwise both are drawn
    again. With ``pos_prob=None`` two integers are drawn and nothing else. An image without any
    target pixel accepts its first draw (BasicIRSTD would loop forever), and so does any image after
    :data:`MAX_CROP_DRAWS` draws.
    """
    h, w = _hw(arrays)
    ch, cw = _size2(size)
    if pad_values is None:
        pad_values = [0.0] * len(arrays)
    if len(pad_values) != len(arrays):
        raise IrlibInputError(f"random_crop: {len(pad_values)} pad values for {len(arrays)} arrays")
    padded = [pad_bottom_right(a, ch, cw, v) for a, v in zip(arrays, pad_values)]
    ph, pw = padded[0].shape[-2:]
    target = padded[target_index] > 0 if pos_prob is not None else None
    has_target = target is not None and bool(target.any())
    for _ in range(MAX_CROP_DRAWS):
        top = int(rng.integers(0, ph - ch + 1))
        left = int(rng.integers(0, pw - cw + 1))
        if target is None or not has_target:
            break
        if rng.random() > pos_prob or target[..., top:top + ch, left:left + cw].any():
            break
    return [a[..., top:top + ch, left:left + cw] for a in padded]


def flip(arrays: Sequence[np.ndarray], horizontal: bool = False, vertical: bool = False
         ) -> list[np.ndarray]:
    """Mirror every array left-right and/or up-down."""
    out = []
    for a in arrays:
        if horizontal:
            a = a[..., :, ::-1]
        if vertical:
            a = a[..., ::-1, :]
        out.append(a)
    return out


def transpose(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Swap rows and columns of every array (channels stay first)."""
    return [np.swapaxes(a, -1, -2) for a in arrays]


def rot90(arrays: Sequence[np.ndarray], k: int = 1) -> list[np.ndarray]:
    """Rotate every array by ``k`` quarter turns counter-clockwise."""
    return [np.rot90(a, k, axes=(-2, -1)) for a in arrays]


def random_dihedral(arrays: Sequence[np.ndarray], rng: np.random.Generator, hflip: bool = True,
                    vflip: bool = True, transpose_: bool = True) -> list[np.ndarray]:
    """Random horizontal flip, vertical flip and transpose (each with probability 1/2).

    Together they reach all 8 flips/rotations of the square. Three uniforms are always drawn.
    """
    u = rng.random(3)
    out = flip(arrays, horizontal=hflip and u[0] < 0.5, vertical=vflip and u[1] < 0.5)
    if transpose_ and u[2] < 0.5:
        out = transpose(out)
    return out


class JointAugment:
    """The training augmentation: random crop to ``crop_size`` then random flips/transpose.

    ``aug(rng, image, mask, *extras)`` returns contiguous arrays in the same order.
    ``crop_size=None`` skips cropping. The transpose is applied to square outputs only, so every
    item keeps the crop's (H, W) and items of a non-square crop size still batch together.

    Args:
        image_pad: value the image is padded with when it is smaller than the crop (raw scale;
            give the normalisation mean to pad with mean gray, as BasicIRSTD and irlib's
            evaluation do). Masks and extra maps are padded with 0.
        pos_prob: BasicIRSTD's target-biased crop (see :func:`random_crop`); ``None`` = uniform.
    """

    def __init__(self, crop_size: int | Sequence[int] | None = 256, hflip: bool = True,
                 vflip: bool = True, transpose: bool = True, image_pad: float = 0.0,
                 pos_prob: float | None = None) -> None:
        if pos_prob is not None and not 0.0 <= pos_prob <= 1.0:
            raise IrlibInputError(f"pos_prob must be in [0, 1] or None, got {pos_prob}")
        self.crop_size = crop_size
        self.hflip, self.vflip, self.transpose = hflip, vflip, transpose
        self.image_pad, self.pos_prob = float(image_pad), pos_prob

    def __call__(self, rng: np.random.Generator, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        out = list(arrays)
        if self.crop_size is not None:
            pads = [self.image_pad] + [0.0] * (len(out) - 1)
            out = random_crop(out, self.crop_size, rng, pads, self.pos_prob)
        square = out[0].shape[-2] == out[0].shape[-1]
        out = random_dihedral(out, rng, self.hflip, self.vflip, self.transpose and square)
        return tuple(np.ascontiguousarray(a) for a in out)

    def __repr__(self) -> str:
        return (f"JointAugment(crop_size={self.crop_size}, hflip={self.hflip}, vflip={self.vflip}, "
                f"transpose={self.transpose}, image_pad={self.image_pad:.6g}, pos_prob={self.pos_prob})")


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def pad_to_multiple(x: Any, multiple: int = 32) -> tuple[Any, tuple[int, int]]:
    """Zero-pad the last two axes at the bottom/right to multiples of ``multiple``.

    Works on numpy arrays and torch tensors of any rank >= 2. Returns ``(padded, (H, W))`` with
    the original size, for :func:`crop_to` after the network.
    """
    if multiple < 1:
        raise IrlibInputError(f"multiple must be >= 1, got {multiple}")
    h, w = int(x.shape[-2]), int(x.shape[-1])
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    if _is_tensor(x):
        import torch.nn.functional as F

        return F.pad(x, (0, pw, 0, ph), mode="constant", value=0.0), (h, w)
    return pad_bottom_right(np.asarray(x), h + ph, w + pw), (h, w)


def crop_to(x: Any, hw: Sequence[int]) -> Any:
    """Top-left ``(H, W)`` window of the last two axes (undoes :func:`pad_to_multiple`)."""
    h, w = int(hw[0]), int(hw[1])
    if x.shape[-2] < h or x.shape[-1] < w:
        raise IrlibInputError(f"cannot crop shape {tuple(x.shape)} to {(h, w)}: it is smaller")
    return x[..., :h, :w]
