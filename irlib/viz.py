"""Small plotting helpers shared by the notebooks: mask overlays, target crops, saving figures.

Matplotlib is imported inside the functions, so importing irlib never pulls it in.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from irlib.repro import atomic_write_bytes

MASK_COLOR = (0.1, 1.0, 0.2)
PRED_COLOR = (1.0, 0.2, 0.2)


def show_overlay(ax: Any, image: np.ndarray, mask: np.ndarray | None = None,
                 pred: np.ndarray | None = None, title: str | None = None, fill: bool = False,
                 mark: bool = False, alpha: float = 0.35) -> None:
    """Gray image (fixed [0, 1] range) with the mask outlined in green and ``pred`` in red.

    ``fill`` also tints the mask pixels; ``mark`` circles each target (for whole images, where
    targets of a few pixels are otherwise invisible).
    """
    ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    if mask is not None and mask.any():
        if fill:
            rgba = np.zeros(mask.shape + (4,), dtype=np.float32)
            rgba[mask] = (*MASK_COLOR, alpha)
            ax.imshow(rgba, interpolation="nearest")
        if mark:
            from irlib.data.points import centroid_points

            pts = centroid_points(mask)
            ax.scatter(pts[:, 1], pts[:, 0], s=120, facecolors="none", edgecolors=[MASK_COLOR],
                       linewidths=0.9)
        else:
            ax.contour(mask.astype(np.float32), levels=[0.5], colors=[MASK_COLOR],
                       linewidths=0.8)
    if pred is not None and pred.any():
        ax.contour(pred.astype(np.float32), levels=[0.5], colors=[PRED_COLOR], linewidths=0.8)
    if title:
        ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def outline_legend(fig: Any, mask: bool = True, pred: bool = True, marks: bool = False,
                   threshold: float | None = None) -> Any:
    """A figure-level legend under the panels for :func:`show_overlay`'s outlines: green = real mask
    (circles with ``marks``), red = prediction (``> threshold`` when given)."""
    from matplotlib.lines import Line2D

    handles = []
    if mask:
        handles.append(Line2D([], [], color=MASK_COLOR, lw=1.2, label="real mask (outline)"))
    if marks:
        handles.append(Line2D([], [], color=MASK_COLOR, lw=0, marker="o", mfc="none", ms=9, label="target (circled)"))
    if pred:
        what = f"prediction > {threshold:g}" if threshold is not None else "prediction"
        handles.append(Line2D([], [], color=PRED_COLOR, lw=1.2, label=f"{what} (outline)"))
    return fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles),
                      fontsize=8, frameon=False)


def crop_around(array: np.ndarray, center: tuple[float, float], size: int) -> np.ndarray:
    """``size x size`` window of a 2-D array centred on ``center`` (row, col), zero-padded."""
    half = size // 2
    r, c = int(round(center[0])), int(round(center[1]))
    padded = np.pad(array, half + 1, mode="constant")
    r, c = r + half + 1, c + half + 1
    return padded[r - half:r - half + size, c - half:c - half + size]


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 110) -> None:
    """Write a figure as PNG through :func:`irlib.repro.atomic_write_bytes`."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
