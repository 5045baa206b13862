"""The optimiser and learning-rate schedule of a :class:`irlib.engine.recipes.Recipe`.

The schedule is a :class:`torch.optim.lr_scheduler.LambdaLR` stepped after every optimiser step;
its factor is a function of the epoch ``t = step / steps_per_epoch``, floored when the recipe
steps per epoch. So ``MultiStepLR(milestones=[200, 300])`` stepped once per epoch, as BasicIRSTD
does, is ``schedule="multistep", step_per="epoch"``: the lr of epoch ``e`` (0-based) is
``lr * gamma ** #{m : e >= m}``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from irlib.engine.recipes import Recipe
from irlib.errors import IrlibInputError

_NO_DECAY_NAMES = ("embed", "query", "queries", "token")


def parameter_groups(model: nn.Module, weight_decay: float, no_decay_norm_bias: bool) -> list[dict]:
    """Trainable parameters, split into a decayed and a non-decayed group when asked.

    Without decay: every parameter with at most one dimension (biases, normalisation weights)
    and every parameter whose name contains ``embed``, ``query``/``queries`` or ``token``.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise IrlibInputError("the model has no parameter with requires_grad=True")
    if not no_decay_norm_bias or weight_decay == 0:
        return [{"params": [p for _, p in named], "weight_decay": weight_decay}]
    decay, no_decay = [], []
    for name, p in named:
        skip = p.ndim <= 1 or any(k in name.lower() for k in _NO_DECAY_NAMES)
        (no_decay if skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """The recipe's optimiser over ``model``'s trainable parameters."""
    groups = parameter_groups(model, recipe.weight_decay, recipe.no_decay_norm_bias)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(groups, lr=recipe.lr)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=recipe.lr)
    if recipe.optimizer == "adagrad":
        return torch.optim.Adagrad(groups, lr=recipe.lr)
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum)


def lr_factor(recipe: Recipe) -> Callable[[float], float]:
    """``factor(t)``: the multiplier of ``recipe.lr`` at epoch ``t`` (a float, 0-based)."""
    warm, start = recipe.warmup_epochs, recipe.warmup_start
    total = recipe.cosine_epochs or recipe.epochs
    floor_ratio = recipe.min_lr / recipe.lr

    def main(t: float) -> float:
        if recipe.schedule == "multistep":
            return recipe.gamma ** sum(t >= m for m in recipe.milestones)
        if recipe.schedule == "cosine":
            span = max(total - warm, 1e-12)
            u = min(max(t - warm, 0.0), span) / span
            return floor_ratio + (1 - floor_ratio) * 0.5 * (1 + math.cos(math.pi * u))
        if recipe.schedule == "poly":
            return max(0.0, 1 - min(t, recipe.epochs) / recipe.epochs) ** recipe.poly_power
        return 1.0

    def factor(t: float) -> float:
        if warm > 0 and t < warm:
            return (start + (1 - start) * t / warm) * main(t)
        return main(t)

    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler to step after every optimiser step; see the module docstring."""
    if steps_per_epoch < 1:
        raise IrlibInputError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    factor = lr_factor(recipe)
    per_epoch = recipe.step_per == "epoch"

    def at_step(step: int) -> float:
        t = step / steps_per_epoch
        return factor(math.floor(t) if per_epoch else t)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, at_step)
