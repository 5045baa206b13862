"""Heatmap figures of what irlib's models compute on one infrared image (notebook 07).

Every figure's title names the model and its training state (``"untrained: random weights"``
for a model that was not trained), the encoder with its description and a ``[STAND-IN]`` tag
where it is one (:func:`vfm_label`), and the image (:func:`figure_title`).

* :func:`encoder_maps`, :func:`plot_encoder_maps`: a frozen encoder's maps per layer as the
  first three principal components over channels (:func:`feature_pca`, as RGB) and as the
  channel L2 norm (:func:`irlib.simir.heatmaps.heatmap`), whole image and zoomed on a target.
* :func:`samf_maps`, :func:`plot_samf_maps`: FDEP's SAMF chain on the host bottleneck: each
  module's multiplicative term ``g`` and additive term ``b`` (channel means), how far the fused
  bottleneck moved from the unfused one, and the main-minus-light probability.
* :func:`scam_affine`, :func:`plot_scam_affine`: SCAM's per-channel ``gamma`` and ``beta``.
* :func:`simir_figure`: :func:`irlib.simir.heatmaps.heatmap_figure` with the training state.
* :func:`overlay_figure`: hits, misses and false alarms (:mod:`irlib.metrics.explorer`).

Maps on a feature grid are shown nearest-neighbour on the image: a cell of stride ``s`` covers
``s x s`` pixels. Matplotlib is imported inside the plotting functions only.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from irlib.engine.normalize import Normalize
from irlib.errors import IrlibInputError
from irlib.fdep.coisd import CoISD
from irlib.fdep.samf import SAMF, align_to
from irlib.point.scam import ScamTeacher
from irlib.simir.heatmaps import heatmap
from irlib.vfm import FrozenEncoder

UNTRAINED = "untrained: random weights"


# ----------------------------------------------------------------------------- labels and files
def vfm_label(encoder: FrozenEncoder) -> str:
    """``"<name> (<description>) [STAND-IN]"`` (the tag only for stand-in encoders)."""
    name = encoder.name or type(encoder).__name__
    return f"{name} ({encoder.description})" + (" [STAND-IN]" if encoder.is_stand_in else "")


def figure_title(model: str, encoder: str | None, image_name: str, trained: str | None = None) -> str:
    """``"<model> (<trained or UNTRAINED>) | encoder: <encoder or none> | image: <image_name>"``."""
    return f"{model} ({trained or UNTRAINED}) | encoder: {encoder or 'none'} | image: {image_name}"


def figure_path(out_dir: str | os.PathLike, *parts: str) -> Path:
    """``out_dir/<part1>_<part2>_....png`` with every part made file-safe."""
    if not parts:
        raise IrlibInputError("figure_path needs at least one name part")
    safe = [re.sub(r"[^A-Za-z0-9._-]+", "-", str(p)).strip("-") or "x" for p in parts]
    return Path(out_dir) / ("_".join(safe) + ".png")


def load_trained(model: torch.nn.Module, path: str | os.PathLike) -> str:
    """Load an ``irlib.engine.fit`` checkpoint (``last.pt`` / ``best.pt``) into ``model``, e.g. a
    :class:`CoISD` or :class:`ScamTeacher`; returns the training label for titles."""
    from irlib.engine.checkpoint import load_checkpoint, load_trainable_state

    load_trainable_state(model, load_checkpoint(path)["model"], path)
    return f"trained: {Path(path).name}"


def dataset_normalize(name: str, samples: Sequence) -> tuple[Normalize, str]:
    """Host input normalisation for ``name``: BasicIRSTD's constants when published, else measured
    on ``samples`` (mean of per-image mean and std). Returns it and a sentence saying which."""
    from irlib.data import dataset_stats, reference_normalization

    try:
        return Normalize(*reference_normalization(Path(str(name)).name)), f"BasicIRSTD constants of {name}"
    except IrlibInputError:
        return (Normalize.from_stats(dataset_stats(samples)),
                f"measured on {len(samples)} images of {name} (mean of per-image mean/std)")


def pick_samples(dataset: Sequence, count: int, names: Sequence[str] | None = None) -> list:
    """The samples named ``names`` (in that order), else the first ``count`` that hold a target."""
    if names:
        listed = list(getattr(dataset, "names", None) or [dataset[i].name for i in range(len(dataset))])
        missing = [n for n in names if n not in listed]
        if missing:
            raise IrlibInputError(f"images {missing} are not in this split")
        return [dataset[listed.index(n)] for n in names]
    picked = []
    for i in range(len(dataset)):
        s = dataset[i]
        if s.mask.any():
            picked.append(s)
        if len(picked) == count:
            break
    return picked


# ----------------------------------------------------------------------------- map arithmetic
@dataclass
class FeaturePCA:
    """``rgb`` ``(h, w, k)`` in [0, 1] (component i min-max scaled) and each component's share of
    the variance over positions."""

    rgb: np.ndarray
    explained: np.ndarray


def _single(feature: Tensor | np.ndarray) -> Tensor:
    f = torch.as_tensor(feature).detach().float().cpu()
    if f.ndim == 4 and f.shape[0] == 1:
        f = f[0]
    if f.ndim != 3:
        raise IrlibInputError(f"expected one feature map (C, h, w) or (1, C, h, w), got {tuple(f.shape)}")
    return f


def feature_pca(feature: Tensor | np.ndarray, k: int = 3) -> FeaturePCA:
    """PCA over channels of one feature map: positions are samples, channels are variables.

    Each component's sign makes its largest absolute score positive; missing components (fewer
    channels or positions than ``k``, or a singular value below 1e-5 of the first) are 0.
    """
    f = _single(feature)
    c, h, w = f.shape
    x = f.reshape(c, h * w).T.double()
    x = x - x.mean(0, keepdim=True)
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    n = min(k, s.numel())
    scores = u[:, :n] * s[:n]
    if n:
        peak = scores.gather(0, scores.abs().argmax(0, keepdim=True))[0]
        scores = scores * torch.where(peak < 0, -1.0, 1.0).to(scores.dtype)
    total = float((s ** 2).sum())
    explained = np.zeros(k)
    rgb = np.zeros((h * w, k), dtype=np.float32)
    for i in range(n):
        if s[i] <= 1e-5 * max(float(s[0]), 1e-300):  # float32 rounding, not a component
            continue
        col = scores[:, i]
        rgb[:, i] = ((col - col.min()) / (col.max() - col.min()).clamp_min(1e-300)).float().numpy()
        explained[i] = float(s[i] ** 2) / total
    return FeaturePCA(rgb.reshape(h, w, k), explained)


def activation_norm(feature: Tensor | np.ndarray) -> np.ndarray:
    """Channel L2 norm of one feature map, min-max scaled to [0, 1]: ``(h, w)``."""
    return heatmap(_single(feature)[None], "l2")[0].numpy()


def to_image(grid: np.ndarray, shape: tuple[int, int], stride: float) -> np.ndarray:
    """A ``(h, w[, c])`` grid map on an ``(H, W)`` image, nearest: pixel ``r`` reads cell
    ``floor(r / stride)`` (clipped to the grid)."""
    rows = np.minimum((np.arange(shape[0]) / stride).astype(int), grid.shape[0] - 1)
    cols = np.minimum((np.arange(shape[1]) / stride).astype(int), grid.shape[1] - 1)
    return grid[rows][:, cols]


def zoom_window(mask: np.ndarray | None, shape: tuple[int, int], size: int) -> tuple[slice, slice]:
    """A ``size``-pixel square inside the image centred on the first target (the image centre
    when there is none)."""
    from irlib.data.points import centroid_points

    h, w = shape
    pts = centroid_points(mask) if mask is not None and mask.any() else np.array([[h / 2, w / 2]])
    r0 = int(np.clip(round(pts[0, 0]) - size // 2, 0, max(h - size, 0)))
    c0 = int(np.clip(round(pts[0, 1]) - size // 2, 0, max(w - size, 0)))
    return slice(r0, r0 + size), slice(c0, c0 + size)


def _raw(image: np.ndarray) -> Tensor:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise IrlibInputError(f"expected one gray image (H, W) in [0, 1], got shape {image.shape}")
    return torch.from_numpy(np.ascontiguousarray(image))[None, None]


def _first(out: Tensor | list[Tensor]) -> Tensor:
    return out[0] if isinstance(out, (list, tuple)) else out


# ----------------------------------------------------------------------------- frozen encoders
@dataclass
class EncoderMaps:
    """Per-layer maps of one image: PCA RGB ``(h, w, 3)``, its explained variance, L2 norm
    ``(h, w)``, and each layer's name and stride in image pixels."""

    encoder: str
    names: list[str]
    strides: list[float]
    pca: list[FeaturePCA]
    norms: list[np.ndarray]


