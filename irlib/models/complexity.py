"""Parameter and FLOP counts of a host (``torch.utils.flop_counter``).

Convention: :func:`count_flops` returns **FLOPs = 2 x multiply-accumulates** of the convolutions
and matrix products, as ``FlopCounterMode`` counts them. IRSTD papers (thop-based tables such as
BasicIRSTD's) print multiply-accumulates and call them "FLOPs"; :func:`count_macs` gives that
number (``count_flops / 2``). Neither counts batch norm, activations, pooling or interpolation,
which thop partly includes, so thop numbers are slightly larger.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (buffers such as BN running statistics excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, input_size: Sequence[int] = (1, 1, 256, 256)) -> int:
    """FLOPs (2 x MACs) of one inference forward on a zero input of ``input_size``, eval mode."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros(tuple(input_size), device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def count_macs(model: nn.Module, input_size: Sequence[int] = (1, 1, 256, 256)) -> int:
    """Multiply-accumulates, the quantity IRSTD papers report as "FLOPs"."""
    return count_flops(model, input_size) // 2
