"""Dataset statistics measured from the pixels: normalisation constants and target properties.

Definitions (also in ``docs/data.md``):

* ``gray_mean``/``gray_std``: mean and standard deviation over all pixels of all images, pooled
  (pixel-weighted), of the ``raw`` [0, 1] images.
* ``image_mean_avg``/``image_std_avg``: the average over images of each image's own mean and
  std, the convention of BasicIRSTD's ``img_norm_cfg`` (times 255 it reproduces its NUDT-SIRST
  constants 107.81 / 33.02); the host networks' normalisation constants
  (``irlib.engine.Normalize.from_stats``).
* a target is an 8-connected component of the mask; its ``area`` is its pixel count.
* ``contrast`` (local contrast of a target): ``(mean_t - mean_r) / max(std_r, 1/255)`` where
  ``mean_t`` is the mean intensity of the target's pixels and ``mean_r``/``std_r`` are the mean
  and standard deviation of its ring: the pixels at chessboard distance ``gap+1 .. gap+width``
  (default 3..8 px) from the target, minus any target pixel, clipped to the image. ``delta`` is
  the unnormalised ``mean_t - mean_r``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import ndimage

from irlib.data.components import component_slices, label_targets

HIST_BINS = 256


@dataclass
class DatasetStats:
    """Everything :func:`dataset_stats` measured; per-target arrays are aligned with each other."""

    name: str
    image_names: list[str]
    image_sizes: np.ndarray  # (N, 2) int: (H, W)
    gray_mean: float
    gray_std: float
    gray_hist: np.ndarray  # (256,) pixel counts over [0, 1]
    image_means: np.ndarray  # (N,) each image's mean
    image_stds: np.ndarray  # (N,) each image's std
    targets_per_image: np.ndarray  # (N,) int
    target_image: np.ndarray  # (T,) int index into image_names
    target_area: np.ndarray  # (T,) int pixels
    target_contrast: np.ndarray  # (T,) float, see module docstring
    target_delta: np.ndarray  # (T,) float
    ring: tuple[int, int] = (2, 6)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_images(self) -> int:
        return len(self.image_names)

    @property
    def num_targets(self) -> int:
        return int(self.target_area.size)

    @property
    def image_mean_avg(self) -> float:
        return float(self.image_means.mean()) if self.num_images else float("nan")

    @property
    def image_std_avg(self) -> float:
        return float(self.image_stds.mean()) if self.num_images else float("nan")

    def summary(self) -> dict[str, Any]:
        """Flat dict of headline numbers (JSON- and table-friendly)."""
        sizes = Counter(map(tuple, self.image_sizes.tolist()))
        (common_hw, common_n) = sizes.most_common(1)[0] if sizes else ((0, 0), 0)
        area = self.target_area
        con = self.target_contrast

        def q(a: np.ndarray, f: Any) -> float | None:
            return float(f(a)) if a.size else None

        return {
            "dataset": self.name,
            "images": self.num_images,
            "targets": self.num_targets,
            "images_without_targets": int((self.targets_per_image == 0).sum()),
            "targets_per_image_mean": q(self.targets_per_image, np.mean),
            "targets_per_image_max": q(self.targets_per_image, np.max),
            "gray_mean": self.gray_mean,
            "gray_std": self.gray_std,
            "image_mean_avg": self.image_mean_avg,
            "image_std_avg": self.image_std_avg,
            "distinct_sizes": len(sizes),
            "most_common_size_hw": f"{common_hw[0]}x{common_hw[1]}",
            "most_common_size_count": common_n,
            "min_height": int(self.image_sizes[:, 0].min()) if self.num_images else None,
            "max_height": int(self.image_sizes[:, 0].max()) if self.num_images else None,
            "min_width": int(self.image_sizes[:, 1].min()) if self.num_images else None,
            "max_width": int(self.image_sizes[:, 1].max()) if self.num_images else None,
            "area_min": q(area, np.min),
            "area_median": q(area, np.median),
            "area_mean": q(area, np.mean),
            "area_max": q(area, np.max),
            "contrast_median": q(con, np.median),
            "contrast_p10": q(con, lambda a: np.percentile(a, 10)),
            "contrast_p90": q(con, lambda a: np.percentile(a, 90)),
        }

    def targets_frame(self):
        """Per-target table (pandas DataFrame): image, area, contrast, delta."""
        import pandas as pd

        return pd.DataFrame({"image": [self.image_names[i] for i in self.target_image],
                             "area": self.target_area, "contrast": self.target_contrast,
                             "delta": self.target_delta})


def target_contrast(image: np.ndarray, mask: np.ndarray, gap: int = 2, width: int = 6
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(area, contrast, delta)`` arrays for the 8-connected targets of one image."""
    labels, n = label_targets(mask)
    areas = np.zeros(n, dtype=np.int64)
    contrast = np.zeros(n, dtype=np.float64)
    delta = np.zeros(n, dtype=np.float64)
    reach = gap + width
    h, w = mask.shape
    for k, sl in enumerate(component_slices(labels, n)):
        r0, r1 = max(sl[0].start - reach, 0), min(sl[0].stop + reach, h)
        c0, c1 = max(sl[1].start - reach, 0), min(sl[1].stop + reach, w)
        lab = labels[r0:r1, c0:c1]
        img = image[r0:r1, c0:c1].astype(np.float64)
        target = lab == k + 1
        dist = ndimage.distance_transform_cdt(~target, metric="chessboard")
        ring = (dist > gap) & (dist <= reach) & (lab == 0)
        vals_t = img[target]
        areas[k] = vals_t.size
        if ring.any():
            vals_r = img[ring]
            delta[k] = vals_t.mean() - vals_r.mean()
            contrast[k] = delta[k] / max(vals_r.std(), 1.0 / 255.0)
        else:
            delta[k] = contrast[k] = np.nan
    return areas, contrast, delta


