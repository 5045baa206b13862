"""LESPS's focal loss on soft (evolving) labels, for logits.

Per pixel, with ``p = sigmoid(logit)`` and the soft target ``t`` in [0, 1] (CornerNet-style,
LESPS ``utils.py: focal_loss``, ``alpha = 2``, ``gamma = 4``)::

    pos = -log(p) (1 - p)^alpha t
    neg = -log(1 - p) p^alpha (1 - t)^gamma
    loss = sum(pos + neg) / max(1, #pixels with t == 1)

sums over the whole batch. Deep supervision: LESPS **sums** the losses of the outputs
(``deep="sum"``, default); ``"mean"`` is irlib's convention for the other losses.
LESPS's hosts end in a sigmoid and it takes ``log(p + 1e-12)``; irlib hosts return logits, so the
logs are computed with log-sigmoid (exact; it differs from LESPS only where ``p`` is within about
1e-12 of 0 or 1, e.g. float32 ``p == 1`` gives LESPS ``log(1e-12)`` instead of ``-logit``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from irlib.engine.losses import Pred, SirstLoss, prediction_list
from irlib.errors import IrlibInputError


class LespsFocalLoss(SirstLoss):
    """Focal loss on soft labels (LESPS); ``pred`` logits ``(B, 1, H, W)`` or a list of them."""

    def __init__(self, alpha: float = 2.0, gamma: float = 4.0, deep: str = "sum") -> None:
        super().__init__()
        if deep not in ("sum", "mean"):
            raise IrlibInputError(f"deep={deep!r}: choose 'sum' (LESPS) or 'mean'")
        self.alpha, self.gamma, self.deep = float(alpha), float(gamma), deep

    def pixels(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The per-pixel terms ``pos + neg`` (float32, the shape of ``logits``)."""
        x, t = logits.float(), target.float()
        p = torch.sigmoid(x)
        pos = -F.logsigmoid(x) * (1.0 - p).pow(self.alpha) * t
        neg = -F.logsigmoid(-x) * p.pow(self.alpha) * (1.0 - t).pow(self.gamma)
        return pos + neg

    def single(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.pixels(logits, target).sum() / (target == 1).sum().clamp(min=1)

    def forward(self, pred: Pred, target: torch.Tensor) -> torch.Tensor:
        preds = self._checked(pred, target)
        losses = torch.stack([self.single(p, target) for p in preds])
        return losses.sum() if self.deep == "sum" else losses.mean()

    @staticmethod
    def _checked(pred: Pred, target: torch.Tensor) -> list[torch.Tensor]:
        preds = prediction_list(pred, target)
        if float(target.min()) < 0.0 or float(target.max()) > 1.0:
            raise IrlibInputError("LespsFocalLoss: the soft label must lie in [0, 1]")
        return preds

    def per_image(self, pred: Pred, target: torch.Tensor) -> torch.Tensor:
        """``(B,)`` per-image terms whose batch mean is :meth:`forward` (each image's pixel sum over
        the batch's ``max(1, #t == 1)``, times ``B``), for per-sample weighting."""
        preds = self._checked(pred, target)
        norm = (target == 1).sum().clamp(min=1) / target.shape[0]
        stacked = torch.stack([self.pixels(p, target).flatten(1).sum(1) / norm for p in preds])
        return stacked.sum(0) if self.deep == "sum" else stacked.mean(0)


__all__ = ["LespsFocalLoss"]
