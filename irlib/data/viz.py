"""Figures and tables of the dataset tour (notebook 00): sample grids, target histograms, tables."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from irlib.data.components import label_targets
from irlib.data.stats import HIST_BINS, DatasetStats
from irlib.viz import crop_around, show_overlay


def evenly_spaced(n: int, k: int | None) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when ``k`` is None or >= n)."""
    if k is None or k >= n:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, k).round().astype(int).tolist()))


def sample_grid(ds: Sequence, indices: Sequence[int], zoom: int = 32, ncols: int = 4) -> Any:
    """Each sample twice: the full image with its targets circled, and a ``zoom``-px crop of its
    largest target (the image centre when it has none) with the mask outlined."""
    import matplotlib.pyplot as plt

    n = len(indices)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, 2 * ncols, figsize=(2.0 * 2 * ncols, 2.1 * nrows),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for j, i in enumerate(indices):
        s = ds[i]
        labels, k = label_targets(s.mask)
        if k:
            sizes = np.bincount(labels.ravel())[1:]
            rows, cols = np.nonzero(labels == int(np.argmax(sizes)) + 1)
            center = (rows.mean(), cols.mean())
        else:
            center = (s.image.shape[0] / 2, s.image.shape[1] / 2)
        ax_full, ax_zoom = axes[j // ncols, 2 * (j % ncols)], axes[j // ncols, 2 * (j % ncols) + 1]
        ax_full.axis("on")
        ax_zoom.axis("on")
        h, w = s.image.shape
        show_overlay(ax_full, s.image, s.mask, mark=True, title=f"{s.name} {w}x{h}, {k} tgt")
        show_overlay(ax_zoom, crop_around(s.image, center, zoom), crop_around(s.mask, center, zoom),
                     title=f"{zoom}x{zoom} px around the largest target" if k else
                     f"{zoom}x{zoom} px at the centre (no target)")
    fig.tight_layout()
    return fig


def target_histograms(stats: Sequence[DatasetStats]) -> Any:
    """Four panels comparing datasets: target area, local contrast, targets per image, gray levels
    (each as a share of targets, images or pixels, so datasets of different sizes compare)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    areas = [s.target_area for s in stats if s.num_targets]
    top = max([a.max() for a in areas] + [2])
    bins_area = np.unique(np.geomspace(1, top + 1, 20).round()) - 0.5
    cons = np.concatenate([s.target_contrast[np.isfinite(s.target_contrast)] for s in stats]
                          + [np.zeros(1)])
    lo, hi = np.percentile(cons, [1, 99])
    bins_con = np.linspace(min(lo, 0.0), hi, 30)
    maxk = int(max([s.targets_per_image.max() for s in stats if s.num_images] + [1]))
    centers = (np.arange(HIST_BINS) + 0.5) / HIST_BINS
    for s in stats:
        label = f"{s.name} ({s.num_images} img, {s.num_targets} tgt)"
        if s.num_targets:
            share = np.full(s.num_targets, 1.0 / s.num_targets)
            axes[0].hist(s.target_area, bins=bins_area, weights=share, histtype="step", lw=1.5,
                         label=label)
            axes[1].hist(np.clip(s.target_contrast, bins_con[0], bins_con[-1]), bins=bins_con,
                         weights=share, histtype="step", lw=1.5, label=label)
        counts = np.bincount(s.targets_per_image, minlength=maxk + 1) / max(s.num_images, 1)
        axes[2].plot(np.arange(maxk + 1), counts, marker="o", label=label)
        axes[3].plot(centers, s.gray_hist / max(s.gray_hist.sum(), 1) * HIST_BINS, label=label)
    axes[0].set(xscale="log", xlabel="target area (px, 8-connected)", ylabel="share of targets")
    axes[1].set(xlabel="local contrast (mean_t - mean_ring) / std_ring",
                ylabel="share of targets (ends clipped)")
    axes[2].set(xlabel="targets per image", ylabel="share of images")
    axes[3].set(xlabel="gray level (raw, [0, 1])", ylabel="density of pixels")
    handles, labels = axes[2].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=max(len(labels), 1), fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return fig


def summary_table(stats: Sequence[DatasetStats], split: str | Sequence[str] | None = None) -> Any:
    """pandas DataFrame with one row per dataset: :meth:`DatasetStats.summary` fields."""
    import pandas as pd

    rows = [s.summary() for s in stats]
    if split is not None:
        splits = [split] * len(rows) if isinstance(split, str) else list(split)
        for row, sp in zip(rows, splits):
            row["split"] = sp
    return pd.DataFrame(rows).set_index("dataset")