@torch.no_grad()
def encoder_maps(encoder: FrozenEncoder, image: np.ndarray) -> EncoderMaps:
    """Run ``encoder`` on one raw [0, 1] gray image and reduce every feature map it returns."""
    out = encoder(_raw(image))
    h = image.shape[0]
    strides = [float(s) if f.shape[-2] == math.ceil(h / s) else h / f.shape[-2]  # resized input
               for f, s in zip(out.features, out.strides)]
    return EncoderMaps(vfm_label(encoder), list(encoder.feature_names), strides,
                       [feature_pca(f) for f in out.features], [activation_norm(f) for f in out.features])


def _panel(ax: Any, data: np.ndarray, title: str, mask: np.ndarray | None = None, **kw: Any) -> Any:
    im = ax.imshow(data, interpolation="nearest", **kw)
    if mask is not None and mask.any():
        ax.contour(mask.astype(np.float32), levels=[0.5], colors=["cyan"], linewidths=0.6)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def plot_encoder_maps(image: np.ndarray, mask: np.ndarray | None, maps: EncoderMaps, image_name: str,
                      path: str | os.PathLike | None = None, zoom: int = 64) -> Any:
    """Columns: the input, then one per layer; rows: PCA RGB, L2 norm, L2 norm zoomed on a target
    (cyan: mask outline). Saved to ``path`` if given; returns the figure."""
    import matplotlib.pyplot as plt

    from irlib.viz import save_figure, show_overlay

    shape = image.shape
    rs, cs = zoom_window(mask, shape, zoom)
    crop = mask[rs, cs] if mask is not None else None
    cols = 1 + len(maps.names)
    fig, axes = plt.subplots(3, cols, figsize=(2.5 * cols, 7.6), squeeze=False)
    show_overlay(axes[0, 0], image, title="input")
    show_overlay(axes[1, 0], image, mask=mask, mark=True, title="targets (circled)")
    axes[1, 0].add_patch(plt.Rectangle((cs.start - 0.5, rs.start - 0.5), cs.stop - cs.start,
                                       rs.stop - rs.start, fill=False, ec="white", lw=0.8))
    window = image[rs, cs]
    window = (window - window.min()) / max(float(window.max() - window.min()), 1e-12)
    show_overlay(axes[2, 0], window, mask=crop, title=f"zoom {zoom} px (min-max stretched)")
    for j, (name, s, pca, norm) in enumerate(zip(maps.names, maps.strides, maps.pca, maps.norms), start=1):
        grid = pca.rgb.shape[:2]
        _panel(axes[0, j], to_image(pca.rgb, shape, s), f"{name} (stride {s:g}, {grid[0]}x{grid[1]})\n"
               f"PCA 1-3 as RGB: {100 * pca.explained.sum():.0f}% of variance")
        full = to_image(norm, shape, s)
        _panel(axes[1, j], full, "channel L2 norm", mask, cmap="inferno", vmin=0, vmax=1)
        _panel(axes[2, j], full[rs, cs], "L2 norm, zoom", crop, cmap="inferno", vmin=0, vmax=1)
    fig.suptitle("What a frozen encoder sees: feature PCA (first 3 components as RGB) and channel L2 norm "
                 "(min-max per map)\n" + figure_title("frozen encoder", maps.encoder, image_name,
                                                       trained="weights as loaded, never trained here"),
                 fontsize=9)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


