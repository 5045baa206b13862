"""SimIR's loss: BCE + Dice on each of the three predictions (released ``sirst_loss``).

Each stage contributes ``bce_weight * BCE + dice_weight * Dice`` (5 and 5 as released) and the
stages are summed with equal weight. Dice is per image with +1 smoothing, then averaged over the
batch. The released code computes both on PointRend-style sampled points (12,544 points,
oversample 3, importance 0.75); ``points=None`` (irlib's default) uses every pixel instead, which
is exact and cheap at 256 x 256 for targets of a few pixels; ``points=12544`` is the released
variant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from irlib.engine.losses import Pred, SirstLoss, register_loss
from irlib.errors import IrlibInputError


def sample_points(logits: torch.Tensor, points: int, oversample: float = 3.0,
                  importance: float = 0.75) -> torch.Tensor:
    """PointRend's training points ``(B, points, 2)`` in [0, 1] (x, y): the most uncertain
    (``|logit|`` smallest) of ``oversample * points`` random points, plus random ones."""
    b = logits.shape[0]
    n_over = int(points * oversample)
    cand = torch.rand(b, n_over, 2, device=logits.device, dtype=logits.dtype)
    vals = point_values(logits, cand)
    n_imp = int(importance * points)
    idx = (-vals.abs()).topk(n_imp, dim=1).indices
    chosen = torch.gather(cand, 1, idx[..., None].expand(-1, -1, 2))
    rand = torch.rand(b, points - n_imp, 2, device=logits.device, dtype=logits.dtype)
    return torch.cat([chosen, rand], 1)


def point_values(maps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear values of ``maps`` (B, 1, H, W) at ``coords`` (B, N, 2) in [0, 1]: ``(B, N)``."""
    out = F.grid_sample(maps, 2 * coords[:, :, None] - 1, mode="bilinear", align_corners=False)
    return out[:, 0, :, 0]


def dice_per_image(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """``1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s)`` per image, ``(B,)``."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    return 1 - (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)


class SimIRLoss(SirstLoss):
    """BCE + Dice per stage, stages summed (see the module docstring)."""

    def __init__(self, bce_weight: float = 5.0, dice_weight: float = 5.0, points: int | None = None,
                 oversample: float = 3.0, importance: float = 0.75) -> None:
        super().__init__()
        if points is not None and points < 1:
            raise IrlibInputError(f"points must be None (every pixel) or >= 1, got {points}")
        self.bce_weight, self.dice_weight = bce_weight, dice_weight
        self.points, self.oversample, self.importance = points, oversample, importance

    def single(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.points is not None:
            with torch.no_grad():
                coords = sample_points(logits.detach(), self.points, self.oversample, self.importance)
                target = point_values(target, coords)
            logits = point_values(logits, coords)
        bce = F.binary_cross_entropy_with_logits(logits, target)
        return self.bce_weight * bce + self.dice_weight * dice_per_image(logits, target).mean()

    def forward(self, pred: Pred, target: torch.Tensor) -> torch.Tensor:
        preds = list(pred) if isinstance(pred, (list, tuple)) else [pred]
        return super().forward(preds, target) * len(preds)     # summed over stages, as released


register_loss("simir", SimIRLoss)
