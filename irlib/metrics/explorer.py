"""Interactive threshold explorer: hits, misses and false alarms of one image, live.

:func:`match_overlay` does the work (pure numpy, testable): at a threshold it labels the
prediction, runs the BasicIRSTD matching and paints matched predictions green, false alarms red
and missed targets yellow over the gray image. :class:`ThresholdExplorer` wraps it in
ipywidgets (method, image and threshold sliders) and reads the set-level metrics at the slider's
threshold from precomputed sweeps, so moving a slider costs one image, not the test set. It
builds and renders without a frontend (papermill / nbval run it headless).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from irlib.metrics.components import components, greedy_match
from irlib.metrics.standard import MetricOptions, count_image
from irlib.metrics.sweep import SweepCounts
from irlib.metrics.thresholds import binarize
from irlib.metrics.validate import check_pair

HIT = (0.10, 0.85, 0.20)
FALSE_ALARM = (0.95, 0.15, 0.15)
MISS = (1.00, 0.85, 0.00)


@dataclass
class Overlay:
    """An RGB overlay (H, W, 3) in [0, 1] and what it shows."""

    rgb: np.ndarray
    n_targets: int
    hits: int
    fa_pixels: int
    fa_regions: int
    iou: float
    gt_centroids: np.ndarray


def match_overlay(image: np.ndarray, prob: np.ndarray, mask: np.ndarray, threshold: float = 0.5,
                  options: MetricOptions = MetricOptions(), alpha: float = 0.65) -> Overlay:
    """Paint hits (green), false alarms (red) and missed targets (yellow) at ``threshold``."""
    p, m = check_pair(prob, mask, scores=options.scores)
    pred = binarize(p, threshold, options.scores)
    gt_lab, gt = components(m, options.connectivity)
    pr_lab, pc = components(pred, options.connectivity)
    match = greedy_match(gt, pc, options.distance)
    matched = np.zeros(pc.n + 1, dtype=bool)
    matched[match[match >= 0] + 1] = True
    missed = np.zeros(gt.n + 1, dtype=bool)
    missed[np.flatnonzero(match < 0) + 1] = True
    g = np.asarray(image, dtype=np.float32)
    g = (g - g.min()) / max(float(g.max() - g.min()), 1e-12)
    rgb = np.repeat(g[..., None], 3, axis=2)
    layers = [(missed[gt_lab], MISS), (pred & ~matched[pr_lab], FALSE_ALARM),
              (matched[pr_lab], HIT)]
    for where, colour in layers:
        rgb[where] = (1 - alpha) * rgb[where] + alpha * np.asarray(colour, dtype=np.float32)
    c = count_image(p, m, threshold, options)
    return Overlay(rgb=rgb, n_targets=gt.n, hits=c.hits, fa_pixels=c.fa_pixels,
                   fa_regions=int(pc.n - (match >= 0).sum()), iou=c.iou,
                   gt_centroids=gt.centroids)


def draw_overlay(ax, ov: Overlay, title: str = "") -> None:
    """Show an :class:`Overlay` on a matplotlib axis, with target centroids marked."""
    ax.imshow(ov.rgb, interpolation="nearest")
    if ov.gt_centroids.size:
        ax.scatter(ov.gt_centroids[:, 1], ov.gt_centroids[:, 0], s=60, marker="+",
                   c="cyan", linewidths=1.0)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def legend_handles() -> list:
    """Legend entries for the colours of :meth:`ThresholdExplorer.render`."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    return [Patch(color=HIT, label="hit (matched prediction)"),
            Patch(color=FALSE_ALARM, label="false alarm"),
            Patch(color=MISS, label="missed target"),
            Line2D([], [], color="cyan", lw=1.0, label="target outline (map panel)"),
            Line2D([], [], color="cyan", marker="+", ls="", label="target centroid")]


