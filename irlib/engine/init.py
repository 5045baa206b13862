"""Initialisation deviations a recipe can name (off in the faithful recipes)."""

from __future__ import annotations

import math

import torch
from torch import nn

from irlib.errors import IrlibInputError


def output_layers(model: nn.Module) -> list[str]:
    """Names of the model's logit layers: every (transposed) convolution with one output channel
    and a bias (the head of every irlib host; all heads of a deep-supervision host)."""
    return [name for name, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.out_channels == 1 and m.bias is not None]


@torch.no_grad()
def apply_head_prior(model: nn.Module, prior: float) -> list[str]:
    """Set the bias of every output layer to ``log(p / (1 - p))`` so that the network starts by
    predicting foreground probability ``p`` everywhere (RetinaNet's prior initialisation).

    Returns the names of the layers changed; raises when the model has none.
    """
    if not 0.0 < prior < 1.0:
        raise IrlibInputError(f"head prior must be in (0, 1), got {prior}")
    names = output_layers(model)
    if not names:
        raise IrlibInputError(f"{type(model).__name__} has no output layer (a 1-channel conv with bias) "
                              "to set a prior on; set recipe.head_prior=None")
    modules = dict(model.named_modules())
    for name in names:
        modules[name].bias.fill_(math.log(prior / (1 - prior)))
    return names
