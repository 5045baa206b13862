"""Input handling shared by the frozen encoders: gray to RGB, normalisation, resize policies."""

from __future__ import annotations

import math
from typing import Union

import torch
import torch.nn.functional as F

from irlib.errors import IrlibInputError

Resize = Union[str, int]
"""``"pad"``, ``"resize"`` or an ``int`` side length; see :func:`fit_input`."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# SAM's pixel_mean / pixel_std are given on the 0-255 scale; divided by 255 they act on [0, 1].
SAM_MEAN = (123.675 / 255, 116.28 / 255, 103.53 / 255)
SAM_STD = (58.395 / 255, 57.12 / 255, 57.375 / 255)
# EfficientNet-Lite was trained with inception-style (x*255 - 127) / 128 inputs.
LITE_MEAN = (127.0 / 255,) * 3
LITE_STD = (128.0 / 255,) * 3


def to_three_channels(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) gray -> (B, 3, H, W) by repetition; 3-channel input is returned unchanged."""
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def fit_input(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, policy: Resize,
              multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Resize, normalise and zero-pad a (B, 3, H, W) [0, 1] batch for a network.

    Policies:

    * ``"pad"``: keep the native resolution; pad bottom/right to a multiple of ``multiple``.
    * ``"resize"``: bilinearly resize each side to the nearest multiple of ``multiple``.
    * ``int`` N: resize so the longer side is N (aspect kept), pad to an N x N square (rounded
      up to a multiple of ``multiple``). SAM's own policy with N = 1024.

    Padding happens after normalisation, with zeros (the mean colour), as SAM does.
    Returns the network input and the (h, w) of the image inside it (the rest is padding).
    """
    h, w = x.shape[-2:]
    if isinstance(policy, bool) or not isinstance(policy, (str, int)):
        raise IrlibInputError(f"resize={policy!r}: use 'pad', 'resize' or an int side length")
    if policy == "pad":
        valid = (h, w)
    elif policy == "resize":
        valid = (max(multiple, round(h / multiple) * multiple), max(multiple, round(w / multiple) * multiple))
    elif isinstance(policy, int) and policy > 0:
        scale = policy / max(h, w)
        valid = (max(1, round(h * scale)), max(1, round(w * scale)))
    else:
        raise IrlibInputError(f"resize={policy!r}: use 'pad', 'resize' or a positive int side length")
    x = (_resize(x, valid) - mean) / std
    if isinstance(policy, int):
        side = math.ceil(policy / multiple) * multiple
        target = (side, side)
    else:
        target = (math.ceil(valid[0] / multiple) * multiple, math.ceil(valid[1] / multiple) * multiple)
    pad_h, pad_w = target[0] - valid[0], target[1] - valid[1]
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    return x, valid
