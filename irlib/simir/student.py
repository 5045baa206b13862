"""The SimIR student as an irlib host: query RepViT encoder, query FPN, SAM two-way decoder.

``create_model("simir")`` is the released configuration (``configs/repvit.yaml`` of
O937-blip/SimIR: RepViT-M1.1, stride-1 stem, 256-d queries and FPN, 8-channel deformable dense
queries, depth-2 two-way decoder); ``simir_s4`` is the same with the stock stride-4 RepViT stem;
``simir_tiny`` is irlib's CPU-budget configuration (RepViT-M0.9, stride-4 stem, 64-d, FFN 256),
not a configuration of the paper. Every choice is a keyword argument for the ablations.

``forward`` returns logits ``(B, 1, H, W)``; with ``deep_supervision=True`` in training it returns
``[final, mid, early]`` (irlib's order: final first), the released code's three supervised stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from timm.models import adapt_input_conv
from torch import Tensor

from irlib.errors import IrlibInputError
from irlib.models.base import HostFeatures, HostOutput, SirstHost
from irlib.models.registry import register_model
from irlib.simir.decoder import QueryMaskDecoder
from irlib.simir.encoder import QueryRepViT
from irlib.simir.fpn import QueryFPN


@dataclass
class SimIRFeatures(HostFeatures):
    """Host features plus the encoder's refined queries and its early prediction."""

    queries: Tensor | None = None
    early: Tensor | None = None


class SimIRStudent(SirstHost):
    """SimIR's light student (see the module docstring for the configurations).

    Args:
        arch: timm RepViT architecture of the encoder body (``repvit_m1_1`` as released).
        stem_stride: 1 (released SimIR), 2, or 4 (stock RepViT).
        dim: width of the queries, the FPN and the decoder (256 as released).
        queries: ``"sparse_dense"`` (released), ``"sparse"`` or ``"none"`` (plain FPN, no early
            prediction): the query-design ablation.
        ffn_dim, heads: attention sizes of the encoder and FPN query blocks (2048, 8).
        fpn_dropout: dropout in the FPN's query blocks (0.5 as released).
        decoder_depth, decoder_mlp_dim: the two-way transformer (2, 2048).
        dense_ffn_dim: FFN width of the 8-channel deformable encoders (2048 as released).
    """

    def __init__(self, in_chans: int = 1, deep_supervision: bool = True, arch: str = "repvit_m1_1",
                 stem_stride: int = 1, dim: int = 256, queries: str = "sparse_dense", num_queries: int = 4,
                 heads: int = 8, ffn_dim: int = 2048, fpn_dropout: float = 0.5, decoder_depth: int = 2,
                 decoder_mlp_dim: int = 2048, dense_ffn_dim: int = 2048) -> None:
        super().__init__(in_chans, deep_supervision)
        self.encoder = QueryRepViT(arch, in_chans, stem_stride, dim, queries, num_queries, heads, ffn_dim,
                                   dense_ffn_dim=dense_ffn_dim)
        self.fpn = QueryFPN(dim, 4, num_queries, num_queries, heads, ffn_dim, fpn_dropout,
                            use_queries=queries != "none")
        self.decoder = QueryMaskDecoder(dim, self.fpn.num_queries, decoder_depth, heads, decoder_mlp_dim)
        self.stage_channels = [dim] * 3
        self.stage_strides = [stem_stride * 2 ** i for i in range(3)]
        self.bottleneck_channels = dim
        self.bottleneck_stride = stem_stride * 8

    def encode(self, x: Tensor) -> SimIRFeatures:
        out = self.encoder(self.pad_input(x))
        return SimIRFeatures(stages=out.features[:-1], bottleneck=out.features[-1], queries=out.queries,
                             early=out.early)

    def decode(self, feats: HostFeatures, size: Sequence[int]) -> HostOutput:
        queries = getattr(feats, "queries", None)
        early = getattr(feats, "early", None)
        m, mid, q = self.fpn([*feats.stages, feats.bottleneck], queries)
        final = self.decoder(m, mid, q)
        return self.finish([final, mid] + ([early] if early is not None else []), size)


def load_repvit_weights(model: SimIRStudent, state_dict: Mapping[str, Any]) -> list[str]:
    """Load a timm RepViT state dict (e.g. ImageNet ``repvit_m1_1``) into the student's encoder body.

    The classifier is dropped; a 3-channel stem is summed to the student's ``in_chans`` (timm's
    ``adapt_input_conv``). Returns the body keys the file did not hold; raises on shape mismatch.
    """
    sd = {k: v for k, v in state_dict.items() if not k.startswith("head")}
    key = "stem.conv1.c.weight"
    if key in sd and sd[key].shape[1] != model.in_chans:
        sd[key] = adapt_input_conv(model.in_chans, sd[key])
    body = model.encoder.body
    try:
        missing, unexpected = body.load_state_dict(sd, strict=False)
    except RuntimeError as e:
        raise IrlibInputError(f"RepViT weights do not fit {type(body).__name__}: {e}") from e
    if unexpected:
        raise IrlibInputError(f"RepViT weights hold keys the body does not have, e.g. {unexpected[:3]}; "
                              "pass a timm repvit state dict of the same architecture")
    return list(missing)


@register_model
def simir(**kwargs: Any) -> SimIRStudent:
    """SimIR student, released configuration (RepViT-M1.1, stride-1 stem, 256-d; about 25 M parameters)."""
    return SimIRStudent(**kwargs)


@register_model
def simir_s4(**kwargs: Any) -> SimIRStudent:
    """SimIR student with the stock stride-4 RepViT stem (the released model uses stride 1)."""
    return SimIRStudent(**{"stem_stride": 4, **kwargs})


@register_model
def simir_tiny(**kwargs: Any) -> SimIRStudent:
    """irlib's CPU-budget SimIR (not the paper's): RepViT-M0.9, stride-4 stem, 64-d, FFN 256."""
    cfg = dict(arch="repvit_m0_9", stem_stride=4, dim=64, ffn_dim=256, decoder_mlp_dim=256, dense_ffn_dim=256)
    return SimIRStudent(**{**cfg, **kwargs})
