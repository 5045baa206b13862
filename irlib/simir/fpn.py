"""SimIR's tiny FPN with queries: top-down over res5..res2, each level read and written by 8 queries.

The 8 queries are 4 new learnable FPN queries followed by the encoder's 4 refined queries, with
their own learnable positions. Each level has its own query block and level embedding (dropout 0.5
in the released configuration). Outputs: the mask features ``M = conv3x3(y_res2)`` and the
intermediate prediction ``mid = MLP(LN(Q[0])) . M``. With ``use_queries=False`` it is a plain FPN
(for the "no queries" ablation) and ``mid`` comes from a learned vector instead of a query.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irlib.errors import IrlibInputError
from irlib.simir.layers import MLP, QueryBlock, sine_positions, tokens


def conv_gn(cin: int, cout: int, k: int, relu: bool) -> nn.Sequential:
    """Conv, GroupNorm (32 groups at 256-d as released; at least 8 channels a group when narrower), ReLU."""
    groups = max(1, min(32, cout // 8))
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.GroupNorm(groups, cout)]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


class QueryFPN(nn.Module):
    """Top-down FPN on ``levels`` features of ``dim`` channels with (optional) query blocks."""

    def __init__(self, dim: int = 256, levels: int = 4, fpn_queries: int = 4, encoder_queries: int = 4,
                 heads: int = 8, ffn_dim: int = 2048, dropout: float = 0.5, use_queries: bool = True) -> None:
        super().__init__()
        self.use_queries = use_queries
        # the deepest level's projection is a plain 1x1 conv ("input_proj"), the others 1x1 conv + GN
        self.lateral = nn.ModuleList([nn.Conv2d(dim, dim, 1)] +
                                     [conv_gn(dim, dim, 1, relu=False) for _ in range(levels - 1)])
        self.output = nn.ModuleList([conv_gn(dim, dim, 3, relu=True) for _ in range(levels)])
        self.mask_features = nn.Conv2d(dim, dim, 3, padding=1)
        self.norm = nn.LayerNorm(dim)
        self.mask_embed = MLP(dim, dim, dim, 3)
        self.num_queries = fpn_queries + (encoder_queries if use_queries else 0)
        if use_queries:
            self.query_pos = nn.Embedding(self.num_queries, dim)
            self.query_feat = nn.Embedding(fpn_queries, dim)
            self.level_embed = nn.Embedding(levels, dim)
            self.blocks = nn.ModuleList(QueryBlock(dim, heads, ffn_dim, dropout) for _ in range(levels))
        else:
            self.query_feat = nn.Embedding(fpn_queries, dim)   # plain learned tokens, no refinement

    def top_down(self, features: list[Tensor], encoder_queries: Tensor | None,
                 use_queries: bool | None = None) -> tuple[list[Tensor], Tensor]:
        """The top-down loop on ``features`` (shallow to deep): each level's output ``y``, deepest
        first, and the queries after the last level. ``use_queries=False`` skips the query blocks
        (same weights otherwise); ``None``: as built."""
        use_queries = self.use_queries if use_queries is None else use_queries
        if use_queries and not self.use_queries:
            raise IrlibInputError("this FPN has no query blocks (queries='none'); use use_queries=False")
        b = features[0].shape[0]
        q = self.query_feat.weight[None].expand(b, -1, -1)
        if use_queries:
            if encoder_queries is None:
                raise IrlibInputError("QueryFPN(use_queries=True) needs the encoder's queries")
            q = torch.cat([q, encoder_queries], 1)
            qpos = self.query_pos.weight[None].expand(b, -1, -1)
        outputs: list[Tensor] = []
        y = None
        for level, f in enumerate(features[::-1]):
            cur = self.lateral[level](f)
            if use_queries:
                bb, c, h, w = cur.shape
                src = tokens(cur) + self.level_embed.weight[level]
                q, out = self.blocks[level](q, qpos, src, tokens(sine_positions(cur, c)))
                cur = out.transpose(1, 2).reshape(bb, c, h, w)
            y = cur if y is None else cur + F.interpolate(y, size=cur.shape[-2:], mode="nearest")
            y = self.output[level](y)
            outputs.append(y)
        return outputs, q

    def forward(self, features: list[Tensor], encoder_queries: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """``features`` shallow to deep -> (mask features M, mid logits, the queries)."""
        outputs, q = self.top_down(features, encoder_queries)
        m = self.mask_features(outputs[-1])
        emb = self.mask_embed(self.norm(q[:, 0]))
        mid = torch.einsum("bc,bchw->bhw", emb, m)[:, None]
        return m, mid, q