# ----------------------------------------------------------------------------- FDEP's SAMF
@dataclass
class SamfMaps:
    """What SAMF does to one image's bottleneck (grid maps cropped to the image).

    ``multiplier[i]`` / ``shift[i]``: channel means of module i's ``g`` (after its gate) and
    ``b``; ``norm_ratio``: ``|fused| / |unfused|`` per cell; ``change``: ``|fused - unfused|``
    over the mean ``|unfused|``; ``main`` / ``light``: probability maps ``(H, W)`` of the main
    (with SAMF) and light (deployed) branches.
    """

    multiplier: list[np.ndarray]
    shift: list[np.ndarray]
    norm_ratio: np.ndarray
    change: np.ndarray
    main: np.ndarray
    light: np.ndarray
    stride: int
    gate: str
    encoder: str
    vfm_names: list[str]


def samf_terms(block: SAMF, d: Tensor, size: Sequence[int]) -> tuple[Tensor, Tensor]:
    """``(g, b)`` of one SAMF module for the VFM map ``d`` on a bottleneck of ``size``: what
    multiplies the first half of the channels and what is added to the second half."""
    d = align_to(d, (int(size[0]), int(size[1])))
    g, b = block.to_g(d), block.to_b(d)
    if block.gate == "sigmoid":
        g = torch.sigmoid(g)
    elif block.gate == "tanh":
        g = torch.tanh(g)
    return g, b


