"""Plain U-Net baseline (Ronneberger et al., 2015) with batch norm, as in BasicIRSTD's ``U-Net``.

Five levels of two 3x3 conv-BN-ReLU layers (convs with bias), widths ``base_width x (1, 2, 4, 8,
16)``, 2x2 max pooling, nearest x2 upsampling followed by a 3x3 conv-BN-ReLU, concatenation
skips and a 1x1 head. The default ``base_width=16`` (widths 16-256, 2.16 M parameters) keeps it
CPU-friendly and close in width to DNANet and MSHNet; ``base_width=64`` is the classic
34.5 M-parameter U-Net of BasicIRSTD.

Host interface: ``stages = [e1, e2, e3, e4]`` (widths x1, x2, x4, x8 at strides 1, 2, 4, 8); the
bottleneck is ``e5``, the output of the deepest double conv (16 x base_width ch, stride 16).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from irlib.models.base import HostFeatures, HostOutput, SirstHost
from irlib.models.registry import register_model


def double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    """Two 3x3 conv (with bias) - BN - ReLU layers."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, 1, 1), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
                         nn.Conv2d(out_ch, out_ch, 3, 1, 1), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


def up_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    """Nearest x2 upsampling, then a 3x3 conv (with bias) - BN - ReLU."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(in_ch, out_ch, 3, 1, 1),
                         nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class UNet(SirstHost):
    """U-Net host.

    Args:
        in_chans: input channels.
        base_width: channels of the first level; level ``i`` has ``base_width * 2**i``.
    """

    def __init__(self, in_chans: int = 1, base_width: int = 16) -> None:
        super().__init__(in_chans=in_chans, deep_supervision=False)
        w = [base_width * 2 ** i for i in range(5)]
        self.enc = nn.ModuleList([double_conv(in_chans, w[0])] + [double_conv(w[i - 1], w[i]) for i in range(1, 5)])
        self.pool = nn.MaxPool2d(2, 2)
        self.up = nn.ModuleList([up_conv(w[i + 1], w[i]) for i in range(4)])
        self.dec = nn.ModuleList([double_conv(2 * w[i], w[i]) for i in range(4)])
        self.head = nn.Conv2d(w[0], 1, 1)
        self.stage_channels, self.stage_strides = w[:4], [1, 2, 4, 8]
        self.bottleneck_channels, self.bottleneck_stride = w[4], 16

    def encode(self, x: Tensor) -> HostFeatures:
        x = self.pad_input(x)
        feats = [self.enc[0](x)]
        for block in self.enc[1:]:
            feats.append(block(self.pool(feats[-1])))
        return HostFeatures(stages=feats[:4], bottleneck=feats[4])

    def decode(self, feats: HostFeatures, size: Sequence[int]) -> HostOutput:
        x = feats.bottleneck
        for i in range(3, -1, -1):
            x = self.dec[i](torch.cat([feats.stages[i], self.up[i](x)], 1))
        return self.finish([self.head(x)], size)


@register_model
def unet(**kwargs) -> UNet:
    """Plain U-Net, widths 16-256 by default (``base_width=64``: the classic 34.5 M U-Net)."""
    return UNet(**kwargs)
