"""CO-ISD: Collaborative Optimization-based Implicit Self-Distillation (FDEP, Yu et al.).

Two branches share every host weight and see the same image:

* main branch:  host encoder -> SAMF x N (frozen VFM features) -> host decoder
* light branch: host encoder -> host decoder  (no SAMF, no VFM)

Training minimises ``L(main, gt) + lambda * L(light, gt)`` with one backward pass and one
optimiser step; there is no explicit distillation term. Only the light branch is deployed, so
the exported model is the unchanged host. The host encoder is run once per step and its
features feed both branches (equal values, and autograd sums both branches' gradients); the VFM
runs once under ``no_grad``.

Deep supervision: an output that does not depend on the bottleneck (DNANet's side heads on
``X(0,1..3)``) is bit-identical in both branches. :meth:`CoISD.forward_branches` leaves such
outputs out of the main branch (found on the autograd graph, for any host), so the loss counts
them once, in the light branch, and the main loss is spent on what SAMF can change.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from irlib.engine.normalize import Normalize
from irlib.errors import IrlibInputError
from irlib.fdep.samf import SAMFStack
from irlib.models.base import HostFeatures, SirstHost
from irlib.vfm import FrozenEncoder

Output = torch.Tensor | list[torch.Tensor]


def depends_on(outputs: list[torch.Tensor], source: torch.Tensor) -> list[bool]:
    """For each output, whether it was computed from ``source`` (read off the autograd graph).

    Without a graph to read (``source.grad_fn`` is None: ``no_grad`` mode or a leaf tensor) every
    output counts as dependent.
    """
    target = source.grad_fn
    if target is None:
        return [True] * len(outputs)
    found = []
    for out in outputs:
        stack, seen, hit = [out.grad_fn], set(), False
        while stack and not hit:
            node = stack.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            hit = node is target
            stack.extend(n for n, _ in node.next_functions)
        found.append(hit)
    return found


def choose_vfm_layers(encoder: FrozenEncoder, num_samf: int, vfm_layers: Sequence[int] | None = None) -> list[int]:
    """The encoder feature maps that feed SAMF 1..``num_samf``, chosen exactly.

    ``vfm_layers`` (indices into ``encoder.feature_names``) when given; otherwise every map, which
    needs exactly ``num_samf`` of them. Any other count raises: an evenly spaced pick would skip a
    map silently (SAM's default four blocks plus neck under four SAMF modules lose the third block).
    """
    names = encoder.feature_names
    if vfm_layers is not None:
        chosen = [int(i) for i in vfm_layers]
        if len(chosen) != num_samf or not all(0 <= i < len(names) for i in chosen):
            raise IrlibInputError(f"vfm_layers={chosen} must name {num_samf} of the encoder's "
                                  f"{len(names)} feature maps by index: {dict(enumerate(names))}")
        return chosen
    if len(names) != num_samf:
        raise IrlibInputError(
            f"encoder {encoder.name or type(encoder).__name__} gives {len(names)} feature maps "
            f"{dict(enumerate(names))} for num_samf={num_samf} SAMF modules; say which feed them: "
            f"vfm_layers=[...] (indices above), or encoder options layer_indices / include_neck "
            f"(SAM) so the encoder gives exactly {num_samf}, or num_samf={len(names)}")
    return list(range(num_samf))


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
        vfm_layers: which of the encoder's feature maps feed SAMF 1..N (default: all of them,
            which must then be ``num_samf``; see :func:`choose_vfm_layers`).
        main_bn_stats: ``"light"`` keeps the host's BatchNorm running statistics those of the
            light (deployed) branch: the main branch normalises with batch statistics but does
            not update the running ones. ``"both"`` lets both branches update them.
        samf_kwargs: passed to every :class:`irlib.fdep.samf.SAMF`, e.g. ``identity_init=True``
            (the chain starts as the identity, so the main branch starts equal to the light one).
    """

    def __init__(self, host: SirstHost, encoder: FrozenEncoder, num_samf: int = 4,
                 vfm_layers: list[int] | None = None, main_bn_stats: str = "light",
                 **samf_kwargs: Any) -> None:
        super().__init__()
        if main_bn_stats not in ("light", "both"):
            raise ValueError(f"main_bn_stats must be 'light' or 'both', got {main_bn_stats!r}")
        self.host = host
        self.encoder = encoder
        self.vfm_layers = choose_vfm_layers(encoder, num_samf, vfm_layers)
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

    def forward_branches(self, raw: torch.Tensor, x: torch.Tensor, shared_once: bool = True,
                         vfm: list[torch.Tensor] | None = None) -> tuple[Output, Output]:
        """Return ``(main, light)`` logits for raw [0, 1] images and their host-normalised copy.

        With ``shared_once`` (default) a deep-supervision list ``main`` keeps only the outputs
        that depend on the bottleneck (final first, host order); the others equal the light
        branch's and are counted there. ``shared_once=False`` returns every main output.
        ``vfm``: the SAMF inputs already at hand (one map per SAMF, e.g. cut from whole-image
        maps by :class:`irlib.fdep.cache.FrozenFeatures`); by default the encoder runs on ``raw``.
        """
        size = tuple(x.shape[-2:])
        feats = self.host.encode(x)
        if vfm is None:
            vfm = self.vfm_features(raw)
        elif len(vfm) != len(self.vfm_layers):
            raise IrlibInputError(f"vfm: {len(vfm)} feature maps for {len(self.vfm_layers)} SAMF modules")
        # view_as: a graph node of the main branch's own, even if the SAMF chain were empty
        fused = self.samf(feats.bottleneck, vfm).view_as(feats.bottleneck)
        main_feats: HostFeatures = replace(feats, bottleneck=fused)
        if self.main_bn_stats == "light":
            with frozen_batchnorm_stats(self.host):
                main = self.host.decode(main_feats, size)
        else:
            main = self.host.decode(main_feats, size)
        light = self.host.decode(feats, size)
        if shared_once:
            main = self._bottleneck_dependent(main, fused)
        return main, light

    @staticmethod
    def _bottleneck_dependent(main: Output, fused: torch.Tensor) -> Output:
        """``main`` without the outputs that do not depend on ``fused``; raise if none does."""
        outs = main if isinstance(main, list) else [main]
        keep = depends_on(outs, fused)
        if not any(keep):
            raise ValueError("no output of the host depends on its bottleneck, so SAMF cannot change "
                             "the main branch; check the host's encode/decode split")
        return [o for o, k in zip(outs, keep) if k] if isinstance(main, list) else main

    def export_host(self) -> SirstHost:
        """A copy of the deployed model: the host alone, in eval mode, with no FDEP parts."""
        return copy.deepcopy(self.host).eval()


class MainBranch(nn.Module):
    """CO-ISD's main branch (host + SAMF + frozen VFM) as a model of host-normalised input.

    FDEP deploys the light branch (:meth:`CoISD.export_host`); this keeps the VFM at inference,
    for the ablation "without CO-ISD". The encoder sees ``x * std + mean`` (the raw image; padding
    added to normalised input becomes the dataset mean). In eval mode the decoder uses the host's
    BatchNorm running statistics, i.e. the light branch's under ``main_bn_stats="light"``.
    """

    def __init__(self, model: CoISD, normalize: Normalize) -> None:
        super().__init__()
        self.model = model
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> Output:
        raw = x * self.normalize.std.to(x.device, x.dtype) + self.normalize.mean.to(x.device, x.dtype)
        main, _ = self.model.forward_branches(raw, x, shared_once=False)
        return main
