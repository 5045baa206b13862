"""The encoder ACM and ALCNet share: a stride-4 stem and three residual stages (BasicIRSTD's)."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor

from irlib.models.base import HostFeatures, SirstHost
from irlib.models.layers import res_stage, resnet_stem


class ResStageHost(SirstHost):
    """Base of hosts with ``stem -> layer1 (stride 4) -> layer2 (8) -> layer3 (16)``.

    ``stages = [c1, c2]`` are the decoder's skip features; the bottleneck is ``c3``, the output
    of the last residual stage. Subclasses build their decoder after calling ``__init__``.
    """

    def __init__(self, in_chans: int, layers: Sequence[int], channels: Sequence[int]) -> None:
        super().__init__(in_chans=in_chans, deep_supervision=False)
        c0, c1, c2, c3 = channels
        self.stem = resnet_stem(in_chans, c0)
        self.layer1 = res_stage(2 * c0, c1, layers[0])
        self.layer2 = res_stage(c1, c2, layers[1], stride=2)
        self.layer3 = res_stage(c2, c3, layers[2], stride=2)
        self.stage_channels, self.stage_strides = [c1, c2], [4, 8]
        self.bottleneck_channels, self.bottleneck_stride = c3, 16

    def encode(self, x: Tensor) -> HostFeatures:
        x = self.pad_input(x)
        c1 = self.layer1(self.stem(x))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        return HostFeatures(stages=[c1, c2], bottleneck=c3)
