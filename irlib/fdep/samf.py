"""SAMF: Semantic Alignment Modulation Fusion (FDEP, Yu et al.).

What the paper's overview figure shows, and what this module implements literally::

    x1, x2 = split(x, 2, dim=channels)          # host bottleneck feature, C channels (C even)
    g, b   = Conv(d), Conv(d)                   # VFM feature d projected to C/2 channels each
    y      = concat(Conv(x1 * g), Conv(x2 + b))
    out    = Conv(y + x)                        # same shape as x

The figure does not give kernel sizes, normalisation, activations or any gating of ``g``; those
are parameters here with defaults recorded in docs/fdep.md (our choices, not the paper's). So is
``identity_init`` (ours): ``out = x + Conv(y + x)`` with the output Conv's BatchNorm scale set to
zero, so that the chain starts as the identity and the main branch starts equal to the light one.
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
    """Resize a VFM feature map to the host bottleneck grid; identity when the grids are equal.

    A side that shrinks is area-averaged (adaptive average pooling: every VFM cell contributes to
    the bottleneck cell it falls in, so a one-cell target response survives any reduction; plain
    bilinear at a 4x reduction reads only 2 of every 4 rows and columns). A side that grows is
    then resized bilinearly (``align_corners=False``).
    """
    h, w = int(size[0]), int(size[1])
    if d.shape[-2] > h or d.shape[-1] > w:
        d = F.adaptive_avg_pool2d(d, (min(h, d.shape[-2]), min(w, d.shape[-1])))
    if tuple(d.shape[-2:]) == (h, w):
        return d
    return F.interpolate(d, size=(h, w), mode="bilinear", align_corners=False)


class SAMF(nn.Module):
    """Fuse one frozen-VFM feature map into a host bottleneck feature, keeping its shape.

    Args:
        channels: host bottleneck channels C (must be even).
        vfm_channels: channels of the VFM feature map d.
        proj_kernel: kernel of the two projections of d (g and b).
        kernel_size: kernel of the branch convolutions and the output convolution.
        gate: optional squashing of the multiplicative term g ("none" follows the figure).
        out_act: ReLU after the output convolution (host bottlenecks are post-ReLU features).
            ``None`` (default): ReLU unless ``identity_init``, which cannot have one.
        identity_init: return ``x + Conv(y + x)`` with the output BatchNorm's scale (and shift)
            zero at initialisation, so the module starts as the identity; the scale gets a
            gradient at once and every other weight from the second step on.
    """

    def __init__(self, channels: int, vfm_channels: int, proj_kernel: int = 1, kernel_size: int = 3,
                 gate: Gate = "none", out_act: bool | None = None, identity_init: bool = False) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"SAMF needs an even number of bottleneck channels, got {channels}")
        if gate not in ("none", "sigmoid", "tanh"):
            raise ValueError(f"gate must be 'none', 'sigmoid' or 'tanh', got {gate!r}")
        if identity_init and out_act:
            raise ValueError("identity_init adds the output to x and cannot end in a ReLU: a ReLU of the "
                             "zero-initialised branch passes no gradient; leave out_act unset")
        out_act = not identity_init if out_act is None else out_act
        half = channels // 2
        self.gate = gate
        self.identity_init = bool(identity_init)
        self.to_g = conv_bn_act(vfm_channels, half, proj_kernel, act=False)
        self.to_b = conv_bn_act(vfm_channels, half, proj_kernel, act=False)
        self.mul_branch = conv_bn_act(half, half, kernel_size)
        self.add_branch = conv_bn_act(half, half, kernel_size)
        self.out = conv_bn_act(channels, channels, kernel_size, act=out_act)
        if identity_init:
            nn.init.zeros_(self.out[1].weight)  # the BatchNorm scale; its shift starts at zero too

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        d = align_to(d, tuple(x.shape[-2:]))
        g, b = self.to_g(d), self.to_b(d)
        if self.gate == "sigmoid":
            g = torch.sigmoid(g)
        elif self.gate == "tanh":
            g = torch.tanh(g)
        x1, x2 = torch.chunk(x, 2, dim=1)
        y = torch.cat([self.mul_branch(x1 * g), self.add_branch(x2 + b)], dim=1)
        out = self.out(y + x)
        return x + out if self.identity_init else out


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
