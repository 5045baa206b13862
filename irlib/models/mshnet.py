"""MSHNet: plain U-Net with a Multi-Scale Head (Liu et al., CVPR 2024, "Infrared Small Target
Detection with Scale and Location Sensitivity").

Configuration of the authors' code: a 1x1 input conv to 16 channels, an encoder of residual CBAM
blocks with channels (16, 32, 64, 128) and (1, 2, 2, 2) blocks, a 256-channel middle stage of 2
blocks, max-pool downsampling, a decoder of residual CBAM stages on ``concat(skip, up(x))``
(bilinear, align_corners), 1x1 heads on every decoder level and a 3x3 conv fusing the four
upsampled maps into the final prediction: 4,065,481 parameters (about 4.07 M, the size cited for
MSHNet in comparison tables).

The paper trains the head with its SLS loss at every scale after a warm-up in which only the
finest head is used; here the final (fused) map is always the prediction. With deep
supervision in training, ``decode`` returns ``[final, m0, m1, m2, m3]``, the side maps upsampled
(bilinear) to the input size.

Host interface: ``stages = [e0, e1, e2, e3]`` (16, 32, 64, 128 ch at strides 1, 2, 4, 8); the
bottleneck is the middle stage's output (256 ch, stride 16).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irlib.models.base import HostFeatures, HostOutput, SirstHost
from irlib.models.layers import cbam_stage
from irlib.models.registry import register_model


def _up(x: Tensor, scale: int = 2) -> Tensor:
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=True)


class MSHNet(SirstHost):
    """MSHNet host.

    Args:
        in_chans: input channels.
        channels: channels of levels 0-4 (level 4 is the middle stage).
        blocks: CBAM blocks of levels 1-4 (level 0 has one).
        deep_supervision: return the four side maps after the final one in training.
    """

    def __init__(self, in_chans: int = 1, channels: Sequence[int] = (16, 32, 64, 128, 256),
                 blocks: Sequence[int] = (2, 2, 2, 2), deep_supervision: bool = True) -> None:
        super().__init__(in_chans=in_chans, deep_supervision=deep_supervision)
        c, nb = list(channels), [1, *blocks]
        self.conv_init = nn.Conv2d(in_chans, c[0], 1)
        self.encoder = nn.ModuleList([cbam_stage(c[0], c[0], 1)] +
                                     [cbam_stage(c[i - 1], c[i], nb[i]) for i in range(1, 4)])
        self.middle = cbam_stage(c[3], c[4], nb[4])
        self.decoder = nn.ModuleList([cbam_stage(c[i] + c[i + 1], c[i], nb[i]) for i in range(4)])
        self.heads = nn.ModuleList([nn.Conv2d(c[i], 1, 1) for i in range(4)])
        self.fuse = nn.Conv2d(4, 1, 3, 1, 1)
        self.stage_channels, self.stage_strides = c[:4], [1, 2, 4, 8]
        self.bottleneck_channels, self.bottleneck_stride = c[4], 16

    def encode(self, x: Tensor) -> HostFeatures:
        x = self.encoder[0](self.conv_init(self.pad_input(x)))
        feats = [x]
        for block in self.encoder[1:]:
            feats.append(block(F.max_pool2d(feats[-1], 2)))
        return HostFeatures(stages=feats, bottleneck=self.middle(F.max_pool2d(feats[-1], 2)))

    def decode(self, feats: HostFeatures, size: Sequence[int]) -> HostOutput:
        x, levels = feats.bottleneck, [None] * 4
        for i in range(3, -1, -1):
            x = levels[i] = self.decoder[i](torch.cat([feats.stages[i], _up(x)], 1))
        masks = [head(t) for head, t in zip(self.heads, levels)]
        final = self.fuse(torch.cat([masks[0]] + [_up(m, 2 ** i) for i, m in enumerate(masks[1:], 1)], 1))
        return self.finish([final, *masks], size)


@register_model
def mshnet(**kwargs) -> MSHNet:
    """MSHNet, authors' configuration (4.07 M)."""
    return MSHNet(**kwargs)
