"""Segmentation losses on logits, with deep supervision built in.

Every loss takes ``(pred, target)`` with ``pred`` logits ``(B, 1, H, W)`` or a list of such maps
(deep supervision, final map first) and ``target`` a float ``{0, 1}`` mask ``(B, 1, H, W)``.
A list gives the mean of the per-map losses (as BasicIRSTD / DNANet do).

* ``softiou``: ``1 - (sum(p*t) + s) / (sum(p) + sum(t) - sum(p*t) + s)``, ``p = sigmoid``,
  sums over the whole batch, ``s = 1`` (DNANet / BasicIRSTD's SoftIoULoss).
* ``bce``: binary cross-entropy with logits, mean over pixels.
* ``dice``: ``1 - (2 sum(p*t) + s) / (sum(p) + sum(t) + s)``, batch sums, ``s = 1``.
* ``edge_bce_ohem``: edge-weighted BCE with online hard-pixel mining, the "edge enhancement
  difficulty mining" (EEDM) loss of the FEST framework by the FDEP authors (Yu et al.):
  per-pixel BCE, pixels in the edge band of the mask weighted ``edge_weight`` (4), then only the
  pixels whose weighted loss is at or above the ``drop_ratio`` quantile (0.5, i.e. the hardest
  half of the batch's pixels) are averaged. The edge band holds the pixels within Euclidean
  distance ``radius`` (1) of a pixel of the other class, on both sides of the boundary.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from irlib.errors import IrlibInputError

Pred = torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, ...]


def prediction_list(pred: Pred, target: torch.Tensor) -> list[torch.Tensor]:
    """``pred`` as a non-empty list of maps, each of ``target``'s shape (else :class:`IrlibInputError`)."""
    preds = list(pred) if isinstance(pred, (list, tuple)) else [pred]
    if not preds:
        raise IrlibInputError("loss: got an empty list of predictions")
    for p in preds:
        if p.shape != target.shape:
            raise IrlibInputError(f"loss: prediction {tuple(p.shape)} and mask {tuple(target.shape)} "
                                  "differ; hosts must return full-size (B, 1, H, W) logits")
    return preds