@torch.no_grad()
def samf_maps(model: CoISD, image: np.ndarray, normalize: Normalize) -> SamfMaps:
    """Both CO-ISD branches on one image, in eval mode (the training flag is restored)."""
    if not isinstance(model, CoISD):
        raise IrlibInputError(f"samf_maps needs an irlib.fdep.CoISD, got {type(model).__name__}")
    raw = _raw(image)
    h, w = image.shape
    was = model.training
    model.eval()
    try:
        feats = model.host.encode(normalize(raw))
        x = feats.bottleneck
        cur, mult, shift = x, [], []
        for block, d in zip(model.samf.blocks, model.vfm_features(raw)):
            g, b = samf_terms(block, d, cur.shape[-2:])
            mult.append(g.mean(1)[0])
            shift.append(b.mean(1)[0])
            cur = block(cur, d)
        main = torch.sigmoid(_first(model.host.decode(replace(feats, bottleneck=cur), (h, w))))
        light = torch.sigmoid(_first(model.host.decode(feats, (h, w))))
    finally:
        model.train(was)
    s = model.host.bottleneck_stride
    hc, wc = -(-h // s), -(-w // s)
    base = x.norm(dim=1)[0]

    def cut(t: Tensor) -> np.ndarray:
        return t[:hc, :wc].float().numpy()

    gate = model.samf.blocks[0].gate if len(model.samf.blocks) else "none"
    return SamfMaps([cut(m) for m in mult], [cut(m) for m in shift],
                    cut(cur.norm(dim=1)[0] / base.clamp_min(1e-12)),
                    cut((cur - x).norm(dim=1)[0] / base[:hc, :wc].mean().clamp_min(1e-12)),
                    main[0, 0].numpy(), light[0, 0].numpy(), s, gate, vfm_label(model.encoder),
                    [model.encoder.feature_names[i] for i in model.vfm_layers])


def plot_samf_maps(image: np.ndarray, mask: np.ndarray | None, maps: SamfMaps, model_name: str, image_name: str,
                   trained: str | None = None, path: str | os.PathLike | None = None) -> Any:
    """Row 1: the input and each SAMF module's mean ``g``; row 2: each module's mean ``b``; row 3:
    the branches' probabilities, their difference and the bottleneck's change (cyan: mask)."""
    import matplotlib.pyplot as plt

    from irlib.viz import save_figure, show_overlay

    shape, s = image.shape, maps.stride
    n = len(maps.multiplier)
    cols = max(n + 1, 5)
    fig, axes = plt.subplots(3, cols, figsize=(2.7 * cols, 7.8), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()

    def show(ax: Any, data: np.ndarray, title: str, cmap: str, sym: bool = False, **kw: Any) -> None:
        ax.set_axis_on()
        if sym:
            lim = max(float(np.abs(data).max()), 1e-12)
            kw.update(vmin=-lim, vmax=lim)
        im = _panel(ax, data, title, mask, cmap=cmap, **kw)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)

    axes[0, 0].set_axis_on()
    show_overlay(axes[0, 0], image, mask=mask, mark=True, title="input (targets circled)")
    gate = "" if maps.gate == "none" else f"{maps.gate} "
    for i in range(n):
        name = maps.vfm_names[i] if i < len(maps.vfm_names) else f"map {i}"
        show(axes[0, i + 1], to_image(maps.multiplier[i], shape, s), f"SAMF {i + 1} ({name}): mean {gate}g\n"
             "multiplies channels 1..C/2", "viridis")
        show(axes[1, i + 1], to_image(maps.shift[i], shape, s), f"SAMF {i + 1}: mean b\nadded to channels C/2..C",
             "coolwarm", sym=True)
    row = [(maps.light, "light branch p (deployed)", "magma", dict(vmin=0, vmax=1)),
           (maps.main, "main branch p (with SAMF)", "magma", dict(vmin=0, vmax=1)),
           (maps.main - maps.light, "main - light p", "coolwarm", dict(sym=True)),
           (to_image(maps.norm_ratio, shape, s), "|fused| / |unfused| bottleneck", "viridis", {}),
           (to_image(maps.change, shape, s), "|fused - unfused| / mean |unfused|", "viridis", {})]
    for j, (data, title, cmap, kw) in enumerate(row):
        show(axes[2, j], data, title, cmap, **kw)
    fig.suptitle(f"FDEP SAMF modulation at the bottleneck (stride {s}; channel means, nearest on the image)\n"
                 + figure_title(model_name, maps.encoder, image_name, trained), fontsize=9)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


# ----------------------------------------------------------------------------- SCAM
@dataclass
class ScamAffine:
    """SCAM's ``gamma`` and ``beta`` ``(C,)`` per modulated feature of one image, the modulation
    scale ``s`` (applied: ``(1 + s (gamma - 1)) f + s beta``) and the VFM fusion weights."""

    gamma: list[np.ndarray]
    beta: list[np.ndarray]
    names: list[str]
    scale: float
    fusion_weights: np.ndarray
    encoder: str


@torch.no_grad()
def scam_affine(teacher: ScamTeacher, image: np.ndarray) -> ScamAffine:
    """``SCAM.affine`` of the frozen encoder's maps of one raw [0, 1] gray image."""
    if not isinstance(teacher, ScamTeacher):
        raise IrlibInputError(f"scam_affine needs an irlib.point.ScamTeacher, got {type(teacher).__name__}")
    gammas, betas = teacher.scam.affine(teacher.vfm_features(_raw(image)))
    host = teacher.host
    names = [f"stage {i} (stride {s})" for i, s in enumerate(host.stage_strides)]
    if teacher.modulate_bottleneck:
        names.append(f"bottleneck (stride {host.bottleneck_stride})")
    return ScamAffine([g.flatten().numpy() for g in gammas], [b.flatten().numpy() for b in betas], names,
                      teacher.scam.scale, teacher.scam.fusion.weights.numpy(), vfm_label(teacher.encoder))


def plot_scam_affine(aff: ScamAffine, model_name: str, image_name: str, trained: str | None = None,
                     path: str | os.PathLike | None = None) -> Any:
    """One column per modulated feature: ``gamma`` (bars from 1) and ``beta`` (bars from 0) per
    channel, with the applied ``1 + s (gamma - 1)`` and ``s beta`` as lines."""
    import matplotlib.pyplot as plt

    from irlib.viz import save_figure

    n, s = len(aff.names), aff.scale
    fig, axes = plt.subplots(2, n, figsize=(3.2 * n, 5.2), squeeze=False)
    for j, (name, g, b) in enumerate(zip(aff.names, aff.gamma, aff.beta)):
        ch = np.arange(g.size)
        axes[0, j].bar(ch, g - 1.0, bottom=1.0, color="tab:blue", width=0.9, label="gamma")
        axes[0, j].plot(ch, 1.0 + s * (g - 1.0), "k.-", lw=0.6, ms=2, label="applied 1 + s(gamma - 1)")
        axes[0, j].axhline(1.0, color="gray", lw=0.6)
        axes[1, j].bar(ch, b, color="tab:orange", width=0.9, label="beta")
        axes[1, j].plot(ch, s * b, "k.-", lw=0.6, ms=2, label="applied s beta")
        axes[1, j].axhline(0.0, color="gray", lw=0.6)
        axes[0, j].set_title(f"{name}: gamma", fontsize=8)
        axes[1, j].set_title(f"{name}: beta", fontsize=8)
        axes[1, j].set_xlabel("channel", fontsize=8)
        for ax in axes[:, j]:
            ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=6, loc="best")
    axes[1, 0].legend(fontsize=6, loc="best")
    weights = ", ".join(f"{w:.2f}" for w in aff.fusion_weights)
    fig.suptitle(f"SCAM per-channel affine (one vector per image), modulation scale s = {s:g}, VFM fusion "
                 f"weights [{weights}]\n" + figure_title(model_name, aff.encoder, image_name, trained), fontsize=9)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


