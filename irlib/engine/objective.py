"""Training objectives: ``objective(model, batch) -> (loss, logs)``.

The loop moves the batch's tensors to the device, calls the objective, checks the loss, and
steps the optimiser. A method with its own step (FDEP's CO-ISD: main + light branch) supplies
its own objective; ``logs`` are floats (the loss terms) shown in the progress bar, averaged per
epoch into :class:`History`, and quoted when a loss turns NaN/inf.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import torch
from torch import nn

from irlib.engine.losses import build_loss
from irlib.engine.normalize import Normalize

Batch = dict[str, Any]


class Objective(Protocol):
    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]: ...


class SupervisedObjective:
    """Plain supervised step: ``loss_fn(model(normalize(batch["image"])), batch["mask"])``."""

    def __init__(self, loss_fn: Callable[[Any, torch.Tensor], torch.Tensor] | str,
                 normalize: Normalize) -> None:
        self.loss_fn = build_loss(loss_fn) if isinstance(loss_fn, str) else loss_fn
        self.normalize = normalize

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        out = model(self.normalize(batch["image"]))
        loss = self.loss_fn(out, batch["mask"])
        return loss, {"loss": float(loss.detach())}
