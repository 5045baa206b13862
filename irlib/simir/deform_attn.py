"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch, for SimIR's dense queries.

SimIR's released code calls the CUDA ``MSDeformAttn`` op; here the sampling is done with
``F.grid_sample`` (bilinear, zero outside the map, ``align_corners=False``), which gives the same
values as the CUDA kernel and runs on any device and input size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irlib.errors import IrlibInputError


def ms_deform_attn(value: Tensor, shapes: list[tuple[int, int]], locations: Tensor, weights: Tensor) -> Tensor:
    """Sample every level at the given locations and sum with the attention weights.

    Args:
        value: ``(B, S, heads, C)``, the levels' tokens concatenated (``S = sum(h * w)``).
        shapes: ``(h, w)`` of each level, in the order of ``value``.
        locations: ``(B, Q, heads, levels, points, 2)``, ``(x, y)`` in [0, 1] of each level.
        weights: ``(B, Q, heads, levels, points)``, softmax-normalised over levels and points.
    Returns:
        ``(B, Q, heads * C)``.
    """
    b, s, heads, c = value.shape
    if s != sum(h * w for h, w in shapes):
        raise IrlibInputError(f"ms_deform_attn: value has {s} tokens, the level shapes {shapes} make "
                              f"{sum(h * w for h, w in shapes)}")
    _, q, _, levels, points, _ = locations.shape
    grids = 2 * locations - 1
    sampled = []
    for lvl, v in enumerate(value.split([h * w for h, w in shapes], dim=1)):
        h, w = shapes[lvl]
        v = v.permute(0, 2, 3, 1).reshape(b * heads, c, h, w)
        g = grids[:, :, :, lvl].transpose(1, 2).reshape(b * heads, q, points, 2)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    stacked = torch.stack(sampled, dim=-2).flatten(-2)                   # (B*heads, C, Q, levels*points)
    attn = weights.transpose(1, 2).reshape(b * heads, 1, q, levels * points)
    out = (stacked * attn).sum(-1).view(b, heads * c, q)
    return out.transpose(1, 2).contiguous()


class MSDeformAttn(nn.Module):
    """Deformable attention: each query looks at ``points`` learned offsets per head and level."""

    def __init__(self, dim: int = 8, levels: int = 2, heads: int = 8, points: int = 4) -> None:
        super().__init__()
        if dim % heads:
            raise IrlibInputError(f"MSDeformAttn: dim {dim} must be divisible by heads {heads}")
        self.dim, self.levels, self.heads, self.points = dim, levels, heads, points
        self.sampling_offsets = nn.Linear(dim, heads * levels * points * 2)
        self.attention_weights = nn.Linear(dim, heads * levels * points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR's start: offsets fan out in ``heads`` directions, 1..points cells away."""
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        angles = torch.arange(self.heads, dtype=torch.float32) * (2.0 * math.pi / self.heads)
        grid = torch.stack([angles.cos(), angles.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.heads, 1, 1, 2).repeat(1, self.levels, self.points, 1)
        grid = grid * torch.arange(1, self.points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.reshape(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(self, query: Tensor, reference: Tensor, value: Tensor, shapes: list[tuple[int, int]]) -> Tensor:
        """``query`` (B, Q, dim), ``reference`` (B, Q, levels, 2) in [0, 1], ``value`` (B, S, dim)."""
        b, q, _ = query.shape
        v = self.value_proj(value).view(b, value.shape[1], self.heads, self.dim // self.heads)
        off = self.sampling_offsets(query).view(b, q, self.heads, self.levels, self.points, 2)
        attn = self.attention_weights(query).view(b, q, self.heads, self.levels * self.points)
        attn = attn.softmax(-1).view(b, q, self.heads, self.levels, self.points)
        norm = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype, device=query.device)
        loc = reference[:, :, None, :, None, :] + off / norm[None, None, None, :, None, :]
        return self.output_proj(ms_deform_attn(v, shapes, loc, attn))


def reference_points(shapes: list[tuple[int, int]], device: torch.device, dtype: torch.dtype) -> Tensor:
    """Pixel centres of every level in [0, 1], repeated for each level: ``(S, levels, 2)``."""
    refs = []
    for h, w in shapes:
        y, x = torch.meshgrid(torch.arange(h, device=device, dtype=dtype),
                              torch.arange(w, device=device, dtype=dtype), indexing="ij")
        refs.append(torch.stack([(x.reshape(-1) + 0.5) / w, (y.reshape(-1) + 0.5) / h], -1))
    return torch.cat(refs, 0)[:, None, :].expand(-1, len(shapes), -1)


class DeformEncoderLayer(nn.Module):
    """Deformable self-attention over all levels, then an FFN (post-norm, as Mask2Former's)."""

    def __init__(self, dim: int = 8, levels: int = 2, heads: int = 8, points: int = 4,
                 ffn_dim: int = 2048, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = MSDeformAttn(dim, levels, heads, points)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, src: Tensor, pos: Tensor, reference: Tensor, shapes: list[tuple[int, int]]) -> Tensor:
        src = self.norm1(src + self.drop(self.attn(src + pos, reference, src, shapes)))
        return self.norm2(src + self.drop(self.ffn(src)))


class DenseQueryRefiner(nn.Module):
    """SimIR's dense-query step: one deformable encoder over [full-resolution map, stage map].

    Both maps have ``dim`` channels; they are flattened, given sine positions plus a learned
    level embedding, refined jointly, and returned as maps of their own sizes (any sizes:
    the released code hard-codes 256 x 256 for the first level).
    """

    def __init__(self, dim: int = 8, heads: int = 8, points: int = 4, ffn_dim: int = 2048,
                 layers: int = 1, levels: int = 2) -> None:
        super().__init__()
        self.level_embed = nn.Parameter(torch.empty(levels, dim).normal_())
        self.layers = nn.ModuleList(DeformEncoderLayer(dim, levels, heads, points, ffn_dim) for _ in range(layers))

    def forward(self, maps: list[Tensor], pos: list[Tensor]) -> list[Tensor]:
        shapes = [(int(m.shape[-2]), int(m.shape[-1])) for m in maps]
        src = torch.cat([m.flatten(2).transpose(1, 2) for m in maps], 1)
        p = torch.cat([pe.flatten(2).transpose(1, 2) + self.level_embed[i] for i, pe in enumerate(pos)], 1)
        ref = reference_points(shapes, src.device, src.dtype)[None].expand(src.shape[0], -1, -1, -1)
        for layer in self.layers:
            src = layer(src, p, ref, shapes)
        outs = src.split([h * w for h, w in shapes], dim=1)
        return [o.transpose(1, 2).reshape(o.shape[0], -1, h, w) for o, (h, w) in zip(outs, shapes)]
