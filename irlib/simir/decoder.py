"""SimIR's decoder: segment-anything's two-way transformer with the FPN queries as sparse prompts.

Built from ``segment_anything.modeling``: ``TwoWayTransformer`` (depth 2, 8 heads, MLP 2048,
attention downsample 2 in the released configuration), ``PositionEmbeddingRandom`` for the image
positions and ``LayerNorm2d``. The changes SimIR makes to SAM's mask decoder:

* the dense prompt is the intermediate prediction's logits, embedded without down-scaling
  (1x1 conv 1->4, LN, GELU, 3x3 conv 4->16, LN, GELU, 1x1 conv 16->dim) and added to M;
* tokens: one learned output token plus the 8 FPN queries; their positions are separate learned
  tables and are kept apart from the token contents (SAM uses ``queries = point_embedding``), so
  the transformer's layers are called here with ``(queries, keys, query_pe, key_pe)``;
* no upsampling in the head (1x1 conv dim->dim/4, LN, GELU, 3x3 conv dim/4->32, GELU), one mask,
  no IoU head: ``final = MLP(token0) . U``.
"""

from __future__ import annotations

import torch
from segment_anything.modeling import TwoWayTransformer
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.prompt_encoder import PositionEmbeddingRandom
from torch import Tensor, nn

from irlib.simir.layers import MLP


class QueryMaskDecoder(nn.Module):
    """``(M, mid logits, FPN queries) -> final logits`` at M's resolution."""

    def __init__(self, dim: int = 256, num_queries: int = 8, depth: int = 2, heads: int = 8,
                 mlp_dim: int = 2048, downsample_rate: int = 2, mask_dim: int = 32) -> None:
        super().__init__()
        self.transformer = TwoWayTransformer(depth=depth, embedding_dim=dim, num_heads=heads, mlp_dim=mlp_dim,
                                             attention_downsample_rate=downsample_rate)
        self.pe = PositionEmbeddingRandom(dim // 2)
        self.mask_prompt = nn.Sequential(
            nn.Conv2d(1, 4, 1), LayerNorm2d(4), nn.GELU(),
            nn.Conv2d(4, 16, 3, padding=1), LayerNorm2d(16), nn.GELU(),
            nn.Conv2d(16, dim, 1))
        self.output_token = nn.Embedding(1, dim)
        self.output_pos = nn.Embedding(1, dim)
        self.query_pos = nn.Embedding(num_queries, dim)
        self.upscaling = nn.Sequential(
            nn.Conv2d(dim, dim // 4, 1), LayerNorm2d(dim // 4), nn.GELU(),
            nn.Conv2d(dim // 4, mask_dim, 3, padding=1), nn.GELU())
        self.hypernet = MLP(dim, dim, mask_dim, 3)

    def run_transformer(self, image: Tensor, image_pe: Tensor, queries: Tensor,
                        query_pe: Tensor) -> tuple[Tensor, Tensor]:
        """segment-anything's two-way transformer with token contents and positions kept apart."""
        t = self.transformer
        keys, key_pe = image.flatten(2).transpose(1, 2), image_pe.flatten(2).transpose(1, 2)
        for layer in t.layers:
            queries, keys = layer(queries=queries, keys=keys, query_pe=query_pe, key_pe=key_pe)
        attn = t.final_attn_token_to_image(q=queries + query_pe, k=keys + key_pe, v=keys)
        return t.norm_final_attn(queries + attn), keys

    def forward(self, m: Tensor, mid: Tensor, queries: Tensor) -> Tensor:
        b, c, h, w = m.shape
        src = m + self.mask_prompt(mid)
        image_pe = self.pe((h, w)).to(src.dtype)[None].expand(b, -1, -1, -1)
        tokens = torch.cat([self.output_token.weight[None].expand(b, -1, -1), queries], 1)
        pos = torch.cat([self.output_pos.weight, self.query_pos.weight], 0)[None].expand(b, -1, -1)
        hs, keys = self.run_transformer(src, image_pe, tokens, pos)
        u = self.upscaling(keys.transpose(1, 2).reshape(b, c, h, w))
        return torch.einsum("bc,bchw->bhw", self.hypernet(hs[:, 0]), u)[:, None]
