"""Parameter and FLOP counts of a host (``torch.utils.flop_counter``).

Convention: :func:`count_flops` returns **FLOPs = 2 x multiply-accumulates** of the convolutions
and matrix products, as ``FlopCounterMode`` counts them. IRSTD papers (thop-based tables such as
BasicIRSTD's) print multiply-accumulates and call them "FLOPs"; :func:`count_macs` gives that
number (``count_flops / 2``). Neither counts batch norm, activations, pooling or interpolation,
which thop partly includes, so thop numbers are slightly larger. Attention is counted, also
through the CPU flash-attention kernel that PyTorch's FLOP table leaves out.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

_CPU_SDPA = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


def _cpu_sdpa_flop(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
    """PyTorch's SDPA formula for the CPU kernel (``torch.utils.flop_counter`` omits it)."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def flop_counter() -> FlopCounterMode:
    """A ``FlopCounterMode`` that also counts CPU scaled-dot-product attention."""
    return FlopCounterMode(display=False, custom_mapping={_CPU_SDPA: _cpu_sdpa_flop})


@contextmanager
def parameters_frozen(model: nn.Module) -> Iterator[None]:
    """Parameters temporarily without ``requires_grad``: FlopCounterMode's module tracker then
    registers no backward hooks (it fails on expanded parameter views, e.g. queries, under
    ``no_grad``)."""
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)


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
        with parameters_frozen(model), torch.no_grad(), flop_counter() as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def count_macs(model: nn.Module, input_size: Sequence[int] = (1, 1, 256, 256)) -> int:
    """Multiply-accumulates, the quantity IRSTD papers report as "FLOPs"."""
    return count_flops(model, input_size) // 2
