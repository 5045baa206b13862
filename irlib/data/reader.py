"""``SirstDataset``: a real SIRST dataset on disk, in any of the three layouts, read lazily."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from irlib.data.io import IMAGE_EXTENSIONS, read_image, read_mask
from irlib.data.layouts import (DatasetFolder, index_folder, natural_key, read_split_file,
                                resolve_folder, split_stem)
from irlib.data.sample import Sample
from irlib.errors import IrlibInputError


class MaskResizedWarning(UserWarning):
    """A mask was resized to its image because ``on_size_mismatch="resize_mask"`` was asked."""


def resize_mask_nearest(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask to ``shape`` (pixel centres mapped onto pixel
    centres, as ``PIL.Image.resize(..., NEAREST)``)."""
    h, w = mask.shape
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * h / shape[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * w / shape[1]).astype(np.int64), w - 1)
    return mask[rows[:, None], cols[None, :]]


class SirstDataset:
    """Images and masks of one split of a dataset folder, decoded on access.

    ``root`` is the dataset folder (or, for BasicIRSTD, its parent holding one dataset);
    ``layout`` is ``None`` (detected), ``"nuaa"``, ``"dnanet"`` or ``"basicirstd"``; ``split``
    is ``"train"``/``"test"``/``"val"``/``"trainval"`` of that layout, ``"<folder>/<split>"``
    (e.g. ``"idx_427/test"``), ``"all"``, or a split-file path. The rules for layouts, splits,
    image conversion and mask binarisation are in :mod:`irlib.data.layouts` and
    :mod:`irlib.data.io` and in ``docs/data.md``.

    The split listing is checked when the dataset is built (every name has exactly one image and
    one mask file, no name twice); files are decoded on ``ds[i]``, which also checks that the
    mask is binary and has the image's size. ``cache=True`` keeps decoded samples in memory.

    ``on_size_mismatch`` says what a mask whose size differs from its image does: ``"raise"``
    (default) raises :class:`IrlibInputError`; ``"resize_mask"`` resizes that mask to the image
    with nearest-neighbour sampling and warns (:class:`MaskResizedWarning`, once per file). The
    real NUAA-SIRST needs it for ``Misc_111`` (image 325x220, mask 592x400: the image was
    downscaled after annotation); see ``docs/data.md``.
    """

    def __init__(self, root: str | os.PathLike, split: str = "test", layout: str | None = None,
                 cache: bool = False, on_size_mismatch: str = "raise") -> None:
        if on_size_mismatch not in ("raise", "resize_mask"):
            raise IrlibInputError(f"on_size_mismatch must be 'raise' or 'resize_mask', got "
                                  f"{on_size_mismatch!r}")
        self.on_size_mismatch = on_size_mismatch
        self._warned: set[int] = set()
        self.folder: DatasetFolder = resolve_folder(root, layout)
        self.root: Path = self.folder.root
        self.layout: str | None = self.folder.layout
        self.split: str = split
        self.split_file: Path | None = self.folder.split_file(split)
        self.cache = cache
        self._cache: dict[int, Sample] = {}
        self._images: list[Path] = []
        self._masks: list[Path] = []
        self.names: list[str] = []
        self._build_index()

    @property
    def name(self) -> str:
        """Dataset name: the dataset folder's name (e.g. ``"NUAA-SIRST"``)."""
        return self.folder.name

    def _build_index(self) -> None:
        image_index = index_folder(self.folder.image_dir)
        mask_index = index_folder(self.folder.mask_dir)
        if self.split_file is None:
            entries = [(0, s) for s in sorted(image_index, key=natural_key)]
            if not entries:
                raise IrlibInputError(f"{self.folder.image_dir} holds no image "
                                      f"({'/'.join(IMAGE_EXTENSIONS)}); put the images there")
        else:
            entries = read_split_file(self.split_file)
        seen: dict[str, int] = {}
        for line, raw in entries:
            stem, ext = split_stem(raw)
            where = f"split file {self.split_file} line {line}" if line else "images/"
            if stem in seen:
                raise IrlibInputError(f"{where} names {raw!r} again (first on line "
                                      f"{seen[stem]}); remove the duplicate line")
            seen[stem] = line
            self._images.append(self._find(image_index, self.folder.image_dir, stem, ext, where,
                                           "image"))
            mask_stem = stem + self.folder.mask_suffix
            self._masks.append(self._find(mask_index, self.folder.mask_dir, mask_stem, None,
                                          f"image {self._images[-1]}", "mask"))
            self.names.append(stem)

    @staticmethod
    def _find(index: dict[str, list[str]], folder: Path, stem: str, ext: str | None, where: str,
              what: str) -> Path:
        files = index.get(stem, [])
        if ext is not None:
            files = [f for f in files if f == stem + ext]
        if not files:
            wanted = stem + (ext or ".png")
            if what == "image":
                raise IrlibInputError(f"{where} names the unknown image {stem + (ext or '')!r}: "
                                      f"there is no {folder / wanted}; fix the split file or "
                                      f"add the image")
            raise IrlibInputError(f"mask file {folder / wanted} for {where} is missing; add the "
                                  f"mask or remove the image from the split")
        if len(files) > 1:
            raise IrlibInputError(f"{what} {stem!r} for {where} is ambiguous: {folder} holds "
                                  f"{', '.join(sorted(files))}; keep only one of them")
        return folder / files[0]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Sample:
        i = self._check_index(index)
        if i in self._cache:
            return self._cache[i]
        sample = self._load(i)
        if self.cache:
            self._cache[i] = sample
        return sample

    def _check_index(self, index: int) -> int:
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"dataset index must be an integer, got {type(index).__name__}")
        i = int(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        return i

    def _load(self, i: int) -> Sample:
        image = read_image(self._images[i])
        mask = read_mask(self._masks[i])
        if mask.shape != image.shape:
            (mh, mw), (ih, iw) = mask.shape, image.shape

            def what(show: Callable[[Path], str] = str) -> str:
                return (f"mask file {show(self._masks[i])} is {mw}x{mh} (WxH) but its "
                        f"image {show(self._images[i])} is {iw}x{ih}")

            if self.on_size_mismatch == "raise":
                raise IrlibInputError(f"{what()}; fix or replace the mask, or pass "
                                      f"on_size_mismatch='resize_mask' to resize it to the image "
                                      f"(nearest neighbour) with a warning")
            mask = resize_mask_nearest(mask, image.shape)
            if i not in self._warned:
                self._warned.add(i)
                # the warning names files relative to the dataset's parent: no machine-specific paths
                warnings.warn(f"{what(self._shown)}; resized the mask to the image (nearest neighbour) as "
                              f"on_size_mismatch='resize_mask' asks", MaskResizedWarning,
                              stacklevel=3)
        return Sample(self.names[i], image, mask)

    def _shown(self, path: str | os.PathLike) -> str:
        """``path`` relative to the folder above the dataset (e.g. ``NUAA-SIRST/masks/x.png``)."""
        try:
            return str(Path(path).relative_to(self.root.parent))
        except ValueError:
            return str(path)

    def image_path(self, index: int) -> Path:
        """File of image ``index``."""
        return self._images[self._check_index(index)]

    def mask_path(self, index: int) -> Path:
        """File of the mask of image ``index``."""
        return self._masks[self._check_index(index)]

    def index_of(self, name: str) -> int:
        """Position of the image called ``name`` (stem, without extension)."""
        try:
            return self.names.index(split_stem(name)[0])
        except ValueError:
            raise IrlibInputError(f"{name!r} is not in split {self.split!r} of {self.root}") \
                from None

    def validate(self) -> None:
        """Decode every sample once, raising the first problem found (slow on big datasets)."""
        for i in range(len(self)):
            self._load(i)

    def __repr__(self) -> str:
        return (f"SirstDataset({self.name!r}, split={self.split!r}, layout={self.layout!r}, "
                f"images={len(self)})")
