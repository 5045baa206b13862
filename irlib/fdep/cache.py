"""Frozen-feature caching for CO-ISD: the frozen encoder's maps of each whole training image.

The frozen encoder (VFM) never trains, so its features for a training image depend only on the
image and the flips applied to it. :class:`FrozenFeatures` computes them once per (image, flip
variant) on the whole image and cuts each training crop's window out of them, so a cached
CO-ISD step costs the host step plus SAMF and one extra decoder pass.

Semantics (differs from the default per-crop path, where the encoder runs on the crop):

* the encoder sees the **canvas**: the image padded bottom/right with the augmentation's pad value
  to ``max(H, crop)`` rounded up to a multiple of ``align`` (same for W), then flipped as the crop
  was (:func:`variant_array`; the features are computed on the flipped canvas, not flipped
  afterwards, so no equivariance is assumed). Its maps cover the crop's surroundings, so their
  receptive fields see real neighbouring pixels instead of the crop border's padding;
* the crop must be aligned (``JointAugment(..., align=s)``, ``s`` a multiple of every used stride
  and of the encoder's input multiple, see :func:`required_align`) so the window is cut exactly.

With ``store=None`` the same maps are computed on the fly every step (the uncached reference with
the same semantics); with a :class:`~irlib.fdep.store.MemoryStore` or
:class:`~irlib.fdep.store.DiskStore` they are computed once. ``dtype=torch.float16`` halves the
memory: each value is rounded to the nearest float16 (11 significant bits, relative error at most
2**-11 ~ 4.9e-4 in the normal range; magnitudes below ~6e-5 lose precision, below ~6e-8 become 0;
a value beyond 65504 would overflow and is refused) and returned as float32.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import torch

from irlib.data.torchdata import SirstTorchDataset
from irlib.data.transforms import apply_dihedral, pad_bottom_right
from irlib.errors import IrlibInputError
from irlib.fdep.store import DiskStore, MemoryStore
from irlib.vfm import FrozenEncoder

if TYPE_CHECKING:
    from irlib.fdep.coisd import CoISD

Store = MemoryStore | DiskStore


def required_align(encoder: FrozenEncoder, layers: Sequence[int]) -> int:
    """Smallest crop grid that cuts every used map exactly: lcm of the input multiple and strides."""
    return math.lcm(int(encoder.multiple), *(int(encoder.strides[i]) for i in layers))


def canvas_shape(hw: Sequence[int], crop: Sequence[int], align: int) -> tuple[int, int]:
    """``(H, W)`` of the canvas of an image: each side ``max(side, crop)`` rounded up to ``align``."""
    return tuple(math.ceil(max(int(s), int(c)) / align) * align for s, c in zip(hw, crop))  # type: ignore


def split_variant(variant: int) -> tuple[bool, bool, bool]:
    """``(hflip, vflip, transpose)`` of a variant code (see :class:`irlib.data.transforms.CropGeometry`)."""
    return bool(variant & 1), bool(variant & 2), bool(variant & 4)


def variant_array(a: np.ndarray, variant: int) -> np.ndarray:
    """``a`` flipped as the crops of ``variant`` are (left-right, up-down, then transposed)."""
    return np.ascontiguousarray(apply_dihedral([a], *split_variant(variant))[0])


def variant_window(offset: Sequence[int], crop: Sequence[int], canvas: Sequence[int],
                   variant: int) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` in the flipped canvas of the crop taken at ``offset`` in the canvas."""
    (top, left), (ch, cw), (ph, pw) = offset, crop, canvas
    hflip, vflip, trans = split_variant(variant)
    left = pw - left - cw if hflip else left
    top = ph - top - ch if vflip else top
    return (int(left), int(top), int(cw), int(ch)) if trans else (int(top), int(left), int(ch), int(cw))


def estimate_bytes(shapes: Iterable[Sequence[int]], encoder: FrozenEncoder, layers: Sequence[int],
                   crop: Sequence[int], align: int, variants: int = 8, itemsize: int = 4) -> int:
    """Bytes to cache every image of ``shapes`` (``(H, W)`` each) in ``variants`` flip variants."""
    per_px = sum(encoder.feature_channels[i] / encoder.strides[i] ** 2 for i in layers)
    pixels = sum(math.prod(canvas_shape(hw, crop, align)) for hw in shapes)
    return int(round(pixels * per_px)) * variants * itemsize


