"""ALCNet: Attentional Local Contrast Network (Dai et al., TGRS 2021).

ALCNet's two defining parts, as described in the paper and its public code (open-alcnet):

* a multiscale **cyclic-shift local contrast** layer (a parameter-free, depth-wise, nonlinear
  refinement): for a shift ``s`` the feature map is cyclically rolled in 8 directions and, per
  pair of opposite directions, ``(B_i - X) * (B_{i+4} - X)`` is taken; the minimum over the four
  pairs is the patch contrast, the maximum over the shifts the multiscale contrast;
* **bottom-up local attentional modulation** (BLAM) to fuse levels: point-wise channel attention
  computed from the shallow (detail) feature gates the upsampled deep feature, and the shallow
  feature is added back.

Skeleton: BasicIRSTD's ALCNet (``ASKCResNetFPN``, the configuration behind the 0.427 M /
0.52 M figures of the comparisons): a stride-4 stem, 4 basic blocks per stage, channels
(8, 16, 32, 64), transposed-conv decoder to stride 2 and an FCN head. BasicIRSTD's model has
no local contrast layer, declares two 4-block decoder stages (``uplayer1/2``, 0.093 M) that its
forward never calls, and fuses with ACM's AsymBi module. Here the local contrast and BLAM are
back, and the decoder stages run after each fusion (``decoder_blocks=4``), so all 509,625
parameters are live (0.52 M counted with BasicIRSTD's unused stages; ``decoder_blocks=0`` gives
0.417 M, the live size of BasicIRSTD's forward with BLAM in place of AsymBi).

The original applies shifts 13 and 17 to feature maps at strides 1, 2 and 4 of a stride-1 stem;
this skeleton is at strides 4, 8, 16, so the shifts are given in input pixels and divided by the
stride of each level (13, 17 -> (3, 4) at stride 4, 2 at stride 8, 1 at stride 16).

Host interface: ``stages = [c1 (16 ch, stride 4), c2 (32 ch, stride 8)]``; the bottleneck is
``c3`` (64 ch, stride 16), the raw output of the last residual stage, before its local contrast.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from irlib.models.base import HostFeatures, HostOutput
from irlib.models.layers import FCNHead, res_stage, set_reference_bn_momentum
from irlib.models.registry import register_model
from irlib.models.res_encoder import ResStageHost

# (dy, dx) unit directions, ordered so that direction i + 4 is opposite to direction i
_DIRECTIONS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


def patch_contrast(x: Tensor, shift: int) -> Tensor:
    """Cyclic-shift patch contrast of every channel at distance ``shift`` (same shape as x)."""
    neighbours = [torch.roll(x, shifts=(dy * shift, dx * shift), dims=(2, 3)) for dy, dx in _DIRECTIONS]
    pairs = [(neighbours[i] - x) * (neighbours[i + 4] - x) for i in range(4)]
    return torch.stack(pairs, 0).amin(0)


class CyclicLocalContrast(nn.Module):
    """Multiscale local contrast: maximum of :func:`patch_contrast` over ``shifts`` (no weights)."""

    def __init__(self, shifts: Sequence[int]) -> None:
        super().__init__()
        self.shifts = tuple(sorted({max(int(s), 1) for s in shifts}))

    def forward(self, x: Tensor) -> Tensor:
        out = patch_contrast(x, self.shifts[0])
        for s in self.shifts[1:]:
            out = torch.maximum(out, patch_contrast(x, s))
        return out

    def extra_repr(self) -> str:
        return f"shifts={self.shifts}"


class BottomUpLocalModulation(nn.Module):
    """BLAM: ``sigmoid(PW(PW(low))) * high + low`` on batch-normalised inputs (reduction r)."""

    def __init__(self, channels: int, reduction: int = 1) -> None:
        super().__init__()
        mid = max(channels // reduction, 1)
        self.bn_high = nn.BatchNorm2d(channels)
        self.bn_low = nn.BatchNorm2d(channels)
        self.attention = nn.Sequential(nn.Conv2d(channels, mid, 1), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                                       nn.Conv2d(mid, channels, 1), nn.BatchNorm2d(channels), nn.Sigmoid())

    def forward(self, high: Tensor, low: Tensor) -> Tensor:
        high, low = self.bn_high(high), self.bn_low(low)
        return self.attention(low) * high + low


class ALCNet(ResStageHost):
    """ALCNet host (see the module docstring for the configuration).

    Args:
        in_chans: input channels.
        layers: basic blocks per encoder stage.
        channels: (stem width, stage 1, stage 2, stage 3) channels.
        shifts: local contrast shifts in input pixels (divided by each level's stride).
        decoder_blocks: basic blocks after each fusion (BasicIRSTD declares 4; 0 removes them).
        reduction: channel reduction of the BLAM attention (the released model uses 1).
        bn_momentum: momentum of every BatchNorm outside the residual blocks (BasicIRSTD's 0.9;
            see :class:`irlib.models.acm.ACM`).
    """

    def __init__(self, in_chans: int = 1, layers: Sequence[int] = (4, 4, 4),
                 channels: Sequence[int] = (8, 16, 32, 64), shifts: Sequence[int] = (13, 17),
                 decoder_blocks: int = 4, reduction: int = 1, bn_momentum: float = 0.9) -> None:
        super().__init__(in_chans, layers, channels)
        c0, c1, c2, c3 = channels
        self.lcm1, self.lcm2, self.lcm3 = (CyclicLocalContrast([round(s / stride) for s in shifts])
                                           for stride in (4, 8, 16))
        self.deconv2 = nn.ConvTranspose2d(c3, c2, 4, 2, 1)
        self.fuse2 = BottomUpLocalModulation(c2, reduction)
        self.uplayer2 = res_stage(c2, c2, decoder_blocks) if decoder_blocks else nn.Identity()
        self.deconv1 = nn.ConvTranspose2d(c2, c1, 4, 2, 1)
        self.fuse1 = BottomUpLocalModulation(c1, reduction)
        self.uplayer1 = res_stage(c1, c1, decoder_blocks) if decoder_blocks else nn.Identity()
        self.deconv0 = nn.ConvTranspose2d(c1, c0, 4, 2, 1)
        self.head = FCNHead(c0, 1)
        set_reference_bn_momentum(self, bn_momentum)

    def decode(self, feats: HostFeatures, size: Sequence[int]) -> HostOutput:
        c1, c2 = feats.stages
        x = self.deconv2(self.lcm3(feats.bottleneck))
        x = self.uplayer2(self.fuse2(x, self.lcm2(c2)))
        x = self.uplayer1(self.fuse1(self.deconv1(x), self.lcm1(c1)))
        return self.finish([self.head(self.deconv0(x))], size)


@register_model
def alcnet(**kwargs) -> ALCNet:
    """ALCNet on BasicIRSTD's skeleton with cyclic-shift local contrast and BLAM (0.51 M)."""
    return ALCNet(**kwargs)
