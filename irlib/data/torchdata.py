"""``SirstTorchDataset``: any irlib dataset as a torch ``Dataset`` of dicts, seeded augmentation.

Train mode: random crop to ``crop_size`` plus random flips/transpose
(:class:`irlib.data.transforms.JointAugment`; the default pads images smaller than the crop with 0;
the experiment layer passes the recipe's padding value and target-biased crop rule). The random draws for item ``i``
come from ``numpy.random.default_rng([seed, epoch, i])``, so an epoch's batches are the same for
any number of DataLoader workers; call :meth:`SirstTorchDataset.set_epoch` before each epoch
(with ``persistent_workers=True`` the workers keep the epoch they were started with, so do not
combine the two). Eval mode returns the native image unchanged; batch it with batch size 1
(sizes differ) or pad with :func:`irlib.data.transforms.pad_to_multiple`.

With an aligned augmentation (``JointAugment(..., align=s)``, off by default) training items also
say where their crop came from, for FDEP's frozen-feature cache (:mod:`irlib.fdep.cache`):
``"index"`` (this dataset's index), ``"variant"`` (flips, ``0..7``, see
:class:`irlib.data.transforms.CropGeometry`) and ``"offset"`` (``(top, left)`` of the crop in the
image padded to the crop, int64). Without alignment the items are exactly as before.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from irlib.data.sample import Sample
from irlib.data.transforms import JointAugment

ExtraMaps = Callable[[Sample], dict[str, np.ndarray]]


class SirstTorchDataset(Dataset):
    """Items ``{"image": (1,H,W) float raw [0,1], "mask": (1,H,W) float {0,1}, "name": str}``.

    ``extra_maps(sample) -> {key: (H,W) or (C,H,W) array}`` adds aligned maps (point labels,
    priors), augmented together with image and mask and returned as float tensors under their
    keys (``(H, W)`` maps gain a channel axis). Training items of an aligned augmentation also
    carry ``"index"``, ``"variant"`` and ``"offset"`` (see the module docstring).
    """

    def __init__(self, base: Sequence[Sample], train: bool, crop_size: int | Sequence[int] = 256,
                 seed: int = 0, augment: JointAugment | None = None,
                 extra_maps: ExtraMaps | None = None) -> None:
        self.base = base
        self.train = bool(train)
        self.crop_size = crop_size
        self.seed = int(seed)
        self.epoch = 0
        self.augment = augment if augment is not None else JointAugment(crop_size)
        self.extra_maps = extra_maps

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose augmentation draws ``__getitem__`` makes."""
        self.epoch = int(epoch)

    def with_seed(self, seed: int) -> "SirstTorchDataset":
        """The same dataset whose augmentation draws come from ``seed`` (a run's seed)."""
        out = copy.copy(self)
        out.seed, out.epoch = int(seed), 0
        return out

    def with_augment(self, augment: JointAugment) -> "SirstTorchDataset":
        """The same dataset (seed, epoch, images) with another training augmentation."""
        out = copy.copy(self)
        out.augment = augment
        return out

    def rng_for(self, index: int) -> np.random.Generator:
        """The generator that drives the augmentation of ``index`` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.base[index]
        extras = self.extra_maps(sample) if self.extra_maps is not None else {}
        keys = list(extras)
        arrays = [sample.image, sample.mask, *(np.asarray(extras[k]) for k in keys)]
        geometry = None
        if self.train and getattr(self.augment, "align", None) is not None:
            out, geometry = self.augment.with_geometry(self.rng_for(index), *arrays)
            arrays = list(out)
        elif self.train:
            arrays = list(self.augment(self.rng_for(index), *arrays))
        item: dict[str, Any] = {"image": _chw(arrays[0]), "mask": _chw(arrays[1]),
                                "name": sample.name}
        for k, a in zip(keys, arrays[2:]):
            item[k] = _chw(a)
        if geometry is not None:
            item["index"] = int(index)
            item["variant"] = geometry.variant
            item["offset"] = torch.tensor([geometry.top, geometry.left], dtype=torch.int64)
        return item

    def __repr__(self) -> str:
        mode = f"train, crop {self.crop_size}, seed {self.seed}" if self.train else "eval"
        return f"SirstTorchDataset({getattr(self.base, 'name', '?')}, {len(self)} items, {mode})"


def _chw(a: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    return t.unsqueeze(0) if t.ndim == 2 else t
