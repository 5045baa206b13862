"""Training objectives: ``objective(model, batch) -> (loss, logs)``.

The loop moves the batch's tensors to the device, calls the objective, checks the loss, and
steps the optimiser. A method with its own step (FDEP's CO-ISD: main + light branch) supplies
its own objective; ``logs`` are floats (the loss terms) shown in the progress bar, averaged per
epoch into :class:`History`, and quoted when a loss turns NaN/inf. An objective with a
``set_epoch(epoch)`` method is told each epoch before it starts (loss warm-ups, schedules).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import torch
from torch import nn

from irlib.engine.losses import WarmupLoss, build_loss
from irlib.engine.normalize import Normalize
from irlib.engine.recipes import Recipe

Batch = dict[str, Any]


class Objective(Protocol):
    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]: ...


def recipe_loss(recipe: Recipe) -> nn.Module:
    """The recipe's loss, wrapped in a :class:`WarmupLoss` when it names a warm-up loss."""
    main = build_loss(recipe.loss)
    if recipe.warmup_loss is None or recipe.warmup_loss_epochs <= 0:
        return main
    return WarmupLoss(main, build_loss(recipe.warmup_loss), recipe.warmup_loss_epochs)


class SupervisedObjective:
    """Plain supervised step: ``loss_fn(model(normalize(batch["image"])), batch["mask"])``.

    When the batch holds ``"weight"`` (one float per image) the per-image losses are averaged
    with those weights (``loss_fn.weighted``), e.g. for sample reweighting.
    """

    def __init__(self, loss_fn: Callable[[Any, torch.Tensor], torch.Tensor] | str,
                 normalize: Normalize) -> None:
        self.loss_fn = build_loss(loss_fn) if isinstance(loss_fn, str) else loss_fn
        self.normalize = normalize

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.loss_fn, "set_epoch"):
            self.loss_fn.set_epoch(epoch)

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        out = model(self.normalize(batch["image"]))
        if "weight" in batch:
            loss = self.loss_fn.weighted(out, batch["mask"], batch["weight"])
        else:
            loss = self.loss_fn(out, batch["mask"])
        return loss, {"loss": float(loss.detach())}
