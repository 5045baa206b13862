"""DNANet: Dense Nested Attention Network (Li et al., TIP 2023).

Configuration of the authors' code and BasicIRSTD: a 5-level backbone column ``X(i,0)`` with
channels (16, 32, 64, 128, 256) and (1, 2, 2, 2, 2) residual CBAM blocks (the channel and spatial
attention module, CSAM), max-pool downsampling, dense nested nodes ``X(i,j)`` that concatenate
all same-level predecessors with the bilinearly upsampled deeper node and the downsampled
shallower node, a feature pyramid fusion of ``X(4,0), X(3,1), X(2,2), X(1,3), X(0,4)`` and 1x1
heads. With deep supervision (the default, as published) there are four heads, on ``X(0,1)``,
``X(0,2)``, ``X(0,3)`` and the fused map: 4,696,568 parameters (published: 4.697 M).

Host interface: ``stages`` are the backbone column ``[X(0,0), X(1,0), X(2,0), X(3,0)]`` (16, 32,
64, 128 channels at strides 1, 2, 4, 8); the bottleneck is ``X(4,0)`` (256 ch, stride 16). The
decoder computes every nested node from these. Nodes that do not depend on ``X(4,0)`` (``X(i,j)``
with ``i + j <= 3``) are recomputed from the stages; in the original they are computed
interleaved with the backbone, which gives the same values.
With deep supervision in training, ``decode`` returns ``[final, head(X(0,1)), head(X(0,2)),
head(X(0,3))]``.
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


def _down(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=True)


class DNANet(SirstHost):
    """DNANet host.

    Args:
        in_chans: input channels.
        num_blocks: CBAM blocks of levels 1-4 (level 0 has one).
        nb_filter: channels of levels 0-4.
        deep_supervision: build the three side heads and return all four maps in training.
    """

    def __init__(self, in_chans: int = 1, num_blocks: Sequence[int] = (2, 2, 2, 2),
                 nb_filter: Sequence[int] = (16, 32, 64, 128, 256), deep_supervision: bool = True) -> None:
        super().__init__(in_chans=in_chans, deep_supervision=deep_supervision)
        f, nb = list(nb_filter), [1, *num_blocks]
        self.conv0_0 = cbam_stage(in_chans, f[0], 1)
        for i in range(1, 5):  # backbone column X(i,0)
            self.add_module(f"conv{i}_0", cbam_stage(f[i - 1], f[i], nb[i]))
        for j in range(1, 5):  # nested nodes X(i,j), i + j <= 4
            for i in range(0, 5 - j):
                in_ch = f[i] * j + f[i + 1] + (f[i - 1] if i > 0 else 0)
                self.add_module(f"conv{i}_{j}", cbam_stage(in_ch, f[i], nb[i]))
        self.conv0_4_final = cbam_stage(f[0] * 5, f[0], 1)
        self.pyramid = nn.ModuleList([nn.Conv2d(f[k], f[0], 1) for k in (4, 3, 2, 1)])
        self.final = nn.Conv2d(f[0], 1, 1)
        self.side = nn.ModuleList([nn.Conv2d(f[0], 1, 1) for _ in range(3)]) if deep_supervision else None
        self.stage_channels, self.stage_strides = f[:4], [1, 2, 4, 8]
        self.bottleneck_channels, self.bottleneck_stride = f[4], 16

    def _node(self, i: int, j: int, nodes: dict[tuple[int, int], Tensor]) -> Tensor:
        inputs = [nodes[(i, k)] for k in range(j)] + [_up(nodes[(i + 1, j - 1)])]
        if i > 0:
            inputs.append(_down(nodes[(i - 1, j)]))
        return getattr(self, f"conv{i}_{j}")(torch.cat(inputs, 1))

    def encode(self, x: Tensor) -> HostFeatures:
        x = self.pad_input(x)
        col = [self.conv0_0(x)]
        for i in range(1, 5):
            col.append(getattr(self, f"conv{i}_0")(F.max_pool2d(col[-1], 2)))
        return HostFeatures(stages=col[:4], bottleneck=col[4])

    def decode(self, feats: HostFeatures, size: Sequence[int]) -> HostOutput:
        nodes = {(i, 0): t for i, t in enumerate([*feats.stages, feats.bottleneck])}
        for d in range(1, 5):  # anti-diagonals i + j = d, shallow node last
            for i in range(d - 1, -1, -1):
                nodes[(i, d - i)] = self._node(i, d - i, nodes)
        deep = [nodes[(4, 0)], nodes[(3, 1)], nodes[(2, 2)], nodes[(1, 3)]]
        pyramid = [_up(conv(t), 2 ** (4 - k)) for k, (conv, t) in enumerate(zip(self.pyramid, deep))]
        fused = self.conv0_4_final(torch.cat([*pyramid, nodes[(0, 4)]], 1))
        maps = [self.final(fused)]
        if self.side is not None and self.deep_supervision and self.training:
            maps += [head(nodes[(0, j)]) for head, j in zip(self.side, (1, 2, 3))]
        return self.finish(maps, size)


@register_model
def dnanet(**kwargs) -> DNANet:
    """DNANet with deep supervision, authors' / BasicIRSTD configuration (4.697 M)."""
    return DNANet(**kwargs)