def dataset_stats(ds: Sequence, indices: Iterable[int] | None = None, gap: int = 2,
                  width: int = 6) -> DatasetStats:
    """Measure a dataset (anything with ``len`` and ``[i] -> Sample``), or the given indices."""
    indices = list(range(len(ds)) if indices is None else indices)
    total = 0.0
    total_sq = 0.0
    count = 0
    hist = np.zeros(HIST_BINS, dtype=np.int64)
    names, sizes, per_image, means, stds = [], [], [], [], []
    t_img, t_area, t_con, t_delta = [], [], [], []
    for j, i in enumerate(indices):
        s = ds[i]
        img = s.image.astype(np.float64)
        total += img.sum()
        total_sq += np.square(img).sum()
        count += img.size
        means.append(img.mean())
        stds.append(img.std())
        hist += np.bincount(np.clip((s.image * HIST_BINS).astype(np.int64), 0, HIST_BINS - 1)
                            .ravel(), minlength=HIST_BINS)
        area, con, dl = target_contrast(s.image, s.mask, gap, width)
        names.append(s.name)
        sizes.append(s.image.shape)
        per_image.append(area.size)
        t_img.append(np.full(area.size, j, dtype=np.int64))
        t_area.append(area)
        t_con.append(con)
        t_delta.append(dl)
    mean = total / count if count else float("nan")
    std = float(np.sqrt(max(total_sq / count - mean * mean, 0.0))) if count else float("nan")

    def cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    return DatasetStats(
        name=getattr(ds, "name", type(ds).__name__), image_names=names,
        image_sizes=np.asarray(sizes, dtype=np.int64).reshape(-1, 2), gray_mean=float(mean),
        gray_std=std, gray_hist=hist, image_means=np.asarray(means, dtype=np.float64),
        image_stds=np.asarray(stds, dtype=np.float64),
        targets_per_image=np.asarray(per_image, dtype=np.int64),
        target_image=cat(t_img, np.int64), target_area=cat(t_area, np.int64),
        target_contrast=cat(t_con, np.float64), target_delta=cat(t_delta, np.float64),
        ring=(gap, width))
