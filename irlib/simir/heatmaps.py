"""FPN feature heatmaps of a SimIR student with and without its FPN queries (the paper's Figure 4).

:func:`fpn_level_features` runs :meth:`~irlib.simir.fpn.QueryFPN.top_down` (the loop of
``QueryFPN.forward``) and returns every level's output ``y`` (after its 3x3 Conv-GN-ReLU), keyed
``"P5"`` .. ``"P2"`` (``P<k>`` is the level of ``res<k>``, at stride ``stem_stride * 2**(k-2)``
of the input). ``use_queries=False`` bypasses the per-level query blocks of the same weights: the
lateral features pass straight on. The encoder is left as it is (its own queries still act).
With ``use_queries=True`` ``mask_features(P2)`` is the forward's ``M``
(``tests/test_simir_heatmaps.py`` checks it).

A heatmap is the **L2 norm over channels** of a feature map (``reduce="l2"``, the default; or
``"mean_abs"``, the channel mean of ``|f|``), min-max normalised to [0, 1] **per map**.
:func:`plot_fpn_heatmaps` draws one figure per image. Matplotlib is imported inside it only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from irlib.engine.normalize import Normalize
from irlib.errors import IrlibInputError
from irlib.simir.fpn import QueryFPN
from irlib.simir.student import SimIRStudent

REDUCTIONS = ("l2", "mean_abs")


def fpn_level_features(fpn: QueryFPN, features: list[Tensor], encoder_queries: Tensor | None,
                       use_queries: bool = True) -> dict[str, Tensor]:
    """``QueryFPN``'s top-down loop on ``features`` (shallow to deep): each level's output ``y``.

    ``use_queries=False`` skips the query blocks (same weights otherwise); ``True`` needs an FPN
    built with queries and the encoder's queries. Returns ``{"P5": ..., ..., "P2": ...}``.
    """
    outputs, _ = fpn.top_down(features, encoder_queries, use_queries)
    return {f"P{len(outputs) + 1 - level}": y for level, y in enumerate(outputs)}


def heatmap(feature: Tensor, reduce: str = "l2") -> Tensor:
    """``(B, C, h, w)`` -> ``(B, h, w)`` in [0, 1]: channel L2 norm (or mean of ``|f|``), min-max per map."""
    if reduce not in REDUCTIONS:
        raise IrlibInputError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    m = feature.norm(dim=1) if reduce == "l2" else feature.abs().mean(dim=1)
    lo = m.flatten(1).min(1).values[:, None, None]
    hi = m.flatten(1).max(1).values[:, None, None]
    return (m - lo) / (hi - lo).clamp_min(1e-12)


@dataclass
class FPNHeatmaps:
    """Heatmaps of one image, ``(h, w)`` arrays in [0, 1] cropped to the unpadded input."""

    with_queries: dict[str, np.ndarray]
    without_queries: dict[str, np.ndarray]
    strides: dict[str, int]
    reduce: str
    levels: list[str]


@torch.no_grad()
def fpn_heatmaps(model: SimIRStudent, image: np.ndarray | Tensor, normalize: Normalize | None = None,
                 levels: Sequence[str] = ("P3", "P2"), reduce: str = "l2") -> FPNHeatmaps:
    """Heatmaps of ``levels`` for one raw gray image ``(H, W)`` in [0, 1], with and without queries.

    The image goes through ``normalize`` (the model's training normalisation; identity if None)
    and the model in eval mode (its training flag is restored). For a model without FPN queries
    (``queries="none"``) both entries hold the plain FPN.
    """
    if not isinstance(model, SimIRStudent):
        raise IrlibInputError(f"fpn_heatmaps needs a SimIRStudent, got {type(model).__name__}")
    x = torch.as_tensor(np.asarray(image, dtype=np.float32) if not isinstance(image, Tensor) else image)
    if x.ndim != 2:
        raise IrlibInputError(f"fpn_heatmaps expects one gray image (H, W), got shape {tuple(x.shape)}")
    h, w = x.shape
    x = (normalize or Normalize.identity())(x[None, None].float())
    was_training = model.training
    model.eval()
    try:
        feats = model.encode(x.to(next(model.parameters()).device))
        stack = [*feats.stages, feats.bottleneck]
        queries = getattr(feats, "queries", None)
        plain = fpn_level_features(model.fpn, stack, queries, use_queries=False)
        normal = fpn_level_features(model.fpn, stack, queries, use_queries=True) if model.fpn.use_queries else plain
    finally:
        model.train(was_training)
    stem = model.encoder.stem_stride
    strides = {f"P{k}": stem * 2 ** (k - 2) for k in range(2, len(stack) + 2)}
    unknown = [lv for lv in levels if lv not in strides]
    if unknown:
        raise IrlibInputError(f"unknown levels {unknown}; choose from {sorted(strides)}")

    def crop(maps: dict[str, Tensor]) -> dict[str, np.ndarray]:
        out = {}
        for lv in levels:
            s = strides[lv]
            out[lv] = heatmap(maps[lv], reduce)[0, : -(-h // s), : -(-w // s)].cpu().numpy()
        return out

    return FPNHeatmaps(crop(normal), crop(plain), {lv: strides[lv] for lv in levels}, reduce, list(levels))


def encoder_label(model: SimIRStudent, encoder_weights: str | None = None) -> str:
    """E.g. ``"repvit_m1_1, stride-1 stem, no pretrained weights"``."""
    enc = model.encoder
    weights = "no pretrained weights" if not encoder_weights else f"weights: {encoder_weights}"
    arch = enc.body.pretrained_cfg.get("architecture", type(enc.body).__name__)
    return f"{arch}, stride-{enc.stem_stride} stem, {weights}"


def plot_fpn_heatmaps(image: np.ndarray, mask: np.ndarray | None, maps: FPNHeatmaps, model_name: str,
                      encoder: str, image_name: str, path: str | os.PathLike | None = None) -> Any:
    """One figure: input and input with the mask outline in the first column, then one column per
    level with the queries (top row) and without them (bottom row); saved to ``path`` if given.

    ``encoder`` is a label such as :func:`encoder_label` gives. Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    from irlib.viz import save_figure, show_overlay

    h, w = image.shape
    cols = 1 + len(maps.levels)
    fig, axes = plt.subplots(2, cols, figsize=(2.6 * cols, 5.6), squeeze=False)
    show_overlay(axes[0, 0], image, title="input")
    show_overlay(axes[1, 0], image, mask=mask, title="mask outline")
    for j, lv in enumerate(maps.levels, start=1):
        rows = (("with queries", maps.with_queries), ("without queries", maps.without_queries))
        for i, (tag, row) in enumerate(rows):
            ax = axes[i, j]
            hm = row[lv]
            s = maps.strides[lv]
            ax.imshow(hm, cmap="inferno", vmin=0.0, vmax=1.0, interpolation="nearest",
                      extent=(-0.5, hm.shape[1] * s - 0.5, hm.shape[0] * s - 0.5, -0.5))
            if mask is not None and mask.any():
                ax.contour(mask.astype(np.float32), levels=[0.5], colors=["cyan"], linewidths=0.6)
            ax.set_xlim(-0.5, w - 0.5)
            ax.set_ylim(h - 0.5, -0.5)
            ax.set_title(f"{lv} {tag}\n(stride {s}, {hm.shape[0]}x{hm.shape[1]})", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    reduce = "L2 norm over channels" if maps.reduce == "l2" else "mean |feature| over channels"
    fig.suptitle(f"{model_name} | encoder: {encoder} | {image_name}\nheatmap: {reduce}, min-max per map",
                 fontsize=9)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def heatmap_figure(model: SimIRStudent, image: np.ndarray, mask: np.ndarray | None, image_name: str,
                   path: str | os.PathLike | None = None, normalize: Normalize | None = None,
                   encoder_weights: str | None = None, levels: Sequence[str] = ("P3", "P2"),
                   reduce: str = "l2") -> Any:
    """:func:`fpn_heatmaps` then :func:`plot_fpn_heatmaps`, titled with the model's registered
    name and :func:`encoder_label` (``encoder_weights=None``: "no pretrained weights")."""
    maps = fpn_heatmaps(model, image, normalize, levels, reduce)
    name = getattr(model, "model_name", type(model).__name__)
    return plot_fpn_heatmaps(np.asarray(image), mask, maps, name, encoder_label(model, encoder_weights),
                             image_name, path)
