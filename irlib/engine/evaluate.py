"""Native-resolution inference and evaluation.

Each image is normalised, zero-padded bottom/right to a multiple of 32 (zero = the dataset mean
after normalisation, as the hosts pad), run through the model in eval mode, cropped back to its
own size and passed through a sigmoid: float32 probability maps ``(H, W)`` for
:mod:`irlib.metrics`. With ``out_dir`` they are saved in irlib.metrics' predictions format
(``<name>.npy`` per image plus ``predictions.json``, via
:func:`irlib.metrics.io.save_predictions`), so :func:`irlib.metrics.io.load_predictions` reads
them back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from irlib.engine.normalize import Normalize
from irlib.engine.trainer import resolve_device
from irlib.errors import IrlibInputError

Prediction = tuple[str, np.ndarray, "np.ndarray | None"]


def _item(item: Any, index: int) -> tuple[torch.Tensor, np.ndarray | None, str]:
    """(image (1,H,W) tensor, mask (H,W) bool or None, name) from a dict item or a Sample."""
    if isinstance(item, dict):
        image, mask, name = item["image"], item.get("mask"), item.get("name")
    else:
        image, mask, name = item.image, getattr(item, "mask", None), getattr(item, "name", None)
    if not isinstance(image, torch.Tensor):
        image = torch.from_numpy(np.asarray(image, dtype=np.float32))
    image = image[None] if image.ndim == 2 else image
    name = str(name) if name else f"{index:05d}"
    if image.ndim != 3 or image.shape[0] != 1:
        raise IrlibInputError(f"predict: image {name!r} has shape {tuple(image.shape)}; "
                              "expected (1, H, W) or (H, W)")
    if mask is not None:
        mask = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        mask = mask.reshape(image.shape[-2:]) > 0.5
    return image.float(), mask, name


@torch.no_grad()
def iter_predictions(model: nn.Module, dataset: Any, normalize: Normalize,
                     device: str | torch.device = "auto", multiple: int = 32) -> Iterator[Prediction]:
    """Yield ``(name, probability map (H, W) float32, mask (H, W) bool or None)`` per item."""
    device = resolve_device(device)
    was_training = model.training
    model.to(device).eval()
    try:
        for i in range(len(dataset)):
            image, mask, name = _item(dataset[i], i)
            h, w = image.shape[-2:]
            x = F.pad(normalize(image[None].to(device)), (0, -w % multiple, 0, -h % multiple))
            logits = model(x)
            if isinstance(logits, (list, tuple)):
                logits = logits[0]
            prob = torch.sigmoid(logits[0, 0, :h, :w].float()).cpu().numpy()
            yield name, prob, mask
    finally:
        model.train(was_training)


def _save(out_dir: str | os.PathLike, stream: Iterable[tuple[str, np.ndarray]], model: nn.Module,
          normalize: Normalize, fmt: str = "npy") -> None:
    from irlib.metrics.io import save_predictions

    save_predictions(out_dir, stream, fmt=fmt, params={"model": type(model).__name__,
                                                       "normalize": normalize.to_dict()})


def predict(model: nn.Module, dataset: Any, normalize: Normalize, device: str | torch.device = "auto",
            out_dir: str | os.PathLike | None = None) -> list[np.ndarray]:
    """Probability maps at native resolution, one per item (dicts or :class:`irlib.data.Sample`)."""
    stream = iter_predictions(model, dataset, normalize, device)
    if out_dir is None:
        return [p for _, p, _ in stream]
    probs: list[np.ndarray] = []

    def keep() -> Iterator[tuple[str, np.ndarray]]:
        for name, prob, _ in stream:
            probs.append(prob)
            yield name, prob

    _save(out_dir, keep(), model, normalize)
    return probs


@dataclass
class Evaluation:
    """What :func:`evaluate_model` measured.

    Attributes:
        metrics: ``IoU, nIoU, Pd, Fa`` (fractions, threshold ``threshold``) and the pooled counts
            of :class:`irlib.metrics.SirstMetrics`, plus ``HSE, HSE_pixel, HSE_target`` when
            the threshold sweep ran.
        curves: the :class:`irlib.metrics.SweepCurves` of the sweep (``None`` without it).
        samples: probability maps of the images whose index was in ``keep``, by name.
    """

    metrics: dict[str, float]
    curves: Any = None
    samples: dict[str, np.ndarray] = field(default_factory=dict)

    def row(self) -> dict[str, float]:
        """The table form: IoU, nIoU, Pd in percent, Fa in 1e-6, HSE terms in [0, 1]."""
        m = self.metrics
        out = {"IoU": 100 * m["IoU"], "nIoU": 100 * m["nIoU"], "Pd": 100 * m["Pd"], "Fa_1e-6": 1e6 * m["Fa"]}
        out.update({k: m[k] for k in ("HSE", "HSE_pixel", "HSE_target") if k in m})
        return out


def evaluate_model(model: nn.Module, dataset: Any, normalize: Normalize, device: str | torch.device = "auto",
                   *, threshold: float = 0.5, sweep: bool = False, keep: Sequence[int] = (),
                   out_dir: str | os.PathLike | None = None, save_format: str = "npy",
                   **metric_options: Any) -> Evaluation:
    """Score ``model`` on ``dataset`` at native resolution: the one evaluation path of irlib.

    The predictions stream into :class:`irlib.metrics.SirstMetrics` (``threshold``,
    ``metric_options`` such as ``distance`` or ``connectivity``) and, with ``sweep``, into
    :class:`irlib.metrics.ThresholdSweep` for HSE over its default grid. ``keep`` lists image
    indices whose probability maps are returned; ``out_dir`` saves every map in irlib.metrics'
    predictions format (``save_format`` ``"npy"``, ``"npz"`` or 8-bit ``"png"``; the metrics
    returned are those of the float maps).
    """
    from irlib.metrics import SirstMetrics, ThresholdSweep, hse

    standard = SirstMetrics(threshold=threshold, **metric_options)
    thresholds = ThresholdSweep() if sweep else None
    samples: dict[str, np.ndarray] = {}
    wanted = set(int(i) for i in keep)

    def scored() -> Iterator[tuple[str, np.ndarray]]:
        for i, (name, prob, mask) in enumerate(iter_predictions(model, dataset, normalize, device)):
            if mask is None:
                raise IrlibInputError(f"evaluate_model: item {name!r} has no mask")
            standard.update(prob, mask, name=name)
            if thresholds is not None:
                thresholds.update(prob, mask, name=name)
            if i in wanted:
                samples[name] = prob
            yield name, prob

    if out_dir is None:
        for _ in scored():
            pass
    else:
        _save(out_dir, scored(), model, normalize, save_format)
    metrics = {k: float(v) for k, v in standard.compute().items()}
    curves = None
    if thresholds is not None:
        curves = thresholds.compute()
        score = hse(curves)
        metrics.update({"HSE": float(score.score), "HSE_pixel": float(score.pixel),
                        "HSE_target": float(score.target)})
    return Evaluation(metrics, curves, samples)
