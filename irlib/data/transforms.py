"""Joint geometric transforms of an image, its mask and any extra aligned maps, plus the
native-resolution evaluation helpers (pad to a multiple of the network stride, crop back).

Every array is numpy ``(H, W)`` or ``(C, H, W)``; all arrays of one call share ``(H, W)`` and get
the same geometric operation. Random choices come from a ``numpy.random.Generator`` and are drawn
in a fixed order that does not depend on how many arrays are passed, so adding an extra map never
changes how the image is augmented.
"""

from __future__ import annotations

from dataclasses import dataclass
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
                target_index: int = 1, align: int = 1) -> list[np.ndarray]:
    """Crop the same random ``size`` window from every array.

    Arrays smaller than ``size`` are first padded at the bottom/right, array ``i`` with
    ``pad_values[i]`` (default 0 for all). The window is drawn uniformly over the valid offsets.

    ``pos_prob`` is BasicIRSTD's target-biased rule (``utils.random_crop`` at commit b75ecc8): after
    each draw a uniform ``u`` is drawn; the crop is accepted when ``u > pos_prob`` or when
    ``arrays[target_index]`` (the mask) has a positive pixel inside it, otherwise both are drawn
    again. With ``pos_prob=None`` two integers are drawn and nothing else. An image without any
    target pixel accepts its first draw (BasicIRSTD would loop forever), and so does any image after
    :data:`MAX_CROP_DRAWS` draws.

    ``align`` > 1 draws each offset uniformly among the multiples of ``align`` that keep the window
    inside the padded array (see :func:`crop_window`); 1 (default) is the rule above, unchanged.
    """
    return crop_window(arrays, size, rng, pad_values, pos_prob, target_index, align)[0]


def rescale(arrays: Sequence[np.ndarray], factor: float) -> list[np.ndarray]:
    """Resize every array by ``factor``: the image (``arrays[0]``) bilinearly (antialiased when
    shrinking), masks and extra maps by nearest neighbour, so labels stay hard. Sizes round to the
    nearest integer and never go below 1 pixel; a target can vanish when shrunk."""
    import torch
    import torch.nn.functional as F

    h, w = _hw(arrays)
    size = (max(1, int(round(h * factor))), max(1, int(round(w * factor))))
    out = []
    for i, a in enumerate(arrays):
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        t = t[None, None] if t.dim() == 2 else t[None]
        if i == 0:
            r = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=factor < 1)
        else:
            r = F.interpolate(t, size=size, mode="nearest")
        r = r[0, 0] if a.ndim == 2 else r[0]
        out.append(r.numpy().astype(a.dtype, copy=False))
    return out