class ThresholdExplorer:
    """Threshold sliders over saved maps: live overlay plus set-level metrics from a sweep.

    ``images``, ``masks``, ``names``: the test set; ``maps``: method name -> list of maps (same
    order); ``sweeps``: method name -> :class:`SweepCounts` of those maps (for set metrics).
    """

    def __init__(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                 names: Sequence[str], maps: Mapping[str, Sequence[np.ndarray]],
                 sweeps: Mapping[str, SweepCounts] | None = None,
                 options: MetricOptions = MetricOptions()):
        self.images, self.masks, self.names = list(images), list(masks), list(names)
        self.maps = {k: list(v) for k, v in maps.items()}
        self.sweeps = dict(sweeps or {})
        self.options = options
        self._widgets: dict[str, Any] = {}

    def grid(self) -> np.ndarray | None:
        """The threshold grid of the sweeps (that of the first method's), ``None`` without sweeps."""
        return np.asarray(next(iter(self.sweeps.values())).thresholds) if self.sweeps else None

    def nearest_threshold(self, threshold: float) -> float:
        """``threshold`` moved to the nearest point of :meth:`grid` (unchanged without sweeps)."""
        grid = self.grid()
        return float(threshold) if grid is None else float(grid[int(np.argmin(np.abs(grid - threshold)))])

    def set_metrics(self, method: str, threshold: float) -> dict[str, float] | None:
        """Set-level IoU/nIoU/Pd/Fa at the grid threshold nearest ``threshold``."""
        c = self.sweeps.get(method)
        if c is None:
            return None
        k = int(np.argmin(np.abs(c.thresholds - threshold)))
        out = c.at(float(c.thresholds[k]))
        out["threshold"] = float(c.thresholds[k])
        return out

    def render(self, method: str, index: int, threshold: float, zoom: int = 48):
        """A matplotlib figure for one image and threshold: map, overlay, and a zoom on a target.

        The zoom (``zoom`` px square) centres on the first target, or on the map's maximum when
        the image has none; small targets are invisible at full size.
        """
        import matplotlib.pyplot as plt

        prob = np.asarray(self.maps[method][index])
        mask = self.masks[index]
        ov = match_overlay(self.images[index], prob, mask, threshold, self.options)
        if ov.gt_centroids.size:
            cr, cc = ov.gt_centroids[0]
        else:
            cr, cc = np.unravel_index(int(np.argmax(prob)), prob.shape)
        h, w = prob.shape
        r0 = int(np.clip(round(cr) - zoom // 2, 0, max(h - zoom, 0)))
        c0 = int(np.clip(round(cc) - zoom // 2, 0, max(w - zoom, 0)))
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), width_ratios=[1.3, 1.3, 1])
        axes[0].imshow(prob, cmap="magma", vmin=0, vmax=1, interpolation="nearest")
        if mask.any():
            axes[0].contour(mask.astype(np.float32), levels=[0.5], colors="cyan", linewidths=0.6)
        axes[0].set_title(f"{method} map, {self.names[index]}", fontsize=9)
        axes[0].set_axis_off()
        draw_overlay(axes[1], ov, f"t={threshold:.3f}: {ov.hits}/{ov.n_targets} hits, "
                                  f"{ov.fa_regions} false regions ({ov.fa_pixels} px), "
                                  f"IoU {100 * ov.iou:.1f} %")
        axes[1].add_patch(plt.Rectangle((c0 - 0.5, r0 - 0.5), min(zoom, w), min(zoom, h),
                                        fill=False, ec="white", lw=0.8))
        axes[2].imshow(ov.rgb[r0:r0 + zoom, c0:c0 + zoom], interpolation="nearest")
        axes[2].set_title("zoom", fontsize=9)
        axes[2].set_axis_off()
        fig.tight_layout()
        fig.legend(handles=legend_handles(), loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=5, fontsize=8, frameon=False)
        return fig

    def describe(self, method: str, threshold: float) -> str:
        """HTML line with the set-level metrics of ``method`` at ``threshold``."""
        s = self.set_metrics(method, threshold)
        if s is None:
            return f"<b>{method}</b>: no sweep given"
        return (f"<b>{method}</b> @ t={s['threshold']:.3f} on {s['n_images']} images: "
                f"IoU {100 * s['IoU']:.2f}, nIoU {100 * s['nIoU']:.2f}, "
                f"Pd {100 * s['Pd']:.2f}, Fa {1e6 * s['Fa']:.1f} x1e-6 "
                f"<span style='color:#1a1'>green = hit</span>, "
                f"<span style='color:#e22'>red = false alarm</span>, "
                f"<span style='color:#cb0'>yellow = missed target</span>")

    def widget(self, method: str | None = None, index: int = 0, threshold: float = 0.5):
        """The ipywidgets UI (a VBox); call ``update()`` or move a slider to redraw."""
        import ipywidgets as w
        import matplotlib.pyplot as plt
        from IPython.display import display

        methods = list(self.maps)
        dd = w.Dropdown(options=methods, value=method or methods[0], description="method")
        img = w.SelectionSlider(options=[(name, i) for i, name in enumerate(self.names)], index=index,
                                description="image", continuous_update=False)  # shows the image's name
        grid = self.grid()
        if grid is None:
            thr = w.FloatSlider(value=threshold, min=0.005, max=0.995, step=0.005,
                                description="threshold", readout_format=".3f",
                                continuous_update=False)
        else:  # the sweep's own thresholds, so the slider, the overlay and the metrics line agree
            thr = w.SelectionSlider(options=[(f"{t:.3f}", float(t)) for t in grid],
                                    value=self.nearest_threshold(threshold), description="threshold",
                                    continuous_update=False)
        html = w.HTML()
        out = w.Output()

        def update(*_: Any) -> None:
            html.value = self.describe(dd.value, thr.value)
            out.clear_output(wait=True)
            with out:
                fig = self.render(dd.value, img.value, thr.value)
                display(fig)
                plt.close(fig)

        for widget in (dd, img, thr):
            widget.observe(update, names="value")
        self._widgets = {"method": dd, "image": img, "threshold": thr, "html": html, "out": out,
                         "update": update}
        update()
        return w.VBox([w.HBox([dd, img, thr]), html, out])

    def update(self) -> None:
        """Redraw (what a slider move triggers); a no-op before :meth:`widget`."""
        if self._widgets:
            self._widgets["update"]()
