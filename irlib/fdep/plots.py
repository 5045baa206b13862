"""Figures of the FDEP notebook: training curves, metrics versus threshold, a prediction grid."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from irlib.viz import MASK_COLOR, PRED_COLOR, outline_legend, show_overlay

VARIANT_COLORS = {"baseline": "tab:blue", "fdep": "tab:orange"}


def training_curves(runs: Sequence[Any]) -> Any:
    """Loss per epoch (and the light/main terms of CO-ISD) plus eval IoU when it was recorded."""
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_iou) = plt.subplots(1, 2, figsize=(10, 3.4))
    for r in runs:
        epochs = r.history.column("epoch")
        color = VARIANT_COLORS.get(r.variant)
        ax_loss.plot(epochs, r.history.column("loss"), color=color, alpha=0.8,
                     label=f"{r.variant} seed {r.seed} (total)")
        if r.variant == "fdep":
            ax_loss.plot(epochs, r.history.column("light"), color=color, ls="--", alpha=0.8,
                         label=f"fdep seed {r.seed} (light branch)")
        evals = [(e, v) for e, v in zip(epochs, r.history.column("eval_IoU")) if v is not None]
        if evals:
            ax_iou.plot(*zip(*evals), marker="o", color=color, alpha=0.8, label=f"{r.variant} seed {r.seed}")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Training loss")
    ax_iou.set(xlabel="epoch", ylabel="IoU @ 0.5 (deployed host, test set)", title="Test IoU during training")
    for ax in (ax_loss, ax_iou):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def metrics_vs_threshold(runs: Sequence[Any]) -> Any:
    """IoU, nIoU, Pd and Fa of each run over the threshold grid."""
    import matplotlib.pyplot as plt

    keys = ("IoU", "nIoU", "Pd", "Fa")
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    for r in runs:
        c = r.curves
        for ax, key in zip(axes, keys):
            y = getattr(c, key) * (1e6 if key == "Fa" else 1.0)
            ax.plot(c.thresholds, y, color=VARIANT_COLORS.get(r.variant), alpha=0.8,
                    label=f"{r.variant} seed {r.seed}")
    for ax, key in zip(axes, keys):
        ax.set(xlabel="threshold on probability", title=key + (" (x1e-6)" if key == "Fa" else ""))
        ax.axvline(0.5, color="gray", lw=0.6, ls=":")
        ax.grid(alpha=0.3)
    axes[-1].set_yscale("symlog", linthresh=1.0)
    axes[-1].set_ylim(bottom=0)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def prediction_grid(test: Sequence[Any], runs: Sequence[Any], threshold: float = 0.5) -> Any:
    """For each kept test image: the image with its mask, then each run's probability map with
    the thresholded prediction outlined in red and the mask in green."""
    import matplotlib.pyplot as plt

    names = list(runs[0].samples)
    index = {test[i].name: i for i in range(len(test))}
    fig, axes = plt.subplots(len(names), 1 + len(runs), figsize=(2.3 * (1 + len(runs)), 2.3 * len(names)),
                             squeeze=False)
    for row, name in enumerate(names):
        sample = test[index[name]]
        show_overlay(axes[row, 0], sample.image, sample.mask, mark=True, title=name)
        for col, r in enumerate(runs, start=1):
            prob = r.samples[name]
            ax = axes[row, col]
            ax.imshow(prob, cmap="magma", vmin=0, vmax=1, interpolation="nearest")
            pred = np.asarray(prob > threshold)
            if sample.mask.any():
                ax.contour(sample.mask.astype(np.float32), levels=[0.5], colors=[MASK_COLOR], linewidths=0.6)
            if pred.any():
                ax.contour(pred.astype(np.float32), levels=[0.5], colors=[PRED_COLOR], linewidths=0.6)
            ax.set_title(f"{r.variant} seed {r.seed}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    outline_legend(fig, marks=True, threshold=threshold)
    return fig
