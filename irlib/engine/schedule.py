"""Per-step learning-rate schedules: ``None``, ``"cosine"``, ``"poly"`` or your own factory."""

from __future__ import annotations

import math
from typing import Callable, Union

import torch

from irlib.errors import IrlibInputError

SchedulerFactory = Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LRScheduler]
Schedule = Union[None, str, SchedulerFactory]


def build_scheduler(schedule: Schedule, optimizer: torch.optim.Optimizer, total_steps: int,
                    min_lr_ratio: float = 0.0,
                    power: float = 0.9) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A scheduler stepped once per optimiser step.

    ``"cosine"``: ``lr * (m + (1 - m) * (1 + cos(pi t / T)) / 2)`` with ``m = min_lr_ratio``.
    ``"poly"``: ``lr * (1 - t / T) ** power`` (power 0.9, as in DNANet-style training).
    A callable gets ``(optimizer, total_steps)`` and returns a torch scheduler.
    """
    if schedule is None:
        return None
    if callable(schedule):
        return schedule(optimizer, total_steps)
    total = max(1, total_steps)
    if schedule == "cosine":
        def factor(t: int) -> float:
            return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, total) / total))
    elif schedule == "poly":
        def factor(t: int) -> float:
            return max(0.0, 1 - min(t, total) / total) ** power
    else:
        raise IrlibInputError(f"scheduler={schedule!r}: use None, 'cosine', 'poly' or a callable "
                              "(optimizer, total_steps) -> LRScheduler")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
