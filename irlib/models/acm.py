"""ACM: Asymmetric Contextual Modulation (Dai et al., WACV 2021), U-Net variant (ACM-U-Net).

Configuration of BasicIRSTD's ``ACM`` (``ASKCResUNet``): 3 basic blocks per stage, channels
(8, 16, 32, 64), a stride-4 stem, two decoder levels with transposed convolutions, asymmetric
bi-directional fusion (reduction 4) and an FCN head at stride 4 upsampled x4. 397,823
parameters for a 1-channel input (published: 0.398 M).

Host interface: ``stages = [c1 (16 ch, stride 4), c2 (32 ch, stride 8)]``; the bottleneck is
``c3``, the output of the last residual stage (64 ch, stride 16), which the decoder upsamples
and fuses with ``c2`` and ``c1``.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from irlib.models.base import HostFeatures, HostOutput
from irlib.models.layers import FCNHead, res_stage, set_reference_bn_momentum
from irlib.models.registry import register_model
from irlib.models.res_encoder import ResStageHost


class AsymBiFusion(nn.Module):
    """ACM's fusion: global (top-down) channel attention of the deep feature gates the shallow
    one; point-wise (bottom-up) attention of the shallow feature gates the deep one; 3x3 conv."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        mid = channels // reduction
        self.topdown = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, mid, 1), nn.BatchNorm2d(mid),
                                     nn.ReLU(inplace=True), nn.Conv2d(mid, channels, 1), nn.BatchNorm2d(channels),
                                     nn.Sigmoid())
        self.bottomup = nn.Sequential(nn.Conv2d(channels, mid, 1), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                                      nn.Conv2d(mid, channels, 1), nn.BatchNorm2d(channels), nn.Sigmoid())
        self.post = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1), nn.BatchNorm2d(channels),
                                  nn.ReLU(inplace=True))

    def forward(self, high: Tensor, low: Tensor) -> Tensor:
        fused = 2 * low * self.topdown(high) + 2 * high * self.bottomup(low)
        return self.post(fused)


class ACM(ResStageHost):
    """ACM-U-Net host. The top-down branch pools globally and has batch norm, so train with
    batch size >= 2 (as the original).

    Args:
        in_chans: input channels.
        layers: basic blocks per encoder stage (and per decoder level).
        channels: (stem width, stage 1, stage 2, stage 3) channels.
        reduction: channel reduction of the fusion attention branches.
        bn_momentum: momentum of the stem, downsample, fusion and head BatchNorms. 0.9 is
            BasicIRSTD's (its running statistics follow the latest batches); 0.1 is PyTorch's
            usual average. Training is the same either way: it changes only the statistics that
            evaluation uses.
    """

    def __init__(self, in_chans: int = 1, layers: Sequence[int] = (3, 3, 3),
                 channels: Sequence[int] = (8, 16, 32, 64), reduction: int = 4,
                 bn_momentum: float = 0.9) -> None:
        super().__init__(in_chans, layers, channels)
        c0, c1, c2, c3 = channels
        self.deconv2 = nn.ConvTranspose2d(c3, c2, 4, 2, 1)
        self.fuse2 = AsymBiFusion(c2, reduction)
        self.uplayer2 = res_stage(c2, c2, layers[1])
        self.deconv1 = nn.ConvTranspose2d(c2, c1, 4, 2, 1)
        self.fuse1 = AsymBiFusion(c1, reduction)
        self.uplayer1 = res_stage(c1, c1, layers[0])
        self.head = FCNHead(c1, 1)
        set_reference_bn_momentum(self, bn_momentum)

    def decode(self, feats: HostFeatures, size: Sequence[int]) -> HostOutput:
        c1, c2 = feats.stages
        x = self.uplayer2(self.fuse2(self.deconv2(feats.bottleneck), c2))
        x = self.uplayer1(self.fuse1(self.deconv1(x), c1))
        return self.finish([self.head(x)], size)


@register_model
def acm(**kwargs) -> ACM:
    """ACM-U-Net, BasicIRSTD configuration (0.398 M parameters)."""
    return ACM(**kwargs)
