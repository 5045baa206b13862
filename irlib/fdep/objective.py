"""The CO-ISD training step for :func:`irlib.engine.fit`: ``L(main) + lambda * L(light)``."""

from __future__ import annotations

from typing import Any, Callable

import torch

from irlib.engine import Normalize, build_loss
from irlib.fdep.cache import FrozenFeatures
from irlib.fdep.coisd import CoISD


class CoISDObjective:
    """One CO-ISD step: both branches on the same batch, one summed loss, no distillation term.

    With deep supervision the main loss covers only the outputs that depend on the bottleneck
    (see :meth:`CoISD.forward_branches`); the others are counted once, in the light loss. For
    DNANet: ``L = L(main final) + lam * mean(L(light final), L(light side 1..3))``.

    Args:
        loss_fn: the host's loss (name for :func:`irlib.engine.build_loss`, or a callable);
            deep-supervision lists are handled by the loss.
        lam: weight of the light-branch loss (the paper's lambda).
        normalize: host input normalisation; the frozen VFM sees the raw [0, 1] image.
        features: where the SAMF inputs come from. ``None`` (default): the encoder runs on each
            crop. A :class:`irlib.fdep.cache.FrozenFeatures` cuts them from whole-image maps
            (cached or computed on the fly), from the batch's ``index``/``variant``/``offset``.
    """

    def __init__(self, loss_fn: str | Callable[[Any, torch.Tensor], torch.Tensor], lam: float,
                 normalize: Normalize, features: FrozenFeatures | None = None) -> None:
        if lam < 0:
            raise ValueError(f"lambda must be >= 0, got {lam}")
        self.loss_fn = build_loss(loss_fn) if isinstance(loss_fn, str) else loss_fn
        self.lam = float(lam)
        self.normalize = normalize
        self.features = features

    def __call__(self, model: CoISD, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        raw, mask = batch["image"], batch["mask"]
        given = {} if self.features is None else {"vfm": self.features(batch)}  # default: per-crop encoder
        main, light = model.forward_branches(raw, self.normalize(raw), **given)
        loss_main = self.loss_fn(main, mask)
        loss_light = self.loss_fn(light, mask)
        loss = loss_main + self.lam * loss_light
        return loss, {"loss": float(loss.detach()), "main": float(loss_main.detach()),
                      "light": float(loss_light.detach())}