class SirstLoss(nn.Module):
    """Base: ``forward`` averages :meth:`single` over deep-supervision outputs."""

    def single(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, pred: Pred, target: torch.Tensor) -> torch.Tensor:
        preds = prediction_list(pred, target)
        target = target.to(preds[0].dtype)
        return torch.stack([self.single(p, target) for p in preds]).mean()

    def per_sample(self, pred: Pred, target: torch.Tensor) -> torch.Tensor:
        """``(B,)``: the loss of each image on its own (mean over deep-supervision maps)."""
        preds = list(pred) if isinstance(pred, (list, tuple)) else [pred]
        return torch.stack([self([p[i:i + 1] for p in preds], target[i:i + 1])
                            for i in range(target.shape[0])])

    def weighted(self, pred: Pred, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Per-sample loss weighted by ``weights`` ``(B,)``: ``sum(w * l) / sum(w)``."""
        w = weights.reshape(-1).to(target.device, torch.float32)
        if w.numel() != target.shape[0]:
            raise IrlibInputError(f"loss weights: {w.numel()} weights for a batch of {target.shape[0]}")
        if bool((w < 0).any()) or float(w.sum()) <= 0:
            raise IrlibInputError("loss weights must be >= 0 with a positive sum")
        losses = self.per_sample(pred, target)
        return (losses * w.to(losses.dtype)).sum() / w.sum().to(losses.dtype)


class SoftIoULoss(SirstLoss):
    """Soft IoU loss on sigmoid probabilities, batch-global sums (DNANet / BasicIRSTD)."""

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__()
        self.smooth = smooth

    def single(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(logits)
        inter = (p * target).sum()
        return 1 - (inter + self.smooth) / (p.sum() + target.sum() - inter + self.smooth)


class BCELoss(SirstLoss):
    """Binary cross-entropy with logits, mean over all pixels; optional ``pos_weight``."""

    def __init__(self, pos_weight: float | None = None) -> None:
        super().__init__()
        self.pos_weight = pos_weight

    def single(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pw = None if self.pos_weight is None else torch.tensor(self.pos_weight, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw)


class DiceLoss(SirstLoss):
    """Soft Dice loss on sigmoid probabilities, batch-global sums."""

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__()
        self.smooth = smooth

    def single(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(logits)
        return 1 - (2 * (p * target).sum() + self.smooth) / (p.sum() + target.sum() + self.smooth)


def disk(radius: int) -> torch.Tensor:
    """Binary disk structuring element ``(2r+1, 2r+1)``: offsets with ``dy^2 + dx^2 <= r^2``."""
    r = torch.arange(-radius, radius + 1)
    return ((r[:, None] ** 2 + r[None, :] ** 2) <= radius ** 2).float()


def edge_map(mask: torch.Tensor, radius: int = 1) -> torch.Tensor:
    """Edge band of a ``(B, 1, H, W)`` {0, 1} mask: morphological gradient with a disk of ``radius``.

    A pixel is an edge when a pixel of the other class lies within distance ``radius``
    (dilation minus erosion). Outside the image counts as background, so targets touching the
    border have edges there. ``radius=1`` is the 4-neighbour (cross) gradient.
    """
    if radius < 1:
        raise IrlibInputError(f"edge radius must be >= 1, got {radius}")
    se = disk(radius).to(mask.device, mask.dtype)[None, None]
    hits = F.conv2d((mask > 0.5).to(mask.dtype), se, padding=radius)
    dilated = hits > 0.5
    eroded = hits > se.sum() - 0.5
    return (dilated & ~eroded).to(mask.dtype)


class EdgeOHEMBCELoss(SirstLoss):
    """Edge-weighted BCE with online hard-pixel mining (FEST's EEDM loss, Yu et al.).

    Args:
        edge_weight: weight of edge-band pixels (others weigh 1). FEST default 4.
        radius: edge band half-width in pixels (distance to the other class). FEST default 1.
        drop_ratio: fraction of the easiest pixels dropped; the kept pixels are those whose
            weighted loss is >= the value at sorted index ``int(drop_ratio * N)``. FEST default 0.5.
    """

    def __init__(self, edge_weight: float = 4.0, radius: int = 1, drop_ratio: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= drop_ratio < 1.0:
            raise IrlibInputError(f"drop_ratio must be in [0, 1), got {drop_ratio}")
        self.edge_weight, self.radius, self.drop_ratio = edge_weight, radius, drop_ratio

    def single(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        weight = 1 + (self.edge_weight - 1) * edge_map(target, self.radius)
        loss = (bce * weight).flatten()
        k = min(int(self.drop_ratio * loss.numel()), loss.numel() - 1)
        threshold = torch.kthvalue(loss.detach(), k + 1).values
        return loss[loss >= threshold].mean()


class WarmupLoss(SirstLoss):
    """``warmup`` for the first ``epochs`` epochs, then ``main``; the loop calls :meth:`set_epoch`."""

    def __init__(self, main: SirstLoss, warmup: SirstLoss, epochs: int) -> None:
        super().__init__()
        self.main, self.warmup, self.epochs = main, warmup, int(epochs)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def active(self) -> SirstLoss:
        return self.warmup if self.epoch < self.epochs else self.main

    def forward(self, pred: Pred, target: torch.Tensor) -> torch.Tensor:
        return self.active(pred, target)

    def per_sample(self, pred: Pred, target: torch.Tensor) -> torch.Tensor:
        return self.active.per_sample(pred, target)


_LOSSES: dict[str, Callable[..., SirstLoss]] = {
    "softiou": SoftIoULoss,
    "bce": BCELoss,
    "dice": DiceLoss,
    "edge_bce_ohem": EdgeOHEMBCELoss,
}
_ALIASES = {"eedm": "edge_bce_ohem", "soft_iou": "softiou"}
# losses that live with their method, registered when first asked for
_METHOD_LOSSES = {"simir": "irlib.simir.loss"}


def register_loss(name: str, factory: Callable[..., SirstLoss]) -> None:
    """Make a method's loss available to recipes by name (e.g. SimIR's ``simir``)."""
    old = _LOSSES.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (factory.__module__, factory.__qualname__):
        raise ValueError(f"loss {name!r} is already registered by {old.__module__}.{old.__qualname__}")
    _LOSSES[name] = factory


def list_losses() -> list[str]:
    return sorted(set(_LOSSES) | set(_METHOD_LOSSES))


def build_loss(name: str, **kwargs: Any) -> SirstLoss:
    """A loss by name (``softiou``, ``bce``, ``dice``, ``edge_bce_ohem`` a.k.a. ``eedm``)."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _LOSSES and key in _METHOD_LOSSES:
        importlib.import_module(_METHOD_LOSSES[key])
    if key not in _LOSSES:
        raise IrlibInputError(f"unknown loss {name!r}; choose one of {list_losses()}")
    return _LOSSES[key](**kwargs)