# ----------------------------------------------------------------------------- SimIR, predictions
def simir_figure(model: torch.nn.Module, image: np.ndarray, mask: np.ndarray | None, image_name: str,
                 normalize: Normalize | None = None, trained: str | None = None,
                 path: str | os.PathLike | None = None) -> Any:
    """:func:`irlib.simir.heatmaps.heatmap_figure` (P3 and P2, with and without queries), its
    title's model name followed by the training state."""
    from irlib.simir.heatmaps import heatmap_figure
    from irlib.viz import save_figure

    fig = heatmap_figure(model, image, mask, image_name, normalize=normalize)
    name = getattr(model, "model_name", type(model).__name__)
    fig.suptitle(fig.get_suptitle().replace(name, f"{name} ({trained or UNTRAINED})", 1), fontsize=9)
    if path is not None:
        save_figure(fig, path)
    return fig


def overlay_figure(image: np.ndarray, prob: np.ndarray, mask: np.ndarray, model_name: str, image_name: str,
                   threshold: float = 0.5, trained: str | None = None, encoder: str | None = None,
                   path: str | os.PathLike | None = None, zoom: int = 48) -> Any:
    """Probability map, hits / false alarms / misses at ``threshold`` and a zoom on a target
    (:meth:`irlib.metrics.explorer.ThresholdExplorer.render`, with its legend)."""
    from irlib.metrics.explorer import ThresholdExplorer
    from irlib.viz import save_figure

    explorer = ThresholdExplorer([image], [mask], [image_name], {model_name: [prob]})
    fig = explorer.render(model_name, 0, threshold, zoom)
    fig.suptitle("Prediction overlay: green = hit, red = false alarm, yellow = missed target\n"
                 + figure_title(model_name, encoder, image_name, trained), fontsize=9, y=1.06)
    if path is not None:
        save_figure(fig, path)
    return fig


__all__ = ["EncoderMaps", "FeaturePCA", "SamfMaps", "ScamAffine", "UNTRAINED", "activation_norm", "dataset_normalize",
           "encoder_maps", "feature_pca", "figure_path", "figure_title", "load_trained", "overlay_figure",
           "pick_samples", "plot_encoder_maps", "plot_samf_maps", "plot_scam_affine", "samf_maps", "samf_terms",
           "scam_affine", "simir_figure", "to_image", "vfm_label", "zoom_window"]