class FrozenFeatures:
    """The frozen encoder's maps for each crop of a batch, cut from whole-canvas maps.

    Args:
        encoder: the frozen encoder (``CoISD.encoder``; follows the model to its device).
        layers: indices of the maps that feed SAMF 1..N (``CoISD.vfm_layers``).
        dataset: the training set; its augmentation must be aligned to :func:`required_align`.
        store: ``None`` computes the maps every step; a store keeps them (see module docstring).
        dtype: storage type (``torch.float32`` or ``torch.float16``); outputs are float32.
    """

    def __init__(self, encoder: FrozenEncoder, layers: Sequence[int], dataset: SirstTorchDataset,
                 store: Store | None = None, dtype: torch.dtype = torch.float32) -> None:
        aug = dataset.augment
        align, need = getattr(aug, "align", None), required_align(encoder, layers)
        if align is None or align % need:
            raise IrlibInputError(f"frozen-feature caching needs crops aligned to a multiple of {need} "
                                  f"(the encoder's input multiple and strides); the training set's "
                                  f"augmentation has align={align}: use JointAugment(..., align={need})")
        if encoder.resize != "pad":
            raise IrlibInputError(f"frozen-feature caching needs the encoder's resize='pad' (native "
                                  f"resolution, so whole-image maps can be cut); got {encoder.resize!r}")
        if dtype not in (torch.float32, torch.float16):
            raise IrlibInputError(f"dtype must be torch.float32 or torch.float16, got {dtype}")
        self.encoder, self.layers, self.dataset = encoder, [int(i) for i in layers], dataset
        self.store, self.dtype, self.align = store, dtype, int(align)
        crop = aug.crop_size
        self.crop = (int(crop), int(crop)) if isinstance(crop, (int, np.integer)) else tuple(int(c) for c in crop)
        self.pad = float(aug.image_pad)
        self.stats = {"hits": 0, "misses": 0, "refused": 0}

    @classmethod
    def for_model(cls, model: "CoISD", dataset: SirstTorchDataset, store: Store | None = None,
                  dtype: torch.dtype = torch.float32) -> "FrozenFeatures":
        """The features a :class:`~irlib.fdep.coisd.CoISD` model's SAMF modules take."""
        return cls(model.encoder, model.vfm_layers, dataset, store, dtype)

    @property
    def strides(self) -> list[int]:
        return [int(self.encoder.strides[i]) for i in self.layers]

    def canvas(self, index: int, variant: int) -> np.ndarray:
        """The ``(H, W)`` image the encoder sees for ``index`` in ``variant``."""
        image = np.asarray(self.dataset.base[index].image, dtype=np.float32)
        ph, pw = canvas_shape(image.shape[-2:], self.crop, self.align)
        return variant_array(pad_bottom_right(image, ph, pw, self.pad), variant)

    def compute(self, index: int, variant: int) -> list[torch.Tensor]:
        """Whole-canvas maps ``(C, H/s, W/s)`` of the used layers, on the encoder's device, float32."""
        canvas = self.canvas(index, variant)
        x = torch.from_numpy(canvas)[None, None].to(self.encoder.pixel_mean.device)
        maps = self.encoder(x).features
        out = [maps[i][0] for i in self.layers]
        for m, s in zip(out, self.strides):
            if tuple(m.shape[-2:]) != (canvas.shape[0] // s, canvas.shape[1] // s):
                raise IrlibInputError(f"encoder map of shape {tuple(m.shape)} does not tile the "
                                      f"{canvas.shape} canvas at stride {s}")
        return out

    def whole(self, index: int, name: str, variant: int) -> list[torch.Tensor]:
        """The maps of ``(index, variant)``: from the store when there, else computed (and stored)."""
        if self.store is None:
            return self.compute(index, variant)
        key = (name, int(variant))
        maps = self.store.get(key)
        if maps is not None:
            self.stats["hits"] += 1
            return maps
        self.stats["misses"] += 1
        maps = [m.to("cpu", self.dtype) for m in self.compute(index, variant)]
        if self.dtype == torch.float16 and not all(bool(torch.isfinite(m).all()) for m in maps):
            raise IrlibInputError("frozen features overflow float16 (|value| > 65504); cache them as float32")
        if not self.store.put(key, maps):
            self.stats["refused"] += 1
        return maps

    def __call__(self, batch: dict[str, Any]) -> list[torch.Tensor]:
        """One ``(B, C, crop_h/s, crop_w/s)`` float32 tensor per used layer, on the encoder's device."""
        missing = [k for k in ("index", "variant", "offset", "name") if k not in batch]
        if missing:
            raise IrlibInputError(f"the batch lacks {missing}: load the training set with an aligned "
                                  f"augmentation (JointAugment(..., align=...))")
        if not self.layers:  # no SAMF module reads the encoder (num_samf=0)
            return []
        index, variant = torch.as_tensor(batch["index"]).tolist(), torch.as_tensor(batch["variant"]).tolist()
        offset, names = torch.as_tensor(batch["offset"]).tolist(), batch["name"]
        per_item = []
        for i, v, off, name in zip(index, variant, offset, names):
            maps = self.whole(i, name, v)
            ph, pw = maps[0].shape[-2] * self.strides[0], maps[0].shape[-1] * self.strides[0]
            canvas = (pw, ph) if v & 4 else (ph, pw)  # the unflipped canvas
            top, left, h, w = variant_window(off, self.crop, canvas, v)
            per_item.append([m[:, top // s:(top + h) // s, left // s:(left + w) // s]
                             for m, s in zip(maps, self.strides)])
        device = self.encoder.pixel_mean.device
        return [torch.stack(cut).to(device, torch.float32) for cut in zip(*per_item)]

    def summary(self) -> dict[str, Any]:
        """Hit/miss counts and, for a memory store, entries and bytes held."""
        out: dict[str, Any] = dict(self.stats)
        if isinstance(self.store, MemoryStore):
            out.update(entries=len(self.store), bytes=self.store.bytes)
        return out
