"""SimIR's encoder: timm's RepViT body with sparse encoder queries and dense deformable queries.

Released configuration (``repvit11_query_deform``): RepViT-M1.1 with a stride-1 stem, so the four
stages run at strides 1/2/4/8; 4 learnable queries refined at 4 injection points (after the stem and
after each stage's down-sampling block) by one shared query block and broadcast back into the
pixels; 8-channel dense maps refined at the last 3 injection points by a 2-level deformable encoder
over [the stem-resolution map, the stage map]; an early prediction ``q_enc[-1] . conv3x3(dense)``.
Every stage output goes through a 1x1 Conv-BN-GELU to ``dim`` channels (res2..res5).

The body is timm's ``RepVit`` (same parameter names as timm, so a timm state dict loads into
``body``); ``stem_stride`` 4 is stock RepViT, 1 the released SimIR stem.
"""

from __future__ import annotations

from dataclasses import dataclass

import timm
import torch
from torch import Tensor, nn

from irlib.errors import IrlibInputError
from irlib.simir.deform_attn import DenseQueryRefiner
from irlib.simir.layers import MLP, ConvBNGELU, QueryBlock, sine_positions, tokens

QUERY_MODES = ("none", "sparse", "sparse_dense")


@dataclass
class EncoderOut:
    """Stage features (``dim`` channels, shallow to deep), refined queries and the early logits."""

    features: list[Tensor]
    queries: Tensor | None
    early: Tensor | None


def build_repvit(arch: str, in_chans: int, stem_stride: int) -> nn.Module:
    """timm's RepViT without its classifier, stem stride set to 1, 2 or 4."""
    if stem_stride not in (1, 2, 4):
        raise IrlibInputError(f"stem_stride must be 1, 2 or 4, got {stem_stride}")
    try:
        body = timm.create_model(arch, pretrained=False, in_chans=in_chans, num_classes=0)
    except RuntimeError as e:
        raise IrlibInputError(f"unknown RepViT architecture {arch!r}: {e}; use e.g. repvit_m1_1") from e
    strides = {1: (1, 1), 2: (2, 1), 4: (2, 2)}[stem_stride]
    body.stem.conv1.c.stride = (strides[0],) * 2
    body.stem.conv2.c.stride = (strides[1],) * 2
    body.head = nn.Identity()
    return body


class QueryRepViT(nn.Module):
    """RepViT body plus SimIR's query machinery (``queries`` in ``QUERY_MODES``)."""

    def __init__(self, arch: str = "repvit_m1_1", in_chans: int = 1, stem_stride: int = 1, dim: int = 256,
                 queries: str = "sparse_dense", num_queries: int = 4, heads: int = 8, ffn_dim: int = 2048,
                 dense_dim: int = 8, dense_heads: int = 8, dense_points: int = 4, dense_ffn_dim: int = 2048,
                 early_dim: int = 32) -> None:
        super().__init__()
        if queries not in QUERY_MODES:
            raise IrlibInputError(f"queries must be one of {QUERY_MODES}, got {queries!r}")
        self.queries, self.dim, self.stem_stride = queries, dim, stem_stride
        self.body = build_repvit(arch, in_chans, stem_stride)
        widths = [s.blocks[-1].channel_mixer.conv2.c.out_channels for s in self.body.stages]
        self.widths = widths
        self.proj = nn.ModuleList(ConvBNGELU(c, dim) for c in widths)
        if queries == "none":
            return
        self.query_feat = nn.Embedding(num_queries, dim)
        self.query_pos = nn.Embedding(num_queries, dim)
        # one level embedding for every injection point (the released code reuses index 0 of 4)
        self.level_embed = nn.Embedding(1, dim)
        self.block = QueryBlock(dim, heads, ffn_dim)
        self.to_dim = nn.ModuleList(ConvBNGELU(c, dim) for c in widths)
        self.from_dim = nn.ModuleList(ConvBNGELU(dim, c) for c in widths)
        if queries == "sparse_dense":
            self.norm = nn.LayerNorm(dim)
            self.dense_dim = dense_dim
            self.to_dense = nn.ModuleList(ConvBNGELU(c, dense_dim) for c in widths)
            self.from_dense = nn.ModuleList(ConvBNGELU(dense_dim, c) for c in widths[1:])
            self.refiners = nn.ModuleList(DenseQueryRefiner(dense_dim, dense_heads, dense_points, dense_ffn_dim)
                                          for _ in widths[1:])
            self.mask_features = nn.Conv2d(dense_dim, early_dim, 3, padding=1)
            self.mask_embed = MLP(dim, dim, early_dim, 3)

    @property
    def total_stride(self) -> int:
        return self.stem_stride * 8

    def _inject(self, i: int, x: Tensor, q: Tensor, qpos: Tensor) -> tuple[Tensor, Tensor]:
        """Query step at injection point ``i``: refine the queries, broadcast them into ``x``."""
        f = self.to_dim[i](x)
        b, c, h, w = f.shape
        src = tokens(f) + self.level_embed.weight[0]
        q, out = self.block(q, qpos, src, tokens(sine_positions(f, c)))
        return q, x + self.from_dim[i](out.transpose(1, 2).reshape(b, c, h, w))

    def forward(self, x: Tensor) -> EncoderOut:
        x = self.body.stem(x)
        b = x.shape[0]
        q = qpos = dense = d1 = d1_pos = None
        if self.queries != "none":
            q = self.query_feat.weight[None].expand(b, -1, -1)
            qpos = self.query_pos.weight[None].expand(b, -1, -1)
            q, x_new = self._inject(0, x, q, qpos)
            if self.queries == "sparse_dense":
                d1 = self.to_dense[0](x)                      # from the stem output, before the broadcast
                d1_pos = sine_positions(d1, self.dense_dim)
            x = x_new
        feats = []
        for i, stage in enumerate(self.body.stages):
            x = stage.downsample(x)
            if i > 0 and q is not None:
                q, x_new = self._inject(i, x, q, qpos)
                if d1 is not None:
                    di = self.to_dense[i](x)
                    d0, di = self.refiners[i - 1]([d1, di], [d1_pos, sine_positions(di, self.dense_dim)])
                    dense = d0
                    if i == 1:                                # the released code keeps only the first update
                        d1 = d0
                    x_new = x_new + self.from_dense[i - 1](di)
                x = x_new
            x = stage.blocks(x)
            feats.append(self.proj[i](x))
        early = None
        if dense is not None:
            emb = self.mask_embed(self.norm(q[:, -1]))
            early = torch.einsum("bc,bchw->bhw", emb, self.mask_features(dense))[:, None]
        return EncoderOut(features=feats, queries=q, early=early)

