"""``Normalize``: the one place where host-network inputs are normalised."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from irlib.errors import IrlibInputError


class Normalize:
    """``(x - mean) / std`` per channel on tensors ``(..., C, H, W)``; scalars act on all channels.

    Hosts see ``Normalize(stats.gray_mean, stats.gray_std)(raw)``; frozen encoders see ``raw``.
    """

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        self.mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1)
        if self.mean.numel() != self.std.numel():
            raise IrlibInputError(f"Normalize: mean has {self.mean.numel()} values, std {self.std.numel()}")
        if not bool(torch.all(self.std > 0)) or not bool(torch.all(torch.isfinite(self.mean))):
            raise IrlibInputError(f"Normalize: std must be > 0 and mean finite, got mean={mean}, std={std}")

    @classmethod
    def from_stats(cls, stats: Any) -> "Normalize":
        """From :class:`irlib.data.stats.DatasetStats`, with BasicIRSTD's convention: the average
        of the images' means and of their standard deviations (``image_mean_avg``/``image_std_avg``)."""
        return cls(float(stats.image_mean_avg), float(stats.image_std_avg))

    @classmethod
    def identity(cls) -> "Normalize":
        return cls(0.0, 1.0)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.device, x.dtype)) / self.std.to(x.device, x.dtype)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}

    def __repr__(self) -> str:
        d = self.to_dict()
        return f"Normalize(mean={d['mean']}, std={d['std']})"