def crop_window(arrays: Sequence[np.ndarray], size: int | Sequence[int], rng: np.random.Generator,
                pad_values: Sequence[float] | None = None, pos_prob: float | None = None,
                target_index: int = 1, align: int = 1) -> tuple[list[np.ndarray], tuple[int, int]]:
    """:func:`random_crop` that also returns the window's ``(top, left)`` in the padded array.

    ``align`` > 1 (FDEP's frozen-feature cache, :mod:`irlib.fdep.cache`) snaps the crop to a grid:
    ``top = align * k`` with ``k`` uniform in ``0 .. (H_pad - h_crop) // align`` (same for
    ``left``), so a feature map of stride dividing ``align`` computed on the whole image can be cut
    exactly at the crop. This deviates from BasicIRSTD's crops (any pixel offset): the last
    ``(H_pad - h_crop) % align`` offsets are never drawn. The target-biased rule is unchanged.
    """
    if int(align) < 1:
        raise IrlibInputError(f"align must be >= 1, got {align}")
    align = int(align)
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
        if align == 1:
            top = int(rng.integers(0, ph - ch + 1))
            left = int(rng.integers(0, pw - cw + 1))
        else:
            top = align * int(rng.integers(0, (ph - ch) // align + 1))
            left = align * int(rng.integers(0, (pw - cw) // align + 1))
        if target is None or not has_target:
            break
        if rng.random() > pos_prob or target[..., top:top + ch, left:left + cw].any():
            break
    return [a[..., top:top + ch, left:left + cw] for a in padded], (top, left)


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
    return apply_dihedral(arrays, *dihedral_flags(rng, hflip, vflip, transpose_))


def dihedral_flags(rng: np.random.Generator, hflip: bool = True, vflip: bool = True,
                   transpose_: bool = True) -> tuple[bool, bool, bool]:
    """The ``(horizontal, vertical, transpose)`` choices of :func:`random_dihedral` (three uniforms)."""
    u = rng.random(3)
    return bool(hflip and u[0] < 0.5), bool(vflip and u[1] < 0.5), bool(transpose_ and u[2] < 0.5)


def apply_dihedral(arrays: Sequence[np.ndarray], horizontal: bool, vertical: bool,
                   transpose_: bool) -> list[np.ndarray]:
    """Flip left-right, then up-down, then transpose, each when asked (the order of
    :func:`random_dihedral`)."""
    out = flip(arrays, horizontal=horizontal, vertical=vertical)
    if transpose_:
        out = transpose(out)
    return out


@dataclass(frozen=True)
class CropGeometry:
    """Where a training crop came from: its window ``(top, left)`` in the image padded to the crop
    (bottom/right) and the flips applied to it afterwards (in the order of :func:`apply_dihedral`).

    ``variant`` packs the flips into ``0..7``: ``hflip + 2 * vflip + 4 * transpose``.
    """

    top: int
    left: int
    hflip: bool
    vflip: bool
    transpose: bool

    @property
    def variant(self) -> int:
        return int(self.hflip) + 2 * int(self.vflip) + 4 * int(self.transpose)


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
        align: snap crop offsets to multiples of ``align`` (FDEP's frozen-feature cache; a
            deviation from BasicIRSTD's crops, see :func:`crop_window`). ``None`` (default): off.
            Needs a crop size that is a multiple of ``align``.
        scale_range: SimIR's (detectron2's) scale jitter before the crop: ``s`` uniform in the range,
            then the image is resized (aspect kept) to fit in ``s * crop_size`` (``ResizeScale``)
            and cropped/padded to the crop (``FixedSizeCrop``; masks padded with 0, not 255).
            ``None`` (default): no rescaling, no extra random draw.
    """

    def __init__(self, crop_size: int | Sequence[int] | None = 256, hflip: bool = True,
                 vflip: bool = True, transpose: bool = True, image_pad: float = 0.0,
                 pos_prob: float | None = None, align: int | None = None,
                 scale_range: tuple[float, float] | None = None) -> None:
        if scale_range is not None:
            lo, hi = (float(v) for v in scale_range)
            if not 0 < lo <= hi or crop_size is None or align is not None:
                raise IrlibInputError(f"scale_range must be (lo, hi) with 0 < lo <= hi, with a crop size and "
                                      f"without align; got {scale_range}, crop_size={crop_size}, align={align}")
            scale_range = (lo, hi)
        self.scale_range = scale_range
        if pos_prob is not None and not 0.0 <= pos_prob <= 1.0:
            raise IrlibInputError(f"pos_prob must be in [0, 1] or None, got {pos_prob}")
        self.crop_size = crop_size
        self.hflip, self.vflip, self.transpose = hflip, vflip, transpose
        self.image_pad, self.pos_prob = float(image_pad), pos_prob
        self.align = None
        if align is not None:
            self.align = int(align)
            if self.align < 1 or crop_size is None or any(c % self.align for c in _size2(crop_size)):
                raise IrlibInputError(f"align={align} needs a crop size that is a multiple of it, "
                                      f"got crop_size={crop_size}")

    def __call__(self, rng: np.random.Generator, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        return self.with_geometry(rng, *arrays)[0]

    def with_geometry(self, rng: np.random.Generator, *arrays: np.ndarray
                      ) -> tuple[tuple[np.ndarray, ...], CropGeometry]:
        """The augmented arrays (as :meth:`__call__`, same draws) and where the crop came from."""
        out, (top, left) = list(arrays), (0, 0)
        if self.scale_range is not None:
            s = float(rng.uniform(*self.scale_range))
            h, w = _hw(out)
            out = rescale(out, s * min(c / d for c, d in zip(_size2(self.crop_size), (h, w))))
        if self.crop_size is not None:
            pads = [self.image_pad] + [0.0] * (len(out) - 1)
            out, (top, left) = crop_window(out, self.crop_size, rng, pads, self.pos_prob, align=self.align or 1)
        square = out[0].shape[-2] == out[0].shape[-1]
        flags = dihedral_flags(rng, self.hflip, self.vflip, self.transpose and square)
        out = apply_dihedral(out, *flags)
        return tuple(np.ascontiguousarray(a) for a in out), CropGeometry(top, left, *flags)

    def aligned(self, align: int | None) -> "JointAugment":
        """A copy whose crop offsets snap to multiples of ``align`` (``None``: not snapped)."""
        return JointAugment(self.crop_size, self.hflip, self.vflip, self.transpose, self.image_pad,
                            self.pos_prob, align, self.scale_range)

    def __repr__(self) -> str:
        extra = f", align={self.align}" if self.align is not None else ""
        extra += f", scale_range={self.scale_range}" if self.scale_range is not None else ""
        return (f"JointAugment(crop_size={self.crop_size}, hflip={self.hflip}, vflip={self.vflip}, "
                f"transpose={self.transpose}, image_pad={self.image_pad:.6g}, pos_prob={self.pos_prob}{extra})")


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
