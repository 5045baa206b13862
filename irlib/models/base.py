"""The interface every SIRST host network implements: encoder, bottleneck, decoder, separately.

A method package (FDEP, point supervision) works on any host through three calls::

    feats = host.encode(x)                       # HostFeatures(stages=[...], bottleneck=...)
    feats = dataclasses.replace(feats, bottleneck=f(feats.bottleneck))   # same shape
    out = host.decode(feats, x.shape[-2:])       # logits (B, 1, H, W), or a list of them

``host(x)`` is exactly ``host.decode(host.encode(x), x.shape[-2:])``. ``decode`` never modifies
the tensors of ``feats`` in place, so the same features can be decoded twice (FDEP's main and
light branches share one encoder pass).

Inputs of any size are accepted: ``encode`` zero-pads the bottom and right edges up to a multiple
of ``pad_multiple`` (the bottleneck stride) and ``decode`` crops the logits back to ``size``.
Zero is the dataset mean after the engine's normalisation, so the padding is mean-gray.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irlib.errors import IrlibInputError

HostOutput = Tensor | list[Tensor]


@dataclass
class HostFeatures:
    """What ``encode`` returns.

    Attributes:
        stages: skip features the decoder consumes, shallow to deep; ``stages[i]`` has
            ``stage_channels[i]`` channels at ``stage_strides[i]`` of the padded input.
        bottleneck: the deepest encoder feature, ``(B, bottleneck_channels, Hp / s, Wp / s)``
            with ``s = bottleneck_stride`` and ``(Hp, Wp)`` the padded input size. A module
            inserted here must return a tensor of the same shape.
    """

    stages: list[Tensor]
    bottleneck: Tensor


class SirstHost(nn.Module, ABC):
    """Base class of the host detectors: ``encode`` / ``decode`` / ``forward`` on logits.

    Subclasses set in ``__init__``: ``stage_channels``, ``stage_strides``,
    ``bottleneck_channels`` (even: FDEP's SAMF splits it in halves) and ``bottleneck_stride``.
    ``deep_supervision``: when True and the module is in training mode, ``decode`` returns a list
    of logits maps, all ``(B, 1, H, W)``, with the final prediction first.
    """

    stage_channels: list[int]
    stage_strides: list[int]
    bottleneck_channels: int
    bottleneck_stride: int

    def __init__(self, in_chans: int = 1, deep_supervision: bool = False) -> None:
        super().__init__()
        if in_chans < 1:
            raise IrlibInputError(f"in_chans must be >= 1, got {in_chans}")
        self.in_chans = int(in_chans)
        self.deep_supervision = bool(deep_supervision)

    # ----------------------------------------------------------------------------- interface
    @abstractmethod
    def encode(self, x: Tensor) -> HostFeatures:
        """Run the encoder on ``x`` (B, in_chans, H, W), any H and W."""

    @abstractmethod
    def decode(self, feats: HostFeatures, size: Sequence[int]) -> HostOutput:
        """Run the decoder; logits cropped to ``size`` = the (H, W) given to ``encode``."""

    def forward(self, x: Tensor) -> HostOutput:
        return self.decode(self.encode(x), x.shape[-2:])

    # ----------------------------------------------------------------------------- helpers
    @property
    def pad_multiple(self) -> int:
        """Input sides are padded up to a multiple of this (the bottleneck stride)."""
        return self.bottleneck_stride

    def check_input(self, x: Tensor) -> None:
        """Raise :class:`IrlibInputError` unless ``x`` is ``(B, in_chans, H, W)`` floating point."""
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != self.in_chans:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise IrlibInputError(f"{type(self).__name__} expects x of shape (B, {self.in_chans}, H, W), "
                                  f"got {shape}; add the channel axis with x[:, None] for (B, H, W)")
        if not x.is_floating_point():
            raise IrlibInputError(f"{type(self).__name__} expects a floating point input, got {x.dtype}; "
                                  "normalise images with irlib.engine.Normalize first")

    def pad_input(self, x: Tensor) -> Tensor:
        """Check ``x`` and zero-pad its bottom/right edges to a multiple of ``pad_multiple``."""
        self.check_input(x)
        m = self.pad_multiple
        h, w = x.shape[-2:]
        ph, pw = (-h) % m, (-w) % m
        return F.pad(x, (0, pw, 0, ph)) if ph or pw else x

    def finish(self, maps: list[Tensor], size: Sequence[int]) -> HostOutput:
        """Bring logits maps to the padded input size, crop to ``size``; final map first.

        Returns the list when deep supervision is on and the module trains, else ``maps[0]``.
        """
        h, w = int(size[0]), int(size[1])
        ph, pw = -(-h // self.pad_multiple) * self.pad_multiple, -(-w // self.pad_multiple) * self.pad_multiple
        maps = maps if (self.deep_supervision and self.training) else maps[:1]
        out = []
        for m in maps:
            if m.shape[-2:] != (ph, pw):
                m = F.interpolate(m, size=(ph, pw), mode="bilinear", align_corners=False)
            out.append(m[..., :h, :w])
        return out if (self.deep_supervision and self.training) else out[0]

    def extra_repr(self) -> str:
        return (f"in_chans={self.in_chans}, stage_channels={self.stage_channels}, "
                f"stage_strides={self.stage_strides}, bottleneck=({self.bottleneck_channels}, "
                f"stride {self.bottleneck_stride}), deep_supervision={self.deep_supervision}")
