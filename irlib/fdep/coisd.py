"""CO-ISD: Collaborative Optimization-based Implicit Self-Distillation (FDEP, Yu et al.).

Two branches share every host weight and see the same image:

* main branch:  host encoder -> SAMF x N (frozen VFM features) -> host decoder
* light branch: host encoder -> host decoder  (no SAMF, no VFM)

Training minimises ``L(main, gt) + lambda * L(light, gt)`` with one backward pass and one
optimiser step; there is no explicit distillation term. Only the light branch is deployed, so
the exported model is the unchanged host. The host encoder is run once per step and its
features feed both branches (equal values, and autograd sums both branches' gradients); the VFM
runs once under ``no_grad``.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Iterator

import torch
from torch import nn

from irlib.fdep.samf import SAMFStack
from irlib.models.base import HostFeatures, SirstHost
from irlib.vfm import FrozenEncoder

Output = torch.Tensor | list[torch.Tensor]


def evenly_spaced(count: int, available: int) -> list[int]:
    """``count`` indices spread evenly over ``available`` items, always ending at the last one."""
    if count > available:
        raise ValueError(f"asked for {count} VFM feature maps but the encoder gives {available}; "
                         "create the encoder with more layer_indices or use fewer SAMF modules")
    if count == 1:
        return [available - 1]
    return [round(i * (available - 1) / (count - 1)) for i in range(count)]


@contextmanager
def frozen_batchnorm_stats(module: nn.Module) -> Iterator[None]:
    """Use batch statistics but leave BatchNorm running statistics untouched inside the block."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


class CoISD(nn.Module):
    """Wrap any registered host and any frozen encoder for FDEP training.

    Args:
        host: an :class:`irlib.models.SirstHost`; its weights are shared by both branches.
        encoder: a frozen :class:`irlib.vfm.FrozenEncoder` (never trained, never exported).
        num_samf: SAMF modules in series at the bottleneck (the paper uses 4).
        vfm_layers: which of the encoder's feature maps feed SAMF 1..N (default evenly spaced).
        main_bn_stats: ``"light"`` keeps the host's BatchNorm running statistics those of the
            light (deployed) branch: the main branch normalises with batch statistics but does
            not update the running ones. ``"both"`` lets both branches update them.
        samf_kwargs: passed to every :class:`irlib.fdep.samf.SAMF`.
    """

    def __init__(self, host: SirstHost, encoder: FrozenEncoder, num_samf: int = 4,
                 vfm_layers: list[int] | None = None, main_bn_stats: str = "light",
                 **samf_kwargs: Any) -> None:
        super().__init__()
        if main_bn_stats not in ("light", "both"):
            raise ValueError(f"main_bn_stats must be 'light' or 'both', got {main_bn_stats!r}")
        self.host = host
        self.encoder = encoder
        available = len(encoder.feature_channels)
        self.vfm_layers = list(vfm_layers) if vfm_layers is not None else evenly_spaced(num_samf, available)
        if len(self.vfm_layers) != num_samf or not all(0 <= i < available for i in self.vfm_layers):
            raise ValueError(f"vfm_layers={self.vfm_layers} must name {num_samf} of the encoder's "
                             f"{available} feature maps (0..{available - 1})")
        self.main_bn_stats = main_bn_stats
        self.samf = SAMFStack(host.bottleneck_channels,
                              [encoder.feature_channels[i] for i in self.vfm_layers], **samf_kwargs)

    def forward(self, x: torch.Tensor) -> Output:
        """Deployed behaviour: the light branch, i.e. the plain host on normalised input."""
        return self.host(x)

    def vfm_features(self, raw: torch.Tensor) -> list[torch.Tensor]:
        """The frozen encoder's feature maps that feed the SAMF modules (no gradients)."""
        with torch.no_grad():
            features = self.encoder(raw).features
        return [features[i] for i in self.vfm_layers]

    def forward_branches(self, raw: torch.Tensor, x: torch.Tensor) -> tuple[Output, Output]:
        """Return ``(main, light)`` logits for raw [0, 1] images and their host-normalised copy."""
        size = tuple(x.shape[-2:])
        feats = self.host.encode(x)
        fused = self.samf(feats.bottleneck, self.vfm_features(raw))
        main_feats: HostFeatures = replace(feats, bottleneck=fused)
        if self.main_bn_stats == "light":
            with frozen_batchnorm_stats(self.host):
                main = self.host.decode(main_feats, size)
        else:
            main = self.host.decode(main_feats, size)
        light = self.host.decode(feats, size)
        return main, light

    def export_host(self) -> SirstHost:
        """A copy of the deployed model: the host alone, in eval mode, with no FDEP parts."""
        return copy.deepcopy(self.host).eval()
