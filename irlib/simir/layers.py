"""Small building blocks of the SimIR student: positions, query attention layers, MLP, Conv-BN-GELU.

The attention layers are Mask2Former's post-norm layers (residual, then LayerNorm), token-first
``(B, N, C)``; positions are added to queries and keys, never to values.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sine_positions(x: Tensor, channels: int, temperature: float = 10000.0) -> Tensor:
    """DETR's normalised sine position map ``(B, channels, H, W)`` for a feature map ``x``.

    Half of the channels encode the row, half the column (``normalize=True``, scale 2 pi), so a
    256-d map is DETR's ``PositionEmbeddingSine(128)`` and an 8-d one ``PositionEmbeddingSine(4)``.
    """
    b, _, h, w = x.shape
    half = channels // 2
    eps, scale = 1e-6, 2 * math.pi
    y = torch.arange(1, h + 1, device=x.device, dtype=torch.float32)[:, None].expand(h, w)
    xx = torch.arange(1, w + 1, device=x.device, dtype=torch.float32)[None, :].expand(h, w)
    y = y / (h + eps) * scale
    xx = xx / (w + eps) * scale
    dim_t = torch.arange(half, device=x.device, dtype=torch.float32)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / half)
    px, py = xx[..., None] / dim_t, y[..., None] / dim_t
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=3).flatten(2)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=3).flatten(2)
    pos = torch.cat((py, px), dim=2).permute(2, 0, 1)
    return pos[None].expand(b, -1, -1, -1).to(x.dtype)


def tokens(x: Tensor) -> Tensor:
    """``(B, C, H, W)`` -> ``(B, H*W, C)``."""
    return x.flatten(2).transpose(1, 2)


class ConvBNGELU(nn.Sequential):
    """1x1 (or k x k) convolution, BatchNorm, GELU: SimIR's projections between widths."""

    def __init__(self, cin: int, cout: int, k: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.GELU())


class MLP(nn.Module):
    """``layers`` linear layers with ReLU between them (DETR / Mask2Former's MLP)."""

    def __init__(self, din: int, hidden: int, dout: int, layers: int = 3) -> None:
        super().__init__()
        dims = [din] + [hidden] * (layers - 1) + [dout]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class CrossAttention(nn.Module):
    """``x <- attend(x + x_pos, memory + memory_pos, memory)``, residual, LayerNorm."""

    def __init__(self, dim: int, heads: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor, x_pos: Tensor | None = None,
                memory_pos: Tensor | None = None) -> Tensor:
        q = x if x_pos is None else x + x_pos
        k = memory if memory_pos is None else memory + memory_pos
        out = self.attn(q, k, memory, need_weights=False)[0]
        return self.norm(x + self.drop(out))


class SelfAttention(CrossAttention):
    """``x <- attend(x + pos, x + pos, x)``, residual, LayerNorm: :class:`CrossAttention` of ``x`` on itself."""

    def forward(self, x: Tensor, pos: Tensor | None = None) -> Tensor:  # type: ignore[override]
        return super().forward(x, x, pos, pos)


class FFN(nn.Module):
    """Two linear layers with ReLU, residual, LayerNorm."""

    def __init__(self, dim: int, hidden: int = 2048, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x + self.drop(self.net(x)))


class QueryBlock(nn.Module):
    """Queries read the pixels, think, and are broadcast back into them (SimIR's query step).

    ``q = SA(FFN(CA(q <- src)))``; then every pixel attends to the queries
    (``src = CA(src <- q)``). Returns the refined queries and pixel tokens.
    """

    def __init__(self, dim: int, heads: int = 8, ffn_dim: int = 2048, dropout: float = 0.0) -> None:
        super().__init__()
        self.read = CrossAttention(dim, heads, dropout)
        self.ffn = FFN(dim, ffn_dim, dropout)
        self.mix = SelfAttention(dim, heads, dropout)
        self.broadcast = CrossAttention(dim, heads, dropout)

    def forward(self, q: Tensor, q_pos: Tensor, src: Tensor, src_pos: Tensor) -> tuple[Tensor, Tensor]:
        q = self.mix(self.ffn(self.read(q, src, q_pos, src_pos)), q_pos)
        return q, self.broadcast(src, q, src_pos, q_pos)
