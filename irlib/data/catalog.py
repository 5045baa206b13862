"""``open_dataset``: one call for the synthetic default data, the named real datasets, or a path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from irlib.data.reader import SirstDataset
from irlib.data.synthetic import SyntheticSirst
from irlib.errors import IrlibInputError
from irlib.paths import data_root

#: Images per split of ``open_dataset("synthetic", split)`` unless ``num_images=`` is given.
SYNTHETIC_SPLITS = {"train": 512, "test": 128}
#: Index offset of each synthetic split: train and test never share an image for one seed.
SYNTHETIC_OFFSETS = {"train": 0, "test": 1_000_000}
#: Real datasets known by name, looked up under ``irlib.paths.data_root(root)``.
KNOWN_DATASETS = ("NUAA-SIRST", "NUDT-SIRST")
#: BasicIRSTD's fixed per-dataset normalisation constants (``utils.get_img_norm_cfg``), on the
#: 0-255 gray scale: the average over train + test images of each image's mean and std.
REFERENCE_NORMALIZATION: dict[str, tuple[float, float]] = {
    "NUAA-SIRST": (101.06385040283203, 34.619606018066406),
    "NUDT-SIRST": (107.80905151367188, 33.02274703979492),
    "IRSTD-1K": (87.4661865234375, 39.71953201293945),
}


def reference_normalization(name: str) -> tuple[float, float]:
    """BasicIRSTD's ``(mean, std)`` of dataset ``name`` on irlib's [0, 1] gray scale (``/ 255``)."""
    for key, (mean, std) in REFERENCE_NORMALIZATION.items():
        if key.lower() == str(name).lower():
            return mean / 255.0, std / 255.0
    raise IrlibInputError(f"no reference normalisation constants for dataset {name!r} (known: "
                          f"{sorted(REFERENCE_NORMALIZATION)}); use normalization='measured'")


def open_dataset(name: str | os.PathLike, split: str = "test",
                 root: str | os.PathLike | None = None, **kw: Any) -> SirstDataset | SyntheticSirst:
    """Open a dataset by name.

    * ``"synthetic"``: :class:`SyntheticSirst`; ``split="train"`` is 512 images (image indices
      0..), ``split="test"`` 128 images (indices from 1,000,000), both 256x256 with ``seed=0``;
      ``num_images``, ``size``, ``seed`` and generator parameters go through ``kw``.
    * ``"NUAA-SIRST"``, ``"NUDT-SIRST"`` (any case), or any folder name under the data root:
      :class:`SirstDataset` of ``data_root(root) / name``; ``root`` may also be the dataset
      folder itself. ``kw`` goes to :class:`SirstDataset` (``layout``, ``cache``).
    * a path to a dataset folder: :class:`SirstDataset` of it.
    """
    text = str(name)
    if text.lower() == "synthetic":
        if split not in SYNTHETIC_SPLITS:
            raise IrlibInputError(f"synthetic data has splits {sorted(SYNTHETIC_SPLITS)}, "
                                  f"not {split!r}")
        kw.setdefault("num_images", SYNTHETIC_SPLITS[split])
        kw.setdefault("offset", SYNTHETIC_OFFSETS[split])
        return SyntheticSirst(**kw)
    folder = _find_named(text, root)
    if folder is None:
        path = Path(text).expanduser()
        if path.is_dir():
            folder = path
    if folder is None:
        base = data_root(root)
        where = f"under {base}" if base is not None else \
            "(no data root: pass root= or set IRLIB_DATA)"
        raise IrlibInputError(f"dataset {text!r} not found {where}; use 'synthetic', one of "
                              f"{list(KNOWN_DATASETS)} under the data root, or a dataset folder "
                              f"path (see data/README.md)")
    return SirstDataset(folder, split=split, **kw)


def _find_named(name: str, root: str | os.PathLike | None) -> Path | None:
    if os.sep in name or "/" in name:
        return None
    base = data_root(root)
    if base is None or not base.is_dir():
        return None
    if base.name.lower() == name.lower() and (base / "images").is_dir():
        return base
    for child in base.iterdir():
        if child.is_dir() and child.name.lower() == name.lower():
            return child
    return None


def available_datasets(root: str | os.PathLike | None = None) -> list[str]:
    """Names of the known real datasets present under the data root (may be empty)."""
    return [n for n in KNOWN_DATASETS if _find_named(n, root) is not None]


def split_sizes(name: str | os.PathLike, root: str | os.PathLike | None = None) -> dict[str, int]:
    """Images per split of a dataset: the synthetic defaults, or :func:`list_splits` of a folder."""
    from irlib.data.layouts import list_splits

    if str(name).lower() == "synthetic":
        return dict(SYNTHETIC_SPLITS)
    folder = _find_named(str(name), root)
    if folder is None:
        folder = Path(str(name)).expanduser()
    if not folder.is_dir():
        raise IrlibInputError(f"dataset {str(name)!r} not found; see open_dataset()")
    return list_splits(folder)
