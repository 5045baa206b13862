"""SAMF: Semantic Alignment Modulation Fusion (FDEP, Yu et al.).

What the paper's overview figure shows, and what this module implements literally::

    x1, x2 = split(x, 2, dim=channels)          # host bottleneck feature, C channels (C even)
    g, b   = Conv(d), Conv(d)                   # VFM feature d projected to C/2 channels each
    y      = concat(Conv(x1 * g), Conv(x2 + b))
    out    = Conv(y + x)                        # same shape as x

The figure does not give kernel sizes, normalisation, activations or any gating of ``g``; those
are parameters here with defaults recorded in docs/fdep.md (our choices, not the paper's).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Gate = Literal["none", "sigmoid", "tanh"]


def conv_bn_act(in_ch: int, out_ch: int, kernel_size: int, act: bool = True) -> nn.Sequential:
    """A ``Conv`` box of the figure: convolution, batch norm and (optionally) ReLU."""
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False),
                               nn.BatchNorm2d(out_ch)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def align_to(d: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a VFM feature map to the host bottleneck grid (bilinear; identity when equal)."""
    if tuple(d.shape[-2:]) == tuple(size):
        return d
    return F.interpolate(d, size=size, mode="bilinear", align_corners=False)


class SAMF(nn.Module):
    """Fuse one frozen-VFM feature map into a host bottleneck feature, keeping its shape.

    Args:
        channels: host bottleneck channels C (must be even).
        vfm_channels: channels of the VFM feature map d.
        proj_kernel: kernel of the two projections of d (g and b).
        kernel_size: kernel of the branch convolutions and the output convolution.
        gate: optional squashing of the multiplicative term g ("none" follows the figure).
        out_act: ReLU after the output convolution (host bottlenecks are post-ReLU features).
    """

    def __init__(self, channels: int, vfm_channels: int, proj_kernel: int = 1, kernel_size: int = 3,
                 gate: Gate = "none", out_act: bool = True) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"SAMF needs an even number of bottleneck channels, got {channels}")
        if gate not in ("none", "sigmoid", "tanh"):
            raise ValueError(f"gate must be 'none', 'sigmoid' or 'tanh', got {gate!r}")
        half = channels // 2
        self.gate = gate
        self.to_g = conv_bn_act(vfm_channels, half, proj_kernel, act=False)
        self.to_b = conv_bn_act(vfm_channels, half, proj_kernel, act=False)
        self.mul_branch = conv_bn_act(half, half, kernel_size)
        self.add_branch = conv_bn_act(half, half, kernel_size)
        self.out = conv_bn_act(channels, channels, kernel_size, act=out_act)

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        d = align_to(d, tuple(x.shape[-2:]))
        g, b = self.to_g(d), self.to_b(d)
        if self.gate == "sigmoid":
            g = torch.sigmoid(g)
        elif self.gate == "tanh":
            g = torch.tanh(g)
        x1, x2 = torch.chunk(x, 2, dim=1)
        y = torch.cat([self.mul_branch(x1 * g), self.add_branch(x2 + b)], dim=1)
        return self.out(y + x)


class SAMFStack(nn.Module):
    """SAMF modules in series at the bottleneck, module i fed VFM feature map i."""

    def __init__(self, channels: int, vfm_channels: list[int], **samf_kwargs) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(SAMF(channels, c, **samf_kwargs) for c in vfm_channels)

    def forward(self, x: torch.Tensor, vfm_features: list[torch.Tensor]) -> torch.Tensor:
        if len(vfm_features) != len(self.blocks):
            raise ValueError(f"{len(self.blocks)} SAMF modules need {len(self.blocks)} VFM feature maps, "
                             f"got {len(vfm_features)}")
        for block, d in zip(self.blocks, vfm_features):
            x = block(x, d)
        return x
